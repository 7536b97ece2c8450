//! The web client: chatroom's own (`frontend/`, embedded at compile time), or the bundle given with
//! `--static-dir`, which replaces it entirely.
//!
//! The embedded files are the committed Vite build in `frontend/dist/`, listed by `build.rs`. Their
//! script and stylesheet names carry a content hash (`/assets/index-<hash>.js`), so they are cached for a
//! year; `index.html`, which names them, is revalidated on every load, so a new binary's client is
//! picked up at once. The client routes with the URL fragment (`/#/chat/room1`): the server never needs
//! to answer unknown paths with the page.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use axum::http::{HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

use crate::config::Settings;

/// `frontend/dist/`, as `(path relative to it, contents)`, sorted by path.
static EMBEDDED: &[(&str, &[u8])] = include!(concat!(env!("OUT_DIR"), "/web_assets.rs"));
/// The avatar given to users who did not choose one.
const DEFAULT_AVATAR: &str = include_str!("../../frontend/avatar.svg");

/// What the embedded page may load: its own scripts and styles only; pictures also from other hosts
/// (avatars chosen in the webchat clients) and from the picker (`blob:` previews); connections only to
/// this server (XHR and Socket.IO's WebSocket). Message text is rendered as text, and this keeps it so
/// should a bug ever let markup through.
const OWN_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' data: blob: http: https:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
    form-action 'self'; frame-ancestors 'none'";

/// `GET /`, `/index.html` and `/debug`: the client's index page. `/debug` exists because the v3
/// production bundle connects to this server only when `debug` appears in the page URL; served without
/// a trailing slash, its relative `static/…` links still resolve to `/static/…`.
pub async fn index(State(settings): State<Arc<Settings>>) -> Response {
    let Some(dir) = &settings.http.static_dir else {
        return embedded("index.html").unwrap_or_else(|| StatusCode::NOT_FOUND.into_response());
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

/// Any other `GET` without a `--static-dir`: a file of the embedded client (`/assets/…`,
/// `/favicon.svg`), or 404.
pub async fn own_asset(method: Method, uri: Uri) -> Response {
    let path = uri.path().trim_start_matches('/');
    if !(method == Method::GET || method == Method::HEAD) || path.is_empty() || path == "index.html"
    {
        return StatusCode::NOT_FOUND.into_response();
    }
    embedded(path).unwrap_or_else(|| StatusCode::NOT_FOUND.into_response())
}

/// The embedded file at `path` with its type and caching headers.
fn embedded(path: &str) -> Option<Response> {
    let index = EMBEDDED.binary_search_by(|(p, _)| (*p).cmp(path)).ok()?;
    let (_, body) = EMBEDDED[index];
    let cache = if path.starts_with("assets/") {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let mut response = (
        [
            (CONTENT_TYPE, HeaderValue::from_static(content_type(path))),
            (CACHE_CONTROL, HeaderValue::from_static(cache)),
        ],
        body,
    )
        .into_response();
    if path == "index.html" {
        response
            .headers_mut()
            .insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(OWN_CSP));
    }
    Some(response)
}

/// The media type of an embedded file, by its extension (only types a Vite build emits).
fn content_type(path: &str) -> &'static str {
    let ext = path.rsplit_once('.').map_or("", |(_, e)| e);
    match ext {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "ico" => "image/x-icon",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
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

#[cfg(test)]
mod tests {
    use super::{EMBEDDED, content_type};

    #[test]
    fn the_client_is_embedded_and_sorted() {
        assert!(EMBEDDED.iter().any(|(p, _)| *p == "index.html"));
        assert!(
            EMBEDDED
                .iter()
                .any(|(p, _)| p.starts_with("assets/") && p.ends_with(".js"))
        );
        assert!(EMBEDDED.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[test]
    fn types_by_extension() {
        assert_eq!(
            content_type("assets/index-1a2b.js"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type("favicon.svg"), "image/svg+xml");
        assert_eq!(content_type("LICENSE"), "application/octet-stream");
    }
}
