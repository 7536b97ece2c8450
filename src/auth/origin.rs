//! Same-site checks: which browser pages may act on this server.
//!
//! A request whose `Origin` is neither this server nor a configured CORS origin comes from a page of
//! another site: a forged form, a script, or a cross-site WebSocket handshake riding on the auth
//! cookie. Both transports refuse it with [`refusal`]. Requests without an `Origin` (not sent by a
//! browser page) pass.

use axum::Json;
use axum::http::StatusCode;
use axum::http::header::{self, HeaderMap, HeaderName};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Whether a request may come from where its `Origin` says: no `Origin`, this server itself, or one
/// of `cors_origins`.
pub fn allowed(headers: &HeaderMap, cors_origins: &[String]) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else {
        return true;
    };
    // Behind a proxy that rewrites `Host`, the original host arrives as `X-Forwarded-Host`. Trusting it
    // here is safe: a page of another site cannot add that header to a browser request.
    let origin_host = origin.split_once("://").map(|(_, rest)| rest);
    let same_site = [header::HOST, HeaderName::from_static("x-forwarded-host")]
        .iter()
        .any(|name| {
            let host = headers.get(name).and_then(|h| h.to_str().ok());
            host.zip(origin_host)
                .is_some_and(|(host, origin)| origin.eq_ignore_ascii_case(host.trim()))
        });
    same_site || cors_origins.iter().any(|o| o == origin)
}

/// The refusal of a cross-site request, before it is known which client sent it: `403` with the
/// fields both clients' envelopes read.
pub fn refusal() -> Response {
    let message = "来源不被允许";
    let body = json!({ "errno": 1, "data": message, "msg": message, "message": message });
    (StatusCode::FORBIDDEN, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn same_site_configured_and_non_browser_requests_pass() {
        let cors = vec!["http://localhost:9099".to_owned()];
        assert!(allowed(&headers(&[]), &cors));
        assert!(allowed(
            &headers(&[("origin", "http://chat.example"), ("host", "chat.example")]),
            &cors
        ));
        assert!(allowed(
            &headers(&[
                ("origin", "https://chat.example"),
                ("host", "10.0.0.2:9090"),
                ("x-forwarded-host", "chat.example")
            ]),
            &cors
        ));
        assert!(allowed(
            &headers(&[("origin", "http://localhost:9099"), ("host", "x")]),
            &cors
        ));
        assert!(!allowed(
            &headers(&[("origin", "https://evil.example"), ("host", "chat.example")]),
            &cors
        ));
    }
}
