//! Pages, static files, probes, CORS and origin checks, and the real binary's defaults.

use serde_json::json;

use crate::common::process::{Binary, start_binary, stop};
use crate::common::{TestApp, read};

#[tokio::test]
async fn own_page_and_probes() {
    let app = TestApp::spawn().await;
    for path in ["/", "/index.html", "/debug"] {
        let page = app.get(path).send().await.unwrap();
        assert_eq!(page.status(), 200, "{path}");
        assert!(
            page.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/html")
        );
        assert_eq!(page.headers()["cache-control"], "no-cache", "{path}");
        assert!(
            page.headers()["content-security-policy"]
                .to_str()
                .unwrap()
                .contains("script-src 'self'")
        );
        assert!(page.text().await.unwrap().contains("<div id=\"app\">"));
    }
    // The embedded client's hashed files are cached for good; other files are revalidated.
    let html = app.get("/").send().await.unwrap().text().await.unwrap();
    let script = html
        .split('"')
        .find(|s| s.starts_with("/assets/") && s.ends_with(".js"))
        .expect("index.html names its script");
    let js = app.get(script).send().await.unwrap();
    assert_eq!(js.status(), 200);
    assert_eq!(
        js.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert_eq!(
        js.headers()["cache-control"],
        "public, max-age=31536000, immutable"
    );
    let icon = app.get("/favicon.svg").send().await.unwrap();
    assert_eq!(
        (
            icon.status().as_u16(),
            icon.headers()["content-type"].to_str().unwrap(),
            icon.headers()["cache-control"].to_str().unwrap()
        ),
        (200, "image/svg+xml", "no-cache")
    );
    assert_eq!(app.post("/favicon.svg").send().await.unwrap().status(), 404);
    assert_eq!(
        app.get("/healthz")
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "ok"
    );
    let ready = app.get("/readyz").send().await.unwrap();
    assert_eq!(
        (ready.status().as_u16(), ready.text().await.unwrap()),
        (200, "ready".to_owned())
    );
    assert_eq!(app.get("/no/such/page").send().await.unwrap().status(), 404);

    app.state.start_draining();
    assert_eq!(app.get("/readyz").send().await.unwrap().status(), 503);
    assert_eq!(app.get("/healthz").send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn readiness_fails_when_the_database_is_gone() {
    let app = TestApp::spawn().await;
    app.db().clone().close().await.unwrap();
    let ready = app.get("/readyz").send().await.unwrap();
    assert_eq!(
        (ready.status().as_u16(), ready.text().await.unwrap()),
        (503, "database unreachable".to_owned())
    );
    assert_eq!(
        app.get("/healthz").send().await.unwrap().status(),
        200,
        "the process itself is fine"
    );
    // Requests that need the database fail in the client's envelope, without taking the server down.
    let (status, reply) = app.get_v3("/api/user/search?name=a", None).await;
    assert_eq!(
        (status, reply["errno"].as_i64(), reply["data"].as_str()),
        (500, Some(1), Some("服务器异常"))
    );
    let (status, reply) = read(
        app.get("/api/history/message?roomid=1&current=1")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, reply["data"]["errno"].as_i64()), (200, Some(1)));
}

#[tokio::test]
async fn a_static_dir_replaces_the_web_client() {
    let bundle = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(bundle.path().join("static/js")).unwrap();
    std::fs::write(
        bundle.path().join("index.html"),
        "<html>webchat bundle</html>",
    )
    .unwrap();
    std::fs::write(
        bundle.path().join("static/js/app.123.js"),
        "console.log('app')",
    )
    .unwrap();
    std::fs::write(bundle.path().join("favicon.ico"), [0u8, 0, 1, 0]).unwrap();
    let dir = bundle.path().to_owned();
    let app = TestApp::spawn_with(move |s| s.http.static_dir = Some(dir)).await;
    for path in ["/", "/debug", "/index.html"] {
        assert_eq!(
            app.get(path).send().await.unwrap().text().await.unwrap(),
            "<html>webchat bundle</html>",
            "{path}"
        );
    }
    let script = app.get("/static/js/app.123.js?v=2").send().await.unwrap();
    assert_eq!(script.status(), 200);
    assert!(
        script.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("javascript")
    );
    assert_eq!(
        app.get("/favicon.ico")
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .as_ref(),
        [0u8, 0, 1, 0]
    );
    // chatroom's own client is not served beside it.
    assert_eq!(app.get("/favicon.svg").send().await.unwrap().status(), 404);
    // The API still wins over the bundle.
    let (status, reply) = app.get_v3("/api/user/vipuser", None).await;
    assert_eq!((status, reply["errno"].as_i64()), (200, Some(0)));
}

#[tokio::test]
async fn cors_echoes_configured_origins_only() {
    let app =
        TestApp::spawn_with(|s| s.http.cors_origins = vec!["http://localhost:9099".into()]).await;
    let allowed = app
        .get("/api/user/vipuser")
        .header("origin", "http://localhost:9099")
        .send()
        .await
        .unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "http://localhost:9099"
    );
    assert_eq!(
        allowed.headers()["access-control-allow-credentials"],
        "true"
    );
    let other = app
        .get("/api/user/vipuser")
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());

    let preflight = app
        .http
        .request(reqwest::Method::OPTIONS, app.url("/api/friend/add"))
        .header("origin", "http://localhost:9099")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "http://localhost:9099"
    );
}

/// A cookie-authenticated friend request carrying `headers`, as a browser page would send it.
async fn befriend_with_cookie(
    app: &TestApp,
    token: &str,
    friend: &str,
    headers: &[(&str, &str)],
) -> (u16, serde_json::Value) {
    let request = headers
        .iter()
        .fold(app.post("/api/friend/add"), |r, (k, v)| r.header(*k, *v));
    let request = request
        .header("cookie", format!("chatroom_token={token}"))
        .json(&json!({"friendId": friend}));
    read(request.send().await.unwrap()).await
}

