//! Defect 1 (D6, D7): connection caps and the header-read timeout.

use std::time::{Duration, Instant};

use chatroom::metrics::Refusal;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::{connect_from, raw_request, read_until_closed};
use crate::common::TestApp;
use crate::common::socket::Auth;

/// Headers that never end: the slowloris request of the issue.
const STUCK: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n";
const HEALTHZ: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

/// Waits (generously) until the server counts `n` open connections.
async fn until_open(app: &TestApp, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.state.metrics.http.open_connections.get() < n {
        assert!(Instant::now() < deadline, "the server never had {n} open");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_slowloris_flood_from_one_address_cannot_starve_others() {
    let app = TestApp::spawn_with(|s| {
        s.http.header_timeout = Duration::from_secs(2);
        s.http.max_connections_per_ip = 40;
    })
    .await;
    // The attacker, at 127.0.0.2: as many stuck requests as it may open...
    let mut stuck = Vec::new();
    for _ in 0..40 {
        let mut c = connect_from([127, 0, 0, 2], app.addr).await;
        c.write_all(STUCK).await.unwrap();
        stuck.push(c);
    }
    until_open(&app, 40).await;
    // ...and every one past its cap is refused at once, in plain HTTP.
    for _ in 0..10 {
        let mut extra = connect_from([127, 0, 0, 2], app.addr).await;
        let reply = read_until_closed(&mut extra, Duration::from_secs(10))
            .await
            .expect("refused and closed at once");
        assert!(
            String::from_utf8_lossy(&reply).starts_with("HTTP/1.1 429"),
            "{reply:?}"
        );
    }
    assert!(app.state.metrics.refusals(Refusal::ConnectionIpCap) >= 10);

    // Everyone else is served meanwhile: probes, the API and a socket.io client.
    let (status, body) =
        raw_request(&mut connect_from([127, 0, 0, 1], app.addr).await, HEALTHZ).await;
    assert_eq!(status, 200, "{body}");
    let health = tokio::time::timeout(Duration::from_secs(10), app.get("/healthz").send())
        .await
        .expect("healthz answers during the flood")
        .unwrap();
    assert_eq!(health.status(), 200);
    let user = app.signup("bystander").await;
    let sock = app.sio(Auth::Payload(&user.token)).await;
    let ack = sock
        .ack("room", serde_json::json!({"roomid": "room1"}))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    sock.disconnect().await;

    // The stuck connections are closed once their headers are overdue, and give their slots back.
    let started = Instant::now();
    for c in &mut stuck {
        assert!(
            read_until_closed(c, Duration::from_secs(30))
                .await
                .is_some(),
            "a stuck connection was not closed"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(app.state.metrics.refusals(Refusal::HeaderTimeout) >= 40);
    let (status, _) = raw_request(&mut connect_from([127, 0, 0, 2], app.addr).await, HEALTHZ).await;
    assert_eq!(status, 200, "the address may connect again");
}

/// A request whose headers are complete and whose body is still on its way: being served.
async fn half_sent_sign_in(from: [u8; 4], app: &TestApp, name: &str) -> (TcpStream, Vec<u8>) {
    let body = serde_json::json!({"name": name, "password": "secret123"}).to_string();
    let head = format!(
        "POST /api/user/signin HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut c = connect_from(from, app.addr).await;
    c.write_all(head.as_bytes()).await.unwrap();
    let (first, rest) = body.as_bytes().split_at(5);
    c.write_all(first).await.unwrap();
    (c, rest.to_vec())
}

#[tokio::test]
async fn the_global_cap_refuses_new_connections_and_recovers() {
    let app = TestApp::spawn_with(|s| s.http.max_connections = 12).await;
    // Twelve requests being served (headers complete, bodies on their way) fill the cap: they are
    // never dropped to make room, so a thirteenth connection is refused.
    let mut held = Vec::new();
    for i in 0..12u8 {
        held.push(half_sent_sign_in([127, 0, 1, i + 1], &app, "holder").await);
    }
    until_open(&app, 12).await;
    let mut over = connect_from([127, 0, 2, 1], app.addr).await;
    let reply = read_until_closed(&mut over, Duration::from_secs(10))
        .await
        .expect("refused and closed at once");
    assert!(
        String::from_utf8_lossy(&reply).starts_with("HTTP/1.1 503"),
        "{reply:?}"
    );
    assert_eq!(app.state.metrics.refusals(Refusal::ConnectionCap), 1);
    // The held requests were not disturbed: each finishes and is answered.
    for (c, rest) in &mut held {
        c.write_all(rest).await.unwrap();
        let reply = read_until_closed(c, Duration::from_secs(30))
            .await
            .expect("answered and closed");
        let text = String::from_utf8_lossy(&reply);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    }
    let (status, _) = raw_request(&mut connect_from([127, 0, 2, 1], app.addr).await, HEALTHZ).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn unfinished_requests_from_many_addresses_make_room_oldest_first() {
    // Issue 20 item 5: 40 addresses × 60 unfinished requests, each address under its cap, used to
    // fill `--max-connections` and answer every other client `503`. Scaled down: 8 × 10 on a cap of 40.
    let app = TestApp::spawn_with(|s| {
        s.http.max_connections = 40;
        s.http.max_connections_per_ip = 10;
    })
    .await;
    let user = app.signup("resident").await;
    // Established before the flood: a socket.io client over WebSocket, and a request being served.
    let sock = app
        .try_sio(
            Auth::Payload(&user.token),
            rust_socketio::TransportType::Websocket,
        )
        .await
        .expect("socket connects");
    let (mut serving, rest) = half_sent_sign_in([127, 0, 0, 5], &app, "resident").await;

    let mut stuck = Vec::new();
    for a in 0..8u8 {
        for _ in 0..10 {
            let mut c = connect_from([127, 0, 3, a + 1], app.addr).await;
            let _ = c.write_all(STUCK).await;
            stuck.push(c);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The cap is full of unfinished requests, yet other clients are served...
    for _ in 0..10 {
        let (status, body) =
            raw_request(&mut connect_from([127, 0, 0, 9], app.addr).await, HEALTHZ).await;
        assert_eq!(status, 200, "{body}");
    }
    // ...because the oldest unfinished requests were closed to make room, and only those.
    let evicted = app.state.metrics.http.evicted.get();
    // 80 stuck, the sign-up's idle keep-alive connection and 10 probes passed through a cap of 40.
    assert!(evicted >= 40, "{evicted} evicted");
    assert_eq!(app.state.metrics.refusals(Refusal::ConnectionCap), 0);
    assert!(
        read_until_closed(&mut stuck[0], Duration::from_secs(5))
            .await
            .is_some(),
        "the oldest unfinished request is closed"
    );
    // The socket and the request being served were never dropped for them.
    let ack = sock
        .ack("room", serde_json::json!({"roomid": "room1"}))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    serving.write_all(&rest).await.unwrap();
    let reply = read_until_closed(&mut serving, Duration::from_secs(30))
        .await
        .expect("answered and closed");
    let text = String::from_utf8_lossy(&reply);
    assert!(
        text.starts_with("HTTP/1.1 200") && text.contains("\"token\""),
        "{text}"
    );
    sock.disconnect().await;
}

#[tokio::test]
async fn silent_idle_and_trickling_connections_are_closed() {
    let app = TestApp::spawn_with(|s| s.http.header_timeout = Duration::from_secs(2)).await;
    // Sends nothing at all.
    let mut silent = connect_from([127, 0, 0, 1], app.addr).await;
    // A WebSocket upgrade request that trickles in a byte at a time and never ends.
    let mut upgrade = connect_from([127, 0, 0, 1], app.addr).await;
    let request = b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n";
    let trickle = async {
        for byte in request {
            if upgrade.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let started = Instant::now();
    tokio::join!(trickle, async {
        assert!(
            read_until_closed(&mut silent, Duration::from_secs(30))
                .await
                .is_some(),
            "a silent connection stays open"
        );
    });
    // The trickle stopped when the server hung up, long before its 130 bytes were through.
    assert!(
        started.elapsed() < Duration::from_secs(12),
        "{:?}",
        started.elapsed()
    );
    assert!(
        read_until_closed(&mut upgrade, Duration::from_secs(30))
            .await
            .is_some()
    );
    // A keep-alive connection idle after its request is closed too.
    let mut idle = connect_from([127, 0, 0, 1], app.addr).await;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let reply = read_until_closed(&mut idle, Duration::from_secs(30))
        .await
        .expect("closed after idling");
    assert!(String::from_utf8_lossy(&reply).starts_with("HTTP/1.1 200"));
}

#[tokio::test]
async fn websockets_count_against_the_per_address_cap_until_they_close() {
    let app = TestApp::spawn_with(|s| s.http.max_connections_per_ip = 8).await;
    let user = app.signup("many").await;
    // WebSockets from one address, until the cap refuses one (the HTTP client's pooled
    // connection of the sign-up may hold a place too).
    let mut open = Vec::new();
    let mut refused = None;
    for _ in 0..12 {
        match app
            .try_sio(
                Auth::Payload(&user.token),
                rust_socketio::TransportType::Websocket,
            )
            .await
        {
            Ok(socket) => open.push(socket),
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    assert!(
        refused.is_some(),
        "{} WebSockets open from one address",
        open.len()
    );
    assert!(
        (6..=8).contains(&open.len()),
        "the cap held {} WebSockets",
        open.len()
    );
    // The open ones still work.
    open[0]
        .emit("room", serde_json::json!({"roomid": "room1"}))
        .await;
    let _ = open[0].inbox.next("room").await;
    // Closing two frees their places.
    for socket in open.drain(..2) {
        socket.client.disconnect().await.unwrap();
    }
    let mut again = false;
    for _ in 0..50 {
        if app
            .try_sio(
                Auth::Payload(&user.token),
                rust_socketio::TransportType::Websocket,
            )
            .await
            .is_ok()
        {
            again = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(again, "a closed WebSocket gives its place back");
}
