//! Operators (issue 18): the `chatroom admin` command, `/api/admin/`, removal by an admin, recall by
//! the author, and the audit trail, through real HTTP, real sockets of both dialects and the real
//! binary.

use std::time::Duration;

use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

use crate::common::socket::{Auth, Eio3, Sio};
use crate::common::{TestApp, TestUser, bearer, images, read};

/// Makes `name` an admin the way the service does (the command itself is tested below).
async fn make_admin(app: &TestApp, name: &str) {
    chatroom::services::moderation::set_role(app.db(), name, true)
        .await
        .unwrap();
}

async fn admin_call(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = app
        .http
        .request(method, app.url(path))
        .header("authorization", bearer(token));
    if let Some(body) = body {
        request = request.json(&body);
    }
    read(request.send().await.unwrap()).await
}

async fn audit(app: &TestApp, token: &str) -> Vec<Value> {
    let (status, reply) = admin_call(
        app,
        reqwest::Method::GET,
        "/api/admin/audit",
        Some(token),
        None,
    )
    .await;
    assert_eq!((status, reply["errno"].as_i64()), (200, Some(0)), "{reply}");
    reply["data"]["entries"].as_array().unwrap().clone()
}

/// Signs up `name` with a v3 socket in `room1`.
async fn in_room1(app: &TestApp, name: &str) -> (TestUser, Sio) {
    let user = app.signup(name).await;
    let mut sock = app.sio(Auth::Payload(&user.token)).await;
    sock.emit("room", json!({"roomid": "room1"})).await;
    let _ = sock.inbox.next("room").await;
    (user, sock)
}

fn message(text: &str, img: &str, client_id: &str) -> Value {
    json!({"msg": text, "img": img, "roomid": "room1", "roomType": "group", "type": "text",
           "clientId": client_id})
}

