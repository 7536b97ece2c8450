//! Socket.IO with raw Engine.IO 3 clients (socket.io 1.x/2.x): the Laravel-era dialect, interop with
//! the v3 dialect, and the 1.7 browser's polling framing (stack-notes F1).

use serde_json::{Value, json};

use crate::common::TestApp;
use crate::common::socket::{Auth, Eio3, Polling};

#[tokio::test]
async fn laravel_client_logs_in_joins_and_chats_in_its_own_shapes() {
    let app = TestApp::spawn().await;
    let bob = app.register_legacy("bob@example.com").await;
    let mut b = Eio3::connect(&app, &format!("api_token={}", bob.token)).await;
    b.emit(
        "login",
        json!({"name": "bob@example.com", "api_token": bob.token}),
    )
    .await;
    assert_eq!(b.inbox.next("count").await, json!({"room1": 0, "room2": 0}));
    b.emit(
        "room",
        json!({"name": "bob", "src": "x", "roomid": "1", "api_token": bob.token}),
    )
    .await;
    let listing = b.inbox.next("room").await;
    let entry = &listing[&bob.id];
    assert_eq!(entry["name"], "bob", "{listing}");
    assert_eq!(entry["avatar"], "//s3.qiufengh.com/avatar/2.jpeg");
    assert!(
        entry.get("api_token").is_none() && listing.to_string().find("example.com").is_none(),
        "no tokens or e-mail addresses in presence: {listing}"
    );

    // A v3 user in the same room.
    let alice = app.signup("alice").await;
    let mut a = app.sio(Auth::Payload(&alice.token)).await;
    a.emit("room", json!({"roomid": "room1"})).await;
    let _ = a.inbox.next("room").await;
    assert_eq!(b.inbox.next("room").await.as_object().unwrap().len(), 2);

    let ack = b
        .ack(
            "message",
            json!({"username": "bob", "src": "x", "img": "", "msg": "来自旧客户端🙂",
                               "roomid": "1", "time": "12:00", "api_token": bob.token}),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let legacy = b.inbox.next("message").await;
    assert_eq!(legacy["userid"], "bob");
    assert_eq!(legacy["username"], "bob");
    assert_eq!(legacy["roomid"], 1);
    assert_eq!(legacy["msg"], "来自旧客户端🙂");
    assert_eq!(legacy["img"], "");
    let v3 = a.inbox.next("message").await;
    assert_eq!(v3["roomid"], "room1");
    assert_eq!(v3["username"], "bob");
    assert_eq!(v3["_id"], ack["id"].to_string());

    // And back: the v3 user's message reaches the Laravel-era client in its shape.
    a.emit(
        "message",
        json!({"msg": "hello 👋", "img": "", "roomid": "room1", "clientId": "c"}),
    )
    .await;
    let back = b.inbox.next("message").await;
    assert_eq!(
        (back["userid"].as_str(), back["roomid"].as_i64()),
        (Some("alice"), Some(1))
    );
    assert_eq!(back["msg"], "hello 👋");

    b.emit(
        "roomout",
        json!({"name": "bob", "roomid": "1", "api_token": bob.token}),
    )
    .await;
    let left = a.inbox.next("roomout").await;
    assert_eq!(left["onlineUsers"].as_object().unwrap().len(), 1, "{left}");
}

#[tokio::test]
async fn a_stale_page_token_still_connects_and_a_payload_token_binds_it() {
    let app = TestApp::spawn().await;
    // The page was loaded before sign-in: the socket carries `api_token=false`.
    let mut b = Eio3::connect(&app, "api_token=false").await;
    b.emit("room", json!({"roomid": "1"})).await;
    assert_eq!(b.inbox.next("login").await, "登录后才能进入聊天室");
    assert_eq!(b.inbox.next("notice").await["code"], "unauthenticated");
    // After signing in, the client sends its new token with each event.
    let bob = app.register_legacy("bob@example.com").await;
    b.emit("room", json!({"roomid": "1", "api_token": bob.token}))
        .await;
    assert!(b.inbox.next("room").await.get(&bob.id).is_some());
    // A revoked token in the query does not keep the socket out either.
    let (status, _) = app
        .post_json("/api/logout", &json!({"api_token": bob.token}))
        .await;
    assert_eq!(status, 200);
    let mut stale = Eio3::connect(&app, &format!("api_token={}", bob.token)).await;
    assert_eq!(
        stale.ack("login", json!({})).await["code"],
        "unauthenticated"
    );
}

#[tokio::test]
async fn a_payload_token_of_someone_else_is_refused() {
    let app = TestApp::spawn().await;
    let bob = app.register_legacy("bob@example.com").await;
    let eve = app.register_legacy("eve@example.com").await;
    let mut b = Eio3::connect(&app, &format!("api_token={}", bob.token)).await;
    let ack = b
        .ack(
            "message",
            json!({"msg": "hi", "roomid": "1", "api_token": eve.token}),
        )
        .await;
    assert_eq!(ack["code"], "forbidden", "{ack}");
    assert_eq!(app.count("messages").await, 0);
}

#[tokio::test]
async fn the_laravel_picture_flow_stores_and_shows_the_upload_once() {
    let app = TestApp::spawn().await;
    let bob = app.register_legacy("bob@example.com").await;
    let mut b = Eio3::connect(&app, &format!("api_token={}", bob.token)).await;
    b.emit("room", json!({"roomid": "2", "api_token": bob.token}))
        .await;
    let _ = b.inbox.next("room").await;
    let png = crate::common::images::png();
    let form = reqwest::multipart::Form::new()
        .text("api_token", bob.token.clone())
        .text("roomid", "2")
        .part(
            "file",
            reqwest::multipart::Part::bytes(png)
                .file_name("a.png")
                .mime_str("image/png")
                .unwrap(),
        );
    let reply: Value = app
        .post("/api/file/uploadimg")
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let url = reply["data"]["url"].as_str().unwrap().to_owned();
    let shown = b.inbox.next("message").await;
    assert_eq!(
        (shown["img"].as_str(), shown["roomid"].as_i64()),
        (Some(url.as_str()), Some(2))
    );
    // The client then sends the same picture as a data URL: not stored or relayed again.
    b.emit(
        "message",
        json!({"msg": "", "img": "data:image/png;base64,iVBORw0KGgo=", "roomid": "2",
                              "api_token": bob.token}),
    )
    .await;
    b.inbox.nothing("message").await;
    b.inbox.nothing("notice").await;
    assert_eq!(app.count("messages").await, 1);
}

#[tokio::test]
async fn a_1_7_browser_on_polling_sends_and_receives_chinese_and_emoji_intact() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice").await;
    let mut modern = app.sio(Auth::Payload(&alice.token)).await;
    modern.emit("room", json!({"roomid": "room1"})).await;
    let _ = modern.inbox.next("room").await;

    // The v3 page: its socket opens before sign-in, with no token.
    let page = Polling::open(&app, "").await;
    // Signing up in the same browser binds the socket (the `io` cookie goes with the request).
    let (status, reply) = page
        .post_json(
            &app,
            "/api/user/signup",
            &json!({"name": "测试用户", "password": "secret123", "src": "x"}),
        )
        .await;
    assert_eq!((status, reply["errno"].as_i64()), (200, Some(0)), "{reply}");
    page.send(&[
        format!(
            "42{}",
            json!(["login", {"name": "测试用户", "id": reply["userInfo"]["id"]}])
        ),
        format!(
            "42{}",
            json!(["room", {"name": "测试用户", "src": "x", "roomid": "room1"}])
        ),
    ])
    .await;
    let listing = page.next("room").await;
    assert!(
        listing["onlineUsers"].get("测试用户").is_some(),
        "{listing}"
    );
    page.emit(
        "message",
        json!({"msg": "你好，世界🎉", "img": "", "roomid": "room1", "clientId": "p1"}),
    )
    .await;
    let echo = page.next("message").await;
    assert_eq!(echo["msg"], "你好，世界🎉");
    assert_eq!(echo["username"], "测试用户");
    assert_eq!(modern.inbox.next("message").await["msg"], "你好，世界🎉");
    // Server to the 1.7 browser: byte-length framing, checked by `Polling::next`.
    modern
        .emit(
            "message",
            json!({"msg": "收到👍", "img": "", "roomid": "room1", "clientId": "m1"}),
        )
        .await;
    let got = page.next("message").await;
    assert_eq!(got["msg"], "收到👍");
}

