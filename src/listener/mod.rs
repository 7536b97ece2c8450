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
//!   An IPv6 client counts per /64 (`--ipv6-prefix`, see [`AddrKey`](crate::proxy::AddrKey));
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

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

use crate::deadline::WriteDeadline;
use crate::metrics::{Counter, Metrics, Refusal};
use crate::proxy::{ClientAddr, PeerAddr, TrustedProxies, canonical};
use crate::state::AppState;

mod caps;

use self::caps::{Caps, IpSlot, Place, PlaceRef, ServedOnDrop, Watched};

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
    let caps = Caps::new(&options);
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
        let (place, ip_slot) = match caps.admit(canonical(peer.ip())) {
            Ok(admitted) => admitted,
            Err(refusal) => {
                options.metrics.refused(refusal);
                let status = match refusal {
                    Refusal::ConnectionIpCap => "429 Too Many Requests",
                    _ => "503 Service Unavailable",
                };
                refuse(stream, status);
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
        let evicted = place.evicted();
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
