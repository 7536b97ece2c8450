//! The client address behind reverse proxies.
//!
//! Every per-IP limit (connections, sign-ups, sign-ins) keys on the client's address, as an
//! [`AddrKey`]: an IPv4 address, or an IPv6 client's /64 (`--ipv6-prefix`). Directly connected,
//! that is the TCP peer. Behind a proxy the peer is the proxy, and the client is named by
//! the proxy in `X-Forwarded-For` (or `X-Real-IP`). Those headers are believed only when the peer is a
//! configured trusted proxy (`--trusted-proxies`): anyone else could write any address there.

use std::net::{IpAddr, Ipv6Addr};

use axum::http::HeaderMap;

/// One trusted address range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    fn parse(text: &str) -> Option<Self> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = addr.trim().parse().ok()?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.trim().parse::<u8>().ok().filter(|p| *p <= max)?,
            None => max,
        };
        Some(Self { network, prefix })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// IPv4 addresses seen through an IPv6 socket (`::ffff:a.b.c.d`) as the IPv4 address they are.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

/// What every per-address limit counts: an IPv4 address, or the IPv6 network of the address's first
/// `ipv6_prefix` bits. An IPv6 host is usually given a whole /64, so counting its addresses apart
/// would hand it billions of budgets; a network of 64 bits is one client.
///
/// Shown as the (masked) address, which is unique among keys made with one prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AddrKey(IpAddr);

impl AddrKey {
    /// The key of client address `ip` (IPv4-mapped IPv6 addresses count as their IPv4 address).
    pub fn new(ip: IpAddr, ipv6_prefix: u8) -> Self {
        match canonical(ip) {
            IpAddr::V6(v6) => {
                let bits = u32::from(ipv6_prefix.clamp(1, 128));
                let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
                Self(IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask)))
            }
            v4 @ IpAddr::V4(_) => Self(v4),
        }
    }
}

impl std::fmt::Display for AddrKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The configured trusted proxies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<Cidr>);

impl TrustedProxies {
    /// Parses addresses and CIDR ranges (`10.0.0.1`, `10.0.0.0/8`, `::1`, `fd00::/8`).
    ///
    /// # Errors
    /// The first entry that is neither.
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        entries
            .iter()
            .map(|e| Cidr::parse(e).ok_or_else(|| e.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    /// Whether no proxy is trusted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `ip` is a trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(ip))
    }

    /// The client's address for a request that arrived from `peer` with `headers`.
    ///
    /// From a trusted proxy: the right-most `X-Forwarded-For` entry that is not itself a trusted
    /// proxy (entries further left were written by whoever the client is, and prove nothing), else
    /// `X-Real-IP`, else the peer. From anyone else: the peer, whatever the headers say.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.contains(peer) {
            return peer;
        }
        let forwarded: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .collect();
        let mut last_proxy = None;
        for entry in forwarded.iter().rev() {
            let Some(ip) = parse_forwarded_ip(entry) else {
                // A malformed hop: nothing to its left can be attributed; stop at the last good one.
                return last_proxy.unwrap_or(peer);
            };
            if !self.contains(ip) {
                return ip;
            }
            last_proxy = Some(ip);
        }
        if let Some(ip) = last_proxy {
            return ip;
        }
        headers
            .get("x-real-ip")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_forwarded_ip)
            .unwrap_or(peer)
    }
}

/// One address as proxies write it: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1` or `[2001:db8::1]:80`.
fn parse_forwarded_ip(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(addr) = text.parse::<std::net::SocketAddr>() {
        return Some(canonical(addr.ip()));
    }
    text.strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .and_then(|t| t.parse().ok())
        .map(canonical)
}

/// The client address of a request, put into its extensions by the accept loop
/// ([`crate::listener`]) and read by [`crate::api::extract::ClientIp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// The TCP peer of a request and whether it came through a trusted proxy, for checks that must not
/// believe forwarded headers at all (who may read `/metrics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr {
    pub ip: IpAddr,
    /// Whether the request carries any forwarding header, i.e. may have been relayed by a proxy.
    pub forwarded: bool,
}

impl PeerAddr {
    /// The peer `ip` of a request with `headers`.
    pub fn new(ip: IpAddr, headers: &HeaderMap) -> Self {
        let forwarded = ["x-forwarded-for", "x-real-ip", "forwarded"]
            .iter()
            .any(|h| headers.contains_key(*h));
        Self {
            ip: canonical(ip),
            forwarded,
        }
    }

