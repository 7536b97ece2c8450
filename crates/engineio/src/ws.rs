//! WebSocket: the HTTP handshake, our own frame reader (RFC 6455, server side), a session's reader task
//! (the only task a WebSocket session has), and the upgrade from polling.
//!
//! Frames are written by the emitting thread when the socket is idle (see [`crate::socket`]); the reader
//! task writes only what had to wait. A session reads into its thread's scratch buffer of
//! `ws_read_buffer_size` bytes, which no session keeps across a wait; a message gets a buffer of its own
//! only while it is in progress.

use std::{
    cell::RefCell,
    future::poll_fn,
    io,
    pin::Pin,
    sync::{Arc, Weak},
    task::{Context, Poll},
    time::Duration,
};

use base64::Engine as _;
use bytes::Bytes;
use engineioxide_core::{Packet, ProtocolVersion, Sid, Str, TransportType};
use http::{HeaderValue, Request, Response, StatusCode, header, request::Parts};
use hyper_util::rt::TokioIo;
use sha1::{Digest, Sha1};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use crate::{
    body::ResponseBody,
    budget::{Evict, Hold, UNCOUNTED},
    engine::Engine,
    handler::EngineIoHandler,
    request::{Query, RequestError},
    socket::{DisconnectReason, Item, OP_CLOSE, OP_PONG, Socket, WsWriter, control_frame},
};

/// Answers a WebSocket handshake (`101`) and starts the session's reader once the upgrade completes.
pub(crate) fn accept<H: EngineIoHandler, ReqBody, B>(
    engine: &Arc<Engine<H>>,
    q: &Query,
    mut req: Request<ReqBody>,
) -> Result<Response<ResponseBody<B>>, RequestError> {
    let headers = req.headers();
    let has_token = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if !has_token(header::UPGRADE, "websocket") || !has_token(header::CONNECTION, "upgrade") {
        return Err(RequestError::BadRequest);
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        return Err(RequestError::BadRequest);
    }
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY) else {
        return Err(RequestError::BadRequest);
    };
    // A second WebSocket for a session that already has one (or is getting one) is accepted and closed
    // at once, as Node's engine.io does, rather than refused before the handshake.
    let mut superfluous = false;
    if let Some(sid) = q.sid {
        let socket = engine.get(&sid).ok_or(RequestError::UnknownSid)?;
        if socket.protocol != q.protocol {
            return Err(RequestError::BadRequest);
        }
        // Checked and claimed under one lock: of two WebSockets racing to upgrade a session (one sent
        // its probe, the other has just asked), only the first gets it.
        let mut out = socket.conn.lock();
        superfluous = socket.transport_type() != TransportType::Polling
            || out.upgrading
            || out.upgrade_claimed
            || socket.conn.is_closing();
        if !superfluous {
            out.upgrade_claimed = true;
        }
    }
    let accept = accept_key(key.as_bytes());
    let Some(on_upgrade) = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
        return Err(RequestError::BadRequest);
    };
    let (parts, body) = req.into_parts();
    drop(body);
    let engine = engine.clone();
    let (protocol, sid) = (q.protocol, q.sid);
    // The session is made now, so that the task holds it (a pointer) and not the request it came from.
    let fresh = start(&engine, protocol, sid, parts);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            // The client went before the handshake finished: its claim on the upgrade lapses.
            if let Some(socket) = sid.filter(|_| !superfluous).and_then(|s| engine.get(&s)) {
                socket.conn.lock().upgrade_claimed = false;
            }
            return;
        };
        let mut io = TokioIo::new(upgraded);
        if superfluous {
            let _ = io
                .write_all(&control_frame(OP_CLOSE, &1000u16.to_be_bytes()))
                .await;
            let _ = io.shutdown().await;
            return;
        }
        session(engine, io, sid, fresh).await;
    });
    let mut res = Response::new(ResponseBody::own(Bytes::new()));
    *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = res.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    Ok(res)
}

