//! v3 accounts: `/api/user/*`.

use serde_json::json;

use crate::common::{TestApp, read};

#[tokio::test]
async fn signup_returns_what_the_v3_client_stores() {
    let app = TestApp::spawn().await;
    let response = app
        .post("/api/user/signup")
        .json(&json!({"name": "小明", "password": "secret123", "src": "//s3.qiufengh.com/avatar/7.jpeg"}))
        .send()
        .await
        .unwrap();
    let cookie = response
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    let (status, body) = read(response).await;
    assert_eq!(status, 200);
    assert_eq!(body["errno"], 0);
    assert_eq!(body["data"], "注册成功");
    assert_eq!(body["userInfo"]["name"], "小明");
    assert_eq!(body["userInfo"]["src"], "//s3.qiufengh.com/avatar/7.jpeg");
    let id = body["userInfo"]["id"].as_str().unwrap();
    assert!(
        !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()),
        "ids are digits without '-': {id}"
    );
    let token = body["token"].as_str().unwrap();
    assert_eq!(token.split('.').count(), 3, "a signed token");
    assert!(
        cookie.starts_with("chatroom_token=")
            && cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Lax")
    );
    // The account data stays private: the hash never leaves the server.
    assert!(!body.to_string().contains("$2b$"));

    // The token works at once.
    let (status, me) = app.get_v3("/api/user/me", Some(token)).await;
    assert_eq!((status, me["data"]["name"].as_str()), (200, Some("小明")));
}

