//! HTTP long-polling: the handshake, `GET` (the server's packets) and `POST` (the client's).

use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use engineioxide_core::{Packet, ProtocolVersion, Sid, TransportType};
use futures_util::StreamExt;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body::Body;
use http_body_util::{BodyExt, Full};

use crate::{
    body::ResponseBody,
    budget::{Evict, UNCOUNTED},
    engine::Engine,
    handler::EngineIoHandler,
    request::{Query, RequestError},
    socket::{DisconnectReason, Socket},
};

const TEXT: HeaderValue = HeaderValue::from_static("text/plain; charset=UTF-8");
const BINARY: HeaderValue = HeaderValue::from_static("application/octet-stream");

/// Opens a polling session: the response carries the open packet.
pub(crate) fn open<H: EngineIoHandler, ReqBody, B>(
    engine: &Arc<Engine<H>>,
    q: &Query,
    req: Request<ReqBody>,
) -> Response<ResponseBody<B>> {
    let (parts, body) = req.into_parts();
    drop(body);
    let socket = engine.new_socket(q.protocol, TransportType::Polling, !q.b64, parts);
    let open = engine.open_packet(socket.id, true);
    let res = payload_response(vec![open], socket.protocol, !q.b64);
    engine.insert(socket.clone());
    engine.handler.clone().on_connect(socket);
    res
}

/// Clears a session's "a `GET` is waiting" flag however the `GET` ends (the client may go away).
struct PollGuard<'a, D>(&'a Socket<D>);

impl<D> Drop for PollGuard<'_, D> {
    fn drop(&mut self) {
        self.0.conn.lock().polling = false;
    }
}

/// A `GET`: answers with what waits for the client, or waits until something does.
pub(crate) async fn poll<H: EngineIoHandler, B>(
    engine: &Arc<Engine<H>>,
    q: &Query,
    sid: Sid,
) -> Result<Response<ResponseBody<B>>, RequestError> {
    let socket = engine.get(&sid).ok_or(RequestError::UnknownSid)?;
    if socket.protocol != q.protocol || socket.transport_type() != TransportType::Polling {
        return Err(RequestError::BadRequest);
    }
    if socket.conn.is_closing() {
        // A session the client closed with no `GET` waiting: this `GET` takes its last packets.
        engine.remove(&sid);
        let mut packets = socket.conn.take_packets(usize::MAX);
        if packets.is_empty() {
            packets.push(Packet::Noop);
        }
        return Ok(payload_response(
            packets,
            socket.protocol,
            socket.conn.supports_binary,
        ));
    }
    if socket.conn.lock().upgrading && !await_upgrade(&socket).await {
        // The session moved to its WebSocket while this `GET` waited: polling is over for it.
        return Err(RequestError::BadRequest);
    }
    {
        let mut out = socket.conn.lock();
        if out.polling {
            drop(out);
            socket.close(DisconnectReason::MultipleHttpPollingError);
            return Err(RequestError::BadRequest);
        }
        out.polling = true;
    }
    let _guard = PollGuard(&socket);
    let max = usize::try_from(engine.config.max_payload).unwrap_or(usize::MAX);
    loop {
        let woken = socket.conn.wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        let packets = socket.conn.take_packets(max);
        if !packets.is_empty() {
            return Ok(payload_response(
                packets,
                socket.protocol,
                socket.conn.supports_binary,
            ));
        }
        if socket.transport_type() != TransportType::Polling {
            // The upgrade completed after this `GET` was checked: the session is the WebSocket's now.
            return Err(RequestError::BadRequest);
        }
        if socket.conn.lock().upgrading || socket.conn.is_closing() {
            // The client is moving to its WebSocket (or the session is over): end this request.
            return Ok(payload_response(
                vec![Packet::Noop],
                socket.protocol,
                socket.conn.supports_binary,
            ));
        }
        woken.await;
    }
}

/// How long a `GET` that starts during an upgrade waits for the upgrade to settle (Node's engine.io
/// answers such a `GET` within the same time, from the timer that checks an upgrade's progress).
const UPGRADE_SETTLE: Duration = Duration::from_millis(100);

/// Waits (at most [`UPGRADE_SETTLE`]) while a WebSocket is between its probe and its `5`; whether the
/// session still polls afterwards. A client upgrading sends its `5` only once its polls have ended, so a
/// `GET` arriving meanwhile was either on its way before the probe (it gets its noop, as before, once
/// the wait is over) or raced a `5` sent over the other connection: it gets the `400` a `GET` after the
/// upgrade gets, rather than an answer that depends on which connection the server read first.
async fn await_upgrade<D>(socket: &Socket<D>) -> bool {
    let settle = tokio::time::Instant::now() + UPGRADE_SETTLE;
    loop {
        let woken = socket.conn.wake.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        if !socket.conn.lock().upgrading {
            break;
        }
        if tokio::time::timeout_at(settle, woken).await.is_err() {
            break;
        }
    }
    socket.transport_type() == TransportType::Polling
}

