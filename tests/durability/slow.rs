//! Slow consumers (R10): a client that stops reading is cut off after `--write-timeout`, counted in
//! `chatroom_slow_consumer_disconnects_total`, and the others in its room keep getting everything.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use super::{Eio, Raw, metric, text};
use crate::common::TestApp;

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off_and_the_room_is_unaffected() {
    let app = TestApp::spawn_with(|s| {
        s.http.write_timeout = Duration::from_secs(1);
        s.realtime.socket_events_per_second = 5000;
        s.realtime.message_max_chars = 4000;
    })
    .await;
    let address = app.addr.to_string();
    let stalled = app.signup("stalled").await;
    let sender = app.signup("sender").await;
    let reader = app.signup("reader").await;

    // A client with a small receive buffer that joins the room, then never reads again.
    let tcp = tokio::net::TcpSocket::new_v4().unwrap();
    tcp.set_recv_buffer_size(4096).unwrap();
    let tcp = tcp.connect(app.addr).await.unwrap();
    let url = format!(
        "ws://{address}/socket.io/?EIO=3&transport=websocket&token={}",
        stalled.token
    );
    let (mut ws, _) = tokio_tungstenite::client_async(url, tcp).await.unwrap();
    // Events may only follow the namespace's CONNECT (`40`).
    loop {
        let frame = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("CONNECT");
        let Some(Ok(frame)) = frame else {
            panic!("the connection ended ({frame:?}) before CONNECT");
        };
        if frame.to_text().is_ok_and(|t| t.starts_with("40")) {
            break;
        }
    }
    ws.send(Message::text(format!(
        "42{}",
        json!(["room", {"roomid": "room1"}])
    )))
    .await
    .unwrap();
    let mut frames = Vec::new();
    loop {
        let frame = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("the room listing");
        let Some(Ok(frame)) = frame else {
            panic!("the connection ended ({frame:?}) after {frames:?}");
        };
        if frame.to_text().is_ok_and(|t| t.starts_with("42[\"room\"")) {
            break;
        }
        frames.push(frame);
    }

    let reading = Raw::connect(&address, Eio::V3, &format!("token={}", reader.token))
        .await
        .unwrap();
    reading.emit("room", &json!({"roomid": "room1"}));
    reading.event("room", 0, WAIT).await.unwrap();
    let mut sending = Raw::connect(&address, Eio::V4, &format!("token={}", sender.token))
        .await
        .unwrap();
    sending.emit("room", &json!({"roomid": "room1"}));
    sending.event("room", 0, WAIT).await.unwrap();
    assert_eq!(metric(&app, "chatroom_socket_connections").await, 3.0);

    // About 7 MB for the stalled client, far more than the kernel buffers between us.
    const N: u64 = 600;
    let big = "汉".repeat(4000);
    let mut sent = 0;
    while sent < N {
        if sent - sending.seen.lock().unwrap().acks.len() as u64 >= 32 {
            tokio::time::sleep(Duration::from_millis(2)).await;
            continue;
        }
        sending.emit_acked("message", &text("room1", &big, &format!("big-{sent}")));
        sent += 1;
    }
    let last = sending
        .ack(N - 1, WAIT * 3)
        .await
        .expect("every message answered");
    assert_eq!(last["ok"], true, "{last}");
    assert!(
        sending
            .seen
            .lock()
            .unwrap()
            .acks
            .values()
            .all(|a| a["ok"] == true),
        "every message stored"
    );

    let deadline = tokio::time::Instant::now() + WAIT;
    while metric(&app, "chatroom_slow_consumer_disconnects_total").await < 1.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the client that stopped reading is cut off"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    while metric(&app, "chatroom_socket_connections").await > 2.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "its socket is disconnected"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        metric(&app, "chatroom_slow_consumer_disconnects_total").await,
        1.0,
        "only that one"
    );
    // The reader in the same room got every message.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let got = reading
            .seen
            .lock()
            .unwrap()
            .events
            .iter()
            .filter(|(n, _)| n == "message")
            .count() as u64;
        if got == N {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{got} of {N} messages reached the reading client"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    drop(ws);
}
