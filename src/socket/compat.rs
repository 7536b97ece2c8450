//! A tower layer in front of socketioxide for what old browsers need from `/socket.io/`:
//!
//! * **Engine.IO 3 long-polling framing** (stack-notes F1). socket.io-client 1.x in a browser sends
//!   polling bodies with UTF-8 *byte* lengths and every non-ASCII character UTF-8-encoded twice, and
//!   expects byte lengths back; engineioxide counts UTF-16 units, as 2.x clients do. Requests that are
//!   unambiguously 1.x-encoded are rewritten into the 2.x form, and text responses to EIO3 polling
//!   requests without `b64=1` are re-framed into the binary payload framing (a type byte, the length
//!   in decimal digits as raw bytes, `0xFF`, the packet as UTF-8), which both 1.x and 2.x read.
//!   Clients in base64 mode (`b64=1`: node's 1.x and 2.x clients, old browsers) get text payloads made
//!   pure ASCII with JSON `\uXXXX` escapes, the one form whose lengths both generations count alike.
//! * **The `io` session cookie**, which socket.io 1.x/2.x servers set at the handshake: it comes back
//!   with the page's API requests, so a sign-in can bind the browser's socket to the new user.
//! * **Origin checks**: a browser handshake from a page of another site (cross-site WebSocket
//!   hijacking) is refused unless that origin is configured for CORS.
//! * **Announced lengths**: a polling body announced over the packet limit is refused `413` before it
//!   is read, and its connection closed.
//!
//! chatroom never sends binary packets, so the mis-encoded binary framing of F2 never occurs.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::OriginalUri;
use axum::http::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, SET_COOKIE};
use axum::http::{Method, Request, Response, StatusCode};
use bytes::Bytes;
use tower::{Layer, Service};

use crate::auth::{origin, request};

/// The layer; see the module docs.
#[derive(Clone)]
pub struct CompatLayer {
    origins: Arc<[String]>,
    client_script: Option<Bytes>,
    max_body: usize,
    secure_cookie: bool,
}

impl CompatLayer {
    /// Allows pages of this server and of `origins`; polling bodies up to `max_body` bytes.
    pub fn new(origins: Vec<String>, max_body: usize, secure_cookie: bool) -> Self {
        Self {
            origins: origins.into(),
            client_script: None,
            max_body,
            secure_cookie,
        }
    }
}

impl CompatLayer {
    /// Serves `script` at `/socket.io/socket.io.js` (socket.io 1.x servers served their client there).
    #[must_use]
    pub fn with_client_script(mut self, script: Option<Bytes>) -> Self {
        self.client_script = script;
        self
    }
}

impl<S> Layer<S> for CompatLayer {
    type Service = Compat<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Compat {
            inner,
            config: self.clone(),
        }
    }
}

/// The service of [`CompatLayer`].
#[derive(Clone)]
pub struct Compat<S> {
    inner: S,
    config: CompatLayer,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B> Service<Request<Body>> for Compat<S>
where
    S: Service<Request<Body>, Response = Response<B>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Response<Body>, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Body>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let config = self.config.clone();
        Box::pin(async move {
            if !req.uri().path().starts_with("/socket.io/") {
                return Ok(inner.call(req).await?.map(Body::new));
            }
            if req.uri().path() == "/socket.io/socket.io.js" {
                return Ok(client_script(config.client_script));
            }
            if !origin::allowed(req.headers(), &config.origins) {
                tracing::warn!("refused a socket handshake from another site");
                return Ok(origin::refusal());
            }
            if announced_over(&req, config.max_body) {
                return Ok(too_large(true));
            }
            let query = EioQuery::parse(req.uri().query().unwrap_or_default());
            let get = req.method() == Method::GET;
            let req = if query.sid.is_none() {
                compact(req)
            } else {
                req
            };
            let req = if query.eio3_polling() && req.method() == Method::POST {
                match rewrite_request(req, config.max_body).await {
                    Ok(req) => req,
                    Err(refusal) => return Ok(refusal),
                }
            } else {
                req
            };
            let response = inner.call(req).await?;
            let handshake = get && query.polling && query.sid.is_none();
            let reframe = get && query.eio3_polling() && !query.b64;
            let ascii = get && query.eio3_polling() && query.b64;
            if response.status() != StatusCode::OK || !(handshake || reframe || ascii) {
                return Ok(response.map(Body::new));
            }
            let (mut parts, body) = response.into_parts();
            let Ok(bytes) = axum::body::to_bytes(Body::new(body), usize::MAX).await else {
                return Ok(Response::from_parts(parts, Body::empty()));
            };
            if handshake && let Some(sid) = find_sid(&bytes) {
                let cookie = request::session_cookie(&sid, config.secure_cookie);
                if let Ok(value) = HeaderValue::from_str(&cookie) {
                    parts.headers.append(SET_COOKIE, value);
                }
            }
            let is_text = parts
                .headers
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("text/plain"));
            let bytes = if !is_text {
                bytes
            } else if reframe {
                match text_to_binary(&bytes) {
                    Some(framed) => {
                        parts.headers.insert(
                            CONTENT_TYPE,
                            HeaderValue::from_static("application/octet-stream"),
                        );
                        Bytes::from(framed)
                    }
                    None => bytes,
                }
            } else if ascii {
                text_to_ascii(&bytes).map_or(bytes, Bytes::from)
            } else {
                bytes
            };
            parts
                .headers
                .insert(CONTENT_LENGTH, HeaderValue::from(bytes.len()));
            Ok(Response::from_parts(parts, Body::from(bytes)))
        })
    }
}

