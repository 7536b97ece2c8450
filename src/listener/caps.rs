//! The connection caps: per client address (per network for IPv6), and server-wide with the
//! connections waiting for a request's headers ready to give their place to a newcomer, oldest first
//! (see the module docs of [`super`]).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use tokio_util::sync::CancellationToken;

use super::ServeOptions;
use crate::metrics::{Counter, Refusal};
use crate::proxy::{AddrKey, TrustedProxies};

/// Open connections per client address (per network for IPv6).
#[derive(Debug, Default)]
struct PerIp {
    limit: usize,
    open: Mutex<HashMap<AddrKey, usize>>,
}

/// One counted connection of an address; uncounts it when dropped.
pub(super) struct IpSlot {
    ip: AddrKey,
    table: Arc<PerIp>,
}

impl PerIp {
    fn acquire(table: &Arc<Self>, ip: AddrKey) -> Option<IpSlot> {
        let mut open = table
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = open.entry(ip).or_insert(0);
        if *n >= table.limit {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            ip,
            table: table.clone(),
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self
            .table
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = open.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// The global cap, and the connections that may give their place to a newcomer when it is full:
/// those waiting for a request's headers, oldest first.
struct Capacity {
    max: usize,
    state: Mutex<CapacityState>,
}

#[derive(Default)]
struct CapacityState {
    /// Places taken (an evicted connection that has not closed yet no longer holds one).
    open: usize,
    /// The last key handed out in `waiting`; keys only grow, so the map is ordered by age.
    last: u64,
    /// Connections waiting for a request's headers, by when they started waiting.
    waiting: BTreeMap<u64, Arc<PlaceState>>,
}

/// One connection's standing under the cap. Its fields change only under the cap's lock (atomics
/// for shared mutability, not for lock-free use).
struct PlaceState {
    /// Its key in `waiting`, or 0 while a request is served (or after an upgrade, or eviction).
    waiting_since: AtomicU64,
    /// Requests whose headers are complete and whose responses are not sent yet.
    in_flight: AtomicUsize,
    /// Its place went to a newcomer: it is being closed and is no longer counted.
    evicted: AtomicBool,
    /// It was upgraded (a WebSocket): it never waits for headers again.
    upgraded: AtomicBool,
    /// Closes the connection when it is evicted.
    close: CancellationToken,
}

/// What happened to a new connection at the global cap.
enum Admission {
    /// A free place.
    Free(Place),
    /// The place of the connection that had waited longest for its headers, which is being closed.
    Evicted(Place),
    /// Every place is held by a request being served or an upgraded socket.
    Full,
}

impl Capacity {
    fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            state: Mutex::default(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, CapacityState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A place for a new connection, which starts out waiting for its request's headers.
    fn admit(self: &Arc<Self>) -> Admission {
        let mut state = self.lock();
        let evicted = if state.open < self.max {
            state.open += 1;
            false
        } else if let Some((_, oldest)) = state.waiting.pop_first() {
            // The newcomer takes over its count; it closes as soon as its task sees the token.
            oldest.waiting_since.store(0, Ordering::Relaxed);
            oldest.evicted.store(true, Ordering::Relaxed);
            oldest.close.cancel();
            true
        } else {
            return Admission::Full;
        };
        let place = Arc::new(PlaceState {
            waiting_since: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            evicted: AtomicBool::new(false),
            upgraded: AtomicBool::new(false),
            close: CancellationToken::new(),
        });
        state.wait(&place);
        let place = Place(PlaceRef {
            capacity: self.clone(),
            state: place,
        });
        if evicted {
            Admission::Evicted(place)
        } else {
            Admission::Free(place)
        }
    }
}

impl CapacityState {
    fn wait(&mut self, place: &Arc<PlaceState>) {
        self.last += 1;
        place.waiting_since.store(self.last, Ordering::Relaxed);
        self.waiting.insert(self.last, place.clone());
    }

    fn stop_waiting(&mut self, place: &PlaceState) {
        let since = place.waiting_since.swap(0, Ordering::Relaxed);
        if since != 0 {
            self.waiting.remove(&since);
        }
    }
}

/// A handle on a connection's place, for the requests it serves.
#[derive(Clone)]
pub(super) struct PlaceRef {
    capacity: Arc<Capacity>,
    state: Arc<PlaceState>,
}

impl PlaceRef {
    /// Cancelled when the connection's place goes to a newcomer: the connection must close.
    pub(super) fn evicted(&self) -> CancellationToken {
        self.state.close.clone()
    }

    /// A request's headers are complete: from now until its response is sent, the connection is
    /// not closed for newcomers.
    pub(super) fn serving(&self) {
        let mut state = self.capacity.lock();
        self.state.in_flight.fetch_add(1, Ordering::Relaxed);
        state.stop_waiting(&self.state);
    }

    /// The request's response is sent (or abandoned): the connection waits for the next request's
    /// headers, unless it was upgraded.
    pub(super) fn served(&self) {
        let mut state = self.capacity.lock();
        let me = &self.state;
        let before = me.in_flight.fetch_sub(1, Ordering::Relaxed);
        if before == 1
            && !me.upgraded.load(Ordering::Relaxed)
            && !me.evicted.load(Ordering::Relaxed)
            && me.waiting_since.load(Ordering::Relaxed) == 0
        {
            state.wait(me);
        }
    }

    /// The connection was upgraded: its socket is never closed for newcomers.
    pub(super) fn upgraded(&self) {
        let mut state = self.capacity.lock();
        self.state.upgraded.store(true, Ordering::Relaxed);
        state.stop_waiting(&self.state);
    }
}

/// A connection's place under the global cap; gives it back when dropped.
pub(super) struct Place(pub(super) PlaceRef);

impl Drop for Place {
    fn drop(&mut self) {
        let mut state = self.0.capacity.lock();
        state.stop_waiting(&self.0.state);
        if !self.0.state.evicted.load(Ordering::Relaxed) {
            state.open = state.open.saturating_sub(1);
        }
    }
}

/// Marks a connection's request as served when its response body is dropped: hyper drops it once
/// the body is written, or when the connection ends.
pub(super) struct ServedOnDrop(pub(super) PlaceRef);

impl Drop for ServedOnDrop {
    fn drop(&mut self) {
        self.0.served();
    }
}

/// A response body that tells the connection's place when it has been sent.
pub(super) struct Watched {
    pub(super) inner: axum::body::Body,
    pub(super) _served: ServedOnDrop,
}

impl http_body::Body for Watched {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Both caps, as the accept loop applies them.
pub(super) struct Caps {
    capacity: Arc<Capacity>,
    per_ip: Arc<PerIp>,
    trusted_proxies: TrustedProxies,
    ipv6_prefix: u8,
    evicted: Counter,
}

impl Caps {
    pub(super) fn new(options: &ServeOptions) -> Self {
        Self {
            capacity: Capacity::new(options.max_connections),
            per_ip: Arc::new(PerIp {
                limit: options.max_connections_per_ip,
                open: Mutex::default(),
            }),
            trusted_proxies: options.trusted_proxies.clone(),
            ipv6_prefix: options.ipv6_prefix,
            evicted: options.metrics.http.evicted.clone(),
        }
    }

    /// Places for a new connection from `ip` under both caps: the address's cap first, so a
    /// connection it refuses never closes someone else's; trusted proxies are not capped per address.
    ///
    /// # Errors
    /// The refusal: [`Refusal::ConnectionIpCap`] or [`Refusal::ConnectionCap`].
    pub(super) fn admit(&self, ip: IpAddr) -> Result<(Place, Option<IpSlot>), Refusal> {
        let ip_slot = if self.trusted_proxies.contains(ip) {
            None
        } else {
            let key = AddrKey::new(ip, self.ipv6_prefix);
            Some(PerIp::acquire(&self.per_ip, key).ok_or(Refusal::ConnectionIpCap)?)
        };
        match self.capacity.admit() {
            Admission::Free(place) => Ok((place, ip_slot)),
            Admission::Evicted(place) => {
                self.evicted.inc();
                Ok((place, ip_slot))
            }
            Admission::Full => Err(Refusal::ConnectionCap),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(admission: Admission) -> Option<(Place, bool)> {
        match admission {
            Admission::Free(place) => Some((place, false)),
            Admission::Evicted(place) => Some((place, true)),
            Admission::Full => None,
        }
    }

    #[test]
    fn a_full_cap_closes_the_longest_waiting_connection_and_never_a_busy_one() {
        let capacity = Capacity::new(3);
        let (a, _) = place(capacity.admit()).unwrap();
        let (b, _) = place(capacity.admit()).unwrap();
        let (c, evicted) = place(capacity.admit()).unwrap();
        assert!(!evicted);
        // `a` is being served, `b` was upgraded, `c` waits for its headers.
        a.0.serving();
        b.0.serving();
        b.0.upgraded();
        b.0.served();
        let (d, evicted) = place(capacity.admit()).unwrap();
        assert!(evicted);
        assert!(c.0.state.close.is_cancelled(), "the waiting one made room");
        assert!(!a.0.state.close.is_cancelled() && !b.0.state.close.is_cancelled());
        // `d` is served too: nobody waits, so the next newcomer is refused.
        d.0.serving();
        assert!(place(capacity.admit()).is_none());
        // The evicted connection closing gives back nothing: its place is `d`'s now.
        drop(c);
        assert!(place(capacity.admit()).is_none());
        assert_eq!(capacity.lock().open, 3);
        // `a` answered: it waits for its next request, and is the oldest waiting now.
        a.0.served();
        let (e, evicted) = place(capacity.admit()).unwrap();
        assert!(evicted && a.0.state.close.is_cancelled());
        // A connection that closes frees its place.
        drop(d);
        let (_f, evicted) = place(capacity.admit()).unwrap();
        assert!(!evicted);
        assert_eq!(capacity.lock().open, 3);
        assert_eq!(capacity.lock().waiting.len(), 2, "e and f wait");
        drop((a, b, e));
        assert_eq!(capacity.lock().open, 1);
    }
}
