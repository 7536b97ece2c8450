//! Where notes go: a room's traffic only to the nodes whose users are in the room, a user's only to the
//! nodes where the user is online, and unread counts everywhere through digests.

use std::time::Duration;

use serde_json::{Value, json};

use super::nodes::{enter_room1, list_becomes, private_room, text};
use super::{Backend, Cluster, on_both};
use crate::common::socket::Sio;

const ROOM_NOTES: &str = "chatroom_cluster_notes_received_total{kind=\"room\"}";
const USER_NOTES: &str = "chatroom_cluster_notes_received_total{kind=\"user\"}";
const DIGESTS: &str = "chatroom_cluster_notes_received_total{kind=\"digest\"}";
const CONTROL_NOTES: &str = "chatroom_cluster_notes_received_total{kind=\"control\"}";
const ROOM_PUBLISHED: &str = "chatroom_cluster_notes_published_total{kind=\"room\"}";
const SUBSCRIPTIONS: &str = "chatroom_cluster_subscriptions";

/// Reads `count` events until room1's count is `want`; panics after `wait`.
async fn count_becomes(sock: &mut Sio, want: u64, wait: Duration) {
    let deadline = tokio::time::Instant::now() + wait;
    let mut last = Value::Null;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let Some(counts) = sock.inbox.try_next("count", left).await else {
            panic!("room1's count did not become {want} within {wait:?}; last: {last}");
        };
        if counts["room1"] == want {
            return;
        }
        last = counts;
    }
}

on_both!(a_rooms_traffic_reaches_only_the_nodes_of_its_members_and_counts_reach_everyone);
async fn a_rooms_traffic_reaches_only_the_nodes_of_its_members_and_counts_reach_everyone(
    backend: Backend,
) {
    let Some(cluster) = Cluster::start_on(backend, 3).await else {
        return;
    };
    let (alice_id, alice) = cluster.signup(0, "alice").await;
    let (_, bob) = cluster.signup(1, "bob").await;
    let (carol_id, carol) = cluster.signup(2, "carol").await;

    let mut a = enter_room1(&cluster, 0, &alice, &["alice"]).await;
    let mut b = enter_room1(&cluster, 1, &bob, &["alice", "bob"]).await;
    list_becomes(&mut a, "room", &["alice", "bob"], Duration::from_secs(20)).await;
    // Carol is online on node 3 (index 2), in no room.
    let mut c = cluster.sio(2, &carol).await;
    c.emit("login", json!({})).await;
    assert_eq!(c.inbox.next("count").await, json!({"room1": 0, "room2": 0}));
    cluster
        .readers_become("chatroom:r:room1", 2, Duration::from_secs(10))
        .await;

    let room_notes_before = cluster.metric(2, ROOM_NOTES).await;
    let digests_before = cluster.metric(2, DIGESTS).await;
    let control_before = cluster.metric(2, CONTROL_NOTES).await;
    let room_notes_b = cluster.metric(1, ROOM_NOTES).await;
    let sent: u32 = 20;
    for i in 0..sent {
        let ack = a
            .ack(
                "message",
                text("room1", &format!("m{i}"), &format!("a-{i}")),
            )
            .await;
        assert_eq!(ack["ok"], true, "{ack}");
    }
    let last_ack = tokio::time::Instant::now();
    for i in 0..sent {
        let m = b.inbox.next("message").await;
        assert_eq!(
            m["msg"],
            format!("m{i}"),
            "bob on node 2 reads every message, in order"
        );
    }
    // Carol's count follows within about two seconds, from digests alone.
    count_becomes(&mut c, u64::from(sent), Duration::from_secs(4)).await;
    eprintln!(
        "carol's count caught up {:?} after the last message",
        last_ack.elapsed()
    );
    c.inbox.nothing("message").await;
    assert_eq!(
        cluster.metric(2, ROOM_NOTES).await - room_notes_before,
        0.0,
        "node 3 reads none of room1's notes"
    );
    assert!(cluster.metric(2, DIGESTS).await - digests_before >= 1.0);
    // The control channel carries heartbeats and the like, not the room's 2 × 20 notes.
    let control = cluster.metric(2, CONTROL_NOTES).await - control_before;
    assert!(control < f64::from(sent), "{control} control notes");
    assert!(
        cluster.metric(1, ROOM_NOTES).await - room_notes_b >= f64::from(sent),
        "node 2 reads room1's notes"
    );

    // A private message from alice (node 1) to carol (node 3) goes to carol's node only.
    cluster
        .readers_become(
            &format!("chatroom:u:{carol_id}"),
            1,
            Duration::from_secs(10),
        )
        .await;
    let user_notes_b = cluster.metric(1, USER_NOTES).await;
    let room = private_room(&alice_id, &carol_id);
    let msg = json!({"msg": "只给你", "img": "", "roomid": room, "roomType": "single", "type": "text",
                     "clientId": "p-1", "from": alice_id, "to": carol_id});
    assert_eq!(a.ack("message", msg).await["ok"], true);
    let m = c.inbox.next("message").await;
    assert_eq!(
        (m["msg"].as_str(), m["roomid"].as_str()),
        (Some("只给你"), Some(room.as_str()))
    );
    b.inbox.nothing("message").await;
    assert_eq!(
        cluster.metric(1, USER_NOTES).await - user_notes_b,
        0.0,
        "node 2 hosts neither user"
    );
}