fn client_script(script: Option<Bytes>) -> Response<Body> {
    let response = match script {
        Some(script) => Response::builder()
            .header(CONTENT_TYPE, "application/javascript; charset=utf-8")
            .header("cache-control", "public, max-age=3600")
            .body(Body::from(script)),
        None => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Body::from("no socket.io client script is configured")),
    };
    response.unwrap_or_default()
}

/// Copies a session-opening request's URI and header values into one small buffer of their own.
///
/// socketioxide keeps the request that opened a session for the session's whole life (handlers read
/// it through `req_parts`). hyper parses header values as slices of its 8 KiB connection read buffer,
/// and axum's `OriginalUri` is a copy of the URI, so keeping the request would keep that buffer: at
/// 10 000 idle sockets, 160 MB of it.
fn compact(req: Request<Body>) -> Request<Body> {
    let (mut parts, body) = req.into_parts();
    let uri = parts.uri.to_string();
    let total = uri.len() + parts.headers.values().map(|v| v.len()).sum::<usize>();
    let mut buf = bytes::BytesMut::with_capacity(total);
    buf.extend_from_slice(uri.as_bytes());
    for value in parts.headers.values() {
        buf.extend_from_slice(value.as_bytes());
    }
    let buf = buf.freeze();
    if let Ok(compact) = axum::http::Uri::from_maybe_shared(buf.slice(..uri.len())) {
        // axum's router keeps a copy of the URI too.
        if parts.extensions.get::<OriginalUri>().is_some() {
            parts.extensions.insert(OriginalUri(compact.clone()));
        }
        parts.uri = compact;
    }
    let mut at = uri.len();
    for value in parts.headers.values_mut() {
        let len = value.len();
        if let Ok(mut compact) = HeaderValue::from_maybe_shared(buf.slice(at..at + len)) {
            compact.set_sensitive(value.is_sensitive());
            *value = compact;
        }
        at += len;
    }
    Request::from_parts(parts, body)
}

/// Whether `req` announces a body longer than `max_body` bytes. Such a body is refused before it is
/// read: otherwise a client announcing 1 GB and sending it slowly would hold its connection until the
/// request timeout.
fn announced_over(req: &Request<Body>, max_body: usize) -> bool {
    req.headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|len| len > max_body as u64)
}

/// `413` for a polling body over the limit; with `close`, the connection is not reused (its body was
/// never read).
fn too_large(close: bool) -> Response<Body> {
    let mut refusal = Response::builder().status(StatusCode::PAYLOAD_TOO_LARGE);
    if close {
        refusal = refusal.header(CONNECTION, "close");
    }
    refusal
        .body(Body::from("payload too large"))
        .unwrap_or_default()
}

