//! Defect 7 (U2): a body announced over its route's limit is refused at once, before it is read, in
//! the client's envelope; a slow body over the limit does not hold its connection; nothing is left
//! in the upload directory.

use std::time::{Duration, Instant};

use chatroom::metrics::Refusal;
use serde_json::Value;
use tokio::io::AsyncWriteExt;

use super::{connect_from, read_until_closed};
use crate::common::TestApp;

/// Sends `head` (request line and headers, ending in the blank line) and a little of the body, then
/// stalls; returns the status, the JSON body and how long the answer took.
async fn announce(app: &TestApp, head: String) -> (u16, Value, Duration) {
    let mut stream = connect_from([127, 0, 0, 1], app.addr).await;
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&[b'x'; 1024]).await.unwrap();
    let started = Instant::now();
    let reply = read_until_closed(&mut stream, Duration::from_secs(25))
        .await
        .expect("answered and closed well before the 30 s request timeout");
    let took = started.elapsed();
    let text = String::from_utf8_lossy(&reply).into_owned();
    let status = text.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
    (
        status,
        serde_json::from_str(body).unwrap_or(Value::Null),
        took,
    )
}

fn head(path: &str, length: u64, extra: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\
         Content-Type: multipart/form-data; boundary=XyZ\r\n{extra}\r\n"
    )
}

const GIGABYTE: u64 = 1 << 30;

#[tokio::test]
async fn bodies_announced_over_the_limit_are_refused_before_they_are_read() {
    let app = TestApp::spawn().await;
    let user = app.signup("big").await;
    let legacy = app.register_legacy("big@example.com").await;
    let auth = format!("Authorization: Bearer {}\r\n", user.token);
    for path in ["/api/file/uploadimg", "/api/file/avatar"] {
        let (status, reply, _) = announce(&app, head(path, GIGABYTE, &auth)).await;
        assert_eq!(status, 413, "{path}: {reply}");
        assert_eq!(reply["errno"], 1);
        assert_eq!(reply["data"], "图片不能超过 5MB");
        // The Laravel-era client (no Authorization header) gets its own envelope.
        let query = format!("{path}?api_token={}", legacy.token);
        let (status, reply, _) = announce(&app, head(&query, GIGABYTE, "")).await;
        assert_eq!(
            (status, reply),
            (
                200,
                serde_json::json!({"errno": 1, "message": "图片不能超过 5MB"})
            )
        );
    }
    // JSON endpoints: 64 KiB.
    let (status, reply, _) = announce(&app, head("/api/user/signup", 65 * 1024, "")).await;
    assert_eq!(
        (status, reply["data"].as_str()),
        (413, Some("请求内容过大"))
    );
    let (status, reply, _) = announce(&app, head("/api/login", GIGABYTE, "")).await;
    assert_eq!(
        (status, reply),
        (
            200,
            serde_json::json!({"errno": 1, "message": "请求内容过大"})
        )
    );
    assert_eq!(app.state.metrics.refusals(Refusal::BodyTooLarge), 6);
    assert!(app.upload_files().is_empty(), "{:?}", app.upload_files());
    assert_eq!(app.count("users").await, 2);
}

#[tokio::test]
async fn a_slow_chunked_body_over_the_limit_is_cut_off() {
    let app = TestApp::spawn_with(|s| s.uploads.max_bytes = 64 * 1024).await;
    let user = app.signup("trickle").await;
    let mut stream = connect_from([127, 0, 0, 1], app.addr).await;
    let head = format!(
        "POST /api/file/uploadimg HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Transfer-Encoding: chunked\r\nContent-Type: multipart/form-data; boundary=XyZ\r\n\r\n",
        user.token
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let part = "--XyZ\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.png\"\r\n\
                Content-Type: image/png\r\n\r\n";
    let mut chunks = vec![part.as_bytes().to_vec()];
    chunks.extend((0..12).map(|_| vec![0u8; 16 * 1024]));
    let started = Instant::now();
    let send = async {
        for chunk in chunks {
            let framed = [
                format!("{:x}\r\n", chunk.len()).into_bytes(),
                chunk,
                b"\r\n".to_vec(),
            ]
            .concat();
            if stream.write_all(&framed).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // ...and then the client stalls, never finishing the body.
    };
    send.await;
    let reply = read_until_closed(&mut stream, Duration::from_secs(25))
        .await
        .expect("answered without waiting for the request timeout");
    let text = String::from_utf8_lossy(&reply);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("图片不能超过 64KB"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(25));
    assert!(app.upload_files().is_empty(), "{:?}", app.upload_files());
}
