//! v3 history and ranking: `/api/message/*`.

use serde_json::{Value, json};

use crate::common::TestApp;

fn ids(reply: &Value) -> Vec<i64> {
    reply["data"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["_id"].as_str().unwrap().parse().unwrap())
        .collect()
}

#[tokio::test]
async fn history_pages_backwards_twenty_at_a_time() {
    let app = TestApp::spawn().await;
    let user = app.signup("pager").await;
    let mut stored = Vec::new();
    for i in 0..45 {
        stored.push(app.seed_message(&user, "room1", &format!("m{i}")).await);
    }
    app.seed_message(&user, "room2", "elsewhere").await;
    assert!(
        stored.windows(2).all(|w| w[0] < w[1]),
        "ids increase with creation"
    );

    let (status, first) = app
        .get_v3("/api/message/v2/history?roomid=room1", None)
        .await;
    assert_eq!((status, first["errno"].as_i64()), (200, Some(0)));
    assert_eq!(ids(&first), stored[25..]);
    let oldest = ids(&first)[0];
    let (_, second) = app
        .get_v3(
            &format!("/api/message/v2/history?roomid=room1&msgid={oldest}"),
            None,
        )
        .await;
    assert_eq!(ids(&second), stored[5..25]);
    let (_, third) = app
        .get_v3(
            &format!("/api/message/v2/history?roomid=room1&msgid={}", stored[5]),
            None,
        )
        .await;
    assert_eq!(ids(&third), stored[..5]);
    let (_, end) = app
        .get_v3(
            &format!("/api/message/v2/history?roomid=room1&msgid={}", stored[0]),
            None,
        )
        .await;
    assert_eq!(end, json!({"errno": 0, "data": {"data": []}}));

    // Every field the client reads, in the contract's form.
    let last = &first["data"]["data"][19];
    assert_eq!(last["_id"], stored[44].to_string());
    assert_eq!(last["username"], "pager");
    assert_eq!(last["src"], "//s3.qiufengh.com/avatar/1.jpeg");
    assert_eq!(last["msg"], "m44");
    assert_eq!(last["img"], "");
    assert_eq!(last["roomid"], "room1");
    assert_eq!(last["roomType"], "group");
    assert_eq!(last["type"], "text");
    assert!(last["clientId"].as_str().unwrap().starts_with("c-"));
    let time = last["time"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(time).is_ok() && time.ends_with('Z'),
        "{time}"
    );
}

#[tokio::test]
async fn private_history_is_for_its_two_users_only() {
    let app = TestApp::spawn().await;
    let a = app.signup("amy").await;
    let b = app.signup("ben").await;
    let c = app.signup("cat").await;
    let room =
        chatroom::services::rooms::private_room(a.id.parse().unwrap(), b.id.parse().unwrap()).id();
    app.seed_message(&a, &room, "secret").await;

    for member in [&a, &b] {
        let (_, reply) = app
            .get_v3(
                &format!("/api/message/v2/history?roomid={room}"),
                Some(&member.token),
            )
            .await;
        assert_eq!(reply["data"]["data"][0]["msg"], "secret");
        assert_eq!(reply["data"]["data"][0]["roomType"], "single");
    }
    for outsider in [Some(c.token.as_str()), None, Some("garbage")] {
        let (status, reply) = app
            .get_v3(&format!("/api/message/v2/history?roomid={room}"), outsider)
            .await;
        assert_eq!(
            (status, reply["errno"].as_i64(), reply["data"].as_str()),
            (200, Some(1), Some("你暂无权限"))
        );
        assert!(!reply.to_string().contains("secret"));
    }
}

