//! Socket.IO with an Engine.IO 4 client (rust_socketio): the v3 dialect's events end to end.

use rust_socketio::TransportType;
use serde_json::{Value, json};

use crate::common::TestApp;
use crate::common::socket::{Auth, Eio3, Sio};

fn text(room: &str, msg: &str, client_id: &str) -> Value {
    json!({"msg": msg, "img": "", "roomid": room, "roomType": "group", "type": "text",
           "clientId": client_id, "time": "2026-11-25T10:00:00.000Z", "to": false, "from": false})
}

/// Signs up `name` and connects a socket that has joined `room1`, draining the join's own events.
async fn joined(app: &TestApp, name: &str) -> (crate::common::TestUser, Sio) {
    let user = app.signup(name).await;
    let mut sock = app.sio(Auth::Payload(&user.token)).await;
    sock.emit("room", json!({"name": name, "roomid": "room1"}))
        .await;
    let listing = sock.inbox.next("room").await;
    assert!(listing["onlineUsers"].get(name).is_some(), "{listing}");
    (user, sock)
}

#[tokio::test]
async fn login_room_and_message_reach_everyone_in_the_room() {
    let app = TestApp::spawn().await;
    let (alice, mut a) = joined(&app, "alice").await;
    let bob = app.signup("bob").await;
    let mut b = app.sio(Auth::Query(&bob.token)).await;

    b.emit(
        "login",
        json!({"name": "bob", "id": bob.id, "browser": "x", "os": "y", "ua": "z"}),
    )
    .await;
    assert_eq!(b.inbox.next("count").await, json!({"room1": 0, "room2": 0}));
    b.emit(
        "room",
        json!({"name": "bob", "src": "x", "roomid": "room1"}),
    )
    .await;
    for sock in [&mut a, &mut b] {
        let listing = sock.inbox.next("room").await;
        assert_eq!(listing["roomid"], "room1");
        let users = listing["onlineUsers"].as_object().unwrap();
        assert_eq!(users.len(), 2, "{listing}");
        assert_eq!(
            users["alice"],
            json!({"src": "//s3.qiufengh.com/avatar/1.jpeg"})
        );
        assert!(users["bob"]["src"].is_string());
    }

    let ack = a
        .ack("message", text("room1", "你好 <b>世界</b> 🎉", "c-1"))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let id = ack["id"].as_i64().unwrap();
    for sock in [&mut a, &mut b] {
        let m = sock.inbox.next("message").await;
        assert_eq!(m["_id"], id.to_string());
        assert_eq!(m["username"], "alice");
        assert_eq!(m["msg"], "你好 &lt;b&gt;世界&lt;/b&gt; 🎉");
        assert_eq!(m["clientId"], "c-1");
        assert_eq!(m["roomid"], "room1");
        assert_eq!(m["roomType"], "group");
        assert_eq!(m["type"], "text");
        assert_eq!(m["img"], "");
        assert!(m["time"].as_str().unwrap().ends_with('Z'));
    }
    // What the history endpoint serves is what was broadcast.
    let (_, history) = app
        .get_v3("/api/message/v2/history?roomid=room1", Some(&alice.token))
        .await;
    assert_eq!(
        history["data"]["data"][0]["_id"],
        id.to_string(),
        "{history}"
    );
}

#[tokio::test]
async fn the_v3_client_escapes_lt_itself_and_is_not_escaped_twice() {
    let app = TestApp::spawn().await;
    let (_, mut a) = joined(&app, "alice").await;
    a.emit("message", text("room1", "a &lt; b & c", "c-1"))
        .await;
    assert_eq!(a.inbox.next("message").await["msg"], "a &lt; b &amp; c");
}

#[tokio::test]
async fn sockets_without_a_user_may_connect_but_change_nothing() {
    let app = TestApp::spawn().await;
    let (_, mut a) = joined(&app, "alice").await;
    let mut anon = app.sio(Auth::None).await;
    for (event, data) in [
        ("message", text("room1", "hi", "c-anon")),
        ("room", json!({"roomid": "room1"})),
        ("login", json!({"name": "alice", "id": "1"})),
    ] {
        let ack = anon.ack(event, data).await;
        assert_eq!(ack["ok"], false, "{event}: {ack}");
        assert_eq!(ack["code"], "unauthenticated");
        let notice = anon.inbox.next("notice").await;
        assert_eq!(notice["event"], event);
        assert_eq!(notice["errno"], 1);
        assert!(!notice["msg"].as_str().unwrap().is_empty());
    }
    a.inbox.nothing("message").await;
    a.inbox.nothing("room").await;
    assert_eq!(app.count("messages").await, 0);
}