fn accept_key(key: &[u8]) -> String {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// Runs a WebSocket session over `io` until it ends: a new session, or the upgrade of polling session `sid`.
pub(crate) fn run<H, S>(
    engine: Arc<Engine<H>>,
    io: S,
    protocol: ProtocolVersion,
    sid: Option<Sid>,
    parts: Parts,
) -> impl Future<Output = ()> + Send + 'static
where
    H: EngineIoHandler,
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let fresh = start(&engine, protocol, sid, parts);
    session(engine, io, sid, fresh)
}

/// The session a WebSocket opens with request `parts` (`None` for the upgrade of a polling session, which
/// exists already). Made before the session's task starts, so that the task's future holds no request.
fn start<H: EngineIoHandler>(
    engine: &Arc<Engine<H>>,
    protocol: ProtocolVersion,
    sid: Option<Sid>,
    parts: Parts,
) -> Option<Arc<Socket<H::Data>>> {
    sid.is_none()
        .then(|| engine.new_socket(protocol, TransportType::Websocket, true, parts))
}

/// The session's task: `fresh`, a new session, or else the upgrade of polling session `sid`. The upgrade's
/// larger future is boxed, so an ordinary WebSocket session's task is sized by its read loop alone.
async fn session<H, S>(
    engine: Arc<Engine<H>>,
    io: S,
    sid: Option<Sid>,
    fresh: Option<Arc<Socket<H::Data>>>,
) where
    H: EngineIoHandler,
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (rd, wr) = tokio::io::split(io);
    let wr: WsWriter = Box::pin(wr);
    if let Some(socket) = fresh {
        socket.conn.lock().ws = Some(wr);
        socket
            .conn
            .push_control(engine.open_packet(socket.id, false));
        engine.insert(socket.clone());
        engine.handler.clone().on_connect(socket.clone());
        let mut reader = FrameReader::new(&engine.config);
        read_loop(&engine, &socket, rd, &mut reader).await;
    } else if let Some(socket) = sid.and_then(|sid| engine.get(&sid)) {
        let reader = FrameReader::new(&engine.config);
        Box::pin(upgrade(&engine, socket, rd, wr, reader)).await;
    }
}

/// A complete message or a control frame from the client.
pub(crate) enum WsMsg {
    Text(Vec<u8>),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Close,
}

#[derive(Debug)]
pub(crate) enum WsError {
    Protocol,
    TooBig,
    Budget,
}

impl WsError {
    /// A short name, for logs and the fuzz target.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Self::Protocol => "protocol",
            Self::TooBig => "too_big",
            Self::Budget => "budget",
        }
    }
}

/// An incremental RFC 6455 frame reader for the server side (client frames are masked).
pub(crate) struct FrameReader {
    head: [u8; 14],
    head_len: usize,
    /// Payload bytes of the current frame still to come; `None` between frames.
    remaining: Option<u64>,
    opcode: u8,
    fin: bool,
    mask: [u8; 4],
    mask_at: usize,
    /// The message in progress (all its frames), or the control frame in progress.
    msg: Vec<u8>,
    msg_opcode: Option<u8>,
    control: Vec<u8>,
    hold: Option<Hold>,
    max_frame: usize,
    max_message: usize,
}

impl FrameReader {
    pub(crate) fn new(config: &crate::config::EngineIoConfig) -> Self {
        Self {
            head: [0; 14],
            head_len: 0,
            remaining: None,
            opcode: 0,
            fin: false,
            mask: [0; 4],
            mask_at: 0,
            msg: Vec::new(),
            msg_opcode: None,
            control: Vec::new(),
            hold: None,
            max_frame: config.ws_max_frame_size,
            max_message: config.ws_max_message_size,
        }
    }

    /// Lets go of whatever is in progress (its buffers and its hold on the frame budget), once the session
    /// reads no more.
    fn clear(&mut self) {
        self.msg = Vec::new();
        self.control = Vec::new();
        self.hold = None;
        self.msg_opcode = None;
        self.remaining = None;
    }

    /// The header length once enough of it is in, `None` while more is needed.
    fn header_len(&self) -> Option<usize> {
        if self.head_len < 2 {
            return None;
        }
        let len =
            2 + match self.head[1] & 0x7f {
                126 => 2,
                127 => 8,
                _ => 0,
            } + if self.head[1] & 0x80 != 0 { 4 } else { 0 };
        (self.head_len >= len).then_some(len)
    }

