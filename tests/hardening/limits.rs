//! Limits (D5; issue 9 defect 6) that were tested on one path only: the Laravel-era picture upload,
//! which posts a message to its room, draws on the same per-user message budget as the user's
//! sockets, and a refused picture is answered in the client's envelope and leaves nothing behind; and
//! the sockets one user may hold (D6), refused at the handshake and when a payload token would bind one.

use std::time::Instant;

use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

use rust_socketio::TransportType;

use crate::common::socket::{Auth, Eio3};
use crate::common::{TestApp, TestUser, images, read};

/// Part of the refusal a user over `--max-sockets-per-user` is shown.
const TOO_MANY: &str = "连接过多";

/// A Laravel-era picture message: `uploadimg` with `api_token` and `roomid` (room 1) in the form.
async fn picture(app: &TestApp, user: &TestUser) -> (u16, Value) {
    let form = Form::new()
        .part(
            "file",
            Part::bytes(images::png())
                .file_name("p.png")
                .mime_str("image/png")
                .unwrap(),
        )
        .text("api_token", user.token.clone())
        .text("roomid", "1");
    read(
        app.post("/api/file/uploadimg")
            .multipart(form)
            .send()
            .await
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn picture_uploads_share_the_senders_message_rate() {
    // One message a second per user, in bursts of two.
    let app = TestApp::spawn_with(|s| s.realtime.socket_events_per_second = 1).await;
    let uploader = app.register_legacy("pics@example.com").await;
    let bystander = app.signup("bystander").await;
    let mut watcher = Eio3::connect(&app, &format!("token={}", bystander.token)).await;
    watcher.emit("room", json!({"roomid": "room1"})).await;
    let _ = watcher.inbox.next("room").await;

    // Twelve at once, as a script would send them.
    let started = Instant::now();
    let replies = futures_util::future::join_all((0..12).map(|_| picture(&app, &uploader))).await;
    let (mut stored, mut refused) = (0u32, 0u32);
    for (status, reply) in replies {
        assert_eq!(status, 200, "{reply}");
        if reply["errno"] == 0 {
            stored += 1;
        } else {
            assert_eq!(reply["errno"], 1, "{reply}");
            assert!(!reply["message"].as_str().unwrap().is_empty(), "{reply}");
            refused += 1;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    // A burst of two, then one a second (and one more for a refill caught mid-way).
    let allowed = 2.0 + elapsed + 1.0;
    assert!(
        f64::from(stored) <= allowed,
        "{stored} pictures posted in {elapsed:.1} s"
    );
    assert!(refused > 0);
    assert_eq!(i64::from(stored), app.count("messages").await);
    assert_eq!(
        app.upload_files().len(),
        stored as usize,
        "a refused picture leaves no file"
    );
    // Everyone else posts as usual meanwhile.
    let ack = watcher
        .ack(
            "message",
            json!({"msg": "unaffected", "img": "", "roomid": "room1", "clientId": "b-1"}),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
}

#[tokio::test]
async fn one_user_gets_a_bounded_number_of_sockets_and_others_are_unaffected() {
    let app = TestApp::spawn_with(|s| s.realtime.max_sockets_per_user = 3).await;
    let alice = app.signup("alice").await;
    let bob = app.signup("bob").await;
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(app.sio(Auth::Payload(&alice.token)).await);
    }
    // The fourth handshake with her token is refused, on either transport, with a reason.
    for transport in [TransportType::Websocket, TransportType::Polling] {
        let error = app
            .try_sio(Auth::Payload(&alice.token), transport)
            .await
            .err()
            .expect("a fourth socket of one user is refused");
        assert!(error.contains(TOO_MANY), "{error}");
    }
    // So is binding an anonymous socket to her with a payload token (the Laravel-era client's way).
    let legacy = app.register_legacy("carol@example.com").await;
    let mut carols = Vec::new();
    for _ in 0..3 {
        carols.push(Eio3::connect(&app, &format!("api_token={}", legacy.token)).await);
    }
    let mut anonymous = Eio3::connect(&app, "api_token=false").await;
    let refused = anonymous
        .ack("room", json!({"roomid": "1", "api_token": legacy.token}))
        .await;
    assert_eq!(refused["code"], "over_quota", "{refused}");
    assert!(
        refused["error"].as_str().unwrap().contains(TOO_MANY),
        "{refused}"
    );
    // Someone else connects as usual meanwhile.
    let bobs = app.sio(Auth::Payload(&bob.token)).await;
    drop(bobs);
    // When one of her sockets leaves, she may open another.
    let leaving = open.pop().unwrap();
    leaving.client.disconnect().await.unwrap();
    let mut again = None;
    for _ in 0..50 {
        if let Ok(s) = app
            .try_sio(Auth::Payload(&alice.token), TransportType::Websocket)
            .await
        {
            again = Some(s);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(again.is_some(), "a freed slot can be used again");
}
