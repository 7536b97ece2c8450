//! Access rows (reliability.md §4.4) that had a test on one side only: private rooms over the socket
//! (A7; HTTP is `api::messages::private_history_is_for_its_two_users_only`) and a short token secret
//! (A13; the parsing is unit-tested in `src/config.rs`, here the real binary refuses to start).

use std::process::{Command, Stdio};

use serde_json::json;

use crate::common::TestApp;
use crate::common::socket::Auth;

/// A7: a third user, and a socket without a user, can neither join nor replay another pair's private
/// room over the socket; the refusal is in the acknowledgement, and nothing of the room reaches them.
#[tokio::test]
async fn other_peoples_private_rooms_stay_closed_over_the_socket() {
    let app = TestApp::spawn().await;
    let alice = app.signup("alice").await;
    let bob = app.signup("bob").await;
    let carol = app.signup("carol").await;
    // Private room ids put the greater id first, comparing them as the web client does (as strings).
    let (x, y) = (&alice.id, &bob.id);
    let room = if x > y {
        format!("{x}-{y}")
    } else {
        format!("{y}-{x}")
    };
    app.seed_message(&alice, &room, "just between us").await;

    let mut own = app.sio(Auth::Payload(&bob.token)).await;
    let reply = own.ack("sync", json!({"rooms": {&room: 0}})).await;
    assert_eq!(reply["ok"], true, "{reply}");
    assert_eq!(
        reply["rooms"][&room]["messages"][0]["msg"],
        "just between us"
    );

    let mut intruder = app.sio(Auth::Payload(&carol.token)).await;
    let mut anonymous = app.sio(Auth::None).await;
    for sock in [&mut intruder, &mut anonymous] {
        let reply = sock.ack("sync", json!({"rooms": {&room: 0}})).await;
        assert_eq!(reply["rooms"][&room]["code"], "forbidden", "{reply}");
        assert!(reply["rooms"][&room].get("messages").is_none(), "{reply}");
        let reply = sock.ack("room", json!({"roomid": &room})).await;
        assert_eq!(reply["ok"], false, "{reply}");
        let sent = sock
            .ack(
                "message",
                json!({"msg": "let me in", "roomid": &room, "clientId": "in-1"}),
            )
            .await;
        assert_eq!(sent["ok"], false, "{sent}");
    }
    // The pair's next message reaches neither.
    let mut sender = app.sio(Auth::Payload(&alice.token)).await;
    let ack = sender
        .ack(
            "message",
            json!({"msg": "still private", "roomid": &room, "clientId": "p-2"}),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(own.inbox.next("message").await["msg"], "still private");
    intruder.inbox.nothing("message").await;
    anonymous.inbox.nothing("message").await;
    let _ = sender.inbox.next("message").await;
    assert_eq!(app.count("messages").await, 2);
}

/// A13: the binary refuses to start with a token secret shorter than 32 bytes, says why, and does not
/// print the secret.
#[test]
fn the_binary_refuses_a_short_token_secret() {
    let data = tempfile::tempdir().unwrap();
    let secret = "short-secret-4b7e";
    let out = Command::new(env!("CARGO_BIN_EXE_chatroom"))
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--token-secret",
            secret,
        ])
        .arg("--data-dir")
        .arg(data.path())
        .env_remove("DATABASE_URL")
        .env_remove("CHATROOM_TOKEN_SECRET")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "started with a short secret");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("at least 32 bytes"), "{text}");
    assert!(!text.contains(secret), "{text}");
}
