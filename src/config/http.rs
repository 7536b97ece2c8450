//! HTTP: where the server listens, what it serves besides the API, who may call it from where, and
//! how connections are capped and timed out.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use super::{ConfigError, Secret, TrustedProxies, trimmed};

/// Default listening port: the one the webchat client's debug build connects to.
pub const DEFAULT_PORT: u16 = 9090;

/// Flags for listening, serving and connections.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "HTTP")]
pub struct HttpConfig {
    /// Address to listen on.
    #[arg(long, env = "CHATROOM_HOST", default_value = "0.0.0.0")]
    pub host: String,

    /// Port to listen on.
    #[arg(long, env = "CHATROOM_PORT", default_value_t = DEFAULT_PORT)]
    pub port: u16,

    /// Serve this built web client (its `index.html` and `static/`) instead of chatroom's own.
    #[arg(long, env = "CHATROOM_STATIC_DIR")]
    pub static_dir: Option<PathBuf>,

    /// Origins allowed to call the API from another site (comma-separated, e.g.
    /// `http://localhost:9099`). They are echoed back with credentials allowed.
    #[arg(long, env = "CHATROOM_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,

    /// IPv6 clients are counted per network of this many leading bits by every per-address limit
    /// (connections, sign-ups, sign-ins): one host usually holds a whole /64. 128 counts each address.
    #[arg(long, env = "CHATROOM_IPV6_PREFIX", default_value_t = 64,
          value_parser = clap::value_parser!(u8).range(1..=128))]
    pub ipv6_prefix: u8,

    /// Seconds a connection may take to send a request's headers (and an idle keep-alive connection
    /// may wait for its next request) before it is closed.
    #[arg(long, env = "CHATROOM_HEADER_TIMEOUT", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=300))]
    pub header_timeout: u64,

    /// Seconds a write to a client may make no progress (the client stopped reading) before its
    /// connection is closed; 0 turns the deadline off.
    #[arg(long, env = "CHATROOM_WRITE_TIMEOUT", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub write_timeout: u64,

    /// Open connections at most; further ones are refused at once. Default: what the process's
    /// open-file limit leaves room for, keeping a reserve for the database, uploads and logs.
    #[arg(long, env = "CHATROOM_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,

    /// Open connections at most from one client address (trusted proxies are not limited).
    #[arg(long, env = "CHATROOM_MAX_CONNECTIONS_PER_IP", default_value_t = 256,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections_per_ip: u64,

    /// Proxies whose `X-Forwarded-For` / `X-Real-IP` headers name the client (comma-separated
    /// addresses or CIDR ranges, e.g. `127.0.0.1,10.0.0.0/8`). From anyone else these headers are
    /// ignored and the peer address is the client's.
    #[arg(long, env = "CHATROOM_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<String>,

    /// A bearer token that may read `/metrics` from anywhere. Without it, only direct (unproxied)
    /// requests from the loopback interface may.
    #[arg(long, env = "CHATROOM_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<Secret<String>>,

    /// A socket.io client script to serve at `/socket.io/socket.io.js`, for pages that load it from
    /// the server. Default: `socket.io.js` in the static directory, if there is one.
    #[arg(long, env = "CHATROOM_SOCKET_IO_JS")]
    pub socket_io_js: Option<PathBuf>,

    /// Mark the auth cookie `Secure` (set this when chatroom is served over HTTPS).
    #[arg(long, env = "CHATROOM_COOKIE_SECURE", default_value_t = false)]
    pub cookie_secure: bool,
}

/// Listening, serving and connections, resolved.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// The address to listen on.
    pub listen: SocketAddr,
    /// A built web client served instead of chatroom's own.
    pub static_dir: Option<PathBuf>,
    /// Origins allowed to call the API from another site.
    pub cors_origins: Vec<String>,
    /// Leading bits of an IPv6 address that per-address limits count (see [`Self::addr_key`]).
    pub ipv6_prefix: u8,
    /// How long a connection may take to send a request's headers.
    pub header_timeout: Duration,
    /// How long a write may make no progress; zero turns the deadline off.
    pub write_timeout: Duration,
    /// Open connections at most.
    pub max_connections: usize,
    /// Open connections at most from one client address.
    pub max_connections_per_ip: usize,
    /// Proxies whose forwarding headers name the client.
    pub trusted_proxies: TrustedProxies,
    /// The bearer token that may read `/metrics` from anywhere.
    pub metrics_token: Option<Secret<String>>,
    /// Whether the auth cookie is marked `Secure`.
    pub cookie_secure: bool,
    /// The socket.io client script served at `/socket.io/socket.io.js`.
    pub socket_io_js: Option<PathBuf>,
}