#[tokio::test]
async fn an_invalid_token_is_refused_at_connect() {
    let app = TestApp::spawn().await;
    let user = app.signup("alice").await;
    let forged = format!("{}x", user.token);
    for transport in [TransportType::Websocket, TransportType::Polling] {
        let refused = app.try_sio(Auth::Payload(&forged), transport).await;
        let error = refused.err().expect("a bad token is refused");
        assert!(error.contains("token"), "{error}");
    }
    // Logging out revokes the token for sockets too.
    let (status, _) = app
        .post_v3("/api/user/logout", Some(&user.token), &json!({}))
        .await;
    assert_eq!(status, 200);
    assert!(
        app.try_sio(Auth::Query(&user.token), TransportType::Any)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn identity_fields_naming_someone_else_are_refused() {
    let app = TestApp::spawn().await;
    let (alice, mut a) = joined(&app, "alice").await;
    let bob = app.signup("bob").await;
    let mut spoofs = Vec::new();
    let mut m = text("room1", "hi", "c-1");
    m["username"] = json!("bob");
    spoofs.push(m);
    let mut m = text("room1", "hi", "c-2");
    m["from"] = json!(bob.id);
    spoofs.push(m);
    let mut m = text("room1", "hi", "c-3");
    m["api_token"] = json!(bob.token);
    spoofs.push(m);
    for spoof in spoofs {
        let ack = a.ack("message", spoof).await;
        assert_eq!(
            (ack["ok"].clone(), ack["code"].clone()),
            (json!(false), json!("forbidden"))
        );
    }
    a.inbox.nothing("message").await;
    assert_eq!(app.count("messages").await, 0);
    // Matching identity fields are fine.
    let mut m = text("room1", "hi", "c-4");
    m["username"] = json!("alice");
    m["src"] = json!("anything");
    assert_eq!(a.ack("message", m).await["ok"], true);
    let echo = a.inbox.next("message").await;
    assert_eq!(echo["username"], "alice");
    assert_eq!(
        echo["src"], "//s3.qiufengh.com/avatar/1.jpeg",
        "the avatar is the account's"
    );
    let _ = alice;
}

#[tokio::test]
async fn private_messages_reach_both_users_on_every_device_and_no_one_else() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice").await;
    let bob = app.signup("bob").await;
    let carol = app.signup("carol").await;
    let mut a = app.sio(Auth::Payload(&alice.token)).await;
    let mut b1 = app.sio(Auth::Payload(&bob.token)).await;
    let mut b2 = app.sio(Auth::Payload(&bob.token)).await;
    let mut c = app.sio(Auth::Payload(&carol.token)).await;
    let (x, y) = (alice.id.clone(), bob.id.clone());
    let room = if x > y {
        format!("{x}-{y}")
    } else {
        format!("{y}-{x}")
    };
    let msg = json!({"msg": "悄悄话", "img": "", "roomid": room, "roomType": "single", "type": "text",
                     "clientId": "p-1", "from": alice.id, "to": bob.id});
    let ack = a.ack("message", msg).await;
    assert_eq!(ack["ok"], true, "{ack}");
    for sock in [&mut a, &mut b1, &mut b2] {
        let m = sock.inbox.next("message").await;
        assert_eq!(
            (m["msg"].as_str(), m["roomType"].as_str()),
            (Some("悄悄话"), Some("single"))
        );
        assert_eq!(m["roomid"], room);
    }
    c.inbox.nothing("message").await;
    // Carol cannot post into their room.
    let ack = c
        .ack(
            "message",
            json!({"msg": "hi", "roomid": room, "clientId": "p-2"}),
        )
        .await;
    assert_eq!(ack["code"], "forbidden", "{ack}");
    a.inbox.nothing("message").await;
    assert_eq!(app.count("messages").await, 1);
}

#[tokio::test]
async fn a_resent_message_is_stored_and_broadcast_once() {
    let app = TestApp::spawn().await;
    let (_, mut a) = joined(&app, "alice").await;
    let (_, mut b) = joined(&app, "bob").await;
    let _ = a.inbox.next("room").await;
    let first = a.ack("message", text("room1", "once", "same-id")).await;
    let again = a.ack("message", text("room1", "once", "same-id")).await;
    assert_eq!(first["ok"], true);
    assert_eq!(
        first["id"], again["id"],
        "the resend is answered with the stored id"
    );
    assert_eq!(app.count("messages").await, 1);
    // Both echoes reach the sender (each marks a send as done); the room sees the message once.
    assert_eq!(
        a.inbox.next("message").await["_id"],
        a.inbox.next("message").await["_id"]
    );
    b.inbox.next("message").await;
    b.inbox.nothing("message").await;
}

#[tokio::test]
async fn refused_messages_are_answered_and_change_nothing() {
    let app = TestApp::spawn().await;
    let (_, mut a) = joined(&app, "alice").await;
    let (_, mut b) = joined(&app, "bob").await;
    let too_long = "字".repeat(201);
    let cases = [
        text("room1", &too_long, "c1"),
        text("room1", "   ", "c2"),
        text("room9", "hi", "c3"),
        json!({"msg": "x", "img": "javascript:alert(1)", "roomid": "room1"}),
        json!({"msg": "x", "img": "data:image/png;base64,AAAA", "roomid": "room1"}),
        json!({"msg": {"nested": true}, "roomid": "room1"}),
        json!({"msg": "x", "roomid": "room1", "clientId": 42}),
        json!("just a string"),
        json!([1, 2, 3]),
        Value::Null,
    ];
    for case in cases {
        let ack = a.ack("message", case.clone()).await;
        assert_eq!(ack["ok"], false, "{case}: {ack}");
        assert!(!ack["error"].as_str().unwrap().is_empty());
        assert_eq!(a.inbox.next("notice").await["event"], "message");
    }
    assert_eq!(
        a.ack("room", json!({"roomid": "nowhere"})).await["ok"],
        false
    );
    assert_eq!(a.inbox.next("notice").await["event"], "room");
    // Unknown events are ignored: no notice, no acknowledgement, the socket keeps working.
    a.emit("no-such-event", json!({"x": 1})).await;
    a.inbox.nothing("notice").await;
    b.inbox.nothing("message").await;
    assert_eq!(app.count("messages").await, 0);
    assert_eq!(
        a.ack("message", text("room1", &"字".repeat(200), "ok"))
            .await["ok"],
        true
    );
}

#[tokio::test]
async fn the_text_limit_is_configurable() {
    let app = TestApp::spawn_with(|s| s.realtime.message_max_chars = 5).await;
    let (_, a) = joined(&app, "alice").await;
    assert_eq!(
        a.ack("message", text("room1", "123456", "c1")).await["ok"],
        false
    );
    assert_eq!(
        a.ack("message", text("room1", "12345", "c2")).await["ok"],
        true
    );
}

#[tokio::test]
async fn a_flood_of_events_is_cut_to_the_rate_and_the_server_stays_up() {
    let app = TestApp::spawn_with(|s| s.realtime.socket_events_per_second = 3).await;
    let (_, mut a) = joined(&app, "alice").await;
    for i in 0..40 {
        a.emit("message", text("room1", "flood", &format!("f-{i}")))
            .await;
    }
    let notice = a.inbox.next("notice").await;
    assert_eq!(notice["code"], "rate_limited", "{notice}");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let stored = app.count("messages").await;
    assert!(
        (1..=10).contains(&stored),
        "burst allowance only, got {stored}"
    );
    let (status, _) = app.get_v3("/healthz", None).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn oversized_packets_close_the_socket_and_nothing_else() {
    let app = TestApp::spawn_with(|s| s.uploads.max_bytes = 64 * 1024).await;
    let (_, a) = joined(&app, "alice").await;
    let (_, mut b) = joined(&app, "bob").await;
    let _ = app.state.realtime.max_packet();
    let huge = "x".repeat(app.state.realtime.max_packet() + 1024);
    let _ = a.client.emit("message", text("room1", &huge, "big")).await;
    // Bob hears alice leave when her connection is dropped.
    let left = b.inbox.next("roomout").await;
    assert!(left["onlineUsers"].get("alice").is_none(), "{left}");
    assert_eq!(app.count("messages").await, 0);
    let (status, _) = app.get_v3("/healthz", None).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn presence_lists_a_user_until_their_last_socket_leaves() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice").await;
    let (_, mut b) = joined(&app, "bob").await;
    let mut tabs = Vec::new();
    for _ in 0..2 {
        let mut tab = app.sio(Auth::Payload(&alice.token)).await;
        tab.emit("room", json!({"roomid": "room1"})).await;
        let listing = tab.inbox.next("room").await;
        assert_eq!(
            listing["onlineUsers"].as_object().unwrap().len(),
            2,
            "{listing}"
        );
        tabs.push(tab);
    }
    // Bob hears of alice once: her second tab changes nothing he sees.
    let arrived = b.inbox.next("room").await;
    assert_eq!(
        arrived["onlineUsers"].as_object().unwrap().len(),
        2,
        "{arrived}"
    );
    b.inbox.nothing("room").await;
    tabs.pop().unwrap().disconnect().await;
    b.inbox.nothing("roomout").await;
    tabs.pop().unwrap().disconnect().await;
    let left = b.inbox.next("roomout").await;
    assert_eq!(
        left,
        json!({"roomid": "room1", "onlineUsers": {"bob": {"src": "//s3.qiufengh.com/avatar/1.jpeg"}}})
    );
}

#[tokio::test]
async fn a_room_message_reaches_each_socket_in_the_room_once_and_none_that_left() {
    let app = TestApp::spawn().await;
    let (_, mut a) = joined(&app, "alice").await;
    let (_, mut b) = joined(&app, "bob").await;
    let (carol, mut c) = joined(&app, "carol").await;
    let (_, d) = joined(&app, "dave").await;
    // Entering a room the socket is already in lists it once.
    b.emit("room", json!({"name": "bob", "roomid": "room1"}))
        .await;
    let _ = b.inbox.next("room").await;
    // carol signs the socket out (it leaves every room); dave's socket goes away.
    c.emit("roomout", Value::Null).await;
    let _ = a.inbox.next("roomout").await;
    d.disconnect().await;
    for n in 1..=3 {
        let ack = a
            .ack(
                "message",
                text("room1", &format!("m{n}"), &format!("c-{n}")),
            )
            .await;
        assert_eq!(ack["ok"], true, "{ack}");
        for sock in [&mut a, &mut b] {
            assert_eq!(sock.inbox.next("message").await["msg"], format!("m{n}"));
        }
    }
    b.inbox.nothing("message").await;
    c.inbox.nothing("message").await;
    // Her new socket in the room hears it; the one that left still does not.
    let mut c2 = app.sio(Auth::Payload(&carol.token)).await;
    c2.emit("room", json!({"name": "carol", "roomid": "room1"}))
        .await;
    assert_eq!(c2.inbox.next("room").await["roomid"], "room1");
    let ack = a.ack("message", text("room1", "m4", "c-4")).await;
    assert_eq!(ack["ok"], true, "{ack}");
    for sock in [&mut a, &mut b, &mut c2] {
        assert_eq!(sock.inbox.next("message").await["msg"], "m4");
    }
    c.inbox.nothing("message").await;
}

#[tokio::test]
async fn roomout_signs_the_v3_socket_out() {
    let app = TestApp::spawn().await;
    let (bob, mut b) = joined(&app, "bob").await;
    let (_, mut a) = joined(&app, "alice").await;
    let _ = b.inbox.next("room").await;
    a.emit("roomout", Value::Null).await;
    assert_eq!(
        b.inbox.next("roomout").await["onlineUsers"]
            .as_object()
            .unwrap()
            .len(),
        1
    );
    // The socket is anonymous now: it gets no private messages and cannot post.
    let (x, y) = (bob.id.clone(), a_id(&app, "alice").await);
    let room = if x > y {
        format!("{x}-{y}")
    } else {
        format!("{y}-{x}")
    };
    b.emit(
        "message",
        json!({"msg": "still there?", "roomid": room, "clientId": "q"}),
    )
    .await;
    a.inbox.nothing("message").await;
    assert_eq!(
        a.ack("message", text("room1", "hi", "z")).await["code"],
        "unauthenticated"
    );
}

async fn a_id(app: &TestApp, name: &str) -> String {
    let (_, info) = app
        .get_v3(&format!("/api/user/getInfo?id={name}"), None)
        .await;
    info["data"]["id"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("{info}"))
}

#[tokio::test]
async fn unread_counts_follow_what_each_user_has_seen() {
    let app = TestApp::spawn().await;
    let (_, a) = joined(&app, "alice").await;
    let bob = app.signup("bob").await;
    let mut b = app.sio(Auth::Payload(&bob.token)).await;
    b.emit("login", json!({})).await;
    assert_eq!(b.inbox.next("count").await, json!({"room1": 0, "room2": 0}));
    // Bob is online but not in room1: each message raises his count.
    for n in 1..=2 {
        a.ack("message", text("room1", "news", &format!("n{n}")))
            .await;
        assert_eq!(b.inbox.next("count").await, json!({"room1": n}));
    }
    // Entering the room resets it, and while he is there nothing is counted.
    b.emit("room", json!({"roomid": "room1"})).await;
    assert_eq!(b.inbox.next("count").await, json!({"room1": 0}));
    a.ack("message", text("room1", "seen", "n3")).await;
    b.inbox.nothing("count").await;
    b.disconnect().await;
    // Messages while he is away are counted at his next login (his own are not).
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    for n in 4..=6 {
        a.ack("message", text("room1", "missed", &format!("n{n}")))
            .await;
    }
    let mut b = app.sio(Auth::Payload(&bob.token)).await;
    b.ack("message", text("room2", "mine", "own")).await;
    b.emit("login", json!({})).await;
    assert_eq!(b.inbox.next("count").await, json!({"room1": 3, "room2": 0}));
}

#[tokio::test]
async fn adding_a_friend_pushes_the_list_to_the_added_user() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice").await;
    let bob = app.signup("bob").await;
    let mut b = app.sio(Auth::Payload(&bob.token)).await;
    let (_, reply) = app
        .post_v3(
            "/api/friend/add",
            Some(&alice.token),
            &json!({"selfId": alice.id, "friendId": bob.id}),
        )
        .await;
    assert_eq!(reply["errno"], 0, "{reply}");
    let list = b.inbox.next("friend").await;
    assert_eq!(list[0]["friendId"]["name"], "alice", "{list}");
    assert_eq!(list[0]["selfId"], bob.id);
}

#[tokio::test]
async fn shutdown_stores_and_acknowledges_every_accepted_message() {
    // A raw client, because rust_socketio picks random acknowledgement ids that can collide.
    let app = TestApp::spawn().await;
    let alice = app.signup("alice").await;
    let mut a = Eio3::connect(&app, &format!("token={}", alice.token)).await;
    a.emit("room", json!({"roomid": "room1"})).await;
    let _ = a.inbox.next("room").await;
    for i in 0..30 {
        a.emit_acked("message", text("room1", "last words", &format!("s-{i}")))
            .await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    app.drain().await;
    let mut accepted = std::collections::BTreeSet::new();
    for (_, ack) in a.acks_until_closed().await {
        if ack["ok"] == true {
            accepted.insert(ack["id"].as_i64().unwrap());
        } else {
            assert_eq!(ack["code"], "unavailable", "{ack}");
        }
    }
    assert!(
        !accepted.is_empty(),
        "some messages were accepted before the shutdown"
    );
    // Messages without an acknowledgement are not marked sent by clients, which send them again.
    let stored: std::collections::BTreeSet<i64> = app.message_ids().await.into_iter().collect();
    assert_eq!(
        stored, accepted,
        "every acknowledged message is stored, and only those"
    );
    assert_eq!(app.get_v3("/readyz", None).await.0, 503);
}
