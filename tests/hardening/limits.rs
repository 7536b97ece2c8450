//! Limits (D5; issue 9 defect 6) that were tested on one path only: the Laravel-era picture upload,
//! which posts a message to its room, draws on the same per-user message budget as the user's
//! sockets, and a refused picture is answered in the client's envelope and leaves nothing behind.

use std::time::Instant;

use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

use crate::common::socket::Eio3;
use crate::common::{TestApp, TestUser, images, read};

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
    let app = TestApp::spawn_with(|s| s.socket_events_per_second = 1).await;
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
