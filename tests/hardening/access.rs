//! Access rows of the test plan (reliability.md §4.4–4.6) not covered elsewhere: token claims on
//! REST and on the socket handshake (A1–A3, defect 8), cross-site WebSocket handshakes (A9), password
//! storage (A12), upload names and serving (U3, U7) and odd static paths (defect 9).

use rust_socketio::TransportType;
use serde_json::{Value, json};

use crate::common::socket::Auth;
use crate::common::{TestApp, images, read};

/// The secret `Settings::for_tests` signs with.
const TEST_SECRET: &[u8] = b"test-secret-test-secret-test-secret!";

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A token with these claims, signed with `secret` under `alg`.
fn sign(claims: &Value, alg: jsonwebtoken::Algorithm, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(alg),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret),
    )
    .unwrap()
}

/// Claims like chatroom's own for user `id`, with `extra` merged in (a `null` removes a claim).
fn claims(id: &str, extra: &Value) -> Value {
    let mut c = json!({"sub": id, "jti": format!("t{}", rand::random::<u32>()), "iat": now(),
                       "exp": now() + 600, "aud": "chatroom"});
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

/// Unpadded base64url, as JWTs are written.
fn b64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

/// Tokens that must all be refused, named, for user `id`.
fn bad_tokens(id: &str) -> Vec<(&'static str, String)> {
    use jsonwebtoken::Algorithm::{HS256, HS512};
    let hs = |extra: Value| sign(&claims(id, &extra), HS256, TEST_SECRET);
    let unsigned = format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(claims(id, &json!({})).to_string().as_bytes())
    );
    vec![
        ("garbage", "not.a.token".to_owned()),
        (
            "other key",
            sign(&claims(id, &json!({})), HS256, &[7u8; 32]),
        ),
        ("alg none", unsigned),
        (
            "another algorithm",
            sign(&claims(id, &json!({})), HS512, TEST_SECRET),
        ),
        (
            "expired",
            hs(json!({"iat": now() - 7200, "exp": now() - 3600})),
        ),
        ("no expiry", hs(json!({"exp": null}))),
        ("not valid yet", hs(json!({"nbf": now() + 3600}))),
        ("other audience", hs(json!({"aud": "someone-else"}))),
    ]
}

#[tokio::test]
async fn forged_expired_and_premature_tokens_are_refused_over_http() {
    let app = TestApp::spawn().await;
    let user = app.signup("holder").await;
    // The test's forging works: a well-formed token with the right key is accepted.
    let good = sign(
        &claims(&user.id, &json!({})),
        jsonwebtoken::Algorithm::HS256,
        TEST_SECRET,
    );
    let (status, reply) = app.get_v3("/api/user/me", Some(&good)).await;
    assert_eq!(
        (status, reply["data"]["name"].as_str()),
        (200, Some("holder"))
    );
    for (what, token) in bad_tokens(&user.id) {
        let (status, reply) = app.get_v3("/api/user/me", Some(&token)).await;
        assert_eq!(status, 401, "{what}: {reply}");
        assert!(reply["msg"].is_string(), "{what}: {reply}");
        // Nothing was done with it: a friend request is refused too, and stores nothing.
        let (status, _) = app
            .post_v3("/api/friend/add", Some(&token), &json!({"friendId": "1"}))
            .await;
        assert_eq!(status, 401, "{what}");
        // The Laravel-era envelope: 200 with errno 1.
        let (status, reply) = read(
            app.get(&format!("/api/user?api_token={token}"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((status, reply["errno"].as_i64()), (200, Some(1)), "{what}");
    }
    assert_eq!(app.count("friends").await, 0);
}

#[tokio::test]
async fn forged_expired_and_premature_tokens_are_refused_at_the_handshake() {
    let app = TestApp::spawn().await;
    let user = app.signup("holder").await;
    for (what, token) in bad_tokens(&user.id) {
        for (name, transport) in [
            ("websocket", TransportType::Websocket),
            ("polling", TransportType::Polling),
        ] {
            let refused = app.try_sio(Auth::Payload(&token), transport).await;
            assert!(refused.is_err(), "{what} over {name} connected");
        }
        assert!(
            app.try_sio(Auth::Query(&token), TransportType::Any)
                .await
                .is_err(),
            "{what} in the query connected"
        );
    }
    // The right token still connects.
    let sock = app.sio(Auth::Payload(&user.token)).await;
    sock.disconnect().await;
}

#[tokio::test]
async fn cross_site_websocket_handshakes_are_refused() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let app = TestApp::spawn().await;
    let user = app.signup("victim").await;
    let url = format!(
        "ws://{}/socket.io/?EIO=4&transport=websocket&token={}",
        app.addr, user.token
    );
    let mut request = url.as_str().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("origin", "https://evil.example".parse().unwrap());
    request.headers_mut().insert(
        "cookie",
        format!("chatroom_token={}", user.token).parse().unwrap(),
    );
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403);
        }
        other => panic!("a cross-site WebSocket was accepted: {:?}", other.is_ok()),
    }
    // The server's own origin is fine.
    let mut request = url.as_str().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("origin", format!("http://{}", app.addr).parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    ws.close(None).await.unwrap();
}

