//! Idempotent resends (R2) and per-room ordering (R3), beyond `websocket::core`'s single-socket cases:
//! repeats in flight at once, across reconnects and protocols; several senders in several rooms.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::Rng;
use serde_json::Value;

use super::{Eio, Raw, joined, text};
use crate::common::TestApp;

const WAIT: Duration = Duration::from_secs(10);

/// The `message` events a socket received: (room, message id, client id), in arrival order.
fn received(socket: &Raw) -> Vec<(String, i64, String)> {
    socket
        .seen
        .lock()
        .unwrap()
        .events
        .iter()
        .filter(|(n, _)| n == "message")
        .map(|(_, m)| {
            (
                m["roomid"].as_str().unwrap().to_owned(),
                m["_id"].as_str().unwrap().parse().unwrap(),
                m["clientId"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn one_message_sent_seven_times_is_stored_and_announced_once() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice").await;
    let bob = app.signup("bob").await;
    let watcher = joined(&app, Eio::V4, &bob.token, &["room1"], WAIT).await;
    let message = text("room1", "once", "same-one");
    let mut first = joined(&app, Eio::V3, &alice.token, &["room1"], WAIT).await;
    // Five copies in flight at once, then one after the others were answered.
    let ids: Vec<u64> = (0..5)
        .map(|_| first.emit_acked("message", &message))
        .collect();
    let mut answers: Vec<Value> = Vec::new();
    for id in ids {
        answers.push(first.ack(id, WAIT).await.expect("answered"));
    }
    let id = first.emit_acked("message", &message);
    answers.push(first.ack(id, WAIT).await.expect("answered"));
    first.close();
    // Once more after a reconnect, in the other protocol.
    let mut second = joined(&app, Eio::V4, &alice.token, &["room1"], WAIT).await;
    let id = second.emit_acked("message", &message);
    answers.push(second.ack(id, WAIT).await.expect("answered"));
    let stored = answers[0]["id"].clone();
    for answer in &answers {
        assert_eq!(answer["ok"], true, "{answer}");
        assert_eq!(
            answer["id"], stored,
            "every copy is answered with the one stored id"
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let heard: Vec<_> = received(&watcher)
        .into_iter()
        .filter(|(_, _, c)| c == "same-one")
        .collect();
    assert_eq!(heard.len(), 1, "the room hears it once: {heard:?}");
    assert_eq!(app.count("messages").await, 1);
}

#[tokio::test]
async fn every_room_reaches_everyone_in_the_order_it_was_stored() {
    const ROOMS: [&str; 5] = ["r1", "r2", "r3", "r4", "r5"];
    const CLIENTS: usize = 6;
    const EACH: usize = 40;
    let app = TestApp::spawn_with(|s| {
        s.realtime.rooms = ROOMS.iter().map(|r| (*r).to_owned()).collect();
        s.realtime.socket_events_per_second = 1000;
    })
    .await;
    let mut sockets = Vec::new();
    for k in 0..CLIENTS {
        let user = app.signup(&format!("order{k}")).await;
        let eio = if k % 2 == 0 { Eio::V3 } else { Eio::V4 };
        sockets.push(joined(&app, eio, &user.token, &ROOMS, WAIT).await);
    }
    // Every client posts into random rooms, several messages in flight at a time.
    let mut pending = Vec::new();
    for n in 0..EACH {
        for (k, socket) in sockets.iter_mut().enumerate() {
            let room = ROOMS[rand::rng().random_range(0..ROOMS.len())];
            let id = socket.emit_acked("message", &text(room, "ordered", &format!("c{k}-{n}")));
            pending.push((k, id));
        }
        if n % 4 == 3 {
            for (k, id) in pending.drain(..) {
                let ack = sockets[k].ack(id, WAIT).await.expect("answered");
                assert_eq!(ack["ok"], true, "{ack}");
            }
        }
    }
    let stored = app.message_ids().await;
    assert_eq!(stored.len(), CLIENTS * EACH);
    // What each room holds, in stored order.
    let db = super::TestDatabase::rows_by_room(app.db()).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    for (k, socket) in sockets.iter().enumerate() {
        loop {
            let got = received(socket);
            let mut by_room: BTreeMap<String, Vec<i64>> = BTreeMap::new();
            for (room, id, _) in got {
                by_room.entry(room).or_default().push(id);
            }
            if by_room == db {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "client {k} hears each room's messages exactly in stored order"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
