//! 大白 the robot, for both clients.

use serde_json::{Value, json};

use crate::common::{TestApp, read};

fn parse_reply(reply: &Value) -> Value {
    serde_json::from_str(reply["data"].as_str().expect("data is a JSON string")).unwrap()
}

#[tokio::test]
async fn robot_answers_offline_in_the_tuling_shape() {
    let app = TestApp::spawn().await;
    let user = app.signup("asker").await;
    let (status, reply) = app
        .get_v3(
            "/api/message/robotapi?info=%E4%BD%A0%E5%A5%BD&id=someone-else",
            Some(&user.token),
        )
        .await;
    assert_eq!(status, 200);
    let inner = parse_reply(&reply);
    assert_eq!(inner["code"], 100_000);
    assert_eq!(inner["text"], "你好呀，我是大白，有什么可以帮你的吗？");

    let (status, reply) = read(
        app.get(&format!(
            "/api/robot?info=help&id=x&api_token={}",
            user.token
        ))
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        parse_reply(&reply)["text"]
            .as_str()
            .unwrap()
            .contains("聊天室")
    );

    let (_, reply) = app
        .get_v3(
            "/api/message/robotapi?info=%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E",
            Some(&user.token),
        )
        .await;
    let text = parse_reply(&reply)["text"].as_str().unwrap().to_owned();
    assert!(!text.contains('<') && text.contains("&lt;img"), "{text}");
}

#[tokio::test]
async fn robot_explains_refusals_as_replies() {
    let app = TestApp::spawn().await;
    let (status, reply) = read(app.get("/api/robot?info=hi").send().await.unwrap()).await;
    assert_eq!(status, 200);
    assert_eq!(
        parse_reply(&reply),
        json!({"code": 100_000, "text": "请先登录"})
    );

    let user = app.signup("chatty").await;
    for _ in 0..30 {
        let (_, reply) = app
            .get_v3("/api/message/robotapi?info=hi", Some(&user.token))
            .await;
        assert_eq!(reply["errno"], 0);
    }
    let (_, reply) = app
        .get_v3("/api/message/robotapi?info=hi", Some(&user.token))
        .await;
    assert_eq!(parse_reply(&reply)["text"], "操作过于频繁，请稍后再试");
}

#[tokio::test]
async fn robot_relays_a_configured_upstream_and_covers_for_it() {
    use axum::{Json, Router, routing::post};
    let upstream = Router::new().route(
        "/openapi",
        post(|Json(body): Json<Value>| async move {
            Json(json!({"code": 200_000, "text": format!("<b>{}</b>", body["info"].as_str().unwrap_or("")), "url": "https://example.com/a"}))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, upstream).await });

    let app = TestApp::spawn_with(|s| {
        s.realtime.robot_url = Some(format!("http://{addr}/openapi").into())
    })
    .await;
    let user = app.signup("relay").await;
    let (_, reply) = app
        .get_v3("/api/message/robotapi?info=weather", Some(&user.token))
        .await;
    assert_eq!(
        parse_reply(&reply),
        json!({"code": 200_000, "text": "&lt;b&gt;weather&lt;/b&gt;", "url": "https://example.com/a"})
    );

    // An upstream that is down: the offline responder answers instead.
    let app =
        TestApp::spawn_with(|s| s.realtime.robot_url = Some("http://127.0.0.1:9/none".into()))
            .await;
    let user = app.signup("offline").await;
    let (_, reply) = app
        .get_v3(
            "/api/message/robotapi?info=%E4%BD%A0%E5%A5%BD",
            Some(&user.token),
        )
        .await;
    assert_eq!(parse_reply(&reply)["code"], 100_000);
}
