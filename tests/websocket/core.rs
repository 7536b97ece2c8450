//! The realtime core's guarantees, as clients see them: replies in order with several messages in
//! flight, an answer for every message under overload, client ids, coalesced presence and unread
//! counts, replay after a reconnect, limits per user, tokens that stop working, and a clean shutdown.

use std::collections::BTreeSet;
use std::time::Duration;

use sea_orm::{ConnectionTrait, TransactionTrait};
use serde_json::{Value, json};

use crate::common::process::{start_binary, stop};
use crate::common::socket::{Eio3, Received, WAIT};
use crate::common::{TestApp, TestUser, bearer};

fn text(room: &str, msg: &str, client_id: &str) -> Value {
    json!({"msg": msg, "img": "", "roomid": room, "roomType": "group", "type": "text",
           "clientId": client_id, "time": "2026-11-25T10:00:00.000Z", "to": false, "from": false})
}

/// A raw v3-dialect socket of `user`, in group room `room` (its own listing drained).
async fn in_room(app: &TestApp, user: &TestUser, room: &str) -> Eio3 {
    let mut socket = Eio3::connect(app, &format!("token={}", user.token)).await;
    socket.emit("room", json!({"roomid": room})).await;
    let _ = socket.inbox.next("room").await;
    let _ = socket.inbox.next("count").await;
    socket
}

#[tokio::test]
async fn several_messages_in_flight_are_echoed_and_acknowledged_in_order() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice").await;
    let mut a = in_room(&app, &alice, "room1").await;
    const N: usize = 40;
    // Sent back to back: the socket does not wait for one to be stored before reading the next.
    for i in 0..N {
        a.emit_acked("message", text("room1", &format!("m{i}"), &format!("c{i}")))
            .await;
    }
    let acks = a.acks(N, WAIT * 3).await;
    let order: Vec<u64> = acks.iter().map(|(id, _)| *id).collect();
    assert_eq!(order, (0..N as u64).collect::<Vec<_>>(), "replies in order");
    let stored: Vec<i64> = acks
        .iter()
        .map(|(_, ack)| {
            assert_eq!(ack["ok"], true, "{ack}");
            ack["id"].as_i64().unwrap()
        })
        .collect();
    assert!(stored.windows(2).all(|w| w[0] < w[1]), "stored in order");
    // Each echo arrives before its acknowledgement, and the echoes are in order too.
    let log = a.log.lock().unwrap().clone();
    let mut echoes = 0;
    for entry in &log {
        match entry {
            Received::Event(name, message) if name == "message" => {
                assert_eq!(message["clientId"], format!("c{echoes}"));
                assert_eq!(message["_id"], stored[echoes].to_string());
                echoes += 1;
            }
            Received::Ack(id, ack) => {
                assert!(
                    (*id as usize) < echoes,
                    "acknowledgement {id} before its echo"
                );
                assert_eq!(ack["id"], stored[*id as usize]);
            }
            Received::Event(..) => {}
        }
    }
    assert_eq!(echoes, N);
}

/// Holds the database's write lock (SQLite) or the messages table (PostgreSQL) until dropped:
/// storing stalls meanwhile.
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
async fn when_storing_stalls_a_flood_is_refused_and_every_message_is_answered() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice").await;
    let mut a = in_room(&app, &alice, "room1").await;
    let stall = stall_writes(&app).await;
    const N: usize = 300;
    for i in 0..N {
        a.emit_acked("message", text("room1", &format!("f{i}"), &format!("f{i}")))
            .await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stall.rollback().await.unwrap();
    let acks = a.acks(N, WAIT * 6).await;
    let mut accepted = BTreeSet::new();
    let mut refused = 0;
    for (_, ack) in &acks {
        if ack["ok"] == true {
            accepted.insert(ack["id"].as_i64().unwrap());
        } else {
            assert_eq!(ack["code"], "unavailable", "{ack}");
            refused += 1;
        }
    }
    assert!(refused > 0, "a full inbox refuses what it cannot hold");
    assert!(
        accepted.len() >= 64,
        "messages in flight are stored once the stall ends"
    );
    let stored: BTreeSet<i64> = app.message_ids().await.into_iter().collect();
    assert_eq!(
        stored, accepted,
        "acknowledged means stored, and only those"
    );
}

