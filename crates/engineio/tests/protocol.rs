//! The layer's protocol on real sockets (127.0.0.1, port 0): handshakes, both polling formats, WebSocket,
//! the upgrade, heartbeats, limits, back-pressure and the frame budget.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use bytes::Bytes;
use engineioxide::{
    DisconnectReason, Socket, Str,
    budget::{FrameBudget, FrameLimit, Limits},
    config::EngineIoConfig,
    handle::SessionHandle,
    handler::EngineIoHandler,
    service::EngineIoService,
};
use futures_util::{SinkExt, StreamExt};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tokio_tungstenite::tungstenite::Message;

/// Echoes every message; `lift` lifts the session's first-frame limit; remembers sessions and reasons.
#[derive(Debug, Default)]
struct Echo {
    sockets: Mutex<Vec<Arc<Socket<()>>>>,
    reasons: Mutex<Vec<DisconnectReason>>,
}

impl EngineIoHandler for Echo {
    type Data = ();
    fn on_connect(self: Arc<Self>, socket: Arc<Socket<()>>) {
        self.sockets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(socket);
    }
    fn on_disconnect(&self, _socket: Arc<Socket<()>>, reason: DisconnectReason) {
        self.reasons
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(reason);
    }
    fn on_message(self: &Arc<Self>, msg: Str, socket: Arc<Socket<()>>) {
        if msg == "lift"
            && let Some(limit) = socket.req_parts.extensions.get::<FrameLimit>()
        {
            limit.lift();
        }
        socket.emit(msg).ok();
    }
    fn on_binary(self: &Arc<Self>, data: Bytes, socket: Arc<Socket<()>>) {
        socket.emit_binary(data).ok();
    }
}

impl Echo {
    fn reasons(&self) -> Vec<DisconnectReason> {
        self.reasons
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
    fn socket(&self, i: usize) -> Arc<Socket<()>> {
        self.sockets.lock().unwrap_or_else(PoisonError::into_inner)[i].clone()
    }
}

fn config() -> engineioxide::config::EngineIoConfigBuilder {
    EngineIoConfig::builder()
        .ping_interval(Duration::from_millis(300))
        .ping_timeout(Duration::from_millis(200))
        .max_payload(1_000_000)
}

async fn start(config: EngineIoConfig) -> (SocketAddr, Arc<Echo>) {
    let handler = Arc::new(Echo::default());
    let svc = EngineIoService::with_config(handler.clone(), config);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let svc = svc.clone();
            tokio::spawn(async move {
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    (addr, handler)
}

/// One HTTP/1.1 request on a new connection: (status, content type, body).
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.expect("write");
    s.write_all(body).await.expect("write");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.expect("read");
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("head end");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head[9..12].parse().expect("status");
    let ct = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type: ")
                .map(str::to_owned)
        })
        .unwrap_or_default();
    let mut body = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    (status, ct, body)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let n =
            usize::from_str_radix(std::str::from_utf8(&b[..eol]).unwrap_or("0"), 16).unwrap_or(0);
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + n]);
        b = &b[eol + 4 + n..];
    }
}

async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let (status, _, body) = http(addr, "GET", path, "text/plain", b"").await;
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn post(addr: SocketAddr, path: &str, body: &str) -> (u16, String) {
    let (status, _, body) = http(
        addr,
        "POST",
        path,
        "text/plain;charset=UTF-8",
        body.as_bytes(),
    )
    .await;
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn sid_of(open: &str) -> String {
    let json = &open[open.find('{').expect("open packet")..];
    let v: serde_json::Value = serde_json::from_str(json).expect("json");
    v["sid"].as_str().expect("sid").to_owned()
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

async fn ws(addr: SocketAddr, query: &str) -> Ws {
    let url = format!("ws://{addr}/engine.io/?{query}");
    tokio_tungstenite::connect_async(url).await.expect("ws").0
}

async fn next_text(ws: &mut Ws) -> Option<String> {
    loop {
        match tokio::time::timeout(Duration::from_secs(3), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return Some(t.to_string()),
            Ok(Some(Ok(Message::Binary(b)))) => return Some(format!("bin:{:?}", b.to_vec())),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)))) => {}
            _ => return None,
        }
    }
}

