//! Request bodies announced larger than their route accepts are refused before they are read.
//!
//! axum's body limits stop reading once a body passes them, but a client that announces a 1 GB body
//! and sends it slowly would still hold its connection until the request timeout. So a
//! `Content-Length` over the route's limit is answered at once, in the client's envelope (`413` for
//! the v3 client, `200 {errno: 1}` for the Laravel-era one, which ignores other statuses), with
//! `Connection: close`: the body is never read and the connection is not reused. Bodies without a
//! length (chunked) are cut off by the body limit as soon as they pass it.

use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, CONNECTION, CONTENT_LENGTH, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;

use super::envelope::{Envelope, Legacy, V3};
use crate::error::AppError;
use crate::metrics::Refusal;
use crate::routes::api::BODY_LIMIT;
use crate::state::AppState;

/// Paths of the Laravel-era client (its envelope; see `routes/api.rs`).
const LEGACY_PATHS: &[&str] = &[
    "/api/register",
    "/api/login",
    "/api/logout",
    "/api/user",
    "/api/history/message",
    "/api/robot",
];

/// Middleware for `/api/*`: see the module docs.
pub async fn announced_length(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    if !path.starts_with("/api/") {
        return next.run(req).await;
    }
    let upload = path.starts_with("/api/file/");
    let limit = if upload {
        crate::routes::api::upload_body_limit(state.settings.uploads.max_bytes)
    } else {
        BODY_LIMIT
    };
    let announced = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if announced.is_none_or(|len| len <= limit as u64) {
        return next.run(req).await;
    }
    state.metrics.refused(Refusal::BodyTooLarge);
    tracing::debug!(
        path,
        announced,
        limit,
        "refused a body announced over the limit"
    );
    let err = if upload {
        state.uploads.too_large()
    } else {
        AppError::TooLarge("请求内容过大".into())
    };
    // Uploads: the v3 client always sends `Authorization`, the Laravel-era one never does.
    let legacy = if upload {
        !req.headers().contains_key(AUTHORIZATION)
    } else {
        LEGACY_PATHS.contains(&path)
    };
    let mut response = if legacy {
        Legacy::reject(&err)
    } else {
        V3::reject(&err)
    };
    response
        .headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    response
}