#[tokio::test]
async fn the_auth_cookie_binds_a_socket_after_a_reload() {
    let app = TestApp::spawn().await;
    let page = Polling::open(&app, "").await;
    let (status, _) = page
        .post_json(
            &app,
            "/api/user/signup",
            &json!({"name": "carol", "password": "secret123"}),
        )
        .await;
    assert_eq!(status, 200);
    // A reload: a new socket from the same browser, which now holds the auth cookie.
    let reloaded = Polling::open_with(&app, "", page.http.clone()).await;
    reloaded.emit("login", json!({"name": "carol"})).await;
    assert_eq!(
        reloaded.next("count").await,
        json!({"room1": 0, "room2": 0})
    );
}

#[tokio::test]
async fn cross_site_handshakes_are_refused() {
    let app = TestApp::spawn().await;
    let res = app
        .get("/socket.io/?EIO=3&transport=polling")
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let res = app
        .get("/socket.io/?EIO=4&transport=polling")
        .header("origin", format!("http://{}", app.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn the_client_script_is_served_when_configured() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("socket.io.js");
    std::fs::write(&script, "/* client */").unwrap();
    let app = TestApp::spawn_with(|s| s.http.socket_io_js = Some(script)).await;
    let res = app.get("/socket.io/socket.io.js").send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("javascript")
    );
    assert_eq!(res.text().await.unwrap(), "/* client */");
    let bare = TestApp::spawn().await;
    assert_eq!(
        bare.get("/socket.io/socket.io.js")
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

#[tokio::test]
async fn closing_sockets_at_shutdown_keeps_the_laravel_socket_informed() {
    let app = TestApp::spawn().await;
    let bob = app.register_legacy("bob@example.com").await;
    let mut b = Eio3::connect(&app, &format!("api_token={}", bob.token)).await;
    b.emit("room", json!({"roomid": "1"})).await;
    let _ = b.inbox.next("room").await;
    app.drain().await;
    tokio::time::timeout(crate::common::socket::WAIT, &mut b.closed)
        .await
        .expect("the server closes sockets when it stops")
        .ok();
}

#[tokio::test]
async fn signing_out_over_http_unbinds_the_browsers_socket() {
    let app = TestApp::spawn().await;
    let page = Polling::open(&app, "").await;
    let (_, reply) = page
        .post_json(
            &app,
            "/api/user/signup",
            &json!({"name": "dave", "password": "secret123"}),
        )
        .await;
    let token = reply["token"].as_str().unwrap().to_owned();
    page.emit("login", json!({})).await;
    assert_eq!(page.next("count").await["room1"], 0);
    let (status, _) = crate::common::read(
        page.http
            .post(app.url("/api/user/logout"))
            .bearer_auth(&token)
            .json(&json!({}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    page.emit(
        "message",
        json!({"msg": "after logout", "roomid": "room1", "clientId": "x"}),
    )
    .await;
    assert_eq!(page.next("notice").await["code"], "unauthenticated");
    assert_eq!(app.count("messages").await, 0);
}