    /// Feeds bytes read from the socket; complete messages go to `on_msg`, which may stop the reading.
    pub(crate) fn feed(
        &mut self,
        mut data: &[u8],
        limit: usize,
        new_hold: &dyn Fn() -> Option<Hold>,
        on_msg: &mut dyn FnMut(WsMsg) -> bool,
    ) -> Result<bool, WsError> {
        while !data.is_empty() {
            let Some(remaining) = self.remaining else {
                // Header bytes: at most what the header still needs.
                let want = match self.header_len() {
                    Some(_) => 0,
                    None if self.head_len < 2 => 2 - self.head_len,
                    None => {
                        let full =
                            2 + match self.head[1] & 0x7f {
                                126 => 2,
                                127 => 8,
                                _ => 0,
                            } + if self.head[1] & 0x80 != 0 { 4 } else { 0 };
                        full - self.head_len
                    }
                };
                let take = want.min(data.len());
                self.head[self.head_len..self.head_len + take].copy_from_slice(&data[..take]);
                self.head_len += take;
                data = &data[take..];
                if let Some(hl) = self.header_len() {
                    self.start_frame(hl, limit, new_hold)?;
                    if self.remaining == Some(0) && !self.end_frame(on_msg)? {
                        return Ok(false);
                    }
                }
                continue;
            };
            let take = usize::try_from(remaining)
                .unwrap_or(usize::MAX)
                .min(data.len());
            let control = self.opcode & 0x8 != 0;
            let buf = if control {
                &mut self.control
            } else {
                &mut self.msg
            };
            let start = buf.len();
            if !control
                && let Some(hold) = &self.hold
                && hold.grow(take).is_err()
            {
                return Err(WsError::Budget);
            }
            buf.extend_from_slice(&data[..take]);
            for (i, b) in buf[start..].iter_mut().enumerate() {
                *b ^= self.mask[(self.mask_at + i) % 4];
            }
            self.mask_at = (self.mask_at + take) % 4;
            data = &data[take..];
            let left = remaining - take as u64;
            self.remaining = Some(left);
            if left == 0 && !self.end_frame(on_msg)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn start_frame(
        &mut self,
        hl: usize,
        limit: usize,
        new_hold: &dyn Fn() -> Option<Hold>,
    ) -> Result<(), WsError> {
        let h = &self.head;
        if h[0] & 0x70 != 0 || h[1] & 0x80 == 0 {
            // Reserved bits (no extension was agreed) or an unmasked client frame.
            return Err(WsError::Protocol);
        }
        let (len, at) = match h[1] & 0x7f {
            126 => (u64::from(u16::from_be_bytes([h[2], h[3]])), 4),
            127 => {
                let mut b = [0u8; 8];
                b.copy_from_slice(&h[2..10]);
                (u64::from_be_bytes(b), 10)
            }
            n => (u64::from(n), 2),
        };
        self.mask.copy_from_slice(&h[at..at + 4]);
        debug_assert_eq!(at + 4, hl);
        self.mask_at = 0;
        self.fin = h[0] & 0x80 != 0;
        self.opcode = h[0] & 0x0f;
        let len_usize = usize::try_from(len).map_err(|_| WsError::TooBig)?;
        if self.opcode & 0x8 != 0 {
            if len > 125 || !self.fin {
                return Err(WsError::Protocol);
            }
            self.control = Vec::with_capacity(len_usize);
        } else {
            match (self.opcode, self.msg_opcode) {
                (0, Some(_)) | (1 | 2, None) => {}
                _ => return Err(WsError::Protocol),
            }
            if len_usize > self.max_frame
                || self.msg.len() + len_usize > self.max_message.min(limit)
            {
                return Err(WsError::TooBig);
            }
            if self.msg_opcode.is_none() {
                self.msg_opcode = Some(self.opcode);
            }
            if self.hold.is_none() && (self.msg.len() + len_usize > UNCOUNTED || !self.fin) {
                self.hold = new_hold();
                if let Some(hold) = &self.hold
                    && hold.grow(self.msg.len()).is_err()
                {
                    return Err(WsError::Budget);
                }
            }
            // Room for what small frames bring at once; a large frame's buffer grows as its bytes come.
            self.msg.reserve(len_usize.min(16 * 1024));
        }
        self.head_len = 0;
        self.remaining = Some(len);
        Ok(())
    }

    fn end_frame(&mut self, on_msg: &mut dyn FnMut(WsMsg) -> bool) -> Result<bool, WsError> {
        self.remaining = None;
        let msg = match self.opcode {
            0x8 => WsMsg::Close,
            0x9 => WsMsg::Ping(std::mem::take(&mut self.control)),
            0xA => {
                self.control = Vec::new();
                return Ok(true);
            }
            _ if !self.fin => return Ok(true),
            _ => {
                let body = std::mem::take(&mut self.msg);
                self.hold = None;
                match self.msg_opcode.take() {
                    Some(1) => WsMsg::Text(body),
                    Some(2) => WsMsg::Binary(body),
                    _ => return Err(WsError::Protocol),
                }
            }
        };
        Ok(on_msg(msg))
    }
}

/// Acts on one client message; `false` ends the session.
fn on_message<H: EngineIoHandler>(
    engine: &Engine<H>,
    socket: &Arc<Socket<H::Data>>,
    msg: WsMsg,
) -> bool {
    match msg {
        WsMsg::Text(body) => {
            let Ok(text) = String::from_utf8(body) else {
                socket.close(DisconnectReason::PacketParsingError);
                return false;
            };
            let packet = Packet::parse(socket.protocol, Str::from(text));
            if packet.is_ok_and(|p| engine.dispatch(socket, p).is_ok()) {
                !socket.conn.is_closing()
            } else {
                socket.close(DisconnectReason::PacketParsingError);
                false
            }
        }
        WsMsg::Binary(body) => {
            let mut data = Bytes::from(body);
            if socket.protocol == ProtocolVersion::V3 {
                // Engine.IO 3 puts the packet type (4, message) in front of binary data.
                if data.first() != Some(&4) {
                    socket.close(DisconnectReason::PacketParsingError);
                    return false;
                }
                data = data.slice(1..);
            }
            engine.handler.on_binary(data, socket.clone());
            !socket.conn.is_closing()
        }
        WsMsg::Ping(payload) => {
            socket.conn.push_raw(control_frame(OP_PONG, &payload));
            true
        }
        WsMsg::Close => {
            socket.close_with(DisconnectReason::TransportClose, None);
            false
        }
    }
}

/// The session's one task: reads, and writes what could not be written at once, until the end.
async fn read_loop<H, R>(
    engine: &Arc<Engine<H>>,
    socket: &Arc<Socket<H::Data>>,
    mut rd: R,
    reader: &mut FrameReader,
) where
    H: EngineIoHandler,
    R: AsyncRead + Unpin,
{
    let chunk = engine.config.ws_read_buffer_size.clamp(64, 64 * 1024);
    let transport_limit = engine.config.ws_max_message_size;
    let weak: Weak<dyn Evict> = Arc::downgrade(socket) as Weak<dyn Evict>;
    let new_hold = || socket.conn.budget.as_ref().map(|b| b.hold(weak.clone()));
    // What one read brought: go on, or end the session (with a reason, or quietly after a close).
    let mut on_read = |read: io::Result<&[u8]>| -> Result<(), Option<DisconnectReason>> {
        let bytes = match read {
            Ok([]) | Err(_) => return Err(Some(DisconnectReason::TransportError)),
            Ok(bytes) => bytes,
        };
        let limit = socket.conn.frame_limit(transport_limit);
        let mut on_msg = |msg| on_message(engine, socket, msg);
        match reader.feed(bytes, limit, &new_hold, &mut on_msg) {
            Ok(true) => Ok(()),
            Ok(false) => Err(None),
            Err(WsError::Budget) => Err(Some(DisconnectReason::TransportError)),
            Err(WsError::Protocol | WsError::TooBig) => {
                Err(Some(DisconnectReason::PacketParsingError))
            }
        }
    };
    let end = loop {
        if socket.conn.is_closing() {
            break None;
        }
        tokio::select! {
            biased;
            res = poll_fn(|cx| socket.conn.poll_drain(cx)) => {
                if res.is_err() {
                    break Some(DisconnectReason::TransportError);
                }
            }
            () = socket.conn.wake.notified() => {}
            read = poll_fn(|cx| read_scratch(&mut rd, cx, chunk, &mut on_read)) => {
                if let Err(end) = read {
                    break end;
                }
            }
        }
    };
    reader.clear();
    let write = end != Some(DisconnectReason::TransportError);
    if let Some(reason) = end {
        socket.close_with(reason, None);
    }
    finish(engine, socket, write).await;
}

thread_local! {
    /// The thread's read buffer, shared by every session whose reader runs on the thread.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Reads up to `size` bytes from `rd` into the thread's scratch buffer and hands them (or the error) to
/// `f` while they are there. A read that must wait keeps nothing: an idle session holds no read buffer.
fn read_scratch<R: AsyncRead + Unpin, T>(
    rd: &mut R,
    cx: &mut Context<'_>,
    size: usize,
    f: &mut impl FnMut(io::Result<&[u8]>) -> T,
) -> Poll<T> {
    SCRATCH.with(|cell| {
        // Taken out while in use, so a read made from inside `f` (none is) would get its own.
        let mut buf = cell.take();
        if buf.len() < size {
            buf.resize(size, 0);
        }
        let mut rb = ReadBuf::new(&mut buf[..size]);
        let out = match Pin::new(rd).poll_read(cx, &mut rb) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) => Poll::Ready(f(Ok(rb.filled()))),
            Poll::Ready(Err(e)) => Poll::Ready(f(Err(e))),
        };
        cell.replace(buf);
        out
    })
}

/// Writes what is left (the close packet among it) and a close frame, within a bounded time, then lets
/// the connection go.
async fn finish<H: EngineIoHandler>(engine: &Engine<H>, socket: &Socket<H::Data>, write: bool) {
    if write {
        let grace = engine.config.ping_timeout.min(Duration::from_secs(5));
        let _ = tokio::time::timeout(grace, async {
            loop {
                let idle = {
                    let out = socket.conn.lock();
                    out.queue.is_empty()
                };
                if idle {
                    break;
                }
                if poll_fn(|cx| socket.conn.poll_drain(cx)).await.is_err() {
                    return;
                }
            }
            let ws = socket.conn.lock().ws.take();
            if let Some(mut ws) = ws {
                let _ = ws
                    .write_all(&control_frame(OP_CLOSE, &1000u16.to_be_bytes()))
                    .await;
                let _ = ws.shutdown().await;
            }
        })
        .await;
    }
    let ws = socket.conn.lock().ws.take();
    drop(ws);
    socket.conn.mark_gone();
}

/// The upgrade of a polling session: `2probe` → `3probe`, then `5` hands the session to this socket.
async fn upgrade<H, R>(
    engine: &Arc<Engine<H>>,
    socket: Arc<Socket<H::Data>>,
    mut rd: R,
    mut wr: WsWriter,
    mut reader: FrameReader,
) where
    H: EngineIoHandler,
    R: AsyncRead + Unpin,
{
    let mut chunk = vec![0u8; engine.config.ws_read_buffer_size.clamp(64, 64 * 1024)];
    let limit = socket.conn.frame_limit(engine.config.ws_max_message_size);
    // Messages that came in the same read as the `5`: they belong to the upgraded session.
    let mut after = Vec::new();
    let probed = tokio::time::timeout(engine.config.upgrade_timeout, async {
        let mut probe_seen = false;
        loop {
            let n = match rd.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => n,
            };
            let mut msgs = Vec::new();
            let mut collect = |msg| {
                msgs.push(msg);
                true
            };
            // Nothing before the `5` is large: no budget hold.
            if !matches!(
                reader.feed(&chunk[..n], limit, &|| None, &mut collect),
                Ok(true)
            ) {
                return false;
            }
            let mut msgs = msgs.into_iter();
            while let Some(msg) = msgs.next() {
                let WsMsg::Text(t) = msg else { return false };
                match (&t[..], probe_seen) {
                    (b"2probe", false) => {
                        probe_seen = true;
                        if wr.write_all(&probe_frame()).await.is_err() {
                            return false;
                        }
                        socket.conn.lock().upgrading = true;
                        // End the client's pending poll so that it pauses polling.
                        socket.conn.wake.notify_waiters();
                        socket.conn.wake.notify_one();
                    }
                    (b"5", true) => {
                        after.extend(msgs);
                        return true;
                    }
                    _ => return false,
                }
            }
        }
    })
    .await
    .unwrap_or(false);
    if !probed || socket.conn.is_closing() {
        let mut out = socket.conn.lock();
        out.upgrading = false;
        out.upgrade_claimed = false;
        return;
    }
    {
        let mut out = socket.conn.lock();
        out.queue
            .retain(|i| !matches!(i, Item::Packet(Packet::Noop)));
        out.ws = Some(wr);
        out.upgrading = false;
        out.upgrade_claimed = false;
        socket.set_websocket();
    }
    socket.conn.wake.notify_waiters();
    socket.conn.wake.notify_one();
    for msg in after {
        if !on_message(engine, &socket, msg) {
            finish(engine, &socket, true).await;
            return;
        }
    }
    read_loop(engine, &socket, rd, &mut reader).await;
}

