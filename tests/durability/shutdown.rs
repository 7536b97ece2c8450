//! Graceful shutdown (issue 9 defect 10; R11): messages that arrive while the server stops are refused
//! with `unavailable`, everything accepted before is stored and acknowledged, and every socket is told
//! with a Socket.IO DISCONNECT ("io server disconnect"), in both protocol generations.

use std::collections::BTreeMap;
use std::time::Duration;

use sea_orm::{ConnectionTrait, TransactionTrait};
use serde_json::json;

use super::{Eio, TestDatabase, in_room, send_until_disconnected, signup, text};
use crate::common::TestApp;
use crate::common::process::{start_binary, stop};

const WAIT: Duration = Duration::from_secs(10);

/// Holds the database's write lock (SQLite) or the messages table (PostgreSQL) until dropped.
async fn stall_writes(app: &TestApp) -> sea_orm::DatabaseTransaction {
    let txn = app.db().begin().await.unwrap();
    let stall = match txn.get_database_backend() {
        sea_orm::DatabaseBackend::Postgres => "LOCK TABLE messages IN EXCLUSIVE MODE",
        _ => "CREATE TABLE IF NOT EXISTS stall (x INTEGER)",
    };
    txn.execute_unprepared(stall).await.unwrap();
    txn
}

#[tokio::test]
async fn messages_during_shutdown_are_refused_and_every_socket_hears_a_disconnect() {
    let app = TestApp::spawn().await;
    let address = app.addr.to_string();
    let alice = app.signup("alice").await;
    let bob = app.signup("bob").await;
    let mut old = in_room(&address, Eio::V3, &alice.token).await;
    let mut new = in_room(&address, Eio::V4, &bob.token).await;
    let stall = stall_writes(&app).await;
    // Accepted before the shutdown, waiting in the writer.
    let early = [
        old.emit_acked("message", &text("room1", "before", "early-3")),
        new.emit_acked("message", &text("room1", "before", "early-4")),
    ];
    tokio::time::sleep(Duration::from_millis(100)).await;
    let state = app.state.clone();
    let draining = tokio::spawn(async move { chatroom::app::drain(&state).await });
    while app.state.realtime.is_accepting() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let events_before = [
        old.seen.lock().unwrap().events.len(),
        new.seen.lock().unwrap().events.len(),
    ];
    let late = [
        old.emit_acked("message", &text("room1", "after", "late-3")),
        new.emit_acked("message", &text("room1", "after", "late-4")),
    ];
    tokio::time::sleep(Duration::from_millis(200)).await;
    stall.rollback().await.unwrap();

    let mut stored_ids = Vec::new();
    for (socket, id) in [(&old, early[0]), (&new, early[1])] {
        let ack = socket
            .ack(id, WAIT)
            .await
            .expect("accepted message answered");
        assert_eq!(ack["ok"], true, "{ack}");
        stored_ids.push(ack["id"].as_i64().unwrap());
    }
    for (i, (socket, id)) in [(&old, late[0]), (&new, late[1])].into_iter().enumerate() {
        let ack = socket.ack(id, WAIT).await.expect("late message answered");
        assert_eq!(
            (&ack["ok"], &ack["code"]),
            (&json!(false), &json!("unavailable")),
            "{ack}"
        );
        let notice = socket
            .event("notice", events_before[i], WAIT)
            .await
            .expect("a notice");
        assert_eq!(notice["code"], "unavailable", "{notice}");
        assert_eq!(notice["event"], "message", "{notice}");
    }
    tokio::time::timeout(WAIT, draining)
        .await
        .expect("shutdown finishes")
        .unwrap();
    for socket in [&mut old, &mut new] {
        assert!(socket.until_gone(WAIT).await, "the transport closes");
        let seen = socket.seen.lock().unwrap();
        assert!(seen.disconnected, "a Socket.IO DISCONNECT came first");
        assert_eq!(seen.acks_after_disconnect, 0);
    }
    let mut stored = app.message_ids().await;
    stored.sort_unstable();
    stored_ids.sort_unstable();
    assert_eq!(stored, stored_ids, "only the accepted messages are stored");
}

#[tokio::test]
async fn sigterm_under_load_answers_every_message_and_stores_every_acknowledged_one() {
    let data = tempfile::tempdir().unwrap();
    let database = TestDatabase::new(data.path()).await;
    let mut server = start_binary(
        &[
            "--rooms",
            "room1",
            "--socket-events-per-second",
            "2000",
            "--database-url",
            &database.url,
        ],
        data.path(),
    );
    let address = server.address.clone();
    let http = reqwest::Client::new();
    let mut clients = Vec::new();
    for k in 0..6 {
        let token = signup(&http, &address, &format!("load{k}")).await;
        let eio = if k % 2 == 0 { Eio::V3 } else { Eio::V4 };
        let socket = in_room(&address, eio, &token).await;
        clients.push(tokio::spawn(async move {
            let mut socket = socket;
            let sent = send_until_disconnected(&mut socket, &format!("u{k}")).await;
            (socket, sent)
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let status = tokio::task::spawn_blocking(move || stop(&mut server.child, "TERM"))
        .await
        .unwrap();
    assert!(status.success(), "exit status {status:?}");

    let mut acked: BTreeMap<String, i64> = BTreeMap::new();
    let (mut refused, mut total) = (0, 0);
    for (k, client) in clients.into_iter().enumerate() {
        let (mut socket, sent) = tokio::time::timeout(WAIT, client)
            .await
            .expect("clients stop sending once disconnected")
            .unwrap();
        assert!(socket.until_gone(WAIT).await);
        let seen = socket.seen.lock().unwrap();
        assert!(seen.disconnected, "client {k} heard a Socket.IO DISCONNECT");
        assert_eq!(seen.acks_after_disconnect, 0);
        // Replies leave in order, so the answered messages are the first ones; any unanswered ones
        // were still on the wire when the server said goodbye, and are resent by the client.
        let answered = seen.acks.len() as u64;
        assert!(
            seen.acks.keys().copied().eq(0..answered),
            "client {k}: answered messages are a prefix of those sent"
        );
        total += sent;
        for (id, ack) in &seen.acks {
            if ack["ok"] == true {
                acked.insert(format!("u{k}-{id}"), ack["id"].as_i64().unwrap());
            } else {
                assert_eq!(ack["code"], "unavailable", "{ack}");
                refused += 1;
            }
        }
    }
    let stored: Vec<(String, i64)> = database.stored().await;
    let stored_map: BTreeMap<String, i64> = stored.iter().cloned().collect();
    assert_eq!(stored.len(), stored_map.len(), "no message is stored twice");
    assert_eq!(
        stored_map, acked,
        "every acknowledged message is stored, with its acknowledged id, and nothing else"
    );
    assert!(!acked.is_empty());
    eprintln!(
        "R11: {total} sent, {} stored and acknowledged, {refused} refused",
        acked.len()
    );
}