#[tokio::test]
async fn a_client_id_reused_for_another_message_is_refused_and_a_resend_is_not_stored_twice() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice").await;
    let bob = app.signup("bob").await;
    let mut a = in_room(&app, &alice, "room1").await;
    let mut b = in_room(&app, &bob, "room1").await;
    let first = a.ack("message", text("room1", "hello", "same")).await;
    assert_eq!(first["ok"], true, "{first}");
    assert_eq!(b.inbox.next("message").await["msg"], "hello");
    // The same id for other text in another room: refused, visibly, and nothing is lost silently.
    let other = a.ack("message", text("room2", "elsewhere", "same")).await;
    assert_eq!(
        (other["ok"].clone(), other["code"].clone()),
        (json!(false), json!("conflict"))
    );
    assert_eq!(a.inbox.next("notice").await["code"], "conflict");
    // A resend of the first: the same id back, and nobody else hears it again.
    let again = a.ack("message", text("room1", "hello", "same")).await;
    assert_eq!(again["id"], first["id"]);
    b.inbox.nothing("message").await;
    assert_eq!(app.count("messages").await, 1);
}

#[tokio::test]
async fn arrivals_reach_the_room_in_rounds_and_lists_never_go_back() {
    let app = TestApp::spawn().await;
    let watcher = app.signup("watcher").await;
    let mut w = in_room(&app, &watcher, "room1").await;
    const N: usize = 30;
    let mut sockets = Vec::new();
    for i in 0..N {
        let user = app.signup(&format!("guest{i}")).await;
        sockets.push(Eio3::connect(&app, &format!("token={}", user.token)).await);
    }
    // Everyone enters at once.
    futures_util::future::join_all(
        sockets
            .iter_mut()
            .map(|s| s.emit("room", json!({"roomid": "room1"}))),
    )
    .await;
    let mut lists = 0;
    let mut last = 1;
    loop {
        let listing = w.inbox.next("room").await;
        lists += 1;
        let size = listing["onlineUsers"].as_object().unwrap().len();
        assert!(size >= last, "a list went back from {last} to {size}");
        last = size;
        if size == N + 1 {
            break;
        }
    }
    assert!(lists < N, "{N} arrivals came as {lists} lists");
    w.inbox.nothing("room").await;
}

#[tokio::test]
async fn unread_counts_come_in_ticks_not_one_per_message() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice").await;
    let bob = app.signup("bob").await;
    let mut b = Eio3::connect(&app, &format!("token={}", bob.token)).await;
    b.emit("login", json!({})).await;
    assert_eq!(b.inbox.next("count").await, json!({"room1": 0, "room2": 0}));
    let mut a = in_room(&app, &alice, "room1").await;
    const N: usize = 30;
    for i in 0..N {
        a.emit_acked("message", text("room1", "news", &format!("n{i}")))
            .await;
    }
    a.acks(N, WAIT).await;
    let mut counts = 0;
    loop {
        let count = b.inbox.next("count").await;
        counts += 1;
        if count["room1"] == N {
            break;
        }
    }
    assert!(counts < N / 3, "{N} messages came as {counts} counts");
}