    /// A direct request from this machine.
    pub fn is_local(&self) -> bool {
        self.ip.is_loopback() && !self.forwarded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(list: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(&list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()).unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_match_their_addresses_only() {
        let p = proxies(&["10.0.0.0/8", "192.168.1.7", "fd00::/8", "0.0.0.0/0"]);
        assert!(p.contains(ip("10.200.3.4")));
        assert!(p.contains(ip("::ffff:10.1.1.1")));
        assert!(p.contains(ip("fd12::1")));
        let p = proxies(&["10.0.0.0/8", "192.168.1.7"]);
        assert!(!p.contains(ip("11.0.0.1")));
        assert!(!p.contains(ip("192.168.1.8")));
        assert!(!p.contains(ip("fe80::1")));
        for bad in ["10.0.0.0/33", "nonsense", "::/129", ""] {
            assert!(TrustedProxies::parse(&[bad.to_owned()]).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn forwarded_headers_count_only_from_trusted_peers() {
        let p = proxies(&["127.0.0.1"]);
        let h = headers(&[("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(p.client_ip(ip("127.0.0.1"), &h), ip("203.0.113.9"));
        assert_eq!(p.client_ip(ip("198.51.100.1"), &h), ip("198.51.100.1"));
        assert_eq!(
            TrustedProxies::default().client_ip(ip("127.0.0.1"), &h),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn the_right_most_untrusted_hop_is_the_client() {
        let p = proxies(&["127.0.0.1", "10.0.0.0/8"]);
        // The client wrote a fake first entry; the proxies appended the real hops.
        let h = headers(&[("x-forwarded-for", "1.1.1.1, 203.0.113.9, 10.0.0.2")]);
        assert_eq!(p.client_ip(ip("127.0.0.1"), &h), ip("203.0.113.9"));
        let h = headers(&[
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "203.0.113.9:4711"),
        ]);
        assert_eq!(p.client_ip(ip("127.0.0.1"), &h), ip("203.0.113.9"));
        let h = headers(&[("x-real-ip", "[2001:db8::5]")]);
        assert_eq!(p.client_ip(ip("10.1.1.1"), &h), ip("2001:db8::5"));
        let h = headers(&[("x-forwarded-for", "garbage, 10.0.0.3")]);
        assert_eq!(p.client_ip(ip("127.0.0.1"), &h), ip("10.0.0.3"));
        let h = headers(&[("x-forwarded-for", "")]);
        assert_eq!(p.client_ip(ip("127.0.0.1"), &h), ip("127.0.0.1"));
    }

    #[test]
    fn ipv6_clients_are_keyed_by_their_network() {
        let key = |s: &str, prefix| AddrKey::new(ip(s), prefix);
        // One /64: any address in it is one key.
        assert_eq!(
            key("2001:db8::1", 64),
            key("2001:db8::ffff:ffff:ffff:ffff", 64)
        );
        assert_eq!(key("2001:db8:0:0:abcd::1", 64), key("2001:db8::", 64));
        assert_eq!(key("2001:db8::1", 64).to_string(), "2001:db8::");
        // The next /64 is another client.
        assert_ne!(key("2001:db8::1", 64), key("2001:db8:0:1::1", 64));
        // Other prefixes: /48 groups more, /128 counts every address.
        assert_eq!(key("2001:db8:0:1::1", 48), key("2001:db8:0:ffff::1", 48));
        assert_ne!(key("2001:db8::1", 128), key("2001:db8::2", 128));
        assert_eq!(key("::1", 64), key("::2", 64));
        assert_eq!(key("2001:db8::1", 1).to_string(), "::");
        assert_eq!(key("8000::1", 1).to_string(), "8000::");
        // IPv4, also seen through an IPv6 socket, is counted per address whatever the prefix.
        assert_ne!(key("10.0.0.1", 64), key("10.0.0.2", 64));
        assert_eq!(key("::ffff:10.0.0.1", 64), key("10.0.0.1", 64));
        assert_eq!(key("::ffff:10.0.0.1", 64).to_string(), "10.0.0.1");
    }

    #[test]
    fn local_means_loopback_and_not_relayed() {
        assert!(PeerAddr::new(ip("127.0.0.1"), &HeaderMap::new()).is_local());
        assert!(PeerAddr::new(ip("::ffff:127.0.0.1"), &HeaderMap::new()).is_local());
        assert!(!PeerAddr::new(ip("127.0.0.1"), &headers(&[("x-real-ip", "1.2.3.4")])).is_local());
        assert!(!PeerAddr::new(ip("10.0.0.1"), &HeaderMap::new()).is_local());
    }
}
