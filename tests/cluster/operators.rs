//! Operators across nodes (issue 18): an admin acting on one node reaches sockets on the other.

use std::time::Duration;

use serde_json::{Value, json};

use super::{Backend, Cluster, on_both};
use crate::common::socket::Eio3;

fn admin_command(cluster: &Cluster, action: &str, name: &str) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_chatroom"))
        .args(["admin", action, name, "--database-url", &cluster._db.url])
        .arg("--data-dir")
        .arg(tempfile::tempdir().unwrap().path())
        .env_remove("DATABASE_URL")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn call(
    cluster: &Cluster,
    method: reqwest::Method,
    node: usize,
    path: &str,
    token: &str,
    body: Value,
) -> (u16, Value) {
    let reply = cluster
        .http
        .request(method, cluster.nodes[node].url(path))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = reply.status().as_u16();
    (status, reply.json().await.unwrap_or(Value::Null))
}

on_both!(removals_rooms_and_bans_reach_sockets_on_the_other_node);
async fn removals_rooms_and_bans_reach_sockets_on_the_other_node(backend: Backend) {
    let Some(cluster) = Cluster::start_on(backend, 2).await else {
        return;
    };
    let (_, boss) = cluster.signup(0, "boss").await;
    admin_command(&cluster, "grant", "boss");
    let (_, alice) = cluster.signup(0, "alice").await;
    let (_, bob) = cluster.signup(1, "bob").await;
    let a = cluster.sio(0, &alice).await;
    a.emit("room", json!({"roomid": "room1"})).await;
    let mut b = cluster.sio(1, &bob).await;
    b.emit("room", json!({"roomid": "room1"})).await;
    let _ = b.inbox.next("room").await;

    let ack = a
        .ack(
            "message",
            json!({"msg": "spam", "img": "", "roomid": "room1", "clientId": "x-1"}),
        )
        .await;
    let id = ack["id"].as_i64().expect("stored");
    assert_eq!(b.inbox.next("message").await["msg"], "spam");

    // Removed on node 0: bob on node 1 hears it.
    let (status, reply) = call(
        &cluster,
        reqwest::Method::DELETE,
        0,
        &format!("/api/admin/messages/{id}"),
        &boss,
        json!({"reason": "spam"}),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        b.inbox.next("messageRemoved").await,
        json!({"id": id, "roomid": "room1", "by": "admin"})
    );

    // A room created on node 0 shows in the lists of node 1, live and over HTTP.
    let (status, reply) = call(
        &cluster,
        reqwest::Method::POST,
        0,
        "/api/admin/rooms",
        &boss,
        json!({"roomid": "garden", "name": "Garden"}),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    let rooms = b.inbox.next("rooms").await;
    assert_eq!(rooms[2]["roomid"], "garden", "{rooms}");
    let (_, listed) = cluster.get(1, "/api/rooms", None).await;
    assert_eq!(listed["data"][2]["roomid"], "garden", "{listed}");

    // Banned on node 0: bob's socket on node 1 closes within two seconds.
    let old = Eio3::connect_to(&cluster.nodes[1].binary.address, &format!("token={bob}")).await;
    let (status, reply) = call(
        &cluster,
        reqwest::Method::POST,
        0,
        "/api/admin/users/bob/ban",
        &boss,
        json!({"reason": "spam"}),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    tokio::time::timeout(Duration::from_secs(2), old.closed)
        .await
        .expect("the banned user's socket on the other node closes within 2 s")
        .ok();
    let notice = b.inbox.next("notice").await;
    assert_eq!(notice["event"], "ban");
    let (status, _) = cluster.get(1, "/api/user/me", Some(&bob)).await;
    assert_eq!(status, 401);
}