#[tokio::test]
async fn sync_replays_what_a_reconnecting_client_missed() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice").await;
    let bob = app.signup("bob").await;
    let carol = app.signup("carol").await;
    let mut a = in_room(&app, &alice, "room1").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let ack = a
            .ack("message", text("room1", &format!("s{i}"), &format!("s{i}")))
            .await;
        ids.push(ack["id"].as_i64().unwrap());
    }
    let mut b = Eio3::connect(&app, &format!("token={}", bob.token)).await;
    let reply = b
        .ack("sync", json!({"rooms": {"room1": ids[1], "room2": 0}}))
        .await;
    assert_eq!(reply["ok"], true, "{reply}");
    let missed: Vec<&str> = reply["rooms"]["room1"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["msg"].as_str().unwrap())
        .collect();
    assert_eq!(
        missed,
        ["s2", "s3", "s4"],
        "oldest first, nothing held replayed"
    );
    assert_eq!(reply["rooms"]["room1"]["resync"], false);
    assert_eq!(reply["rooms"]["room2"]["messages"], json!([]));
    // Too much missed: the client is told to reload the room instead.
    for i in 0..101 {
        app.seed_message(&alice, "room1", &format!("bulk {i}"))
            .await;
    }
    let reply = b.ack("sync", json!({"rooms": {"room1": ids[4]}})).await;
    assert_eq!(
        reply["rooms"]["room1"],
        json!({"messages": [], "resync": true})
    );
    // Other people's private rooms and malformed positions are refused room by room.
    let (x, y) = (alice.id.parse().unwrap(), carol.id.parse().unwrap());
    let private = chatroom::services::rooms::private_room(x, y).id();
    let reply = b
        .ack(
            "sync",
            json!({"rooms": {private.clone(): 0, "room1": "soon"}}),
        )
        .await;
    assert_eq!(reply["rooms"][&private]["code"], "forbidden", "{reply}");
    assert_eq!(reply["rooms"]["room1"]["code"], "invalid", "{reply}");
}

#[tokio::test]
async fn unknown_events_are_refused_in_their_acknowledgement() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice").await;
    let mut a = Eio3::connect(&app, &format!("token={}", alice.token)).await;
    let reply = a.ack("no-such-event", json!({"x": 1})).await;
    assert_eq!(
        (reply["ok"].clone(), reply["code"].clone()),
        (json!(false), json!("invalid"))
    );
    a.inbox.nothing("notice").await;
}

#[tokio::test]
async fn the_message_rate_is_per_user_across_all_their_sockets() {
    let app = TestApp::spawn_with(|s| s.realtime.socket_events_per_second = 3).await;
    let alice = app.signup("alice").await;
    let mut sockets = Vec::new();
    for _ in 0..3 {
        sockets.push(in_room(&app, &alice, "room1").await);
    }
    // Five each is within every socket's own budget (bursts of six), not within the user's.
    for (n, socket) in sockets.iter_mut().enumerate() {
        for i in 0..5 {
            socket
                .emit_acked("message", text("room1", "hi", &format!("r{n}-{i}")))
                .await;
        }
    }
    let mut limited = 0;
    for socket in &mut sockets {
        for (_, ack) in socket.acks(5, WAIT).await {
            if ack["ok"] != true {
                assert_eq!(ack["code"], "rate_limited", "{ack}");
                limited += 1;
            }
        }
    }
    let stored = app.count("messages").await;
    assert!(stored <= 7, "a burst of six, stored {stored}");
    assert_eq!(stored + limited, 15);
}

#[tokio::test]
async fn a_socket_stops_acting_for_its_user_when_its_token_is_revoked() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice").await;
    let mut a = in_room(&app, &alice, "room1").await;
    let (status, body) = app
        .post_v3("/api/user/logout", Some(&alice.token), &json!({}))
        .await;
    assert_eq!((status, body["errno"].clone()), (200, json!(0)), "{body}");
    let reply = a
        .ack("message", text("room1", "after logout", "late"))
        .await;
    assert_eq!(reply["code"], "unauthenticated", "{reply}");
    assert_eq!(app.count("messages").await, 0);
    // The token is refused at the handshake too.
    let http = reqwest::Client::new();
    let me = http
        .get(app.url("/api/user/me"))
        .header("authorization", bearer(Some(&alice.token)))
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 401);
}

#[tokio::test]
async fn a_socket_stops_acting_for_its_user_when_its_token_expires() {
    let app = TestApp::spawn_with(|s| s.auth.token_ttl = Duration::from_secs(1)).await;
    let alice = app.signup("alice").await;
    let mut a = in_room(&app, &alice, "room1").await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let reply = a.ack("message", text("room1", "too late", "late")).await;
    assert_eq!(reply["code"], "unauthenticated", "{reply}");
    assert_eq!(app.count("messages").await, 0);
}