#[tokio::test]
async fn passwords_are_stored_as_bcrypt_hashes_of_the_configured_cost() {
    let app = TestApp::spawn_with(|s| s.auth.bcrypt_cost = 10).await;
    app.signup("hashed").await;
    let user = chatroom::services::users::find_by_name(app.db(), "hashed")
        .await
        .unwrap()
        .unwrap();
    assert!(
        user.password_hash.starts_with("$2b$10$") || user.password_hash.starts_with("$2y$10$"),
        "{}",
        &user.password_hash[..7]
    );
    assert!(!user.password_hash.contains("secret123"));
    // Passwords bcrypt would silently cut at 72 bytes are refused rather than truncated.
    let (_, reply) = app
        .post_json(
            "/api/register",
            &json!({"name": "long@example.com", "password": "x".repeat(73)}),
        )
        .await;
    assert_eq!(reply["errno"], 1, "{reply}");
}

#[tokio::test]
async fn upload_names_never_reach_the_file_system() {
    let app = TestApp::spawn().await;
    let user = app.signup("namer").await;
    let long = format!("{}.png", "a".repeat(300));
    let names = [
        "../../etc/passwd",
        "..\\..\\x.png",
        "a.php%00.png",
        "x.jpg.php",
        long.as_str(),
        "\u{202e}gnp.exe",
    ];
    let mut urls = Vec::new();
    for name in names {
        let form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(images::png())
                .file_name(name.to_owned())
                .mime_str("image/png")
                .unwrap(),
        );
        let (status, reply) = read(
            app.post("/api/file/uploadimg")
                .bearer_auth(&user.token)
                .multipart(form)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((status, reply["errno"].as_i64()), (200, Some(0)), "{name}");
        let url = reply["data"].as_str().unwrap().to_owned();
        assert!(
            url.strip_prefix("/static/files/")
                .unwrap()
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'),
            "{url}"
        );
        urls.push(url);
    }
    // Everything landed inside the upload directory, under generated names.
    let files = app.upload_files();
    assert_eq!(files.len(), names.len());
    assert!(
        files
            .iter()
            .all(|f| f.parent() == Some(app.state.uploads.dir()))
    );
    assert!(!app.dir.path().join("etc").exists());
    // Served with their real type, never listed.
    let served = app.get(&urls[0]).send().await.unwrap();
    assert_eq!(served.headers()["content-type"], "image/png");
    assert_eq!(served.headers()["x-content-type-options"], "nosniff");
    for listing in ["/static/files/", "/static/files"] {
        let response = app.get(listing).send().await.unwrap();
        assert_ne!(response.status(), 200, "{listing}");
        assert!(!response.text().await.unwrap().contains(".png"));
    }
}

#[tokio::test]
async fn odd_static_paths_are_quiet_not_founds() {
    let bundle = tempfile::tempdir().unwrap();
    std::fs::write(bundle.path().join("index.html"), "<html>bundle</html>").unwrap();
    let dir = bundle.path().to_owned();
    let app = TestApp::spawn_with(move |s| s.http.static_dir = Some(dir)).await;
    let long = "a".repeat(256);
    let very_long = format!("{}/", "b".repeat(200)).repeat(30);
    let paths = [
        format!("/static/files/{long}"),
        format!("/static/files/{long}.png"),
        format!("/static/files/{very_long}x.png"),
        format!("/static/files/{}", "%61".repeat(300)),
        "/static/files/a%00b.png".to_owned(),
        "/static/files/x.png/child".to_owned(),
        format!("/{long}"),
        format!("/static/{very_long}"),
        "/index.html/child".to_owned(),
    ];
    for path in &paths {
        let response = app.get(path).send().await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
    }
    // Still serving.
    assert_eq!(app.get("/").send().await.unwrap().status(), 200);
}