/// A `POST`: the client's packets.
pub(crate) async fn post<H: EngineIoHandler, ReqBody, B>(
    engine: &Arc<Engine<H>>,
    q: &Query,
    sid: Sid,
    req: Request<ReqBody>,
) -> Result<Response<ResponseBody<B>>, RequestError>
where
    ReqBody: Body + Unpin,
    ReqBody::Error: std::fmt::Debug,
{
    let socket = engine.get(&sid).ok_or(RequestError::UnknownSid)?;
    if socket.protocol != q.protocol
        || socket.transport_type() != TransportType::Polling
        || socket.conn.is_closing()
    {
        return Err(RequestError::BadRequest);
    }
    let (parts, mut body) = req.into_parts();
    let content_type = parts.headers.get(header::CONTENT_TYPE).cloned();
    let max_payload = usize::try_from(engine.config.max_payload).unwrap_or(usize::MAX);
    let limit = socket.conn.frame_limit(max_payload);
    let hold = socket.conn.budget.as_ref().map(|b| {
        let owner: Weak<dyn Evict> = Arc::downgrade(&socket) as Weak<dyn Evict>;
        b.hold(owner)
    });
    let mut data = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            socket.close(DisconnectReason::TransportError);
            return Err(RequestError::BadRequest);
        };
        let Ok(mut chunk) = frame.into_data() else {
            continue;
        };
        let n = bytes::Buf::remaining(&chunk);
        if data.len() + n > limit {
            socket.close(DisconnectReason::PacketParsingError);
            return Ok(status(StatusCode::PAYLOAD_TOO_LARGE));
        }
        if let Some(hold) = &hold
            && data.len() + n > UNCOUNTED
            && hold.grow(n).is_err()
        {
            socket.close(DisconnectReason::TransportError);
            return Ok(status(StatusCode::PAYLOAD_TOO_LARGE));
        }
        data.put(&mut chunk);
    }
    let payload = data.freeze();
    let packets = engineioxide_core::payload::decoder(
        Full::new(payload),
        content_type.as_ref(),
        socket.protocol,
        engine.config.max_payload,
    );
    tokio::pin!(packets);
    let mut ok = true;
    while let Some(packet) = packets.next().await {
        if !packet.is_ok_and(|p| engine.dispatch(&socket, p).is_ok()) {
            ok = false;
            break;
        }
    }
    drop(hold);
    if !ok {
        socket.close(DisconnectReason::PacketParsingError);
        return Err(RequestError::BadRequest);
    }
    let mut res = Response::new(ResponseBody::own(Bytes::from_static(b"ok")));
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    Ok(res)
}

fn status<B>(code: StatusCode) -> Response<ResponseBody<B>> {
    let mut res = Response::new(ResponseBody::own(Bytes::new()));
    *res.status_mut() = code;
    res
}

fn payload_response<B>(
    packets: Vec<Packet>,
    protocol: ProtocolVersion,
    supports_binary: bool,
) -> Response<ResponseBody<B>> {
    let (body, binary) = encode_payload(packets, protocol, supports_binary);
    let mut res = Response::new(ResponseBody::own(body));
    res.headers_mut()
        .insert(header::CONTENT_TYPE, if binary { BINARY } else { TEXT });
    res
}

/// Engine.IO payload encodings: v4 joins packets with a record separator (binary as `b` + base64); v3
/// prefixes each with its length, as text (`<UTF-16 length>:<packet>`, binary as `b4` + base64) or, when
/// the client takes binary and some packet is binary, in the binary form (`<0|1><digits>\xff<data>`).
pub(crate) fn encode_payload(
    packets: Vec<Packet>,
    protocol: ProtocolVersion,
    supports_binary: bool,
) -> (Bytes, bool) {
    let mut out = BytesMut::new();
    match protocol {
        ProtocolVersion::V4 => {
            for (i, p) in packets.into_iter().enumerate() {
                if i > 0 {
                    out.put_u8(0x1e);
                }
                let p = match p {
                    Packet::BinaryV3(b) => Packet::Binary(b),
                    p => p,
                };
                out.put_slice(String::from(p).as_bytes());
            }
            (out.freeze(), false)
        }
        ProtocolVersion::V3 => {
            let binary = supports_binary && packets.iter().any(Packet::is_binary);
            for p in packets {
                let p = match p {
                    Packet::Binary(b) => Packet::BinaryV3(b),
                    p => p,
                };
                if binary {
                    match p {
                        Packet::BinaryV3(b) => {
                            out.put_u8(1);
                            put_digits(&mut out, b.len() + 1);
                            out.put_u8(0xff);
                            out.put_u8(4);
                            out.put_slice(&b);
                        }
                        p => {
                            let s = String::from(p);
                            out.put_u8(0);
                            put_digits(&mut out, s.len());
                            out.put_u8(0xff);
                            out.put_slice(s.as_bytes());
                        }
                    }
                } else {
                    let s = String::from(p);
                    let units = s.encode_utf16().count();
                    out.put_slice(units.to_string().as_bytes());
                    out.put_u8(b':');
                    out.put_slice(s.as_bytes());
                }
            }
            (out.freeze(), binary)
        }
    }
}

/// The v3 binary payload writes a length as one byte per decimal digit.
fn put_digits(out: &mut BytesMut, n: usize) {
    for d in n.to_string().bytes() {
        out.put_u8(d - b'0');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_of_each_version() {
        let msgs = || {
            vec![
                Packet::Message("hello".into()),
                Packet::Binary(Bytes::from_static(&[1, 2, 3, 4])),
            ]
        };
        let (v4, bin) = encode_payload(msgs(), ProtocolVersion::V4, true);
        assert_eq!(&v4[..], b"4hello\x1ebAQIDBA==");
        assert!(!bin);
        let (v3, bin) = encode_payload(msgs(), ProtocolVersion::V3, false);
        assert_eq!(&v3[..], b"6:4hello10:b4AQIDBA==");
        assert!(!bin);
        let (v3b, bin) = encode_payload(msgs(), ProtocolVersion::V3, true);
        assert_eq!(
            &v3b[..],
            &[
                0, 6, 0xff, b'4', b'h', b'e', b'l', b'l', b'o', 1, 5, 0xff, 4, 1, 2, 3, 4
            ][..]
        );
        assert!(bin);
        let (utf16, _) = encode_payload(
            vec![Packet::Message("é€😀".into())],
            ProtocolVersion::V3,
            false,
        );
        assert_eq!(std::str::from_utf8(&utf16).ok(), Some("5:4é€😀"));
    }
}