#[tokio::test]
async fn sigterm_while_sockets_leave_is_a_clean_exit() {
    let data = tempfile::tempdir().unwrap();
    // One user holds all forty sockets.
    let mut server = start_binary(
        &["--rooms", "room1,room2", "--max-sockets-per-user", "100"],
        data.path(),
    );
    let http = reqwest::Client::new();
    let token = crate::durability::signup(&http, &server.address, "leaver").await;
    let mut sockets = Vec::new();
    for _ in 0..40 {
        let mut s = Eio3::connect_to(&server.address, &format!("token={token}")).await;
        s.emit("room", json!({"roomid": "room1"})).await;
        s.emit("room", json!({"roomid": "room2"})).await;
        sockets.push(s);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Half of them leave while the server is told to stop.
    let leaving: Vec<Eio3> = sockets.drain(..20).collect();
    let closing = tokio::spawn(async move {
        for s in leaving {
            s.close().await;
        }
    });
    let status = tokio::task::spawn_blocking(move || {
        let status = stop(&mut server.child, "TERM");
        (status, server.logs)
    });
    let _ = closing.await;
    let (status, logs) = status.await.unwrap();
    let lines: Vec<String> = logs.try_iter().collect();
    assert!(status.success(), "exit status {status:?}");
    assert!(
        !lines.iter().any(|l| l.contains("panicked")),
        "{}",
        lines.join("\n")
    );
}

#[tokio::test]
async fn an_arrival_is_told_to_the_others_and_the_newcomer_hears_its_list_once() {
    let app = TestApp::spawn().await;
    let watcher = app.signup("watcher").await;
    let newcomer = app.signup("newcomer").await;
    let mut w = in_room(&app, &watcher, "room1").await;
    let mut n = Eio3::connect(&app, &format!("token={}", newcomer.token)).await;
    n.emit("room", json!({"roomid": "room1"})).await;
    let own = n.inbox.next("room").await;
    assert_eq!(own["onlineUsers"].as_object().unwrap().len(), 2, "{own}");
    let told = w.inbox.next("room").await;
    assert_eq!(told, own, "the others hear the same list");
    n.inbox.nothing("room").await;
    w.inbox.nothing("room").await;
}

#[tokio::test]
async fn a_user_is_online_while_a_socket_is_bound_to_them() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice").await;
    let id: i64 = alice.id.parse().unwrap();
    let realtime = &app.state.realtime;
    assert!(!realtime.is_user_id_online(id));
    let a = Eio3::connect(&app, &format!("token={}", alice.token)).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while !realtime.is_user_id_online(id) {
        assert!(tokio::time::Instant::now() < deadline, "bound at connect");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.close().await;
    while realtime.is_user_id_online(id) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "offline once the socket left"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of a series in `/metrics` text (0 when absent).
fn series(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_count_sockets_messages_and_refusals() {
    let app = TestApp::spawn_with(|s| s.realtime.socket_events_per_second = 2).await;
    let alice = app.signup("alice").await;
    let mut old = in_room(&app, &alice, "room1").await;
    let modern = app
        .sio(crate::common::socket::Auth::Payload(&alice.token))
        .await;
    assert_eq!(
        old.ack("message", text("room1", "counted", "m1")).await["ok"],
        true
    );
    // Over the user's rate (bursts of four): refused and counted.
    for i in 0..6 {
        old.emit_acked("message", text("room1", "flood", &format!("x{i}")))
            .await;
    }
    old.acks(6, WAIT).await;
    let metrics = app
        .get("/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        series(&metrics, "chatroom_socket_connections{eio=\"3\"}"),
        1.0,
        "{metrics}"
    );
    assert_eq!(
        series(&metrics, "chatroom_socket_connections{eio=\"4\"}"),
        1.0
    );
    let stored = series(&metrics, "chatroom_messages_stored_total");
    assert_eq!(stored, app.count("messages").await as f64);
    let refused = series(&metrics, "chatroom_refusals_total{reason=\"message_rate\"}")
        + series(&metrics, "chatroom_refusals_total{reason=\"event_rate\"}");
    assert!(refused >= 1.0, "{metrics}");
    assert!(series(&metrics, "chatroom_writer_batch_messages_count") >= 1.0);
    modern.disconnect().await;
}