impl HttpConfig {
    /// Parses the listen address and trusted proxies, and fills in the connection cap and the
    /// client script.
    ///
    /// # Errors
    /// [`ConfigError::Address`] or [`ConfigError::TrustedProxy`].
    pub fn resolve(self) -> Result<HttpSettings, ConfigError> {
        let listen: SocketAddr = format!("{}:{}", bracket_v6(&self.host), self.port)
            .parse()
            .map_err(|_| ConfigError::Address(self.host.clone()))?;
        let trusted_proxies = TrustedProxies::parse(&trimmed(self.trusted_proxies))
            .map_err(ConfigError::TrustedProxy)?;
        let max_connections = self
            .max_connections
            .unwrap_or_else(|| default_max_connections(crate::sys::open_file_limit()))
            .max(1);
        let socket_io_js = self.socket_io_js.or_else(|| {
            self.static_dir
                .as_ref()
                .map(|d| d.join("socket.io.js"))
                .filter(|f| f.is_file())
        });
        Ok(HttpSettings {
            listen,
            static_dir: self.static_dir,
            cors_origins: trimmed(self.cors_origins),
            ipv6_prefix: self.ipv6_prefix.clamp(1, 128),
            header_timeout: Duration::from_secs(self.header_timeout),
            write_timeout: Duration::from_secs(self.write_timeout),
            max_connections,
            max_connections_per_ip: usize::try_from(self.max_connections_per_ip)
                .unwrap_or(usize::MAX),
            trusted_proxies,
            metrics_token: self.metrics_token.filter(|t| !t.expose().trim().is_empty()),
            cookie_secure: self.cookie_secure,
            socket_io_js,
        })
    }
}

impl HttpSettings {
    /// What per-address limits count for the client address `ip` (its /64 for IPv6; see
    /// [`AddrKey`](crate::proxy::AddrKey)).
    pub fn addr_key(&self, ip: std::net::IpAddr) -> crate::proxy::AddrKey {
        crate::proxy::AddrKey::new(ip, self.ipv6_prefix)
    }

    /// Test values: any free port on the loopback interface, generous connection caps.
    pub fn for_tests() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            static_dir: None,
            cors_origins: Vec::new(),
            ipv6_prefix: 64,
            header_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(30),
            max_connections: 4096,
            max_connections_per_ip: 4096,
            trusted_proxies: TrustedProxies::default(),
            metrics_token: None,
            cookie_secure: false,
            socket_io_js: None,
        }
    }
}

/// The default connection cap for an open-file limit of `fd_limit`: room for every connection, with a
/// reserve for the database pool, upload files, the log and the listener, so that the server refuses
/// connections itself before `accept` starts failing.
pub fn default_max_connections(fd_limit: u64) -> usize {
    let reserve = (fd_limit / 10).clamp(64, 1024);
    let room = fd_limit.saturating_sub(reserve).max(16);
    usize::try_from(room.min(1_000_000)).unwrap_or(1_000_000)
}

fn bracket_v6(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::config;
    use super::*;

    #[test]
    fn connection_caps_leave_a_file_descriptor_reserve() {
        assert_eq!(default_max_connections(1024), 922);
        assert_eq!(default_max_connections(20_000), 18_976);
        assert_eq!(default_max_connections(500_000), 500_000 - 1024);
        assert_eq!(default_max_connections(u64::MAX), 1_000_000);
        assert_eq!(default_max_connections(10), 16);
        let settings = config(&[]).http.resolve().unwrap();
        assert!(settings.max_connections >= 16);
        assert_eq!(settings.header_timeout, Duration::from_secs(10));
        assert!(matches!(
            config(&["--trusted-proxies", "10.0.0.0/99"]).http.resolve(),
            Err(ConfigError::TrustedProxy(_))
        ));
        let secret = "metrics-token-of-some-length";
        let settings = config(&["--metrics-token", secret]).http.resolve().unwrap();
        assert!(!format!("{settings:?}").contains(secret));
    }
}
