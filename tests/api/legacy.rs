//! The Laravel-era client's endpoints: always HTTP 200, `{errno, user, message}`, `api_token` fields.

use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

use crate::common::{TestApp, images, read};

async fn register(app: &TestApp, email: &str) -> Value {
    let (status, reply) = app
        .post_json("/api/register", &json!({"name": email, "password": "secret123", "src": "//s3.qiufengh.com/avatar/2.jpeg"}))
        .await;
    assert_eq!(status, 200);
    reply
}

/// A multipart form with `file` and the given text fields, as the Laravel-era client posts it.
fn upload_form(file: Vec<u8>, fields: &[(&str, &str)]) -> Form {
    let part = Part::bytes(file)
        .file_name("upload")
        .mime_str("application/octet-stream")
        .unwrap();
    fields
        .iter()
        .fold(Form::new().part("file", part), |form, (k, v)| {
            form.text(k.to_string(), v.to_string())
        })
}

async fn post_form(app: &TestApp, path: &str, form: Form) -> (u16, Value) {
    read(app.post(path).multipart(form).send().await.unwrap()).await
}

async fn get(app: &TestApp, path: &str) -> Value {
    let (status, reply) = read(app.get(path).send().await.unwrap()).await;
    assert_eq!(status, 200, "{path}");
    reply
}

