//! kill -9 under load (R1) and resends across the restart (R2): every acknowledged message is
//! stored, with the id its sender was told, none twice; a client resending what was not acknowledged
//! (same `clientId`) gets each one stored exactly once. Runs on the suite's database (SQLite, or
//! PostgreSQL with `TEST_DATABASE_URL`).

use std::collections::BTreeMap;
use std::time::Duration;

use rand::Rng;
use serde_json::Value;

use super::{Eio, TestDatabase, in_room, send_until_disconnected, signup, text};
use crate::common::process::{start_binary, stop};

const WAIT: Duration = Duration::from_secs(15);
const CLIENTS: usize = 8;

#[tokio::test]
async fn kill_9_under_load_loses_no_acknowledged_message_and_resends_are_stored_once() {
    let data = tempfile::tempdir().unwrap();
    let database = TestDatabase::new(data.path()).await;
    let args = [
        "--rooms",
        "room1",
        "--socket-events-per-second",
        "2000",
        "--database-url",
        database.url.as_str(),
    ];
    let mut server = start_binary(&args, data.path());
    let http = reqwest::Client::new();
    let mut tokens = Vec::new();
    let mut clients = Vec::new();
    for k in 0..CLIENTS {
        let token = signup(&http, &server.address, &format!("crash{k}")).await;
        let eio = if k % 2 == 0 { Eio::V3 } else { Eio::V4 };
        let socket = in_room(&server.address, eio, &token).await;
        tokens.push((token, eio));
        clients.push(tokio::spawn(async move {
            let mut socket = socket;
            let sent = send_until_disconnected(&mut socket, &format!("u{k}")).await;
            (socket, sent)
        }));
    }
    let after = Duration::from_millis(rand::rng().random_range(1000..3000));
    tokio::time::sleep(after).await;
    stop(&mut server.child, "KILL");

    // What each client was told before the crash.
    let mut acked: BTreeMap<String, i64> = BTreeMap::new();
    let mut unanswered: Vec<Vec<u64>> = Vec::new();
    let mut total = 0;
    for (k, client) in clients.into_iter().enumerate() {
        let (socket, sent) = tokio::time::timeout(WAIT, client)
            .await
            .expect("clients notice the crash")
            .unwrap();
        total += sent;
        let seen = socket.seen.lock().unwrap();
        let mut resend = Vec::new();
        for n in 0..sent {
            match seen.acks.get(&n) {
                Some(ack) if ack["ok"] == true => {
                    acked.insert(format!("u{k}-{n}"), ack["id"].as_i64().unwrap());
                }
                _ => resend.push(n),
            }
        }
        unanswered.push(resend);
    }
    let before_restart: BTreeMap<String, i64> = database.stored().await.into_iter().collect();
    for (client_id, id) in &acked {
        assert_eq!(
            before_restart.get(client_id),
            Some(id),
            "acknowledged message {client_id} is stored with the id its sender was told"
        );
    }

    // The server comes back; each client resends what it was not told was stored, and repeats one
    // message it was told was stored.
    let server = start_binary(&args, data.path());
    for (k, (token, eio)) in tokens.iter().enumerate() {
        let mut socket = in_room(&server.address, *eio, token).await;
        let mut expect: Vec<(u64, Option<i64>)> = Vec::new();
        for n in &unanswered[k] {
            let id = socket.emit_acked("message", &text("room1", "load", &format!("u{k}-{n}")));
            expect.push((id, None));
        }
        if let Some((client_id, stored)) =
            acked.iter().find(|(c, _)| c.starts_with(&format!("u{k}-")))
        {
            let id = socket.emit_acked("message", &text("room1", "load", client_id));
            expect.push((id, Some(*stored)));
        }
        for (id, stored) in expect {
            let ack: Value = socket.ack(id, WAIT).await.expect("resend answered");
            assert_eq!(ack["ok"], true, "{ack}");
            if let Some(stored) = stored {
                assert_eq!(
                    ack["id"], stored,
                    "a resend of a stored message gets its id back"
                );
            }
        }
        socket.close();
    }
    let stored = database.stored().await;
    let by_client: BTreeMap<String, i64> = stored.iter().cloned().collect();
    assert_eq!(stored.len(), by_client.len(), "no message is stored twice");
    assert_eq!(
        by_client.len() as u64,
        total,
        "every message sent is stored once after the resends"
    );
    for (client_id, id) in &acked {
        assert_eq!(by_client.get(client_id), Some(id));
    }
    eprintln!(
        "R1: killed after {after:?}: {total} sent, {} acknowledged before the crash, {} stored before the restart",
        acked.len(),
        before_restart.len()
    );
    let mut server = server;
    stop(&mut server.child, "TERM");
}