on_both!(a_node_stops_reading_a_room_its_last_user_left_and_learns_it_again_on_return);
async fn a_node_stops_reading_a_room_its_last_user_left_and_learns_it_again_on_return(
    backend: Backend,
) {
    let Some(cluster) = Cluster::start_on(backend, 2).await else {
        return;
    };
    let (_, alice) = cluster.signup(0, "alice").await;
    let (_, bob) = cluster.signup(1, "bob").await;
    let a = enter_room1(&cluster, 0, &alice, &["alice"]).await;
    let b = enter_room1(&cluster, 1, &bob, &["alice", "bob"]).await;
    cluster
        .readers_become("chatroom:r:room1", 2, Duration::from_secs(10))
        .await;
    let subscriptions = cluster.metric(1, SUBSCRIPTIONS).await;

    // Bob's only socket leaves: node 2 stops reading room1 (after a short linger) and his channel.
    b.disconnect().await;
    cluster
        .readers_become("chatroom:r:room1", 1, Duration::from_secs(10))
        .await;
    assert!(cluster.metric(1, SUBSCRIPTIONS).await < subscriptions);
    let room_notes = cluster.metric(1, ROOM_NOTES).await;
    // Node 1 learns that nobody else reads room1 and stops sending its notes to Redis.
    let published = cluster.metric(0, ROOM_PUBLISHED).await;
    for i in 0..10 {
        let ack = a
            .ack("message", text("room1", "nobody there", &format!("a-{i}")))
            .await;
        assert_eq!(ack["ok"], true, "{ack}");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(cluster.metric(1, ROOM_NOTES).await, room_notes);
    let sent = cluster.metric(0, ROOM_PUBLISHED).await - published;
    assert!(sent <= 8.0, "{sent} of 20 room notes still went to Redis");

    // Back in room1, bob's list names alice at once: node 2 asked who is in it.
    let mut b = cluster.sio(1, &bob).await;
    b.emit("room", json!({"roomid": "room1"})).await;
    list_becomes(&mut b, "room", &["alice", "bob"], Duration::from_secs(10)).await;
    cluster
        .readers_become("chatroom:r:room1", 2, Duration::from_secs(10))
        .await;
    let ack = a
        .ack("message", text("room1", "welcome back", "a-back"))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let m = b.inbox.next("message").await;
    assert_eq!(m["msg"], "welcome back");
}