#[tokio::test]
async fn signin_accepts_the_right_password_only() {
    let app = TestApp::spawn().await;
    let user = app.signup("alice").await;
    let (status, body) = app
        .post_json(
            "/api/user/signin",
            &json!({"name": "alice", "password": "secret123"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["errno"], 0);
    assert_eq!(body["data"], "登录成功");
    assert_eq!(body["userInfo"]["id"], user.id.as_str());
    assert_eq!(body["userInfo"]["name"], "alice");
    assert!(body["token"].as_str().unwrap().len() > 20);

    // A wrong password and an unknown user get the same answer, in the client's envelope.
    let (s1, wrong) = app
        .post_json(
            "/api/user/signin",
            &json!({"name": "alice", "password": "nope12345"}),
        )
        .await;
    let (s2, unknown) = app
        .post_json(
            "/api/user/signin",
            &json!({"name": "nobody", "password": "secret123"}),
        )
        .await;
    assert_eq!((s1, s2), (200, 200));
    assert_eq!(wrong["errno"], 1);
    assert_eq!(wrong["data"], "用户名或密码错误");
    assert_eq!(wrong, unknown);
}

#[tokio::test]
async fn signup_refuses_bad_input_and_creates_nothing() {
    let app = TestApp::spawn().await;
    app.signup("taken").await;
    let cases = [
        (
            json!({"name": "taken", "password": "secret123"}),
            "用户名已存在",
        ),
        (
            json!({"name": "一二三四五六七八九十一二三四五六", "password": "secret123"}),
            "用户名过长",
        ),
        (
            json!({"name": "bob", "password": "123456789012345678901"}),
            "密码过长",
        ),
        (json!({"name": "bob", "password": "123"}), "密码至少 6 位"),
        (
            json!({"name": "", "password": "secret123"}),
            "用户名不能为空",
        ),
        (json!({"name": "bob"}), "密码不能为空"),
        (
            json!({"name": "<script>", "password": "secret123"}),
            "用户名不能包含",
        ),
        (
            json!({"name": "x' OR '1'='1", "password": "secret123"}),
            "用户名不能包含",
        ),
        (
            json!({"name": 12345, "password": "secret123"}),
            "请求格式错误",
        ),
        (json!(["name", "password"]), "请求格式错误"),
    ];
    for (body, expected) in cases {
        let (status, reply) = app.post_json("/api/user/signup", &body).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(reply["errno"], 1, "{body}");
        assert!(
            reply["data"].as_str().unwrap().starts_with(expected),
            "{body} → {reply}"
        );
    }
    let (status, reply) = read(
        app.post("/api/user/signup")
            .header("content-type", "application/json")
            .body("{\"name\": ")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, reply["errno"].as_i64(), reply["data"].as_str()),
        (200, Some(1), Some("请求格式错误"))
    );
    assert_eq!(app.count("users").await, 1);
}

#[tokio::test]
async fn huge_bodies_are_refused_without_harm() {
    let app = TestApp::spawn().await;
    let big = "x".repeat(2 * 1024 * 1024);
    let (status, reply) = app
        .post_json(
            "/api/user/signup",
            &json!({"name": big, "password": "secret123"}),
        )
        .await;
    assert_eq!(
        (status, reply["errno"].as_i64(), reply["data"].as_str()),
        (413, Some(1), Some("请求内容过大"))
    );
    assert_eq!(app.count("users").await, 0);
    // Still serving.
    app.signup("after").await;
}

#[tokio::test]
async fn concurrent_signups_of_one_name_create_one_account() {
    let app = TestApp::spawn().await;
    let body = json!({"name": "race", "password": "secret123"});
    let attempts = (0..6).map(|_| app.post_json("/api/user/signup", &body));
    let results = futures_util::future::join_all(attempts).await;
    let ok = results.iter().filter(|(_, b)| b["errno"] == 0).count();
    assert_eq!(ok, 1, "{results:?}");
    assert!(
        results
            .iter()
            .all(|(s, b)| *s == 200 && (b["errno"] == 0 || b["data"] == "用户名已存在"))
    );
    assert_eq!(app.count("users").await, 1);
}

#[tokio::test]
async fn unsafe_avatar_urls_are_replaced_by_the_default() {
    let app = TestApp::spawn().await;
    let (_, body) = app
        .post_json(
            "/api/user/signup",
            &json!({"name": "eve", "password": "secret123", "src": "javascript:alert(1)"}),
        )
        .await;
    assert_eq!(body["userInfo"]["src"], "/avatar/default.svg");
    let svg = app.get("/avatar/default.svg").send().await.unwrap();
    assert_eq!(svg.status(), 200);
    assert_eq!(svg.headers()["content-type"], "image/svg+xml");
}

#[tokio::test]
async fn repeated_wrong_passwords_are_throttled() {
    let app = TestApp::spawn_with(|s| s.auth.signin_failures = 3).await;
    app.signup("target").await;
    for _ in 0..3 {
        let (_, reply) = app
            .post_json(
                "/api/user/signin",
                &json!({"name": "target", "password": "guess1234"}),
            )
            .await;
        assert_eq!(reply["data"], "用户名或密码错误");
    }
    // Now even the right password waits: guessing cannot continue.
    let (status, reply) = app
        .post_json(
            "/api/user/signin",
            &json!({"name": "target", "password": "secret123"}),
        )
        .await;
    assert_eq!((status, reply["errno"].as_i64()), (200, Some(1)));
    assert_eq!(reply["data"], "操作过于频繁，请稍后再试");
    // Other names are not affected.
    app.signup("other").await;
    let (_, reply) = app
        .post_json(
            "/api/user/signin",
            &json!({"name": "other", "password": "secret123"}),
        )
        .await;
    assert_eq!(reply["errno"], 0);
}

#[tokio::test]
async fn signups_per_address_are_limited() {
    let app = TestApp::spawn_with(|s| s.auth.signup_per_hour = 2).await;
    app.signup("one").await;
    app.signup("two").await;
    let (_, reply) = app
        .post_json(
            "/api/user/signup",
            &json!({"name": "three", "password": "secret123"}),
        )
        .await;
    assert_eq!(reply["data"], "操作过于频繁，请稍后再试");
    assert_eq!(app.count("users").await, 2);
}

#[tokio::test]
async fn logout_revokes_the_token_everywhere() {
    let app = TestApp::spawn().await;
    let user = app.signup("leaver").await;
    let second = {
        let (_, body) = app
            .post_json(
                "/api/user/signin",
                &json!({"name": "leaver", "password": "secret123"}),
            )
            .await;
        body["token"].as_str().unwrap().to_owned()
    };
    let (status, reply) = app
        .post_v3("/api/user/logout", Some(&user.token), &json!({}))
        .await;
    assert_eq!((status, reply["errno"].as_i64()), (200, Some(0)));

    let (status, reply) = app.get_v3("/api/user/me", Some(&user.token)).await;
    assert_eq!(status, 401);
    assert_eq!(reply["msg"], "登录已失效，请重新登录");
    let (status, _) = app
        .post_v3(
            "/api/friend/add",
            Some(&user.token),
            &json!({"friendId": "1"}),
        )
        .await;
    assert_eq!(status, 401);
    let (status, _) = read(
        app.get(&format!("/api/user?api_token={}", user.token))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "the Laravel-era envelope is always 200");
    let (_, reply) = read(
        app.get(&format!("/api/user?api_token={}", user.token))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(reply["errno"], 1);

    // The same user's other session (another device) is untouched.
    let (status, _) = app.get_v3("/api/user/me", Some(&second)).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn missing_and_bad_tokens_get_the_contracts_401s() {
    let app = TestApp::spawn().await;
    let (status, reply) = app
        .post_v3("/api/friend/add", None, &json!({"friendId": "1"}))
        .await;
    assert_eq!(
        (status, reply["msg"].as_str()),
        (401, Some("请先登录")),
        "Bearer false means no token"
    );
    let (status, reply) = app
        .post_v3(
            "/api/friend/add",
            Some("not.a.token"),
            &json!({"friendId": "1"}),
        )
        .await;
    assert_eq!(
        (status, reply["msg"].as_str()),
        (401, Some("token 校验错误"))
    );

    // A token signed with another secret is refused too.
    let other =
        chatroom::auth::token::TokenService::new(&[7u8; 32], std::time::Duration::from_secs(60));
    let forged = other.issue(1).unwrap().token;
    let (status, _) = app.get_v3("/api/user/me", Some(&forged)).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn the_sign_in_cookie_authenticates_alone() {
    let app = TestApp::spawn().await;
    let user = app.signup("cookie").await;
    let (status, reply) = read(
        app.get("/api/user/me")
            .header("cookie", format!("chatroom_token={}", user.token))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, reply["data"]["name"].as_str()),
        (200, Some("cookie"))
    );
}

#[tokio::test]
async fn vip_users_come_from_configuration() {
    let app =
        TestApp::spawn_with(|s| s.realtime.vip_users = vec!["hua1995116".into(), "boss".into()])
            .await;
    let (_, empty) = app.get_v3("/api/user/vipuser", None).await;
    assert_eq!(empty, json!({"errno": 0, "data": []}));
    let boss = app.signup("boss").await;
    let hua = app.signup("hua1995116").await;
    app.signup("plain").await;
    let (status, reply) = app.get_v3("/api/user/vipuser", None).await;
    assert_eq!(status, 200);
    assert_eq!(
        reply,
        json!({"errno": 0, "data": [
            {"_id": hua.id, "name": "hua1995116", "src": "//s3.qiufengh.com/avatar/1.jpeg"},
            {"_id": boss.id, "name": "boss", "src": "//s3.qiufengh.com/avatar/1.jpeg"},
        ]})
    );
}

#[tokio::test]
async fn search_matches_substrings_literally() {
    let app = TestApp::spawn().await;
    let alice = app.signup("Alice").await;
    app.signup("malice").await;
    app.signup("bob").await;
    app.signup("50%off").await;
    let names = |reply: &serde_json::Value| -> Vec<String> {
        reply["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, reply) = app.get_v3("/api/user/search?name=lic", None).await;
    assert_eq!(names(&reply), ["Alice", "malice"]);
    assert_eq!(
        reply["data"][0],
        json!({"_id": alice.id, "name": "Alice", "src": "//s3.qiufengh.com/avatar/1.jpeg"})
    );
    let (_, reply) = app.get_v3("/api/user/search?name=ALI", None).await;
    assert_eq!(names(&reply), ["Alice", "malice"]);
    let (_, reply) = app.get_v3("/api/user/search?name=%25", None).await;
    assert_eq!(
        names(&reply),
        ["50%off"],
        "% is a character, not a wildcard"
    );
    let (_, reply) = app.get_v3("/api/user/search?name=_", None).await;
    assert!(names(&reply).is_empty());
    let (_, reply) = app
        .get_v3("/api/user/search?name=%27%20OR%201%3D1%20--", None)
        .await;
    assert_eq!(reply, json!({"errno": 0, "data": []}));
    let (_, reply) = app.get_v3("/api/user/search?name=", None).await;
    assert_eq!(reply, json!({"errno": 0, "data": []}));
}

#[tokio::test]
async fn get_info_looks_users_up_by_name() {
    let app = TestApp::spawn().await;
    let user = app.signup("张三").await;
    let (status, reply) = app
        .get_v3("/api/user/getInfo?id=%E5%BC%A0%E4%B8%89", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        reply,
        json!({"errno": 0, "data": {"id": user.id, "name": "张三", "src": "//s3.qiufengh.com/avatar/1.jpeg"}})
    );
    // The v3 client sends a name taken from its page URL still encoded, so it is encoded twice.
    let (_, twice) = app
        .get_v3("/api/user/getInfo?id=%25E5%25BC%25A0%25E4%25B8%2589", None)
        .await;
    assert_eq!(twice["data"]["name"], "张三", "{twice}");
    let (status, reply) = app.get_v3("/api/user/getInfo?id=nobody", None).await;
    assert_eq!(
        (status, reply["errno"].as_i64(), reply["data"].as_str()),
        (200, Some(1), Some("用户不存在"))
    );
    let (_, reply) = app.get_v3("/api/user/getInfo?id=%25ZZ", None).await;
    assert_eq!(reply["data"], "用户不存在");
    let (_, reply) = app.get_v3("/api/user/getInfo", None).await;
    assert_eq!(reply["errno"], 1);
}
