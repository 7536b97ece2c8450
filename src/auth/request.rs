//! Where a request carries its credentials, for both transports: the HTTP extractors and the socket
//! handshake read the same [`Parts`].
//!
//! Tokens are found in, in order: an `Authorization: Bearer` header (the v3 client sends `Bearer false`
//! when it has none), an `api_token` or `token` query field (the Laravel-era client), and the HttpOnly
//! cookie set at sign-in. The `io` cookie names the Engine.IO session of the browser's socket.

use std::borrow::Cow;

use http::header::{AUTHORIZATION, COOKIE};
use http::request::Parts;

/// Name of the HttpOnly cookie holding the token.
pub const AUTH_COOKIE: &str = "chatroom_token";
/// Name of the Engine.IO session cookie set at the socket handshake (as socket.io 1.x/2.x servers did).
pub const SESSION_COOKIE: &str = "io";

/// Whether a token field holds something that could be a token (the clients send `false`, `null`,
/// `undefined` or an empty string when they have none).
pub fn usable(token: &str) -> bool {
    !matches!(token.trim(), "" | "false" | "null" | "undefined")
}

/// The pairs of a query string, percent-decoded. The one query parser of chatroom.
pub fn query_pairs(query: &str) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    form_urlencoded::parse(query.as_bytes())
}

/// Whether the request's query string has the field `key` (with any value).
pub fn query_has(parts: &Parts, key: &str) -> bool {
    parts
        .uri
        .query()
        .is_some_and(|q| query_pairs(q).any(|(k, _)| k == key))
}

/// Picks the token from a request's parts (see the module docs for the order).
pub fn token_from_parts(parts: &Parts) -> Option<String> {
    header_token(parts)
        .or_else(|| query_token(parts))
        .or_else(|| cookie_token(parts))
}

/// The token of an `Authorization: Bearer` header.
pub fn header_token(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(|t| t.trim().to_owned())
        .filter(|t| usable(t))
}

/// The token of an `api_token` or `token` query field.
pub fn query_token(parts: &Parts) -> Option<String> {
    let query = parts.uri.query()?;
    query_pairs(query)
        .find(|(k, v)| (k == "api_token" || k == "token") && usable(v))
        .map(|(_, v)| v.into_owned())
}

/// The token of the auth cookie.
pub fn cookie_token(parts: &Parts) -> Option<String> {
    cookie(parts, AUTH_COOKIE).filter(|t| usable(t))
}

/// The Engine.IO session id of the browser's socket, if the request carries the `io` cookie.
pub fn engine_session(parts: &Parts) -> Option<String> {
    cookie(parts, SESSION_COOKIE).filter(|s| !s.is_empty())
}

fn cookie(parts: &Parts, name: &str) -> Option<String> {
    parts
        .headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            c.trim()
                .strip_prefix(name)?
                .strip_prefix('=')
                .map(str::to_owned)
        })
}

/// The `Set-Cookie` value that stores `token` for `max_age` seconds.
pub fn auth_cookie(token: &str, max_age: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{AUTH_COOKIE}={token}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}")
}

/// The `Set-Cookie` value that removes the token cookie.
pub fn clear_auth_cookie(secure: bool) -> String {
    auth_cookie("", 0, secure)
}

/// The `Set-Cookie` value that remembers the browser's Engine.IO session.
pub fn session_cookie(sid: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{SESSION_COOKIE}={sid}; Path=/; HttpOnly; SameSite=Lax{secure}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, headers: &[(&str, &str)]) -> Parts {
        let mut req = http::Request::builder().uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.body(()).unwrap().into_parts().0
    }

    #[test]
    fn tokens_come_from_header_then_query_then_cookie() {
        let p = parts(
            "/x?api_token=q",
            &[
                ("authorization", "Bearer h"),
                ("cookie", "chatroom_token=c"),
            ],
        );
        assert_eq!(token_from_parts(&p).as_deref(), Some("h"));
        let p = parts(
            "/x?api_token=q",
            &[
                ("authorization", "Bearer false"),
                ("cookie", "chatroom_token=c"),
            ],
        );
        assert_eq!(token_from_parts(&p).as_deref(), Some("q"));
        let p = parts("/x?token=null", &[("cookie", "a=b; chatroom_token=c")]);
        assert_eq!(token_from_parts(&p).as_deref(), Some("c"));
        assert_eq!(token_from_parts(&parts("/x", &[])), None);
    }

    #[test]
    fn query_fields_are_decoded_and_found_by_name() {
        let p = parts("/x?EIO=3&api_token=a%2Bb&transport=polling", &[]);
        assert!(query_has(&p, "api_token"));
        assert!(!query_has(&p, "token"));
        assert_eq!(query_token(&p).as_deref(), Some("a+b"));
    }

    #[test]
    fn the_session_cookie_names_the_socket() {
        let p = parts("/x", &[("cookie", "io=abc123; chatroom_token=t")]);
        assert_eq!(engine_session(&p).as_deref(), Some("abc123"));
        assert_eq!(engine_session(&parts("/x", &[("cookie", "io=")])), None);
    }
}