fn probe_frame() -> Bytes {
    control_frame(0x1, b"3probe")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mask = [1u8, 2, 3, 4];
        let mut f = vec![(if fin { 0x80 } else { 0 }) | opcode];
        if payload.len() < 126 {
            f.push(0x80 | payload.len() as u8);
        } else {
            f.push(0x80 | 126);
            f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    }

    #[test]
    fn frames_split_anywhere_give_the_same_messages() {
        let config = crate::config::EngineIoConfig::default();
        let mut wire = masked(1, false, b"4hel");
        wire.extend(masked(9, true, b"p"));
        wire.extend(masked(0, true, &[b'l'; 300]));
        wire.extend(masked(2, true, &[7, 8]));
        for step in [1, 2, 3, 7, 1000] {
            let mut r = FrameReader::new(&config);
            let mut got = Vec::new();
            for part in wire.chunks(step) {
                let mut on = |m: WsMsg| {
                    got.push(match m {
                        WsMsg::Text(t) => format!("T{}", t.len()),
                        WsMsg::Binary(b) => format!("B{b:?}"),
                        WsMsg::Ping(p) => format!("P{p:?}"),
                        WsMsg::Close => "C".into(),
                    });
                    true
                };
                assert!(matches!(
                    r.feed(part, usize::MAX, &|| None, &mut on),
                    Ok(true)
                ));
            }
            assert_eq!(got, vec!["P[112]", "T304", "B[7, 8]"], "step {step}");
        }
    }

    #[test]
    fn unmasked_and_oversized_frames_are_refused() {
        let config = crate::config::EngineIoConfig {
            ws_max_message_size: 10,
            ..Default::default()
        };
        let mut r = FrameReader::new(&config);
        let mut on = |_m: WsMsg| true;
        assert!(matches!(
            r.feed(&[0x81, 0x01, b'x'], usize::MAX, &|| None, &mut on),
            Err(WsError::Protocol)
        ));
        let mut r = FrameReader::new(&config);
        let big = masked(1, true, &[b'a'; 11]);
        assert!(matches!(
            r.feed(&big, usize::MAX, &|| None, &mut on),
            Err(WsError::TooBig)
        ));
        let mut r = FrameReader::new(&config);
        let small = masked(1, true, &[b'a'; 6]);
        assert!(matches!(
            r.feed(&small, 5, &|| None, &mut on),
            Err(WsError::TooBig)
        ));
    }

    #[test]
    fn the_accept_key_of_rfc_6455() {
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }
}
