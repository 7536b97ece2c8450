//! What users on different nodes see of each other.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};

use super::{Backend, Cluster, on_both};
use crate::common::socket::Sio;

pub(super) fn text(room: &str, msg: &str, client_id: &str) -> Value {
    json!({"msg": msg, "img": "", "roomid": room, "roomType": "group", "type": "text",
           "clientId": client_id, "time": "2026-11-25T10:00:00.000Z", "to": false, "from": false})
}

pub(super) fn private_room(x: &str, y: &str) -> String {
    if x > y {
        format!("{x}-{y}")
    } else {
        format!("{y}-{x}")
    }
}

/// Reads `event` (`room` or `roomout`) lists of room1 until one names exactly `names`; panics after
/// `wait`.
pub(super) async fn list_becomes(sock: &mut Sio, event: &str, names: &[&str], wait: Duration) {
    let want: BTreeSet<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let deadline = tokio::time::Instant::now() + wait;
    let mut last = Value::Null;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Some(listing) = sock.inbox.try_next(event, left).await else {
            panic!("no `{event}` list naming {want:?} within {wait:?}; last: {last}");
        };
        let got: BTreeSet<String> = listing["onlineUsers"]
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        if listing["roomid"] == "room1" && got == want {
            return;
        }
        last = listing;
    }
}

/// Connects `token`'s user on `node` and enters room1, until its list names `names`.
pub(super) async fn enter_room1(
    cluster: &Cluster,
    node: usize,
    token: &str,
    names: &[&str],
) -> Sio {
    let mut sock = cluster.sio(node, token).await;
    sock.emit("room", json!({"roomid": "room1"})).await;
    list_becomes(&mut sock, "room", names, Duration::from_secs(20)).await;
    sock
}

on_both!(users_on_two_nodes_see_each_others_messages_presence_friends_and_counts);
async fn users_on_two_nodes_see_each_others_messages_presence_friends_and_counts(backend: Backend) {
    let Some(cluster) = Cluster::start_on(backend, 2).await else {
        return;
    };
    let (alice_id, alice) = cluster.signup(0, "alice").await;
    let (bob_id, bob) = cluster.signup(1, "bob").await;
    let (_, carol) = cluster.signup(1, "carol").await;

    // Presence: each sees the other in room1's list.
    let mut a = enter_room1(&cluster, 0, &alice, &["alice"]).await;
    let mut b = enter_room1(&cluster, 1, &bob, &["alice", "bob"]).await;
    list_becomes(&mut a, "room", &["alice", "bob"], Duration::from_secs(20)).await;

    // Unread counts: carol, online on node B but not in room1, counts alice's messages from node A.
    let mut c = cluster.sio(1, &carol).await;
    c.emit("login", json!({})).await;
    assert_eq!(c.inbox.next("count").await, json!({"room1": 0, "room2": 0}));

    // Room messages both ways.
    let ack = a.ack("message", text("room1", "from A", "a-1")).await;
    assert_eq!(ack["ok"], true, "{ack}");
    for sock in [&mut a, &mut b] {
        let m = sock.inbox.next("message").await;
        assert_eq!(
            (m["msg"].as_str(), m["username"].as_str()),
            (Some("from A"), Some("alice"))
        );
    }
    assert_eq!(c.inbox.next("count").await, json!({"room1": 1}));
    let ack = b.ack("message", text("room1", "from B", "b-1")).await;
    assert_eq!(ack["ok"], true, "{ack}");
    for sock in [&mut a, &mut b] {
        let m = sock.inbox.next("message").await;
        assert_eq!(
            (m["msg"].as_str(), m["username"].as_str()),
            (Some("from B"), Some("bob"))
        );
    }
    assert_eq!(c.inbox.next("count").await, json!({"room1": 2}));
    c.inbox.nothing("message").await;

    // A private message from node A reaches bob on node B (bob is online there), and nobody else.
    let room = private_room(&alice_id, &bob_id);
    let msg = json!({"msg": "悄悄话", "img": "", "roomid": room, "roomType": "single", "type": "text",
                     "clientId": "p-1", "from": alice_id, "to": bob_id});
    assert_eq!(a.ack("message", msg).await["ok"], true);
    for sock in [&mut a, &mut b] {
        let m = sock.inbox.next("message").await;
        assert_eq!(
            (m["msg"].as_str(), m["roomid"].as_str()),
            (Some("悄悄话"), Some(room.as_str()))
        );
    }
    c.inbox.nothing("message").await;

    // The friend event: alice adds bob over HTTP on node A; bob's socket on node B hears it.
    let (_, reply) = cluster
        .post(
            0,
            "/api/friend/add",
            Some(&alice),
            &json!({"selfId": alice_id, "friendId": bob_id}),
        )
        .await;
    assert_eq!(reply["errno"], 0, "{reply}");
    let list = b.inbox.next("friend").await;
    assert_eq!(list[0]["friendId"]["name"], "alice", "{list}");

    // A socket closing on node B takes bob out of the list on node A.
    b.disconnect().await;
    list_becomes(&mut a, "roomout", &["alice"], Duration::from_secs(20)).await;
}

