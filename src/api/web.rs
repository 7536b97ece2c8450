//! The web client's pages: chatroom's own, or the bundle given with `--static-dir`.

use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};

use crate::state::AppState;

/// chatroom's own web client page (a placeholder until the frontend lands).
const OWN_INDEX: &str = include_str!("../../frontend/index.html");
/// The avatar given to users who did not choose one.
const DEFAULT_AVATAR: &str = include_str!("../../frontend/avatar.svg");

/// `GET /`, `/index.html` and `/debug`: the client's index page. `/debug` exists because the v3
/// production bundle connects to this server only when `debug` appears in the page URL; served without
/// a trailing slash, its relative `static/…` links still resolve to `/static/…`.
pub async fn index(State(state): State<AppState>) -> Response {
    let Some(dir) = &state.settings.static_dir else {
        return Html(OWN_INDEX).into_response();
    };
    match tokio::fs::read(dir.join("index.html")).await {
        Ok(page) => (
            [
                (CONTENT_TYPE, "text/html; charset=utf-8"),
                (CACHE_CONTROL, "no-cache"),
            ],
            page,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, dir = %dir.display(), "the static dir has no readable index.html");
            (
                StatusCode::NOT_FOUND,
                "index.html not found in the static dir",
            )
                .into_response()
        }
    }
}

/// `GET /avatar/default.svg`.
pub async fn default_avatar() -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, HeaderValue::from_static("image/svg+xml")),
            (
                CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=86400"),
            ),
        ],
        DEFAULT_AVATAR,
    )
}