#[tokio::test]
async fn register_and_login_reply_with_the_user_the_client_stores() {
    let app = TestApp::spawn().await;
    let reply = register(&app, "Bob@Example.com").await;
    assert_eq!(reply["errno"], 0);
    assert_eq!(reply["message"], "用户注册成功");
    let user = &reply["user"];
    assert_eq!(user["name"], "bob");
    // The client keys "is this my message" and its displayed handle on `email`: it holds the public
    // name, so addresses never reach other users.
    assert_eq!(user["email"], "bob");
    assert_eq!(user["avatar"], "//s3.qiufengh.com/avatar/2.jpeg");
    assert!(user["id"].is_i64());
    let token = user["api_token"].as_str().unwrap().to_owned();
    assert!(!reply.to_string().contains("example.com"));
    assert!(!reply.to_string().contains("$2b$"));

    let (status, login) = app
        .post_json(
            "/api/login",
            &json!({"name": "bob@example.com", "password": "secret123"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(login["errno"], 0);
    assert_eq!(login["message"], "用户登录成功");
    assert_eq!(login["user"]["email"], "bob");
    assert_ne!(login["user"]["api_token"], token.as_str());

    let me = get(&app, &format!("/api/user?api_token={token}")).await;
    assert_eq!(me["name"], "bob");
    assert!(
        me.get("api_token").is_none(),
        "only the sign-in reply carries the token"
    );
}

#[tokio::test]
async fn register_refusals_are_200_with_a_message() {
    let app = TestApp::spawn().await;
    register(&app, "bob@example.com").await;
    for (body, expected) in [
        (
            json!({"name": "bob@example.com", "password": "secret123"}),
            "该邮箱已注册",
        ),
        (
            json!({"name": "BOB@example.com", "password": "secret123"}),
            "该邮箱已注册",
        ),
        (
            json!({"name": "not-an-email", "password": "secret123"}),
            "请输入有效的邮箱地址",
        ),
        (json!({"name": "a@b.c", "password": "123"}), "密码至少 6 位"),
        (
            json!({"name": ["x"], "password": "secret123"}),
            "请求格式错误",
        ),
    ] {
        let (status, reply) = app.post_json("/api/register", &body).await;
        assert_eq!((status, reply["errno"].as_i64()), (200, Some(1)), "{body}");
        assert_eq!(reply["message"], expected, "{body}");
    }
    let (status, reply) = app
        .post_json(
            "/api/login",
            &json!({"name": "bob@example.com", "password": "wrong-one"}),
        )
        .await;
    assert_eq!(
        (status, reply),
        (200, json!({"errno": 1, "message": "用户名或密码错误"}))
    );
    assert_eq!(app.count("users").await, 1);
}

#[tokio::test]
async fn same_local_part_gets_a_numbered_name_and_names_stay_shared_with_v3() {
    let app = TestApp::spawn().await;
    app.signup("bob").await;
    let second = register(&app, "bob@example.com").await;
    assert_eq!(second["user"]["name"], "bob2");
    let third = register(&app, "bob@example.org").await;
    assert_eq!(third["user"]["name"], "bob3");
    // A v3 user can use the Laravel-era client with their name.
    let (_, login) = app
        .post_json(
            "/api/login",
            &json!({"name": "bob", "password": "secret123"}),
        )
        .await;
    assert_eq!(
        (login["errno"].as_i64(), login["user"]["name"].as_str()),
        (Some(0), Some("bob"))
    );
}

#[tokio::test]
async fn forms_work_as_well_as_json() {
    let app = TestApp::spawn().await;
    let (status, reply) = read(
        app.post("/api/register")
            .form(&[("name", "form@example.com"), ("password", "secret123")])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, reply["errno"].as_i64()), (200, Some(0)), "{reply}");
    assert_eq!(reply["user"]["avatar"], "/avatar/default.svg");
}

#[tokio::test]
async fn history_pages_from_the_newest_and_holds_its_window() {
    let app = TestApp::spawn().await;
    let reply = register(&app, "hist@example.com").await;
    let user = crate::common::TestUser {
        id: reply["user"]["id"].to_string(),
        token: reply["user"]["api_token"].as_str().unwrap().into(),
    };
    for i in 0..30 {
        app.seed_message(&user, "room1", &format!("m{i}")).await;
    }
    let msgs = |r: &Value| -> Vec<String> {
        r["data"]["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["msg"].as_str().unwrap().to_owned())
            .collect()
    };
    // Page 1 without a token (the client reloads history this way after a reconnect).
    let page1 = get(&app, "/api/history/message?roomid=1&current=1&total=0").await;
    assert_eq!(page1["data"]["errno"], 0);
    assert_eq!(page1["data"]["total"], 30);
    assert_eq!(page1["data"]["current"], 1);
    assert_eq!(
        msgs(&page1),
        (10..30).map(|i| format!("m{i}")).collect::<Vec<_>>()
    );
    let item = &page1["data"]["data"][0];
    assert_eq!(item["userid"], "hist");
    assert_eq!(item["username"], "hist");
    assert_eq!(item["src"], "//s3.qiufengh.com/avatar/2.jpeg");
    assert_eq!(item["img"], "");
    assert_eq!(item["roomid"], 1);
    assert!(item["id"].is_i64());
    assert!(item["time"].as_str().unwrap().ends_with('Z'));

    // New messages arrive; page 2 with the total seen at page 1 still continues where page 1 ended.
    for i in 30..35 {
        app.seed_message(&user, "room1", &format!("m{i}")).await;
    }
    let page2 = get(
        &app,
        &format!(
            "/api/history/message?roomid=1&current=2&total=30&api_token={}",
            user.token
        ),
    )
    .await;
    assert_eq!(
        msgs(&page2),
        (0..10).map(|i| format!("m{i}")).collect::<Vec<_>>()
    );
    assert_eq!(page2["data"]["total"], 30);
    let page3 = get(&app, "/api/history/message?roomid=1&current=3&total=30").await;
    assert_eq!(page3["data"]["data"], json!([]));

    for path in [
        "/api/history/message?roomid=3&current=1",
        "/api/history/message?roomid=1&current=0",
        "/api/history/message?roomid=1",
        "/api/history/message?current=1",
    ] {
        let reply = get(&app, path).await;
        assert_eq!(reply["data"]["errno"], 1, "{path}");
        assert!(reply["data"]["message"].is_string(), "{path}");
    }
}

#[tokio::test]
async fn picture_upload_posts_the_picture_to_the_room() {
    let app = TestApp::spawn().await;
    let reply = register(&app, "pics@example.com").await;
    let token = reply["user"]["api_token"].as_str().unwrap().to_owned();
    let form = upload_form(images::png(), &[("api_token", &token), ("roomid", "2")]);
    let (status, reply) = post_form(&app, "/api/file/uploadimg", form).await;
    assert_eq!((status, reply["errno"].as_i64()), (200, Some(0)), "{reply}");
    let url = reply["data"]["url"].as_str().unwrap().to_owned();

    let page = get(&app, "/api/history/message?roomid=2&current=1&total=0").await;
    let item = &page["data"]["data"][0];
    assert_eq!(item["img"], url.as_str());
    assert_eq!(item["msg"], "");
    assert_eq!(item["roomid"], 2);
    assert_eq!(app.get(&url).send().await.unwrap().status(), 200);

    // Without a room, with a room that does not exist, or without a token: 200 with a message, nothing stored.
    for (fields, expected) in [
        (vec![("api_token", token.as_str())], "无效的房间"),
        (
            vec![("api_token", token.as_str()), ("roomid", "7")],
            "无效的房间",
        ),
        (vec![("roomid", "1")], "请先登录"),
        (vec![("roomid", "1"), ("api_token", "false")], "请先登录"),
    ] {
        let (status, reply) = post_form(
            &app,
            "/api/file/uploadimg",
            upload_form(images::png(), &fields),
        )
        .await;
        assert_eq!(
            (status, reply),
            (200, json!({"errno": 1, "message": expected})),
            "{fields:?}"
        );
    }
    assert_eq!(app.count("messages").await, 1);
    assert_eq!(app.upload_files().len(), 1);
}

#[tokio::test]
async fn avatar_upload_with_a_form_token() {
    let app = TestApp::spawn().await;
    let reply = register(&app, "face@example.com").await;
    let token = reply["user"]["api_token"].as_str().unwrap().to_owned();
    let (status, reply) = post_form(
        &app,
        "/api/file/avatar",
        upload_form(images::jpeg(), &[("api_token", &token)]),
    )
    .await;
    assert_eq!((status, reply["errno"].as_i64()), (200, Some(0)));
    let url = reply["data"]["url"].as_str().unwrap();
    assert!(
        url.starts_with("/static/files/"),
        "root-relative, so it renders from any page: {url}"
    );
    let me = get(&app, &format!("/api/user?api_token={token}")).await;
    assert_eq!(me["avatar"], url);
}

#[tokio::test]
async fn logout_with_a_form_token_revokes_it() {
    let app = TestApp::spawn().await;
    let reply = register(&app, "out@example.com").await;
    let token = reply["user"]["api_token"].as_str().unwrap().to_owned();
    let logout = || async {
        read(
            app.post("/api/logout")
                .form(&[("api_token", token.as_str())])
                .send()
                .await
                .unwrap(),
        )
        .await
    };
    let (status, reply) = logout().await;
    assert_eq!((status, reply["errno"].as_i64()), (200, Some(0)));
    let me = get(&app, &format!("/api/user?api_token={token}")).await;
    assert_eq!(me, json!({"errno": 1, "message": "登录已失效，请重新登录"}));
    let (status, again) = logout().await;
    assert_eq!((status, again["errno"].as_i64()), (200, Some(1)));
}

#[tokio::test]
async fn a_picture_whose_message_cannot_be_saved_leaves_no_file() {
    use sea_orm::ConnectionTrait;
    let app = TestApp::spawn().await;
    let reply = register(&app, "broken@example.com").await;
    let token = reply["user"]["api_token"].as_str().unwrap().to_owned();
    // Break the message store under the running server.
    app.db()
        .execute_unprepared("DROP TABLE messages")
        .await
        .unwrap();
    let form = upload_form(images::png(), &[("api_token", &token), ("roomid", "1")]);
    let (status, reply) = post_form(&app, "/api/file/uploadimg", form).await;
    assert_eq!(
        (status, reply),
        (
            200,
            json!({"errno": 1, "message": "服务器繁忙，请稍后再试"})
        )
    );
    assert!(app.upload_files().is_empty(), "{:?}", app.upload_files());
}