#[tokio::test]
async fn history_refuses_unknown_rooms_and_bad_cursors() {
    let app = TestApp::spawn().await;
    for path in [
        "/api/message/v2/history",
        "/api/message/v2/history?roomid=room9",
        "/api/message/v2/history?roomid=2-1",
        "/api/message/v2/history?roomid=room1&msgid=abc",
        "/api/message/v2/history?roomid=room1%27%3B%20DROP%20TABLE%20messages%3B--",
    ] {
        let (status, reply) = app.get_v3(path, None).await;
        assert_eq!(
            (status, reply["errno"].as_i64()),
            (200, Some(1)),
            "{path}: {reply}"
        );
        assert!(reply["data"].is_string());
    }
    assert_eq!(app.count("messages").await, 0);
}

#[tokio::test]
async fn by_user_loads_group_rooms_and_own_private_rooms() {
    let app = TestApp::spawn().await;
    let a = app.signup("ann").await;
    let b = app.signup("bea").await;
    let (_, added) = app
        .post_v3(
            "/api/friend/add",
            Some(&a.token),
            &json!({"selfId": a.id, "friendId": b.id}),
        )
        .await;
    assert_eq!(added["errno"], 0);
    let private =
        chatroom::services::rooms::private_room(a.id.parse().unwrap(), b.id.parse().unwrap()).id();
    for i in 0..25 {
        app.seed_message(&a, "room1", &format!("g{i}")).await;
    }
    app.seed_message(&b, &private, "psst").await;

    let (status, reply) = app
        .get_v3(
            &format!("/api/message/history/byUser?selfId={}", a.id),
            Some(&a.token),
        )
        .await;
    assert_eq!((status, reply["errno"].as_i64()), (200, Some(0)));
    let data = reply["data"].as_object().unwrap();
    let mut rooms: Vec<&str> = data.keys().map(String::as_str).collect();
    rooms.sort_unstable();
    let mut expected = vec!["room1", "room2", private.as_str()];
    expected.sort_unstable();
    assert_eq!(rooms, expected);
    let room1 = data["room1"].as_array().unwrap();
    assert_eq!(room1.len(), 20);
    assert_eq!(room1[0]["msg"], "g5");
    assert_eq!(room1[19]["msg"], "g24");
    assert_eq!(data["room2"], json!([]));
    assert_eq!(data[&private][0]["msg"], "psst");

    // Someone else asking for ann's rooms sees the public ones only.
    let (_, reply) = app
        .get_v3(
            &format!("/api/message/history/byUser?selfId={}", a.id),
            Some(&b.token),
        )
        .await;
    assert!(!reply["data"].as_object().unwrap().contains_key(&private));
    let (_, reply) = app
        .get_v3(
            &format!("/api/message/history/byUser?selfId={}", a.id),
            None,
        )
        .await;
    assert_eq!(reply["data"].as_object().unwrap().len(), 2);
    let (_, reply) = app.get_v3("/api/message/history/byUser", None).await;
    assert_eq!(reply["errno"], 1);
}

#[tokio::test]
async fn hot_users_rank_group_room_senders() {
    let app = TestApp::spawn().await;
    let quiet = app.signup("quiet").await;
    let loud = app.signup("loud").await;
    let secret = app.signup("secretive").await;
    for _ in 0..3 {
        app.seed_message(&loud, "room1", "hi").await;
    }
    app.seed_message(&loud, "room2", "hi").await;
    app.seed_message(&quiet, "room2", "hi").await;
    let private = chatroom::services::rooms::private_room(
        quiet.id.parse().unwrap(),
        secret.id.parse().unwrap(),
    )
    .id();
    for _ in 0..10 {
        app.seed_message(&secret, &private, "dm").await;
    }
    let (status, reply) = app.get_v3("/api/message/getHot", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        reply,
        json!({"errno": 0, "data": [
            {"_id": "loud", "count": 4, "user": {"_id": loud.id, "name": "loud", "src": "//s3.qiufengh.com/avatar/1.jpeg"}},
            {"_id": "quiet", "count": 1, "user": {"_id": quiet.id, "name": "quiet", "src": "//s3.qiufengh.com/avatar/1.jpeg"}},
        ]})
    );
}
