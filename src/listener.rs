//! Accepting connections: the accept loop behind [`crate::app::serve`].
//!
//! A server is only as available as its scarcest resource, which for a chat server holding tens of
//! thousands of sockets is file descriptors. So:
//!
//! * **a global cap** on open connections, below the process's open-file limit, so `accept` never
//!   starts failing for lack of descriptors. When it is full, a new connection takes the place of the
//!   connection that has waited longest for a request's headers (a new one that has not finished
//!   them, or a keep-alive one idle between requests), which is closed: connections that send no
//!   request cannot hold the server, however many addresses they come from. A connection whose
//!   request is being served, and an upgraded WebSocket, are never closed for a newcomer; when every
//!   place is held by those, new connections get a short `503` and are closed. Finding the oldest is
//!   a look at the front of an ordered map, so an accept never scans the connections;
//! * **a per-client-address cap**, so one client cannot take the whole budget (trusted proxies are
//!   exempt: every client behind them shares their address; they must limit connections themselves).
//!   An IPv6 client counts per /64 (`--ipv6-prefix`, see [`AddrKey`]);
//! * both caps count a connection until it closes, WebSockets included: the upgraded socket keeps
//!   the stream, and the stream holds the connection's places;
//! * **a header-read timeout**: a connection that does not finish its request headers in time (a
//!   slowloris, a slow WebSocket upgrade request) or sits idle between keep-alive requests is closed,
//!   so stuck connections give their slot back within seconds;
//! * **a write deadline** ([`crate::deadline`]): a client that stops reading for `--write-timeout` is
//!   cut off, so it cannot make the server hold its unsent packets;
//! * `TCP_NODELAY` on every connection (chat packets are small and latency-bound);
//! * each request carries its peer ([`axum::extract::ConnectInfo`]), its client address
//!   ([`ClientAddr`], from `X-Forwarded-For` only via a trusted proxy) and [`PeerAddr`];
//! * graceful shutdown: when the shutdown future completes, the listener closes, idle connections
//!   close, and requests in flight finish (bounded by [`SHUTDOWN_GRACE`]).
//!
//! HTTP/1.1 only: browsers speak HTTP/2 only over TLS, which a terminating proxy handles.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

use crate::deadline::WriteDeadline;
use crate::metrics::{Counter, Metrics, Refusal};
use crate::proxy::{AddrKey, ClientAddr, PeerAddr, TrustedProxies, canonical};
use crate::state::AppState;

/// How long shutdown waits for requests in flight once the listener is closed.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(35);

/// How the accept loop limits connections.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Time allowed for a request's headers, and for an idle keep-alive connection.
    pub header_timeout: Duration,
    /// Time a write may make no progress before the connection is closed (zero: no deadline).
    pub write_timeout: Duration,
    /// Connections closed for that (`chatroom_slow_consumer_disconnects_total`).
    pub slow_consumers: Counter,
    /// Open connections at most.
    pub max_connections: usize,
    /// Open connections at most per client address.
    pub max_connections_per_ip: usize,
    /// Leading bits of an IPv6 address that the per-address cap counts as one client.
    pub ipv6_prefix: u8,
    /// Peers whose forwarding headers are believed, and which are not capped per address.
    pub trusted_proxies: TrustedProxies,
    /// Where connection counts and refusals are recorded.
    pub metrics: Arc<Metrics>,
}

impl ServeOptions {
    /// The options configured for `state`.
    pub fn new(state: &AppState) -> Self {
        let settings = &state.settings.http;
        Self {
            header_timeout: settings.header_timeout,
            write_timeout: settings.write_timeout,
            slow_consumers: state.metrics.http.slow_consumers.clone(),
            max_connections: settings.max_connections,
            max_connections_per_ip: settings.max_connections_per_ip,
            ipv6_prefix: settings.ipv6_prefix,
            trusted_proxies: settings.trusted_proxies.clone(),
            metrics: state.metrics.clone(),
        }
    }
}

/// Open connections per client address (per network for IPv6).
#[derive(Debug, Default)]
struct PerIp {
    limit: usize,
    open: Mutex<HashMap<AddrKey, usize>>,
}

/// One counted connection of an address; uncounts it when dropped.
struct IpSlot {
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
struct PlaceRef {
    capacity: Arc<Capacity>,
    state: Arc<PlaceState>,
}

impl PlaceRef {
    /// A request's headers are complete: from now until its response is sent, the connection is
    /// not closed for newcomers.
    fn serving(&self) {
        let mut state = self.capacity.lock();
        self.state.in_flight.fetch_add(1, Ordering::Relaxed);
        state.stop_waiting(&self.state);
    }

