//! A Redis Cluster master failing over under a busy room: delivery resumes, nothing acknowledged is
//! lost, presence converges.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::time::Instant;

use super::nodes::{enter_room1, text};
use super::{Backend, Cluster};

/// Every message text of room1 in the history, read from `node`, page by page.
async fn history(cluster: &Cluster, node: usize) -> BTreeSet<String> {
    let mut texts = BTreeSet::new();
    let mut cursor = String::new();
    loop {
        let (status, page) = cluster
            .get(
                node,
                &format!("/api/message/v2/history?roomid=room1{cursor}"),
                None,
            )
            .await;
        assert_eq!(status, 200, "{page}");
        let list = page["data"]["data"].as_array().cloned().unwrap_or_default();
        let Some(oldest) = list.first() else {
            return texts;
        };
        cursor = format!("&msgid={}", oldest["_id"].as_str().unwrap_or_default());
        texts.extend(
            list.iter()
                .filter_map(|m| m["msg"].as_str().map(str::to_owned)),
        );
    }
}

#[tokio::test]
async fn a_master_failing_over_under_a_busy_room_loses_nothing_acknowledged() {
    let Some(mut cluster) = Cluster::start_on(Backend::Shards, 2).await else {
        return;
    };
    let (_, alice) = cluster.signup(0, "alice").await;
    let (_, bob) = cluster.signup(1, "bob").await;
    let (_, carol) = cluster.signup(0, "carol").await;
    let a = enter_room1(&cluster, 0, &alice, &["alice"]).await;
    let mut b = enter_room1(&cluster, 1, &bob, &["alice", "bob"]).await;

    // Alice sends every 50 ms; the master owning room1's channel dies after the 20th message.
    let mut acked = Vec::new();
    let mut received = 0;
    let mut killed_at = None;
    let mut failed_over_at = None;
    let mut resumed_at = None;
    let mut last_look = Instant::now();
    let started = Instant::now();
    for i in 0.. {
        let msg = format!("m{i}");
        let ack = a
            .ack("message", text("room1", &msg, &format!("c-{i}")))
            .await;
        if ack["ok"] == true {
            acked.push(msg);
        }
        if i == 20 {
            cluster.shards().kill_master_of("chatroom:r:room1");
            killed_at = Some((i, Instant::now()));
        }
        while let Some(m) = b.inbox.try_next("message", Duration::from_millis(50)).await {
            received += 1;
            let n: usize = m["msg"].as_str().unwrap_or("m0")[1..].parse().unwrap_or(0);
            if let Some((k, _)) = killed_at
                && n > k
                && resumed_at.is_none()
            {
                resumed_at = Some(Instant::now());
            }
        }
        if killed_at.is_some()
            && failed_over_at.is_none()
            && last_look.elapsed() > Duration::from_millis(300)
        {
            last_look = Instant::now();
            if cluster.shards().failed_over() {
                failed_over_at = Some(Instant::now());
            }
        }
        if resumed_at.is_some_and(|t| t.elapsed() > Duration::from_secs(1))
            && failed_over_at.is_some()
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "delivery did not resume within a minute ({received} received)"
        );
    }
    let (_, killed) = killed_at.unwrap();
    let failover = failed_over_at.unwrap().duration_since(killed);
    let resumed = resumed_at.unwrap().duration_since(killed);
    eprintln!(
        "failover {failover:?}, delivery resumed after {resumed:?}, {received} of {} received live",
        acked.len()
    );
    assert!(
        resumed <= failover + Duration::from_secs(5),
        "delivery resumed {resumed:?} after the kill; the cluster failed over in {failover:?}"
    );

    // Every acknowledged message is stored: both nodes' history has each of them.
    for node in 0..2 {
        let stored = history(&cluster, node).await;
        let lost: Vec<&String> = acked.iter().filter(|m| !stored.contains(*m)).collect();
        assert!(lost.is_empty(), "acknowledged but not stored: {lost:?}");
    }

    // Both nodes read room1 again, on the promoted master.
    cluster
        .readers_become("chatroom:r:room1", 2, Duration::from_secs(5))
        .await;

    // Presence converges: carol entering room1 on node 1 reaches bob's list on node 2.
    let _c = enter_room1(&cluster, 0, &carol, &["alice", "bob", "carol"]).await;
    let want = ["alice", "bob", "carol"];
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = serde_json::Value::Null;
    while let Some(listing) = b
        .inbox
        .try_next("room", deadline.saturating_duration_since(Instant::now()))
        .await
    {
        let names: Vec<&str> = listing["onlineUsers"]
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        if names.len() == want.len() && want.iter().all(|w| names.contains(w)) {
            return;
        }
        last = listing;
    }
    for (n, node) in cluster.nodes.iter().enumerate() {
        for line in node
            .binary
            .logs
            .try_iter()
            .filter(|l| l.contains("cluster"))
        {
            eprintln!("node {n}: {line}");
        }
    }
    panic!("bob's list never named carol; last: {last}");
}

#[tokio::test]
async fn a_rooms_channel_follows_its_slot_to_another_master() {
    let Some(mut cluster) = Cluster::start_on(Backend::Shards, 2).await else {
        return;
    };
    let (_, alice) = cluster.signup(0, "alice").await;
    let (_, bob) = cluster.signup(1, "bob").await;
    let a = enter_room1(&cluster, 0, &alice, &["alice"]).await;
    let mut b = enter_room1(&cluster, 1, &bob, &["alice", "bob"]).await;
    let ack = a.ack("message", text("room1", "before", "c-0")).await;
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(b.inbox.next("message").await["msg"], "before");

    // Resharding moves room1's slot: the server drops its subscribers there; both nodes follow it.
    cluster.shards().move_slot_of("chatroom:r:room1");
    cluster
        .readers_become("chatroom:r:room1", 2, Duration::from_secs(10))
        .await;
    let ack = a.ack("message", text("room1", "after", "c-1")).await;
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(b.inbox.next("message").await["msg"], "after");
}