fn history_texts(reply: &Value, list: &Value) -> Vec<String> {
    let _ = reply;
    list.as_array()
        .unwrap()
        .iter()
        .map(|m| m["msg"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn every_admin_path_answers_403_to_anyone_who_is_not_an_admin() {
    let app = TestApp::spawn().await;
    let member = app.signup("member").await;
    let author = app.signup("author").await;
    let id = app.seed_message(&author, "room1", "keep me").await;
    let paths = [
        (reqwest::Method::DELETE, format!("/api/admin/messages/{id}")),
        (reqwest::Method::GET, "/api/admin/audit".to_owned()),
        (reqwest::Method::GET, "/api/admin/nothing/here".to_owned()),
        (reqwest::Method::POST, format!("/api/admin/messages/{id}")),
    ];
    for token in [None, Some(member.token.as_str()), Some("not-a-token")] {
        for (method, path) in &paths {
            let (status, reply) = admin_call(&app, method.clone(), path, token, None).await;
            assert_eq!(status, 403, "{method} {path} with {token:?}: {reply}");
            assert_eq!(reply["errno"], 1);
            assert_eq!(reply["code"], "forbidden");
        }
    }
    // Nothing changed.
    let (_, history) = app
        .get_v3("/api/message/v2/history?roomid=room1", Some(&member.token))
        .await;
    assert_eq!(history["data"]["data"][0]["msg"], "keep me");

    // An admin gets 404 for what does not exist.
    make_admin(&app, "member").await;
    let (status, reply) = admin_call(
        &app,
        reqwest::Method::GET,
        "/api/admin/nothing/here",
        Some(&member.token),
        None,
    )
    .await;
    assert_eq!((status, reply["code"].as_str()), (404, Some("not_found")));
}

#[tokio::test]
async fn the_admin_command_grants_and_revokes_while_the_server_runs() {
    let app = TestApp::spawn().await;
    let carol = app.signup("carol").await;
    let url = app.state.settings.store.database_url.expose().to_owned();
    let admin = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_chatroom"))
            .args(["admin"])
            .args(args)
            .args(["--database-url", &url])
            .arg("--data-dir")
            .arg(app.dir.path())
            .env_remove("DATABASE_URL")
            .output()
            .unwrap()
    };
    let get_audit = || {
        admin_call(
            &app,
            reqwest::Method::GET,
            "/api/admin/audit",
            Some(&carol.token),
            None,
        )
    };

    assert_eq!(get_audit().await.0, 403);
    let out = admin(&["grant", "carol"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("carol"));
    // Her next request, with the token she already had, is an admin's.
    let (status, reply) = get_audit().await;
    assert_eq!(status, 200, "{reply}");
    let entry = &reply["data"]["entries"][0];
    assert_eq!(
        (
            entry["actor"].as_str(),
            entry["action"].as_str(),
            entry["target"].as_str()
        ),
        (Some("console"), Some("grant"), Some("carol"))
    );

    let out = admin(&["grant", "nobody-by-this-name"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("nobody-by-this-name"), "{stderr}");

    let out = admin(&["revoke", "carol"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(get_audit().await.0, 403);
}

async fn upload_picture(app: &TestApp, token: &str) -> String {
    let form = Form::new().part(
        "file",
        Part::bytes(images::png())
            .file_name("p.png")
            .mime_str("image/png")
            .unwrap(),
    );
    let (status, reply) = read(
        app.post("/api/file/uploadimg")
            .header("authorization", bearer(Some(token)))
            .multipart(form)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, reply["errno"].as_i64()), (200, Some(0)), "{reply}");
    reply["data"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn an_admin_removes_a_message_from_every_history_and_every_socket_hears_it() {
    let app = TestApp::spawn().await;
    let (alice, mut a) = in_room1(&app, "alice").await;
    let boss = app.signup("boss").await;
    make_admin(&app, "boss").await;
    let legacy = app.register_legacy("old@example.com").await;
    let mut old = Eio3::connect(&app, &format!("api_token={}", legacy.token)).await;
    old.emit("room", json!({"roomid": "1", "api_token": legacy.token}))
        .await;
    let _ = old.inbox.next("room").await;

    let picture = upload_picture(&app, &alice.token).await;
    let files_before = app.upload_files().len();
    let kept = a.ack("message", message("stays", "", "c-1")).await["id"]
        .as_i64()
        .unwrap();
    let ack = a.ack("message", message("", &picture, "c-2")).await;
    let id = ack["id"].as_i64().unwrap();
    for _ in 0..2 {
        let _ = a.inbox.next("message").await;
        let _ = old.inbox.next("message").await;
    }

    let (status, reply) = admin_call(
        &app,
        reqwest::Method::DELETE,
        &format!("/api/admin/messages/{id}"),
        Some(&boss.token),
        Some(json!({"reason": "spam"})),
    )
    .await;
    assert_eq!((status, reply["errno"].as_i64()), (200, Some(0)), "{reply}");
    assert_eq!(reply["data"]["already"], false);

    let heard = a.inbox.next("messageRemoved").await;
    assert_eq!(heard, json!({"id": id, "roomid": "room1", "by": "admin"}));
    let heard = old.inbox.next("messageRemoved").await;
    assert_eq!(heard, json!({"id": id, "roomid": 1, "by": "admin"}));

    // Gone from every history, the other message still there.
    let (_, v2) = app
        .get_v3("/api/message/v2/history?roomid=room1", Some(&alice.token))
        .await;
    let ids: Vec<String> = v2["data"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, vec![kept.to_string()], "{v2}");
    let (_, by_user) = app
        .get_v3(
            &format!("/api/message/history/byUser?selfId={}", alice.id),
            Some(&alice.token),
        )
        .await;
    assert_eq!(
        history_texts(&by_user, &by_user["data"]["room1"]),
        vec!["stays"]
    );
    let (_, laravel) = read(
        app.get("/api/history/message?roomid=1&current=1&total=0")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(laravel["data"]["total"], 1, "{laravel}");
    assert_eq!(
        history_texts(&laravel, &laravel["data"]["data"]),
        vec!["stays"]
    );
    // Its picture file is deleted.
    assert_eq!(app.upload_files().len(), files_before - 1);
    let served = app.get(&picture).send().await.unwrap();
    assert_eq!(served.status(), 404);

    // A second removal is harmless; nobody hears of it again.
    let (status, reply) = admin_call(
        &app,
        reqwest::Method::DELETE,
        &format!("/api/admin/messages/{id}"),
        Some(&boss.token),
        None,
    )
    .await;
    assert_eq!(
        (status, reply["data"]["already"].as_bool()),
        (200, Some(true))
    );
    a.inbox.nothing("messageRemoved").await;

    // Unknown ids: not_found, nothing changed, and the attempt is in the trail.
    for bad in ["999999", "abc", "-3"] {
        let (status, reply) = admin_call(
            &app,
            reqwest::Method::DELETE,
            &format!("/api/admin/messages/{bad}"),
            Some(&boss.token),
            None,
        )
        .await;
        assert_eq!(
            (status, reply["code"].as_str()),
            (404, Some("not_found")),
            "{bad}"
        );
    }
    assert_eq!(app.message_ids().await.len(), 2);
    let trail = audit(&app, &boss.token).await;
    assert_eq!(trail.len(), 4, "{trail:?}");
    assert!(trail[..3].iter().all(|e| e["refused"].is_string()));
    let done = &trail[3];
    assert_eq!(
        (
            done["actor"].as_str(),
            done["action"].as_str(),
            done["target"].as_str(),
            done["reason"].as_str()
        ),
        (
            Some("boss"),
            Some("remove"),
            Some(id.to_string().as_str()),
            Some("spam")
        )
    );
    assert!(done["refused"].is_null());

    // A client resending the removed message (same client id) does not bring it back.
    let again = a.ack("message", message("", &picture, "c-2")).await;
    assert_eq!(
        (again["ok"].as_bool(), again["code"].as_str()),
        (Some(false), Some("conflict")),
        "{again}"
    );
    assert_eq!(app.message_ids().await.len(), 2);
}

#[tokio::test]
async fn authors_recall_their_own_messages_within_the_window() {
    let app = TestApp::spawn().await;
    let (_alice, mut a) = in_room1(&app, "alice").await;
    let (_bob, mut b) = in_room1(&app, "bob").await;
    let _ = a.inbox.next("room").await;
    let id = a.ack("message", message("oops", "", "c-1")).await["id"]
        .as_i64()
        .unwrap();
    let _ = b.inbox.next("message").await;

    // Someone else's message: refused, unchanged.
    let refused = b.ack("recall", json!({"id": id})).await;
    assert_eq!(
        (refused["ok"].as_bool(), refused["code"].as_str()),
        (Some(false), Some("forbidden"))
    );
    for bad in [json!({"id": "x"}), json!({}), json!({"id": 0})] {
        let refused = a.ack("recall", bad.clone()).await;
        assert_eq!(refused["code"], "invalid", "{bad}");
    }
    let refused = a.ack("recall", json!({"id": id + 1000})).await;
    assert_eq!(refused["code"], "not_found");
    b.inbox.nothing("messageRemoved").await;

    // The v3 client holds ids as text (`_id`).
    let ok = a.ack("recall", json!({"id": id.to_string()})).await;
    assert_eq!(ok, json!({"ok": true}));
    for sock in [&mut a, &mut b] {
        assert_eq!(
            sock.inbox.next("messageRemoved").await,
            json!({"id": id, "roomid": "room1", "by": "author"})
        );
    }
    assert_eq!(
        app.count("messages WHERE removed = 'author' AND body = ''")
            .await,
        1
    );
}

#[tokio::test]
async fn a_recall_after_the_window_is_refused_and_changes_nothing() {
    let app = TestApp::spawn_with(|s| s.realtime.recall_window = Duration::from_secs(1)).await;
    let (alice, a) = in_room1(&app, "alice").await;
    let id = a.ack("message", message("late", "", "c-1")).await["id"]
        .as_i64()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let refused = a.ack("recall", json!({"id": id})).await;
    assert_eq!(
        (refused["ok"].as_bool(), refused["code"].as_str()),
        (Some(false), Some("too_late")),
        "{refused}"
    );
    assert!(!refused["error"].as_str().unwrap().is_empty());
    let (_, v2) = app
        .get_v3("/api/message/v2/history?roomid=room1", Some(&alice.token))
        .await;
    assert_eq!(v2["data"]["data"][0]["msg"], "late");
}

/// Waits (at most `wait`) until `user` has no socket left on the server.
async fn sockets_close(app: &TestApp, user: &TestUser, wait: Duration) {
    let id: i64 = user.id.parse().unwrap();
    let deadline = tokio::time::Instant::now() + wait;
    while !app.state.realtime.pusher().user_sockets(id).is_empty() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the banned user's sockets are still open after {wait:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn sign_in(app: &TestApp, name: &str, password: &str) -> Value {
    app.post_json(
        "/api/user/signin",
        &json!({"name": name, "password": password}),
    )
    .await
    .1
}

#[tokio::test]
async fn a_ban_revokes_tokens_closes_sockets_and_refuses_sign_in_until_lifted() {
    let app = TestApp::spawn().await;
    let boss = app.signup("boss").await;
    make_admin(&app, "boss").await;
    let (spammer, mut s) = in_room1(&app, "spammer").await;
    let second_tab = app.sio(Auth::Query(&spammer.token)).await;
    let old_browser = Eio3::connect(&app, &format!("token={}", spammer.token)).await;
    let ban = |name: &str, body: Value| {
        let path = format!("/api/admin/users/{name}/ban");
        let token = boss.token.clone();
        let app = &app;
        async move { admin_call(app, reqwest::Method::POST, &path, Some(&token), Some(body)).await }
    };

    let (status, reply) = ban("spammer", json!({"reason": "flooding", "minutes": 60})).await;
    assert_eq!((status, reply["errno"].as_i64()), (200, Some(0)), "{reply}");
    assert_eq!(reply["data"]["reason"], "flooding");
    assert!(reply["data"]["until"].is_string());

    // Every socket hears why, then closes within two seconds.
    let notice = s.inbox.next("notice").await;
    assert_eq!(
        (notice["event"].as_str(), notice["code"].as_str()),
        (Some("ban"), Some("forbidden"))
    );
    assert!(
        notice["msg"].as_str().unwrap().contains("flooding"),
        "{notice}"
    );
    sockets_close(&app, &spammer, Duration::from_secs(2)).await;
    // Not only their namespaces: their connections end too.
    tokio::time::timeout(Duration::from_secs(2), old_browser.closed)
        .await
        .expect("the banned user's connection ends within 2 s")
        .ok();
    drop(second_tab);
    // Their tokens are refused over HTTP and at a socket's handshake.
    let (status, _) = app.get_v3("/api/user/me", Some(&spammer.token)).await;
    assert_eq!(status, 401);
    assert!(
        app.try_sio(
            Auth::Payload(&spammer.token),
            rust_socketio::TransportType::Websocket
        )
        .await
        .is_err()
    );
    // Sign-in says so, to the right password only.
    let refused = sign_in(&app, "spammer", "secret123").await;
    assert_eq!(refused["errno"], 1);
    assert!(
        refused["msg"].as_str().unwrap().contains("封禁"),
        "{refused}"
    );
    let wrong = sign_in(&app, "spammer", "wrong-password").await;
    assert!(!wrong["msg"].as_str().unwrap().contains("封禁"), "{wrong}");
    assert_eq!(app.count("messages").await, 0);

    // Admins cannot be banned (themselves included); unknown users and bad lengths are refused.
    let member = app.signup("deputy").await;
    make_admin(&app, "deputy").await;
    for (name, body, status, code) in [
        ("boss", json!({"reason": "oops"}), 403, "forbidden"),
        ("deputy", json!({}), 403, "forbidden"),
        ("ghost", json!({}), 404, "not_found"),
        ("spammer", json!({"minutes": 0}), 400, "invalid"),
        ("spammer", json!({"minutes": -5}), 400, "invalid"),
    ] {
        let (got, reply) = ban(name, body.clone()).await;
        assert_eq!(
            (got, reply["code"].as_str()),
            (status, Some(code)),
            "{name} {body}: {reply}"
        );
    }
    let (status, _) = app.get_v3("/api/user/me", Some(&member.token)).await;
    assert_eq!(status, 200, "a refused ban changes nothing");

    // Lifted: the user signs in again; the old token stays revoked.
    let (status, reply) = admin_call(
        &app,
        reqwest::Method::DELETE,
        "/api/admin/users/spammer/ban",
        Some(&boss.token),
        None,
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    let back = sign_in(&app, "spammer", "secret123").await;
    assert_eq!(back["errno"], 0, "{back}");
    let (status, _) = app.get_v3("/api/user/me", Some(&spammer.token)).await;
    assert_eq!(status, 401);

    let trail = audit(&app, &boss.token).await;
    let actions: Vec<(&str, bool)> = trail
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["refused"].is_null()))
        .collect();
    assert_eq!(
        actions,
        vec![
            ("unban", true),
            ("ban", false),
            ("ban", false),
            ("ban", false),
            ("ban", false),
            ("ban", false),
            ("ban", true)
        ]
    );
}

#[tokio::test]
async fn a_ban_ends_by_itself() {
    use sea_orm::{ActiveModelTrait, EntityTrait, Set};
    let app = TestApp::spawn().await;
    let boss = app.signup("boss").await;
    make_admin(&app, "boss").await;
    let user = app.signup("brief").await;
    let (status, _) = admin_call(
        &app,
        reqwest::Method::POST,
        "/api/admin/users/brief/ban",
        Some(&boss.token),
        Some(json!({"minutes": 1})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(sign_in(&app, "brief", "secret123").await["errno"], 1);
    // A minute later (moved back instead of waited for).
    let id: i64 = user.id.parse().unwrap();
    let row = entity::user::Entity::find_by_id(id)
        .one(app.db())
        .await
        .unwrap()
        .unwrap();
    let mut row: entity::user::ActiveModel = row.into();
    row.banned_until = Set(Some(chrono::Utc::now() - chrono::Duration::seconds(1)));
    row.update(app.db()).await.unwrap();
    assert_eq!(sign_in(&app, "brief", "secret123").await["errno"], 0);
}

#[tokio::test]
async fn admins_create_and_archive_rooms_and_every_list_follows_live() {
    let app = TestApp::spawn().await;
    let boss = app.signup("boss").await;
    make_admin(&app, "boss").await;
    let (alice, mut a) = in_room1(&app, "alice").await;
    let legacy = app.register_legacy("old@example.com").await;
    let post = |path: &str, body: Value| {
        let (app, token, path) = (&app, boss.token.clone(), path.to_owned());
        async move { admin_call(app, reqwest::Method::POST, &path, Some(&token), Some(body)).await }
    };

    let (status, reply) = post(
        "/api/admin/rooms",
        json!({"roomid": "garden", "name": "花园 <b>"}),
    )
    .await;
    assert_eq!((status, reply["errno"].as_i64()), (200, Some(0)), "{reply}");
    let rooms = a.inbox.next("rooms").await;
    assert_eq!(
        rooms,
        json!([
            {"roomid": "room1", "name": "room1", "archived": false},
            {"roomid": "room2", "name": "room2", "archived": false},
            {"roomid": "garden", "name": "花园 &lt;b&gt;", "archived": false}
        ])
    );
    let (_, listed) = app.get_v3("/api/rooms", None).await;
    assert_eq!(listed["data"], rooms);
    let (_, by_user) = app
        .get_v3(
            &format!("/api/message/history/byUser?selfId={}", alice.id),
            Some(&alice.token),
        )
        .await;
    assert!(by_user["data"].get("garden").is_some(), "{by_user}");

    // People chat there, in both dialects (the Laravel-era client numbers it 3).
    a.emit("room", json!({"roomid": "garden"})).await;
    let ack = a
        .ack(
            "message",
            json!({"msg": "first", "img": "", "roomid": "garden", "clientId": "g-1"}),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let mut old = Eio3::connect(&app, &format!("api_token={}", legacy.token)).await;
    let ack = old
        .ack(
            "message",
            json!({"msg": "旧的", "img": "", "roomid": "3", "api_token": legacy.token}),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");

    // Clashes and bad ids are refused and change nothing.
    for (body, status, code) in [
        (
            json!({"roomid": "garden", "name": "again"}),
            409,
            "conflict",
        ),
        (json!({"roomid": "room1", "name": "again"}), 409, "conflict"),
        (json!({"roomid": "3-21", "name": "private"}), 400, "invalid"),
        (json!({"roomid": "no spaces", "name": "x"}), 400, "invalid"),
        (json!({"roomid": "blank", "name": "  "}), 400, "invalid"),
    ] {
        let (got, reply) = post("/api/admin/rooms", body.clone()).await;
        assert_eq!(
            (got, reply["code"].as_str()),
            (status, Some(code)),
            "{body}: {reply}"
        );
    }
    let (_, listed) = app.get_v3("/api/rooms", None).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 3);
    a.inbox.nothing("rooms").await;

    // Archived: the history stays readable, new messages are refused, the list follows.
    let (status, reply) = admin_call(
        &app,
        reqwest::Method::DELETE,
        "/api/admin/rooms/garden",
        Some(&boss.token),
        None,
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    let rooms = a.inbox.next("rooms").await;
    assert_eq!(
        rooms[2],
        json!({"roomid": "garden", "name": "花园 &lt;b&gt;", "archived": true})
    );
    let refused = a
        .ack(
            "message",
            json!({"msg": "late", "img": "", "roomid": "garden", "clientId": "g-2"}),
        )
        .await;
    assert_eq!(
        (refused["ok"].as_bool(), refused["code"].as_str()),
        (Some(false), Some("forbidden")),
        "{refused}"
    );
    let (_, history) = app
        .get_v3("/api/message/v2/history?roomid=garden", Some(&alice.token))
        .await;
    let texts: Vec<&str> = history["data"]["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["msg"].as_str().unwrap())
        .collect();
    assert_eq!(texts, vec!["first", "旧的"]);
    let (_, by_user) = app
        .get_v3(
            &format!("/api/message/history/byUser?selfId={}", alice.id),
            Some(&alice.token),
        )
        .await;
    assert!(by_user["data"].get("garden").is_none(), "{by_user}");

    // A second archive is harmless; unknown rooms are not found; the last open room stays.
    let delete = |path: &str| {
        let (app, token, path) = (&app, boss.token.clone(), path.to_owned());
        async move { admin_call(app, reqwest::Method::DELETE, &path, Some(&token), None).await }
    };
    assert_eq!(delete("/api/admin/rooms/garden").await.0, 200);
    assert_eq!(
        delete("/api/admin/rooms/nowhere").await.1["code"],
        "not_found"
    );
    assert_eq!(delete("/api/admin/rooms/room2").await.0, 200);
    let (status, reply) = delete("/api/admin/rooms/room1").await;
    assert_eq!(
        (status, reply["code"].as_str()),
        (409, Some("conflict")),
        "{reply}"
    );
    let (_, listed) = app.get_v3("/api/rooms", None).await;
    assert_eq!(
        listed["data"][0],
        json!({"roomid": "room1", "name": "room1", "archived": false})
    );

    let trail = audit(&app, &boss.token).await;
    let actions: Vec<&str> = trail
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions.iter().filter(|a| **a == "create_room").count(), 6);
    assert_eq!(actions.iter().filter(|a| **a == "archive_room").count(), 5);
}
