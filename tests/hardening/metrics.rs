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
    let app =
        TestApp::spawn_with(|s| s.http.metrics_token = Some("scrape-me-0123456789".into())).await;
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
    if app.database_url.starts_with("sqlite") {
        // The WAL holds the migrations at least; its limit is the default, 64 MiB.
        assert!(value(&text, "chatroom_sqlite_wal_bytes") > 0.0);
        assert_eq!(
            value(&text, "chatroom_sqlite_wal_limit_bytes"),
            67_108_864.0
        );
    } else {
        assert!(!text.contains("chatroom_sqlite_wal"), "{text}");
    }

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

/// Every series of one node's `/metrics` (a node of a cluster adds `chatroom_cluster_*`), without
/// values: `# HELP` and `# TYPE` lines, names, labels and histogram buckets, as dashboards knew them
/// before `prometheus-client` kept and wrote them.
const SERIES: &str = r#"# HELP chatroom_http_requests_total HTTP requests answered, by status class.
# TYPE chatroom_http_requests_total counter
chatroom_http_requests_total{class="1xx"}
chatroom_http_requests_total{class="2xx"}
chatroom_http_requests_total{class="3xx"}
chatroom_http_requests_total{class="4xx"}
chatroom_http_requests_total{class="5xx"}
# HELP chatroom_http_connections_open TCP connections open now (HTTP, long-polling and WebSocket).
# TYPE chatroom_http_connections_open gauge
chatroom_http_connections_open
# HELP chatroom_http_connections_accepted_total TCP connections accepted and served.
# TYPE chatroom_http_connections_accepted_total counter
chatroom_http_connections_accepted_total
# HELP chatroom_http_panics_total Requests whose handling panicked; each was answered 500 and logged.
# TYPE chatroom_http_panics_total counter
chatroom_http_panics_total
# HELP chatroom_refusals_total Requests and connections refused by a limit, by reason.
# TYPE chatroom_refusals_total counter
chatroom_refusals_total{reason="signin_account"}
chatroom_refusals_total{reason="signin_ip"}
chatroom_refusals_total{reason="upload_rate"}
chatroom_refusals_total{reason="upload_storage"}
chatroom_refusals_total{reason="body_too_large"}
chatroom_refusals_total{reason="connection_cap"}
chatroom_refusals_total{reason="connection_ip_cap"}
chatroom_refusals_total{reason="header_timeout"}
chatroom_refusals_total{reason="message_rate"}
chatroom_refusals_total{reason="event_rate"}
chatroom_refusals_total{reason="socket_inbox_full"}
chatroom_refusals_total{reason="message_queue_full"}
chatroom_refusals_total{reason="shutting_down"}
chatroom_refusals_total{reason="store_unavailable"}
# HELP chatroom_socket_connections Sockets connected now, by Engine.IO protocol version.
# TYPE chatroom_socket_connections gauge
chatroom_socket_connections{eio="3"}
chatroom_socket_connections{eio="4"}
# HELP chatroom_socket_events_total Events received from sockets.
# TYPE chatroom_socket_events_total counter
chatroom_socket_events_total
# HELP chatroom_messages_stored_total Chat messages stored (resends of stored messages not counted).
# TYPE chatroom_messages_stored_total counter
chatroom_messages_stored_total
# HELP chatroom_message_queue_depth Messages between submission and delivery.
# TYPE chatroom_message_queue_depth gauge
chatroom_message_queue_depth
# HELP chatroom_writer_batch_messages Messages per commit of the message writer.
# TYPE chatroom_writer_batch_messages histogram
chatroom_writer_batch_messages_bucket{le="1"}
chatroom_writer_batch_messages_bucket{le="2"}
chatroom_writer_batch_messages_bucket{le="4"}
chatroom_writer_batch_messages_bucket{le="8"}
chatroom_writer_batch_messages_bucket{le="16"}
chatroom_writer_batch_messages_bucket{le="32"}
chatroom_writer_batch_messages_bucket{le="64"}
chatroom_writer_batch_messages_bucket{le="128"}
chatroom_writer_batch_messages_bucket{le="256"}
chatroom_writer_batch_messages_bucket{le="512"}
chatroom_writer_batch_messages_bucket{le="1024"}
chatroom_writer_batch_messages_bucket{le="4096"}
chatroom_writer_batch_messages_bucket{le="+Inf"}
chatroom_writer_batch_messages_sum
chatroom_writer_batch_messages_count
# HELP chatroom_writer_commit_seconds Time to commit one batch of messages.
# TYPE chatroom_writer_commit_seconds histogram
chatroom_writer_commit_seconds_bucket{le="0.0005"}
chatroom_writer_commit_seconds_bucket{le="0.001"}
chatroom_writer_commit_seconds_bucket{le="0.0025"}
chatroom_writer_commit_seconds_bucket{le="0.005"}
chatroom_writer_commit_seconds_bucket{le="0.01"}
chatroom_writer_commit_seconds_bucket{le="0.025"}
chatroom_writer_commit_seconds_bucket{le="0.05"}
chatroom_writer_commit_seconds_bucket{le="0.1"}
chatroom_writer_commit_seconds_bucket{le="0.25"}
chatroom_writer_commit_seconds_bucket{le="0.5"}
chatroom_writer_commit_seconds_bucket{le="1"}
chatroom_writer_commit_seconds_bucket{le="2.5"}
chatroom_writer_commit_seconds_bucket{le="5"}
chatroom_writer_commit_seconds_bucket{le="10"}
chatroom_writer_commit_seconds_bucket{le="+Inf"}
chatroom_writer_commit_seconds_sum
chatroom_writer_commit_seconds_count
# HELP chatroom_slow_consumer_disconnects_total Connections closed because the client stopped reading for the write timeout.
# TYPE chatroom_slow_consumer_disconnects_total counter
chatroom_slow_consumer_disconnects_total
# HELP chatroom_connections_evicted_total Connections waiting for a request's headers (new, or idle between requests) closed to make room for new ones while the connection cap was full.
# TYPE chatroom_connections_evicted_total counter
chatroom_connections_evicted_total
# HELP chatroom_signin_delayed_total Sign-in attempts slowed down because their account had too many failures from all addresses.
# TYPE chatroom_signin_delayed_total counter
chatroom_signin_delayed_total
# HELP chatroom_frames_in_progress_bytes Bytes held by WebSocket frames and polling bodies still arriving, all sockets together.
# TYPE chatroom_frames_in_progress_bytes gauge
chatroom_frames_in_progress_bytes
# HELP chatroom_frame_budget_evictions_total Frames in progress dropped (their sockets closed) to keep within the frame budget.
# TYPE chatroom_frame_budget_evictions_total counter
chatroom_frame_budget_evictions_total
# HELP process_open_fds Open file descriptors.
# TYPE process_open_fds gauge
process_open_fds
# HELP process_max_fds The open-file limit.
# TYPE process_max_fds gauge
process_max_fds
"#;