#[tokio::test]
async fn polling_v4_handshake_and_round_trip() {
    let (addr, _) = start(config().build()).await;
    let (status, open) = get(addr, "/engine.io/?EIO=4&transport=polling").await;
    assert_eq!(status, 200);
    assert!(open.starts_with("0{"), "{open}");
    assert!(open.contains(r#""upgrades":["websocket"]"#), "{open}");
    assert!(open.contains(r#""pingInterval":300"#), "{open}");
    let sid = sid_of(&open);
    let path = format!("/engine.io/?EIO=4&transport=polling&sid={sid}");
    assert_eq!(
        post(addr, &path, "4hello\x1ebAQIDBA==").await,
        (200, "ok".into())
    );
    assert_eq!(get(addr, &path).await, (200, "4hello\x1ebAQIDBA==".into()));
    assert_eq!(
        get(addr, "/engine.io/?EIO=5&transport=polling").await.0,
        400
    );
    assert_eq!(
        get(addr, "/engine.io/?EIO=4&transport=carrier-pigeon")
            .await
            .0,
        400
    );
}

#[tokio::test]
async fn polling_v3_text_base64_and_binary_payloads() {
    let (addr, _) = start(config().build()).await;
    let (status, open) = get(addr, "/engine.io/?EIO=3&transport=polling&b64=1").await;
    assert_eq!(status, 200);
    let (len, packet) = open.split_once(':').expect("v3 length prefix");
    assert_eq!(
        len.parse::<usize>().ok(),
        Some(packet.encode_utf16().count())
    );
    let sid = sid_of(packet);
    let path = format!("/engine.io/?EIO=3&transport=polling&b64=1&sid={sid}");
    assert_eq!(post(addr, &path, "3:4é€10:b4AQIDBA==").await.0, 200);
    assert_eq!(get(addr, &path).await, (200, "3:4é€10:b4AQIDBA==".into()));

    // Without b64 the binary echo comes back in the binary payload form.
    let (_, open) = get(addr, "/engine.io/?EIO=3&transport=polling").await;
    let sid = sid_of(&open);
    let path = format!("/engine.io/?EIO=3&transport=polling&sid={sid}");
    let body = [1u8, 5, 0xff, 4, 1, 2, 3, 4];
    let (status, _, _) = http(addr, "POST", &path, "application/octet-stream", &body).await;
    assert_eq!(status, 200);
    let (status, ct, got) = http(addr, "GET", &path, "text/plain", b"").await;
    assert_eq!(status, 200);
    assert_eq!(ct, "application/octet-stream");
    assert_eq!(got, body);
}

#[tokio::test]
async fn websocket_v4_and_v3_echo_text_and_binary() {
    let (addr, _) = start(config().build()).await;
    let mut c = ws(addr, "EIO=4&transport=websocket").await;
    let open = next_text(&mut c).await.expect("open");
    assert!(open.contains(r#""upgrades":[]"#), "{open}");
    c.send(Message::text("4hello")).await.expect("send");
    assert_eq!(next_text(&mut c).await.as_deref(), Some("4hello"));
    c.send(Message::binary(vec![1u8, 2, 3]))
        .await
        .expect("send");
    assert_eq!(next_text(&mut c).await.as_deref(), Some("bin:[1, 2, 3]"));
    // A large message: several reads, and a 16-bit length on the way back.
    let big = format!("4{}", "x".repeat(70_000));
    c.send(Message::text(big.clone())).await.expect("send");
    assert_eq!(next_text(&mut c).await, Some(big));

    let mut c = ws(addr, "EIO=3&transport=websocket").await;
    assert!(next_text(&mut c).await.expect("open").starts_with("0{"));
    c.send(Message::binary(vec![4u8, 9, 9]))
        .await
        .expect("send");
    assert_eq!(next_text(&mut c).await.as_deref(), Some("bin:[4, 9, 9]"));
    c.send(Message::text("2")).await.expect("send");
    assert_eq!(
        next_text(&mut c).await.as_deref(),
        Some("3"),
        "v3: the server answers pings"
    );
}

#[tokio::test]
async fn upgrade_hands_waiting_packets_to_the_websocket() {
    let (addr, echo) = start(config().build()).await;
    let (_, open) = get(addr, "/engine.io/?EIO=4&transport=polling").await;
    let sid = sid_of(&open);
    let path = format!("/engine.io/?EIO=4&transport=polling&sid={sid}");
    let mut c = ws(addr, &format!("EIO=4&transport=websocket&sid={sid}")).await;
    c.send(Message::text("2probe")).await.expect("send");
    assert_eq!(next_text(&mut c).await.as_deref(), Some("3probe"));
    assert_eq!(
        get(addr, &path).await,
        (200, "6".into()),
        "the poll is ended with a noop"
    );
    echo.socket(0)
        .emit("queued during the upgrade")
        .expect("emit");
    // The `5` and the client's first message in one write (a client flushes its buffer at once).
    c.feed(Message::text("5")).await.expect("feed");
    c.feed(Message::text("4right behind the 5"))
        .await
        .expect("feed");
    c.flush().await.expect("flush");
    assert_eq!(
        next_text(&mut c).await.as_deref(),
        Some("4queued during the upgrade")
    );
    assert_eq!(
        next_text(&mut c).await.as_deref(),
        Some("4right behind the 5")
    );
    assert_eq!(
        get(addr, &path).await.0,
        400,
        "polling is over for this session"
    );
    c.send(Message::text("4after")).await.expect("send");
    assert_eq!(next_text(&mut c).await.as_deref(), Some("4after"));
    assert_eq!(
        echo.socket(0).transport_type(),
        engineioxide::TransportType::Websocket
    );
}

#[tokio::test]
async fn heartbeats_of_both_versions_time_out() {
    let (addr, echo) = start(config().build()).await;
    // v4: the server pings; a client that never answers is closed after interval + timeout.
    let mut v4 = ws(addr, "EIO=4&transport=websocket").await;
    next_text(&mut v4).await.expect("open");
    assert_eq!(next_text(&mut v4).await.as_deref(), Some("2"));
    // v3: the client must ping within interval + timeout.
    let mut v3 = ws(addr, "EIO=3&transport=websocket").await;
    next_text(&mut v3).await.expect("open");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(
        echo.reasons(),
        vec![
            DisconnectReason::HeartbeatTimeout,
            DisconnectReason::HeartbeatTimeout
        ]
    );
    // A v4 client that answers stays.
    let mut ok = ws(addr, "EIO=4&transport=websocket").await;
    next_text(&mut ok).await.expect("open");
    for _ in 0..3 {
        assert_eq!(next_text(&mut ok).await.as_deref(), Some("2"));
        ok.send(Message::text("3")).await.expect("pong");
    }
    assert_eq!(echo.reasons().len(), 2);
}

/// A polling session that never answers the ping is closed once interval + timeout have passed, not
/// before and not a tick after (the protocol suite polls at exactly 500 ms and expects a `400`).
#[tokio::test]
async fn a_polling_session_times_out_on_time() {
    let (addr, echo) = start(config().build()).await;
    let (_, open) = get(addr, "/engine.io/?EIO=4&transport=polling").await;
    let opened = tokio::time::Instant::now();
    let path = format!("/engine.io/?EIO=4&transport=polling&sid={}", sid_of(&open));
    tokio::time::sleep_until(opened + Duration::from_millis(420)).await;
    assert_eq!(
        get(addr, &path).await,
        (200, "2".into()),
        "alive before its time, with the ping waiting"
    );
    tokio::time::sleep_until(opened + Duration::from_millis(540)).await;
    assert_eq!(get(addr, &path).await.0, 400, "closed after 300 + 200 ms");
    assert_eq!(echo.reasons(), vec![DisconnectReason::HeartbeatTimeout]);
}

/// A `GET` sent right behind the WebSocket's `2probe` and `5` (over another connection: on a runtime
/// with two workers the server may read them in any order) is answered at once, and the WebSocket
/// carries on: with the `400` of a session that polls no more when the server reads it during or after
/// the upgrade, with a noop when it reads it first (the probe ends a waiting poll). Before the fix, a
/// `GET` the upgrade overtook between its checks waited until the session died of its ping timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poll_racing_the_upgrade_is_refused_not_left_hanging() {
    let (addr, _) = start(config().build()).await;
    for round in 0..200 {
        let (_, open) = get(addr, "/engine.io/?EIO=4&transport=polling").await;
        let sid = sid_of(&open);
        let mut c = ws(addr, &format!("EIO=4&transport=websocket&sid={sid}")).await;
        c.feed(Message::text("2probe")).await.expect("feed");
        c.feed(Message::text("5")).await.expect("feed");
        c.flush().await.expect("flush");
        let path = format!("/engine.io/?EIO=4&transport=polling&sid={sid}");
        let polled = tokio::time::timeout(Duration::from_millis(400), get(addr, &path))
            .await
            .unwrap_or_else(|_| panic!("round {round}: the poll was left hanging"));
        assert!(
            polled.0 == 400 || polled == (200, "6".to_owned()),
            "round {round}: {polled:?}"
        );
        assert_eq!(next_text(&mut c).await.as_deref(), Some("3probe"));
        c.send(Message::text("4hello")).await.expect("send");
        assert_eq!(
            next_text(&mut c).await.as_deref(),
            Some("4hello"),
            "round {round}"
        );
    }
}

#[tokio::test]
async fn limits_close_oversized_messages_and_bodies() {
    let (addr, echo) = start(config().max_payload(1000).ws_max_message_size(1000).build()).await;
    let mut c = ws(addr, "EIO=4&transport=websocket").await;
    next_text(&mut c).await.expect("open");
    c.send(Message::text(format!("4{}", "x".repeat(1000))))
        .await
        .ok();
    assert_eq!(next_text(&mut c).await, None, "closed");
    let (_, open) = get(addr, "/engine.io/?EIO=4&transport=polling").await;
    let path = format!("/engine.io/?EIO=4&transport=polling&sid={}", sid_of(&open));
    assert_eq!(
        post(addr, &path, &format!("4{}", "y".repeat(1000))).await.0,
        413
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        echo.reasons(),
        vec![
            DisconnectReason::PacketParsingError,
            DisconnectReason::PacketParsingError
        ]
    );
}

#[tokio::test]
async fn a_full_buffer_fails_the_emit_instead_of_growing() {
    let (addr, echo) = start(config().max_buffer_size(4).build()).await;
    let (_, open) = get(addr, "/engine.io/?EIO=4&transport=polling").await;
    let socket = echo.socket(0);
    for i in 0..4 {
        socket.emit(format!("m{i}")).expect("room for four");
    }
    assert!(matches!(
        socket.emit("m4"),
        Err(tokio::sync::mpsc::error::TrySendError::Full(_))
    ));
    assert!(socket.reserve().is_err());
    let path = format!("/engine.io/?EIO=4&transport=polling&sid={}", sid_of(&open));
    assert_eq!(get(addr, &path).await.1, "4m0\x1e4m1\x1e4m2\x1e4m3");
    let permit = socket.reserve().expect("drained");
    permit.emit("after".into());
    assert_eq!(get(addr, &path).await.1, "4after");
    socket.close(DisconnectReason::ClosingServer);
    assert!(socket.is_closed());
    assert!(matches!(
        socket.emit("late"),
        Err(tokio::sync::mpsc::error::TrySendError::Closed(_))
    ));
}

/// The handle every session's request carries.
fn handle_of(socket: &Socket<()>) -> SessionHandle {
    socket
        .req_parts
        .extensions
        .get::<SessionHandle>()
        .cloned()
        .expect("every session's request carries its handle")
}

#[tokio::test]
async fn a_session_handle_emits_in_order_with_the_socket_and_closes_the_session() {
    let (addr, echo) = start(config().max_buffer_size(3).build()).await;
    let mut c = ws(addr, "EIO=4&transport=websocket").await;
    assert!(next_text(&mut c).await.expect("open").starts_with("0{"));
    let socket = echo.socket(0);
    let handle = handle_of(&socket);
    socket.emit("a").expect("emit");
    handle.emit("b".into()).expect("emit through the handle");
    socket.emit("c").expect("emit");
    for want in ["4a", "4b", "4c"] {
        assert_eq!(next_text(&mut c).await.as_deref(), Some(want));
    }
    // The handle follows the session's buffer limit: a polling session nobody polls takes three.
    let (_, _open) = get(addr, "/engine.io/?EIO=4&transport=polling").await;
    let polling = echo.socket(1);
    let handle2 = handle_of(&polling);
    for i in 0..3 {
        handle2
            .emit(format!("m{i}").into())
            .expect("room for three");
    }
    assert!(matches!(
        handle2.emit("m3".into()),
        Err(tokio::sync::mpsc::error::TrySendError::Full(_))
    ));
    // Closing through the handle ends the WebSocket session; emitting afterwards fails as closed.
    handle.close();
    assert_eq!(
        next_text(&mut c).await.as_deref(),
        Some("1"),
        "a close packet"
    );
    assert!(socket.is_closed());
    assert!(matches!(
        handle.emit("late".into()),
        Err(tokio::sync::mpsc::error::TrySendError::Closed(_))
    ));
    assert!(matches!(
        SessionHandle::default().emit("nobody".into()),
        Err(tokio::sync::mpsc::error::TrySendError::Closed(_))
    ));
}

/// Sends the head of a masked text frame announcing `len` bytes, then `sent` bytes of it.
async fn start_frame(addr: SocketAddr, len: usize, sent: usize) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let req = "GET /engine.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n";
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = vec![0u8; 4096];
    // The 101 and the open packet.
    let _ = tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf)).await;
    let mut frame = vec![0x81u8, 0x80 | 127];
    frame.extend_from_slice(&(len as u64).to_be_bytes());
    frame.extend_from_slice(&[0, 0, 0, 0]);
    frame.extend(std::iter::repeat_n(b'4', sent));
    s.write_all(&frame).await.expect("write");
    s
}

async fn is_closed(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
}

#[tokio::test]
async fn the_budget_drops_the_oldest_unfinished_frame() {
    let budget = FrameBudget::new(100_000);
    let limits = Limits::new().budget(budget.clone());
    let (addr, _) = start(
        config()
            .ping_interval(Duration::from_secs(20))
            .ping_timeout(Duration::from_secs(20))
            .limits(limits)
            .build(),
    )
    .await;
    let mut first = start_frame(addr, 1_000_000, 60_000).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(budget.used() >= 50_000, "counted: {}", budget.used());
    let mut second = start_frame(addr, 1_000_000, 60_000).await;
    assert!(
        is_closed(&mut first).await,
        "the oldest frame's session is closed"
    );
    assert!(!is_closed(&mut second).await, "the newer one goes on");
    assert!(budget.used() <= 100_000);
    drop(second);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(budget.used(), 0, "everything given back");
    assert!(budget.refused() >= 1);
}

#[tokio::test]
async fn the_first_frame_limit_holds_until_the_application_lifts_it() {
    let limits = Limits::new().first_frame_limit(100);
    let (addr, echo) = start(config().limits(limits).build()).await;
    let mut c = ws(addr, "EIO=4&transport=websocket").await;
    next_text(&mut c).await.expect("open");
    c.send(Message::text(format!("4{}", "x".repeat(200))))
        .await
        .ok();
    assert_eq!(next_text(&mut c).await, None, "refused before the lift");

    let mut c = ws(addr, "EIO=4&transport=websocket").await;
    next_text(&mut c).await.expect("open");
    c.send(Message::text("4lift")).await.expect("send");
    assert_eq!(next_text(&mut c).await.as_deref(), Some("4lift"));
    let big = format!("4{}", "x".repeat(200));
    c.send(Message::text(big.clone())).await.expect("send");
    assert_eq!(next_text(&mut c).await, Some(big), "taken after the lift");
    assert_eq!(echo.reasons(), vec![DisconnectReason::PacketParsingError]);
}

#[tokio::test]
async fn client_close_and_duplicate_polls() {
    let (addr, echo) = start(config().build()).await;
    let (_, open) = get(addr, "/engine.io/?EIO=4&transport=polling").await;
    let path = format!("/engine.io/?EIO=4&transport=polling&sid={}", sid_of(&open));
    let first = tokio::spawn({
        let path = path.clone();
        async move { get(addr, &path).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(get(addr, &path).await.0, 400);
    assert_eq!(first.await.expect("join"), (200, "1".into()));
    assert_eq!(
        echo.reasons(),
        vec![DisconnectReason::MultipleHttpPollingError]
    );

    let mut c = ws(addr, "EIO=4&transport=websocket").await;
    next_text(&mut c).await.expect("open");
    c.send(Message::text("1")).await.expect("send");
    assert_eq!(next_text(&mut c).await, None);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(echo.reasons()[1], DisconnectReason::TransportClose);
}

#[tokio::test]
async fn a_second_websocket_racing_an_upgrade_is_closed_and_the_first_upgrades() {
    let (addr, _) = start(config().build()).await;
    let (_, open) = get(addr, "/engine.io/?EIO=4&transport=polling").await;
    let sid = sid_of(&open);
    let query = format!("EIO=4&transport=websocket&sid={sid}");
    // The second asks before the first's probe has been read: it must not take the session over.
    let mut first = ws(addr, &query).await;
    let mut second = ws(addr, &query).await;
    assert_eq!(
        next_text(&mut second).await,
        None,
        "the second is closed at once"
    );
    first.send(Message::text("2probe")).await.expect("send");
    assert_eq!(next_text(&mut first).await.as_deref(), Some("3probe"));
    first.send(Message::text("5")).await.expect("send");
    first.send(Message::text("4hello")).await.expect("send");
    assert_eq!(next_text(&mut first).await.as_deref(), Some("4hello"));
}

/// Frames emitted faster than a socket takes them (several per write round, some larger than the
/// kernel's buffer) reach the client whole, in the order they were emitted.
#[tokio::test]
async fn a_burst_reaches_the_client_whole_and_in_order() {
    let config = config()
        .ping_interval(Duration::from_secs(20))
        .ping_timeout(Duration::from_secs(20))
        .max_buffer_size(10_000)
        .build();
    let (addr, echo) = start(config).await;
    let mut ws = ws(addr, "EIO=4&transport=websocket").await;
    assert!(next_text(&mut ws).await.expect("open").starts_with('0'));
    let socket = echo.socket(0);
    let expected: Vec<Message> = (0..600u32)
        .map(|i| match i % 7 {
            3 => Message::Binary(vec![i as u8; 3].into()),
            5 if i % 50 == 5 => Message::Binary(vec![i as u8; 400_000].into()),
            _ => Message::Text(format!("4m{i}").into()),
        })
        .collect();
    // One turn of this task: every frame after the first waits for the round to end.
    for m in &expected {
        match m {
            Message::Text(t) => socket.emit(t[1..].to_string()).expect("room"),
            Message::Binary(b) => socket.emit_binary(b.clone()).expect("room"),
            _ => unreachable!(),
        }
    }
    // A second burst a little later, while the first may still be going out.
    tokio::time::sleep(Duration::from_millis(5)).await;
    for i in 0..50 {
        socket.emit(format!("late{i}")).expect("room");
    }
    let mut got = Vec::new();
    while got.len() < expected.len() + 50 {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(m @ (Message::Text(_) | Message::Binary(_))))) => got.push(m),
            Ok(Some(Ok(_))) => {}
            other => panic!("stream ended after {} frames: {other:?}", got.len()),
        }
    }
    let late: Vec<Message> = (0..50)
        .map(|i| Message::Text(format!("4late{i}").into()))
        .collect();
    assert!(
        got[..expected.len()] == expected[..],
        "the first burst, in order"
    );
    assert!(
        got[expected.len()..] == late[..],
        "the second burst, in order"
    );
}

/// Under load (here: always, a load threshold of zero), frames for a socket that gets them in quick
/// succession wait up to the coalescing interval and go out together; none is lost, reordered or held
/// much longer, volatile emits included.
#[tokio::test]
async fn coalesced_frames_arrive_together_in_order() {
    let interval = Duration::from_millis(40);
    let config = config()
        .ping_interval(Duration::from_secs(20))
        .ping_timeout(Duration::from_secs(20))
        .write_coalescing(interval, 0.0)
        .build();
    let (addr, echo) = start(config).await;
    let mut ws = ws(addr, "EIO=4&transport=websocket").await;
    assert!(next_text(&mut ws).await.expect("open").starts_with('0'));
    let socket = echo.socket(0);
    let count = 60;
    let sender = tokio::spawn(async move {
        let mut sent = Vec::new();
        for i in 0..count {
            if i % 10 == 9 {
                assert!(socket.emit_volatile(format!("m{i}")), "volatile {i} taken");
            } else {
                socket.emit(format!("m{i}")).expect("room");
            }
            sent.push(std::time::Instant::now());
            tokio::time::sleep(Duration::from_millis(4)).await;
        }
        sent
    });
    let mut arrived = Vec::new();
    for i in 0..count {
        assert_eq!(
            next_text(&mut ws).await.as_deref(),
            Some(format!("4m{i}").as_str()),
            "frame {i}"
        );
        arrived.push(std::time::Instant::now());
    }
    let sent = sender.await.expect("sender");
    // Frames that waited for the same flush arrive in one read, not one every 4 ms.
    let together = arrived
        .windows(2)
        .filter(|w| w[1] - w[0] < Duration::from_millis(1))
        .count();
    assert!(
        together >= count / 3,
        "{together} of {count} frames came together"
    );
    let held = sent.iter().zip(&arrived).map(|(s, a)| *a - *s).max();
    assert!(
        held < Some(interval + Duration::from_millis(500)),
        "a frame was held {held:?}"
    );
    // A message from the client is still answered (the echo goes through the same path).
    ws.send(Message::Text("4ping-pong".into()))
        .await
        .expect("send");
    assert_eq!(next_text(&mut ws).await.as_deref(), Some("4ping-pong"));
}