#[tokio::test]
async fn cross_site_posts_are_refused_before_they_act() {
    let app = TestApp::spawn().await;
    let user = app.signup("victim").await;
    let target = app.signup("other").await;
    let third = app.signup("third").await;
    // A page elsewhere tries to use the victim's cookie.
    let (status, reply) = befriend_with_cookie(
        &app,
        &user.token,
        &target.id,
        &[("origin", "https://evil.example")],
    )
    .await;
    assert_eq!((status, reply["errno"].as_i64()), (403, Some(1)));
    assert_eq!(app.count("friends").await, 0);
    // The same request from the server's own page goes through.
    let own = format!("http://{}", app.addr);
    let (status, reply) =
        befriend_with_cookie(&app, &user.token, &target.id, &[("origin", &own)]).await;
    assert_eq!((status, reply["errno"].as_i64()), (200, Some(0)), "{reply}");
    // And through a proxy that rewrote `Host` but kept the original in `X-Forwarded-Host`.
    let proxied = [
        ("origin", "https://chat.example"),
        ("x-forwarded-host", "chat.example"),
    ];
    let (status, reply) = befriend_with_cookie(&app, &user.token, &third.id, &proxied).await;
    assert_eq!((status, reply["errno"].as_i64()), (200, Some(0)), "{reply}");
}

#[tokio::test]
async fn sqlite_runs_in_wal_mode() {
    let app = TestApp::spawn().await;
    if app.db().get_database_backend() != sea_orm::DbBackend::Sqlite {
        return;
    }
    use sea_orm::ConnectionTrait;
    let row = app
        .db()
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Sqlite,
            "PRAGMA journal_mode",
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.try_get::<String>("", "journal_mode").unwrap(), "wal");
}

#[tokio::test]
async fn sqlite_checkpoints_happen_outside_commits() {
    let app = TestApp::spawn().await;
    if app.db().get_database_backend() != sea_orm::DbBackend::Sqlite {
        return;
    }
    use sea_orm::ConnectionTrait;
    let row = app
        .db()
        .query_one_raw(sea_orm::Statement::from_string(
            sea_orm::DbBackend::Sqlite,
            "PRAGMA wal_autocheckpoint",
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        row.try_get_by_index::<i32>(0).unwrap(),
        0,
        "commits never checkpoint"
    );
    // Rows committed to the WAL reach the database file within a couple of seconds anyway.
    let file = app.dir.path().join("chatroom.db");
    let before = std::fs::metadata(&file).unwrap().len();
    let user = app.signup("writer").await;
    for i in 0..300 {
        app.seed_message(
            &user,
            "room1",
            &format!("a message long enough to fill pages {i}"),
        )
        .await;
    }
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::fs::metadata(&file).unwrap().len() <= before {
        assert!(tokio::time::Instant::now() < deadline, "no checkpoint ran");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn the_binary_runs_on_sqlite_by_default_and_keeps_tokens_across_restarts() {
    let data = tempfile::tempdir().unwrap();
    let Binary {
        child: mut server,
        address,
        logs,
    } = start_binary(&[], data.path());
    let http = reqwest::Client::new();
    let signup = http
        .post(format!("http://{address}/api/user/signup"))
        .json(&json!({"name": "restart", "password": "secret123"}))
        .send()
        .await
        .unwrap();
    let (_, body) = read(signup).await;
    let token = body["token"].as_str().unwrap().to_owned();
    assert!(
        data.path().join("chatroom.db").exists(),
        "SQLite in the data dir"
    );
    assert!(
        data.path().join("token_secret").exists(),
        "a generated secret kept in the data dir"
    );
    // The token travels in a query string too, where request logs could catch it.
    let legacy = http
        .get(format!("http://{address}/api/user?api_token={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(read(legacy).await.1["name"], "restart");
    // And in socket handshakes, and message bodies go through socket frames.
    let body_text = "a-private-message-body-7f3a";
    {
        use futures_util::FutureExt;
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let socket = rust_socketio::asynchronous::ClientBuilder::new(format!(
            "http://{address}/?token={token}"
        ))
        .on("message", move |_, _| {
            let _ = tx.send(());
            async {}.boxed()
        })
        .connect()
        .await
        .unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        socket
            .emit("room", json!({"roomid": "room1"}))
            .await
            .unwrap();
        socket
            .emit(
                "message",
                json!({"msg": body_text, "roomid": "room1", "clientId": "log-1"}),
            )
            .await
            .unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv())
            .await
            .expect("the message is echoed");
        socket.disconnect().await.unwrap();
    }
    assert!(
        stop(&mut server, "TERM").success(),
        "SIGTERM is a clean exit"
    );
    let lines: Vec<String> = logs.try_iter().collect();
    assert!(
        lines.iter().any(|l| l.contains("/api/user/signup")),
        "requests are logged"
    );
    let secret = std::fs::read_to_string(data.path().join("token_secret")).unwrap();
    for line in &lines {
        assert!(
            !line.contains(&token)
                && !line.contains("secret123")
                && !line.contains(secret.trim())
                && !line.contains(body_text),
            "leak: {line}"
        );
    }

    let Binary {
        child: mut server,
        address,
        ..
    } = start_binary(&[], data.path());
    let me = http
        .get(format!("http://{address}/api/user/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let (status, body) = read(me).await;
    assert_eq!(
        (status, body["data"]["name"].as_str()),
        (200, Some("restart"))
    );
    assert!(
        stop(&mut server, "INT").success(),
        "Ctrl-C is a clean exit too"
    );
}