on_both!(a_token_from_one_node_works_on_the_other_and_its_revocation_on_both);
async fn a_token_from_one_node_works_on_the_other_and_its_revocation_on_both(backend: Backend) {
    let Some(cluster) = Cluster::start_on(backend, 2).await else {
        return;
    };
    let (_, alice) = cluster.signup(0, "alice").await;
    // Issued by node A, honoured by node B, over HTTP and on a socket.
    let (status, info) = cluster
        .get(1, "/api/user/getInfo?id=alice", Some(&alice))
        .await;
    assert_eq!(status, 200, "{info}");
    let on_b = cluster.sio(1, &alice).await;
    assert_eq!(
        on_b.ack("message", text("room1", "hi", "t-1")).await["ok"],
        true
    );
    let on_a = cluster.sio(0, &alice).await;
    assert_eq!(
        on_a.ack("message", text("room1", "hi", "t-2")).await["ok"],
        true
    );

    // Signing out on node A revokes the token: the sockets bound with it stop acting for alice on
    // both nodes, and neither node takes the token again.
    let (status, reply) = cluster
        .post(0, "/api/user/logout", Some(&alice), &json!({}))
        .await;
    assert_eq!(status, 200, "{reply}");
    for (sock, id) in [(&on_a, "t-3"), (&on_b, "t-4")] {
        let mut refused = false;
        for _ in 0..50 {
            let ack = sock.ack("message", text("room1", "still me?", id)).await;
            if ack["code"] == "unauthenticated" {
                refused = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(refused, "a socket bound with a revoked token still posts");
    }
    for node in 0..2 {
        assert!(
            cluster.try_sio(node, &alice).await.is_err(),
            "node {node} took a revoked token"
        );
        let (status, _) = cluster
            .post(node, "/api/user/logout", Some(&alice), &json!({}))
            .await;
        assert_eq!(status, 401);
    }
}

#[tokio::test]
async fn a_redis_restart_is_survived_and_delivery_resumes() {
    let Some(mut cluster) = Cluster::start().await else {
        return;
    };
    let (_, alice) = cluster.signup(0, "alice").await;
    let (_, bob) = cluster.signup(1, "bob").await;
    let mut a = enter_room1(&cluster, 0, &alice, &["alice"]).await;
    let mut b = enter_room1(&cluster, 1, &bob, &["alice", "bob"]).await;

    cluster.redis().stop();
    for node in 0..2 {
        cluster
            .wait_ready(node, "degraded: Redis unreachable")
            .await;
    }
    let metrics = cluster.metrics(0).await;
    assert!(
        metrics.contains("chatroom_cluster_connected 0"),
        "{metrics}"
    );
    // Each node still serves its own sockets, and stores what they send.
    let ack = a.ack("message", text("room1", "while away", "r-1")).await;
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(a.inbox.next("message").await["msg"], "while away");
    let ack = b.ack("message", text("room1", "also away", "r-2")).await;
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(b.inbox.next("message").await["msg"], "also away");

    cluster.redis().restart();
    for node in 0..2 {
        cluster.wait_ready(node, "ready").await;
    }
    // Delivery across nodes resumes by itself, and presence converges again.
    let ack = a.ack("message", text("room1", "back", "r-3")).await;
    assert_eq!(ack["ok"], true, "{ack}");
    let mut seen = Vec::new();
    while let Some(m) = b.inbox.try_next("message", Duration::from_secs(5)).await {
        seen.push(m["msg"].as_str().unwrap_or_default().to_owned());
        if seen.last().map(String::as_str) == Some("back") {
            break;
        }
    }
    assert_eq!(seen.last().map(String::as_str), Some("back"), "{seen:?}");
    // Node A knows bob is in the room (it may have learnt it only from B's snapshot after the restart:
    // a leave it never saw an arrival for changes nothing it shows), then hears him leave.
    list_becomes(&mut a, "room", &["alice", "bob"], Duration::from_secs(20)).await;
    b.disconnect().await;
    list_becomes(&mut a, "roomout", &["alice"], Duration::from_secs(20)).await;

    // Nothing stored was lost: the history has every message.
    let (_, history) = cluster
        .get(1, "/api/message/v2/history?roomid=room1", Some(&bob))
        .await;
    let texts: BTreeSet<String> = history["data"]["data"]
        .as_array()
        .unwrap_or_else(|| panic!("{history}"))
        .iter()
        .filter_map(|m| m["msg"].as_str().map(str::to_owned))
        .collect();
    for text in ["while away", "also away", "back"] {
        assert!(texts.contains(text), "{text} missing from {texts:?}");
    }
}

on_both!(the_users_of_a_crashed_node_drop_out_of_the_lists);
async fn the_users_of_a_crashed_node_drop_out_of_the_lists(backend: Backend) {
    let Some(mut cluster) = Cluster::start_on(backend, 2).await else {
        return;
    };
    let (_, alice) = cluster.signup(0, "alice").await;
    let (_, bob) = cluster.signup(1, "bob").await;
    let mut a = enter_room1(&cluster, 0, &alice, &["alice"]).await;
    let _b = enter_room1(&cluster, 1, &bob, &["alice", "bob"]).await;
    list_becomes(&mut a, "room", &["alice", "bob"], Duration::from_secs(20)).await;

    // No goodbye: node A forgets bob once node B has been silent for its time to live.
    cluster.nodes[1].crash();
    let wait = chatroom::realtime::cluster::PEER_TTL + Duration::from_secs(15);
    list_becomes(&mut a, "roomout", &["alice"], wait).await;
}
