//! `GET /metrics`: the Prometheus exposition of [`crate::metrics`].
//!
//! Who may read it: direct requests from the loopback interface (a scraper on the same host, or an
//! operator over SSH), and anyone presenting `Authorization: Bearer <--metrics-token>`. A request
//! relayed by a proxy on the same host carries forwarding headers and is not "local".

use axum::Extension;
use axum::extract::State;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use std::sync::Arc;

use crate::config::Settings;
use crate::metrics::Metrics;
use crate::proxy::PeerAddr;

/// `GET /metrics`.
pub async fn metrics(
    State(settings): State<Arc<Settings>>,
    State(metrics): State<Arc<Metrics>>,
    peer: Option<Extension<PeerAddr>>,
    headers: HeaderMap,
) -> Response {
    let local = peer.is_some_and(|Extension(p)| p.is_local());
    let presented = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let token_ok = match (&settings.http.metrics_token, presented) {
        (Some(expected), Some(given)) => {
            same(expected.expose().as_bytes(), given.trim().as_bytes())
        }
        _ => false,
    };
    if !local && !token_ok {
        return (StatusCode::FORBIDDEN, "forbidden").into_response();
    }
    (
        [(CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
        metrics.render(),
    )
        .into_response()
}

/// Compares without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