/// Rewrites a 1.x-encoded EIO3 polling body into the 2.x form engineioxide reads.
async fn rewrite_request(
    req: Request<Body>,
    max_body: usize,
) -> Result<Request<Body>, Response<Body>> {
    let (mut parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, max_body).await else {
        return Err(too_large(false));
    };
    let is_binary = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/octet-stream"));
    let bytes = match (!is_binary).then(|| v1_request_to_v2(&bytes)).flatten() {
        Some(fixed) => Bytes::from(fixed),
        None => bytes,
    };
    parts
        .headers
        .insert(CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// The Engine.IO query fields this layer cares about.
#[derive(Debug, Default)]
pub struct EioQuery {
    pub eio: Option<u8>,
    pub polling: bool,
    pub sid: Option<String>,
    pub b64: bool,
}

impl EioQuery {
    /// Reads the fields from a query string; anything else is ignored.
    pub fn parse(query: &str) -> Self {
        let mut q = Self::default();
        for (key, value) in request::query_pairs(query) {
            match key.as_ref() {
                "EIO" => q.eio = value.parse().ok(),
                "transport" => q.polling = value == "polling",
                "sid" if !value.is_empty() => q.sid = Some(value.into_owned()),
                "b64" => q.b64 = !value.is_empty() && value != "0" && value != "false",
                _ => {}
            }
        }
        q
    }

    /// Whether this is Engine.IO 3 long-polling, the transport this layer re-frames.
    pub fn eio3_polling(&self) -> bool {
        self.eio == Some(3) && self.polling
    }
}

/// The session id in an open packet (`0{"sid":"…",…}`), in either payload framing.
pub fn find_sid(body: &[u8]) -> Option<String> {
    const KEY: &[u8] = b"\"sid\":\"";
    let start = body.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let len = body[start..].iter().position(|&b| b == b'"')?;
    let sid = std::str::from_utf8(&body[start..start + len]).ok()?;
    sid.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        .then(|| sid.to_owned())
}

/// The packets of an EIO3 string payload (`<UTF-16 length>:<packet>…`), or `None` if the body is not
/// a well-formed one.
pub fn split_text_payload(body: &[u8]) -> Option<Vec<&str>> {
    let mut rest = std::str::from_utf8(body).ok()?;
    let mut packets = Vec::new();
    while !rest.is_empty() {
        let colon = rest.find(':')?;
        let units: usize = rest[..colon].parse().ok()?;
        let after = &rest[colon + 1..];
        let mut counted = 0;
        let mut end = 0;
        let mut chars = after.char_indices();
        while counted < units {
            let (i, c) = chars.next()?;
            counted += c.len_utf16();
            end = i + c.len_utf8();
        }
        if counted != units {
            return None;
        }
        packets.push(&after[..end]);
        rest = &after[end..];
    }
    Some(packets)
}

/// Re-frames an EIO3 string payload into the binary payload framing with UTF-8 byte lengths.
pub fn text_to_binary(body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(body.len() + 8);
    for packet in split_text_payload(body)? {
        out.push(0);
        out.extend(packet.len().to_string().bytes().map(|d| d - b'0'));
        out.push(0xFF);
        out.extend_from_slice(packet.as_bytes());
    }
    Some(out)
}

/// Rewrites an EIO3 string payload for base64-mode clients (`b64=1`) so that it is pure ASCII: every
/// non-ASCII character becomes a JSON `\uXXXX` escape (packets are JSON, where such characters only
/// occur inside strings). socket.io-client 1.x counts lengths in UTF-8 bytes of doubly encoded text
/// and 2.x in UTF-16 units; for ASCII the two agree, and both decode the escapes to the same text.
pub fn text_to_ascii(body: &[u8]) -> Option<Vec<u8>> {
    let packets = split_text_payload(body)?;
    if packets.iter().all(|p| p.is_ascii()) {
        return None;
    }
    let mut out = String::with_capacity(body.len() * 2);
    for packet in packets {
        let mut escaped = String::with_capacity(packet.len() * 2);
        for c in packet.chars() {
            if c.is_ascii() {
                escaped.push(c);
            } else {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    escaped.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
        out.push_str(&escaped.len().to_string());
        out.push(':');
        out.push_str(&escaped);
    }
    Some(out.into_bytes())
}

/// Reads a polling body the way socket.io-client 1.x wrote it, if it unambiguously is one: UTF-8 of
/// characters that are all bytes (≤ U+00FF, some ≥ U+0080), framed by byte counts, each packet valid
/// UTF-8 once its characters are taken as bytes. Returns the same packets in the 2.x framing (UTF-16
/// lengths, UTF-8 encoded once). `None` means the body is already in the 2.x form (or pure ASCII,
/// where the two agree).
pub fn v1_request_to_v2(body: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(body).ok()?;
    if text.is_ascii() || text.chars().any(|c| u32::from(c) > 0xFF) {
        return None;
    }
    // Each char ≤ U+00FF stands for one byte; `as u8` cannot truncate here.
    let bytes: Vec<u8> = text.chars().map(|c| u32::from(c) as u8).collect();
    let mut rest = &bytes[..];
    let mut out = String::with_capacity(bytes.len());
    while !rest.is_empty() {
        let colon = rest.iter().position(|&b| b == b':')?;
        let len: usize = std::str::from_utf8(&rest[..colon]).ok()?.parse().ok()?;
        // Checked: a length near usize::MAX must not overflow (found by fuzzing).
        let end = (colon + 1).checked_add(len)?;
        let packet = rest.get(colon + 1..end)?;
        let packet = std::str::from_utf8(packet).ok()?;
        out.push_str(&packet.encode_utf16().count().to_string());
        out.push(':');
        out.push_str(packet);
        rest = &rest[end..];
    }
    Some(out.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What socket.io-client 1.x puts on the wire for `packets`: byte lengths, and each byte of the
    /// UTF-8 encoding sent as one character (so UTF-8-encoded again by the browser).
    fn v1_body(packets: &[&str]) -> Vec<u8> {
        let mut s = String::new();
        for p in packets {
            s.push_str(&format!("{}:", p.len()));
            s.extend(p.bytes().map(char::from));
        }
        s.into_bytes()
    }

    #[test]
    fn v1_bodies_are_decoded_and_reframed() {
        let packets = [
            "42[\"login\",{\"name\":\"测试用户\"}]",
            "42[\"message\",{\"msg\":\"你好🎉\"}]",
        ];
        let fixed = v1_request_to_v2(&v1_body(&packets)).expect("a 1.x body");
        let expected: String = packets
            .iter()
            .map(|p| format!("{}:{p}", p.encode_utf16().count()))
            .collect();
        assert_eq!(String::from_utf8(fixed).unwrap(), expected);
    }

    #[test]
    fn v2_and_ascii_bodies_pass_unchanged() {
        let v2 = "13:42[\"m\",\"你好🎉é\"]";
        assert_eq!(v1_request_to_v2(v2.as_bytes()), None);
        assert_eq!(v1_request_to_v2(b"1:2"), None);
        // Latin-1 text from a 2.x client is not valid UTF-8 once taken as bytes.
        let latin = "9:42[\"café\"]";
        assert_eq!(v1_request_to_v2(latin.as_bytes()), None);
        // A garbled frame is left for engineioxide to refuse.
        assert_eq!(v1_request_to_v2("99:42[\"Ã©\"]".as_bytes()), None);
    }

    #[test]
    fn text_payloads_become_binary_with_byte_lengths() {
        let packet = "42[\"message\",{\"msg\":\"你好🎉\"}]";
        let body = format!("{}:{packet}1:6", packet.encode_utf16().count());
        let framed = text_to_binary(body.as_bytes()).unwrap();
        let mut expected = vec![0];
        expected.extend(packet.len().to_string().bytes().map(|d| d - b'0'));
        expected.push(0xFF);
        expected.extend_from_slice(packet.as_bytes());
        expected.extend([0, 1, 0xFF, b'6']);
        assert_eq!(framed, expected);
        assert_eq!(text_to_binary(b"5:42"), None);
        assert_eq!(text_to_binary(b"x:42"), None);
    }

    #[test]
    fn base64_mode_payloads_become_ascii_json_escapes() {
        let packet = "42[\"m\",\"你好🎉\"]";
        let body = format!("{}:{packet}1:6", packet.encode_utf16().count());
        let ascii = String::from_utf8(text_to_ascii(body.as_bytes()).unwrap()).unwrap();
        let escaped = r#"42["m","\u4f60\u597d\ud83c\udf89"]"#;
        assert_eq!(ascii, format!("{}:{escaped}1:6", escaped.len()));
        let decoded: serde_json::Value = serde_json::from_str(&escaped[2..]).unwrap();
        assert_eq!(decoded[1], "你好🎉");
        assert_eq!(
            text_to_ascii(b"2:40"),
            None,
            "ASCII payloads are left alone"
        );
    }

    #[test]
    fn session_ids_are_found_in_open_packets() {
        assert_eq!(
            find_sid(b"\x00\x09\x07\xff0{\"sid\":\"AbC-12_x\",\"upgrades\":[]}").as_deref(),
            Some("AbC-12_x")
        );
        assert_eq!(find_sid(b"0{\"sid\":\"a;b\"}"), None);
        assert_eq!(find_sid(b"40"), None);
    }

    #[test]
    fn queries_are_read() {
        let q = EioQuery::parse("EIO=3&transport=polling&t=x&sid=abc&b64=1");
        assert!(q.eio3_polling() && q.b64 && q.sid.as_deref() == Some("abc"));
        assert!(!EioQuery::parse("EIO=4&transport=polling").eio3_polling());
        assert!(!EioQuery::parse("EIO=3&transport=websocket").eio3_polling());
    }
}
