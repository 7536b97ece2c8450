//! `/metrics` (O2, HTTP side) and who may read it; the client address behind trusted proxies only.

use serde_json::json;
use tokio::io::AsyncWriteExt;

use super::{connect_from, raw_request};
use crate::common::TestApp;

fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

#[tokio::test]
async fn metrics_are_prometheus_text_for_local_scrapers_and_token_holders() {
    let app = TestApp::spawn_with(|s| s.metrics_token = Some("scrape-me-0123456789".into())).await;
    app.get("/healthz").send().await.unwrap();
    app.get("/no/such/page").send().await.unwrap();
    let response = app.get("/metrics").send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = response.text().await.unwrap();
    assert!(text.contains("# TYPE chatroom_http_requests_total counter"));
    assert!(value(&text, "chatroom_http_requests_total{class=\"2xx\"}") >= 1.0);
    assert!(value(&text, "chatroom_http_requests_total{class=\"4xx\"}") >= 1.0);
    assert!(value(&text, "chatroom_http_connections_open") >= 1.0);
    assert!(text.contains("chatroom_refusals_total{reason=\"signin_account\"} 0"));
    assert!(text.contains("process_max_fds "));

    // Relayed by a proxy on the same host: not local any more.
    let relayed = app
        .get("/metrics")
        .header("x-forwarded-for", "203.0.113.5")
        .send()
        .await
        .unwrap();
    assert_eq!(relayed.status(), 403);
    // A token opens it from anywhere; a wrong one does not.
    let with_token = app
        .get("/metrics")
        .header("x-forwarded-for", "203.0.113.5")
        .bearer_auth("scrape-me-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(with_token.status(), 200);
    let wrong = app
        .get("/metrics")
        .header("x-real-ip", "203.0.113.5")
        .bearer_auth("scrape-me-0123456789x")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 403);
}

#[tokio::test]
async fn forwarded_addresses_count_only_through_trusted_proxies() {
    // No trusted proxy: a client cannot dodge the per-IP sign-up limit by naming other addresses.
    let app = TestApp::spawn_with(|s| s.signup_per_hour = 2).await;
    let mut refused = 0;
    for i in 0..4 {
        let (_, reply) = read_signup(&app, &format!("spoof{i}"), &format!("198.51.100.{i}")).await;
        if reply["errno"] == 1 {
            assert_eq!(reply["data"], "操作过于频繁，请稍后再试");
            refused += 1;
        }
    }
    assert_eq!(
        refused, 2,
        "X-Forwarded-For from an untrusted peer is ignored"
    );
    assert_eq!(app.count("users").await, 2);

    // Behind a trusted proxy (here: loopback), each forwarded client has its own budget...
    let app = TestApp::spawn_with(|s| {
        s.signup_per_hour = 2;
        s.trusted_proxies =
            chatroom::config::TrustedProxies::parse(&["127.0.0.0/8".to_owned()]).unwrap();
        s.max_connections_per_ip = 3;
    })
    .await;
    for i in 0..4 {
        let (_, reply) = read_signup(&app, &format!("fwd{i}"), &format!("198.51.100.{i}")).await;
        assert_eq!(reply["errno"], 0, "{reply}");
    }
    // ...and the proxy itself is not held to the per-address connection cap.
    let mut held = Vec::new();
    for _ in 0..6 {
        let mut c = connect_from([127, 0, 0, 9], app.addr).await;
        c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        held.push(c);
    }
    let (status, _) = raw_request(
        &mut connect_from([127, 0, 0, 9], app.addr).await,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 200);
}

async fn read_signup(app: &TestApp, name: &str, forwarded: &str) -> (u16, serde_json::Value) {
    crate::common::read(
        app.post("/api/user/signup")
            .header("x-forwarded-for", forwarded)
            .json(&json!({"name": name, "password": "secret123"}))
            .send()
            .await
            .unwrap(),
    )
    .await
}