/// The series of a node whose database is a SQLite file.
const SQLITE_SERIES: &str = r#"# HELP chatroom_sqlite_wal_bytes Size of the SQLite write-ahead log file.
# TYPE chatroom_sqlite_wal_bytes gauge
chatroom_sqlite_wal_bytes
# HELP chatroom_sqlite_wal_limit_bytes Size near which the message writer starts the write-ahead log over (--wal-limit-bytes).
# TYPE chatroom_sqlite_wal_limit_bytes gauge
chatroom_sqlite_wal_limit_bytes
"#;

#[tokio::test]
async fn every_series_keeps_its_name_labels_type_and_help() {
    let app = TestApp::spawn().await;
    let text = app
        .get("/metrics")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut seen: Vec<&str> = text
        .lines()
        .map(|l| match l.rsplit_once(' ') {
            Some((series, _)) if !l.starts_with('#') => series,
            _ => l,
        })
        .collect();
    // Series in a family come in no fixed order.
    seen.sort_unstable();
    let mut expected: Vec<&str> = SERIES.lines().collect();
    if app.database_url.starts_with("sqlite") {
        expected.extend(SQLITE_SERIES.lines());
    }
    expected.sort_unstable();
    assert_eq!(seen, expected, "{text}");
}

#[tokio::test]
async fn forwarded_addresses_count_only_through_trusted_proxies() {
    // No trusted proxy: a client cannot dodge the per-IP sign-up limit by naming other addresses.
    let app = TestApp::spawn_with(|s| s.auth.signup_per_hour = 2).await;
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
        s.auth.signup_per_hour = 2;
        s.http.trusted_proxies =
            chatroom::config::TrustedProxies::parse(&["127.0.0.0/8".to_owned()]).unwrap();
        s.http.max_connections_per_ip = 3;
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