    /// The request's response is sent (or abandoned): the connection waits for the next request's
    /// headers, unless it was upgraded.
    fn served(&self) {
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
    fn upgraded(&self) {
        let mut state = self.capacity.lock();
        self.state.upgraded.store(true, Ordering::Relaxed);
        state.stop_waiting(&self.state);
    }
}

/// A connection's place under the global cap; gives it back when dropped.
struct Place(PlaceRef);

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
struct ServedOnDrop(PlaceRef);

impl Drop for ServedOnDrop {
    fn drop(&mut self) {
        self.0.served();
    }
}

/// A response body that tells the connection's place when it has been sent.
struct Watched {
    inner: axum::body::Body,
    _served: ServedOnDrop,
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

/// Keeps the open-connections gauge right however a connection ends.
struct OpenConnection(Arc<Metrics>);

impl OpenConnection {
    fn new(metrics: Arc<Metrics>) -> Self {
        metrics.http.open_connections.inc();
        metrics.http.accepted_connections.inc();
        Self(metrics)
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.http.open_connections.dec();
    }
}

/// Serves `router` on `listener` until `shutdown` completes; see the module docs.
///
/// # Errors
/// None at present: failures to accept are logged and retried, so the signature leaves room only.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let capacity = Capacity::new(options.max_connections);
    let evicted = options.metrics.http.evicted.clone();
    let per_ip = Arc::new(PerIp {
        limit: options.max_connections_per_ip,
        open: Mutex::default(),
    });
    let tracker = TaskTracker::new();
    let (stop, stopped) = watch::channel(false);
    let mut last_accept_warning: Option<Instant> = None;
    let shutdown = std::pin::pin!(shutdown);
    let mut shutdown = shutdown;
    loop {
        let accepted = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                // Out of descriptors or memory: the caps should prevent it, but do not spin.
                if last_accept_warning.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    last_accept_warning = Some(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let ip = canonical(peer.ip());
        // The address's cap first: a connection it refuses must not close someone else's.
        let ip_slot = if options.trusted_proxies.contains(ip) {
            None
        } else if let Some(ip_slot) = PerIp::acquire(&per_ip, AddrKey::new(ip, options.ipv6_prefix))
        {
            Some(ip_slot)
        } else {
            options.metrics.refused(Refusal::ConnectionIpCap);
            refuse(stream, "429 Too Many Requests");
            continue;
        };
        let place = match capacity.admit() {
            Admission::Free(place) => place,
            Admission::Evicted(place) => {
                evicted.inc();
                place
            }
            Admission::Full => {
                drop(ip_slot);
                options.metrics.refused(Refusal::ConnectionCap);
                refuse(stream, "503 Service Unavailable");
                continue;
            }
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let connection = Connection {
            router: router.clone(),
            options: options.clone(),
            peer,
            place: place.0.clone(),
            tenancy: Tenancy {
                _place: place,
                _ip_slot: ip_slot,
                _open: OpenConnection::new(options.metrics.clone()),
            },
        };
        tracker.spawn(connection.run(stream, stopped.clone()));
    }
    drop(listener);
    let _ = stop.send(true);
    tracker.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open = tracker.len(),
            "connections still open after the shutdown grace period"
        );
    }
    Ok(())
}

/// Errors of one incoming connection (it was reset before we took it), not of the listener.
fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// Answers a connection over a cap with `status` and closes it, without spending a task on it.
fn refuse(stream: TcpStream, status: &str) {
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\nretry-after: 1\r\n\r\n"
    );
    // A fresh socket's send buffer is empty, so this writes the whole response or nothing.
    let _ = stream.try_write(response.as_bytes());
}

/// What an accepted connection holds until it closes: its places under both caps, and its count
/// among the open connections.
struct Tenancy {
    _place: Place,
    _ip_slot: Option<IpSlot>,
    _open: OpenConnection,
}

/// A connection's stream together with its [`Tenancy`]. A WebSocket upgrade takes the stream over
/// from hyper, so the caps keep counting a WebSocket until the socket itself closes, not only while
/// its upgrade request is served.
struct Held<S> {
    inner: S,
    _tenancy: Tenancy,
}

impl<S: AsyncRead + Unpin> AsyncRead for Held<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Held<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// One accepted connection and what it holds until it closes.
struct Connection {
    router: Router,
    options: ServeOptions,
    peer: SocketAddr,
    /// The connection's standing under the global cap, told when requests start and end.
    place: PlaceRef,
    tenancy: Tenancy,
}

impl Connection {
    async fn run(self, stream: TcpStream, mut stopped: watch::Receiver<bool>) {
        // The slots are held until the connection ends, however it ends, upgraded or not.
        let Self {
            router,
            options,
            peer,
            place,
            tenancy,
        } = self;
        let metrics = options.metrics.clone();
        let trusted = options.trusted_proxies.clone();
        let evicted = place.state.close.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            // hyper calls the service once the request's headers are complete.
            place.serving();
            let served = ServedOnDrop(place.clone());
            let client = trusted.client_ip(peer.ip(), req.headers());
            let peer_addr = PeerAddr::new(peer.ip(), req.headers());
            let extensions = req.extensions_mut();
            extensions.insert(ConnectInfo(peer));
            extensions.insert(ClientAddr(client));
            extensions.insert(peer_addr);
            let router = router.clone();
            let metrics = metrics.clone();
            async move {
                let response = router.oneshot(req).await?;
                metrics.http.answered(response.status().as_u16());
                if response.status() == hyper::StatusCode::SWITCHING_PROTOCOLS {
                    served.0.upgraded();
                }
                Ok::<_, std::convert::Infallible>(response.map(|inner| Watched {
                    inner,
                    _served: served,
                }))
            }
        });
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(options.header_timeout)
            .keep_alive(true);
        let conn = builder
            .serve_connection(
                TokioIo::new(Held {
                    inner: WriteDeadline::new(
                        stream,
                        options.write_timeout,
                        options.slow_consumers.clone(),
                    ),
                    _tenancy: tenancy,
                }),
                service,
            )
            .with_upgrades();
        let mut conn = std::pin::pin!(conn);
        let result = tokio::select! {
            result = conn.as_mut() => result,
            // Its place went to a newcomer while it waited for a request's headers.
            () = evicted.cancelled() => return,
            () = async { let _ = stopped.wait_for(|stop| *stop).await; } => {
                conn.as_mut().graceful_shutdown();
                conn.await
            }
        };
        if let Err(e) = result {
            if e.is_timeout() {
                options.metrics.refused(Refusal::HeaderTimeout);
                tracing::debug!(peer = %peer.ip(), "closed a connection that sent no request in time");
            } else {
                tracing::debug!(error = %e, "connection ended with an error");
            }
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
