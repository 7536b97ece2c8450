//! v3 friends: `/api/friend/*`.

use serde_json::json;

use crate::common::TestApp;

#[tokio::test]
async fn adding_a_friend_makes_both_friends() {
    let app = TestApp::spawn().await;
    let a = app.signup("ann").await;
    let b = app.signup("bob").await;
    let (status, reply) = app
        .post_v3(
            "/api/friend/add",
            Some(&a.token),
            &json!({"selfId": a.id, "friendId": b.id}),
        )
        .await;
    assert_eq!(
        (status, reply),
        (200, json!({"errno": 0, "data": "添加成功"}))
    );

    let (status, list) = app
        .post_v3("/api/friend/list", Some(&a.token), &json!({"selfId": a.id}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(list["errno"], 0);
    let entry = &list["data"][0];
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert_eq!(entry["selfId"], a.id.as_str());
    assert_eq!(
        entry["friendId"],
        json!({"_id": b.id, "name": "bob", "src": "//s3.qiufengh.com/avatar/1.jpeg"})
    );
    assert!(
        entry["_id"]
            .as_str()
            .unwrap()
            .bytes()
            .all(|c| c.is_ascii_digit())
    );
    assert!(entry["time"].as_str().unwrap().ends_with('Z'));

    let (_, list) = app
        .post_v3("/api/friend/list", Some(&b.token), &json!({"selfId": b.id}))
        .await;
    assert_eq!(list["data"][0]["friendId"]["name"], "ann");

    let (status, again) = app
        .post_v3(
            "/api/friend/add",
            Some(&b.token),
            &json!({"selfId": b.id, "friendId": a.id}),
        )
        .await;
    assert_eq!((status, again["errno"].as_i64()), (200, Some(1)));
    assert_eq!(again["data"], "您已经添加过该好友，请勿重复添加");
    assert_eq!(app.count("friends").await, 2);
}

#[tokio::test]
async fn friend_requests_act_only_for_the_token_user() {
    let app = TestApp::spawn().await;
    let a = app.signup("ann").await;
    let b = app.signup("bob").await;
    let c = app.signup("cid").await;
    // ann claims to be bob.
    let (status, reply) = app
        .post_v3(
            "/api/friend/add",
            Some(&a.token),
            &json!({"selfId": b.id, "friendId": c.id}),
        )
        .await;
    assert_eq!((status, reply["errno"].as_i64()), (200, Some(1)));
    assert_eq!(reply["data"], "不能以其他用户的身份操作");
    // ann reads bob's list.
    let (_, reply) = app
        .post_v3("/api/friend/list", Some(&a.token), &json!({"selfId": b.id}))
        .await;
    assert_eq!(reply["errno"], 1);
    let (status, reply) = app
        .post_v3("/api/friend/list", None, &json!({"selfId": b.id}))
        .await;
    assert_eq!(
        (status, reply["errno"].as_i64(), reply["data"].as_str()),
        (200, Some(1), Some("请先登录"))
    );
    let (status, _) = app
        .post_v3(
            "/api/friend/add",
            None,
            &json!({"selfId": a.id, "friendId": c.id}),
        )
        .await;
    assert_eq!(status, 401);
    assert_eq!(app.count("friends").await, 0);
}

#[tokio::test]
async fn friend_add_refuses_self_unknown_and_malformed() {
    let app = TestApp::spawn().await;
    let a = app.signup("ann").await;
    let cases = [
        (
            json!({"selfId": a.id, "friendId": a.id}),
            "咱不开玩笑，放过自己吧🤣",
        ),
        (json!({"selfId": a.id, "friendId": "999999"}), "用户不存在"),
        (json!({"selfId": a.id, "friendId": "1-2"}), "用户不存在"),
        (json!({"selfId": a.id}), "缺少参数 friendId"),
        (json!({"selfId": a.id, "friendId": 5}), "请求格式错误"),
    ];
    for (body, expected) in cases {
        let (status, reply) = app.post_v3("/api/friend/add", Some(&a.token), &body).await;
        assert_eq!((status, reply["errno"].as_i64()), (200, Some(1)), "{body}");
        assert_eq!(reply["data"], expected, "{body}");
    }
    assert_eq!(app.count("friends").await, 0);
}
