//! Issue 20 item 1: numbers a client sends that become SQL offsets are clamped before they reach the
//! database (a page number of 2^62 used to panic in sea-query's binder and reset the connection), and
//! a panic anywhere in a request is answered `500` in every client's envelope and counted.

use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;
use chatroom::metrics::Metrics;
use serde_json::{Value, json};

use crate::common::TestApp;

async fn legacy_history(app: &TestApp, query: &str) -> (u16, Value) {
    let response = app
        .get(&format!("/api/history/message?{query}"))
        .send()
        .await
        .expect("the server answers (no reset)");
    crate::common::read(response).await
}

/// Page numbers of any size, on the Laravel-era history (both databases: the PostgreSQL pass runs
/// this too): past the last page is an empty page; nonsense is the client's usual refusal; the room
/// still reads.
#[tokio::test]
async fn huge_page_numbers_read_as_empty_pages() {
    let app = TestApp::spawn().await;
    let user = app.register_legacy("pages@example.com").await;
    for i in 0..3 {
        app.seed_message(&user, "room1", &format!("m{i}")).await;
    }
    for current in [
        "461168601842738792",
        "9223372036854775807",
        "18446744073709551615",
        "2",
    ] {
        for total in ["0", "3", "18446744073709551615", "-1"] {
            let query = format!("roomid=1&current={current}&total={total}");
            let (status, reply) = legacy_history(&app, &query).await;
            assert_eq!(status, 200, "{query}: {reply}");
            assert_eq!(reply["data"]["errno"], 0, "{query}: {reply}");
            assert_eq!(reply["data"]["data"], json!([]), "{query}");
            assert_eq!(reply["data"]["total"], 3, "{query}");
        }
    }
    for current in [
        "18446744073709551616",
        "99999999999999999999999",
        "1e30",
        "-3",
    ] {
        let (status, reply) = legacy_history(&app, &format!("roomid=1&current={current}")).await;
        assert_eq!(status, 200, "{current}");
        assert_eq!(reply["data"]["errno"], 1, "{current}: {reply}");
        assert_eq!(reply["data"]["message"], "无效的页码");
    }
    // The v3 cursor too: out of range is a refusal, the largest id an ordinary (full) page.
    let (_, reply) = app
        .get_v3(
            "/api/message/v2/history?roomid=room1&msgid=9223372036854775808",
            None,
        )
        .await;
    assert_eq!(reply["errno"], 1, "{reply}");
    let (_, reply) = app
        .get_v3(
            "/api/message/v2/history?roomid=room1&msgid=9223372036854775807",
            None,
        )
        .await;
    assert_eq!(
        reply["data"]["data"].as_array().map(Vec::len),
        Some(3),
        "{reply}"
    );
    let (_, page) = legacy_history(&app, "roomid=1&current=1&total=0").await;
    assert_eq!(page["data"]["data"].as_array().map(Vec::len), Some(3));
    assert_eq!(app.state.metrics.http.panics.get(), 0);
}

async fn boom() -> &'static str {
    panic!("a bug")
}

/// The layer chatroom mounts in front of every route (`app::catch_panics`), around a handler that
/// panics, over real HTTP: the client gets a `500` it can read in either envelope, the connection
/// serves the next request, and the panic is counted in `/metrics`.
#[tokio::test]
async fn a_panicking_request_is_answered_500_and_counted() {
    let metrics = Metrics::new();
    let app = Router::new()
        .route("/boom", get(boom))
        .route("/fine", get(|| async { "fine" }))
        .layer(chatroom::app::catch_panics(&metrics));
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let http = reqwest::Client::new();
    for _ in 0..2 {
        let response = http
            .get(format!("http://{addr}/boom"))
            .send()
            .await
            .unwrap();
        let (status, body) = crate::common::read(response).await;
        assert_eq!(status, 500);
        assert_eq!(body["errno"], 1);
        assert_eq!(body["data"], "服务器异常");
        assert_eq!(body["message"], "服务器异常");
        assert!(!body.to_string().contains("a bug"), "{body}");
    }
    let fine = http
        .get(format!("http://{addr}/fine"))
        .send()
        .await
        .unwrap();
    assert_eq!(fine.status(), 200);
    assert_eq!(metrics.http.panics.get(), 2);
    assert!(metrics.render().contains("chatroom_http_panics_total 2"));
}
