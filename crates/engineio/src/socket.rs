//! A session: the handle socketioxide emits through, and the state its transport drives.
//!
//! Nothing here runs on its own. An emit on an idle WebSocket session writes the frame straight to the
//! socket (a non-blocking attempt under the session lock); only when that write is partial or the socket
//! is busy does the rest wait in the session's queue, which the session's reader task drains when the
//! socket is writable again. A polling session's queue is drained by its pending `GET`. The queue is an
//! empty `VecDeque` (no allocation) until a frame waits, and is released again once it drains.

use std::{
    collections::VecDeque,
    io::{self, IoSlice},
    pin::Pin,
    sync::{
        Mutex, MutexGuard, PoisonError, Weak,
        atomic::{AtomicBool, AtomicU8, Ordering},
    },
    task::{Context, Poll, Waker},
};

use bytes::{BufMut, Bytes, BytesMut};
use engineioxide_core::{Packet, ProtocolVersion, Str, TransportType};
use http::request::Parts;
use tokio::{io::AsyncWrite, sync::Notify, sync::mpsc::error::TrySendError};

pub use engineioxide_core::Sid;

use crate::budget::Evict;

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The client closed the session (a close packet or a WebSocket close).
    TransportClose,
    /// The client made two polling requests at once.
    MultipleHttpPollingError,
    /// The client sent something that is not Engine.IO, or too much of it.
    PacketParsingError,
    /// The connection failed or was dropped without a close.
    TransportError,
    /// The client missed a heartbeat.
    HeartbeatTimeout,
    /// The server closed the session.
    ClosingServer,
}

/// A place reserved in a session's queue: emitting through it cannot fail.
pub struct Permit<'a> {
    conn: Option<&'a Conn>,
}

impl Permit<'_> {
    fn send(mut self, packets: impl IntoIterator<Item = Packet>) {
        if let Some(conn) = self.conn.take() {
            conn.push_reserved(packets);
        }
    }
    /// Emits a text message.
    pub fn emit(self, msg: Str) {
        self.send([Packet::Message(msg)]);
    }
    /// Emits a binary message.
    pub fn emit_binary(self, data: Bytes) {
        self.send([Packet::Binary(data)]);
    }
    /// Emits a text message and its binary attachments, with nothing in between.
    pub fn emit_many(self, msg: Str, data: VecDeque<Bytes>) {
        self.send(
            std::iter::once(Packet::Message(msg)).chain(data.into_iter().map(Packet::Binary)),
        );
    }
    /// Emits binary messages with nothing in between.
    pub fn emit_many_binary(self, bin: Bytes, data: Vec<Bytes>) {
        self.send(std::iter::once(bin).chain(data).map(Packet::Binary));
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            conn.lock().reserved -= 1;
        }
    }
}

pub(crate) type WsWriter = Pin<Box<dyn AsyncWrite + Send>>;

/// Something waiting to be written.
pub(crate) enum Item {
    Packet(Packet),
    /// An already framed WebSocket control frame (a pong to a WebSocket ping).
    Raw(Bytes),
}

#[derive(Default)]
pub(crate) struct Out {
    pub(crate) queue: VecDeque<Item>,
    reserved: usize,
    /// The unwritten end of a WebSocket frame.
    pending: Option<Bytes>,
    pub(crate) ws: Option<WsWriter>,
    pub(crate) upgrading: bool,
    /// A WebSocket has asked to upgrade this polling session (from its request on, before its probe):
    /// any other WebSocket for the session is superfluous.
    pub(crate) upgrade_claimed: bool,
    broken: bool,
    /// A polling `GET` is waiting on this session.
    pub(crate) polling: bool,
    /// The socket did not take a whole write: what waits is written [`BATCH`] frames per call until
    /// the queue is empty again.
    behind: bool,
    /// Frames wait for the coalescing flush ([`crate::pace`]): the session is in its pacer's list.
    due: bool,
    /// How often the session gets bursts of frames, for the pacer ([`crate::pace::Rate`]).
    rate: crate::pace::Rate,
}

/// The part of a session the transports and the emits share; not generic, so [`Permit`] is not either.
pub(crate) struct Conn {
    pub(crate) protocol: ProtocolVersion,
    pub(crate) supports_binary: bool,
    max_buffer: usize,
    transport: AtomicU8,
    out: Mutex<Out>,
    /// Wakes whoever drives the session (its WebSocket reader, or its pending `GET`).
    pub(crate) wake: Notify,
    closed: AtomicBool,
    gone: AtomicBool,
    done: Notify,
    /// Heartbeat flags, read by the shared heartbeat timer.
    pub(crate) hb: AtomicU8,
    /// The budget frames in progress count against.
    pub(crate) budget: Option<crate::budget::FrameBudget>,
    /// The session's own frame limit, when it started with one.
    pub(crate) frame_limit: Option<crate::budget::FrameLimit>,
    /// The engine's write coalescing, and this session's id in its list.
    pub(crate) pace: Option<(std::sync::Arc<crate::pace::Pacer>, Sid)>,
}

/// [`Conn::hb`]: a pong (v4) or ping (v3) arrived since the timer last looked.
pub(crate) const HB_SEEN: u8 = 1;
/// [`Conn::hb`]: a ping (v4) was sent and its pong is awaited.
pub(crate) const HB_AWAITING: u8 = 2;

const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
pub(crate) const OP_CLOSE: u8 = 0x8;
pub(crate) const OP_PONG: u8 = 0xA;

/// The most frames [`Conn::poll_drain`] writes with one call.
const BATCH: usize = 32;

/// A frame header with the packet-type prefix after it, ready to write before the payload.
#[derive(Default)]
pub(crate) struct Head {
    buf: [u8; 16],
    len: usize,
}

impl Head {
    pub(crate) fn new(opcode: u8, prefix: &[u8], body_len: usize) -> Self {
        let mut buf = [0u8; 16];
        let len = prefix.len() + body_len;
        buf[0] = 0x80 | opcode;
        let mut at = 2;
        if len < 126 {
            buf[1] = len as u8;
        } else if let Ok(short) = u16::try_from(len) {
            buf[1] = 126;
            buf[2..4].copy_from_slice(&short.to_be_bytes());
            at = 4;
        } else {
            buf[1] = 127;
            buf[2..10].copy_from_slice(&(len as u64).to_be_bytes());
            at = 10;
        }
        buf[at..at + prefix.len()].copy_from_slice(prefix);
        Self {
            buf,
            len: at + prefix.len(),
        }
    }
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// How a packet goes on a WebSocket: opcode, type prefix, payload. The payload of a message is the
/// emitter's own buffer (a broadcast's recipients share one), never a copy.
fn ws_frame(packet: &Packet, protocol: ProtocolVersion) -> (Head, Bytes) {
    let text = |s: &'static str| (Head::new(OP_TEXT, s.as_bytes(), 0), Bytes::new());
    match packet {
        Packet::Message(msg) => {
            let body = Bytes::from(msg.clone());
            (Head::new(OP_TEXT, b"4", body.len()), body)
        }
        Packet::Binary(data) | Packet::BinaryV3(data) => {
            let prefix: &[u8] = if protocol == ProtocolVersion::V3 {
                &[4]
            } else {
                &[]
            };
            (Head::new(OP_BINARY, prefix, data.len()), data.clone())
        }
        Packet::Close => text("1"),
        Packet::Ping => text("2"),
        Packet::Pong => text("3"),
        Packet::Upgrade => text("5"),
        Packet::Noop => text("6"),
        Packet::PingUpgrade => text("2probe"),
        Packet::PongUpgrade => text("3probe"),
        Packet::Open(_) => {
            let body = Bytes::from(String::from(packet.clone()));
            (Head::new(OP_TEXT, b"", body.len()), body)
        }
    }
}

/// Writes `head` then `body` as far as the socket takes them now; returns the unwritten end.
fn write_now(
    w: Pin<&mut (dyn AsyncWrite + Send)>,
    cx: &mut Context<'_>,
    head: &[u8],
    body: &[u8],
) -> Poll<io::Result<Option<Bytes>>> {
    let total = head.len() + body.len();
    let n = match w.poll_write_vectored(cx, &[IoSlice::new(head), IoSlice::new(body)]) {
        Poll::Ready(Ok(0)) if total > 0 => {
            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
        }
        Poll::Ready(Ok(n)) => n,
        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
        Poll::Pending => return Poll::Pending,
    };
    if n == total {
        return Poll::Ready(Ok(None));
    }
    Poll::Ready(Ok(Some(rest_of(head, body, n))))
}

/// What is left of a frame (`head` then `body`) after its first `n` bytes went out.
fn rest_of(head: &[u8], body: &[u8], n: usize) -> Bytes {
    let mut rest = BytesMut::with_capacity(head.len() + body.len() - n);
    if n < head.len() {
        rest.put_slice(&head[n..]);
        rest.put_slice(body);
    } else {
        rest.put_slice(&body[n - head.len()..]);
    }
    rest.freeze()
}

/// A Socket.IO CONNECT packet inside an Engine.IO message (`4` + `0…`).
fn is_sio_connect(packet: &Packet) -> bool {
    matches!(packet, Packet::Message(m) if m.as_bytes().first() == Some(&b'0'))
}

/// Frames a WebSocket control frame (server frames are not masked).
pub(crate) fn control_frame(opcode: u8, payload: &[u8]) -> Bytes {
    let head = Head::new(opcode, b"", payload.len());
    let mut b = BytesMut::with_capacity(head.len + payload.len());
    b.put_slice(head.as_bytes());
    b.put_slice(payload);
    b.freeze()
}

enum PushError {
    Full,
    Closed,
}

impl Conn {
    pub(crate) fn new(
        protocol: ProtocolVersion,
        transport: TransportType,
        supports_binary: bool,
        max_buffer: usize,
    ) -> Self {
        Self {
            protocol,
            supports_binary,
            max_buffer,
            transport: AtomicU8::new(transport as u8),
            out: Mutex::new(Out::default()),
            wake: Notify::new(),
            closed: AtomicBool::new(false),
            gone: AtomicBool::new(false),
            done: Notify::new(),
            hb: AtomicU8::new(0),
            budget: None,
            frame_limit: None,
            pace: None,
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Out> {
        self.out.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn transport(&self) -> TransportType {
        if self.transport.load(Ordering::Relaxed) == TransportType::Websocket as u8 {
            TransportType::Websocket
        } else {
            TransportType::Polling
        }
    }

    pub(crate) fn is_closing(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// The transport has finished with the session.
    pub(crate) fn mark_gone(&self) {
        self.gone.store(true, Ordering::Release);
        self.done.notify_waiters();
    }

    fn reserve(&self) -> Result<Permit<'_>, TrySendError<()>> {
        if self.is_closing() {
            return Err(TrySendError::Closed(()));
        }
        let mut out = self.lock();
        if out.queue.len() + out.reserved >= self.max_buffer {
            return Err(TrySendError::Full(()));
        }
        out.reserved += 1;
        Ok(Permit { conn: Some(self) })
    }

    fn push_reserved(&self, packets: impl IntoIterator<Item = Packet>) {
        let mut out = self.lock();
        out.reserved -= 1;
        self.push_locked(out, packets);
    }

    fn push_bounded(&self, packet: Packet) -> Result<(), (PushError, Packet)> {
        if self.is_closing() {
            return Err((PushError::Closed, packet));
        }
        let out = self.lock();
        if out.queue.len() + out.reserved >= self.max_buffer {
            return Err((PushError::Full, packet));
        }
        self.push_locked(out, [packet]);
        Ok(())
    }

    /// Queues or writes control packets (pings, pongs, noops, close), which no buffer limit refuses.
    pub(crate) fn push_control(&self, packet: Packet) {
        let out = self.lock();
        self.push_locked(out, [packet]);
    }

    /// A volatile emit: written if the session is idle, dropped if anything is waiting.
    fn push_volatile(&self, packets: impl IntoIterator<Item = Packet>) -> bool {
        if self.is_closing() {
            return false;
        }
        let out = self.lock();
        // Frames waiting only for the coalescing flush do not make the socket busy.
        let free = out.queue.is_empty() || (out.due && !out.behind);
        if !free || out.pending.is_some() {
            return false;
        }
        self.push_locked(out, packets);
        true
    }

    pub(crate) fn push_raw(&self, frame: Bytes) {
        let mut out = self.lock();
        out.queue.push_back(Item::Raw(frame));
        drop(out);
        self.wake.notify_one();
    }

    fn push_locked(&self, mut out: MutexGuard<'_, Out>, packets: impl IntoIterator<Item = Packet>) {
        let mut queued = false;
        // Only a socket that gets frames in quick succession waits for the flush: it will likely have
        // more to send with the first. One that gets a frame now and then sends it at once.
        // Frames emitted together (a message and the counts that go with it) are one burst.
        let hot = self.pace.as_ref().is_some_and(|(p, _)| out.rate.note(p));
        let pacer = self.pace.as_ref().filter(|(p, _)| hot && p.active());
        let mut noted = false;
        for packet in packets {
            let idle =
                out.queue.is_empty() && out.pending.is_none() && !out.broken && !out.upgrading;
            // socketioxide 0.18 emits a namespace's CONNECT (`40…`) before it spawns that namespace's
            // connect handler, which registers the event handlers. Written at once, the CONNECT lets a
            // fast client's first event arrive before its handler exists, and the event is lost. So a
            // CONNECT goes through the session's task: woken here, that task runs after the connect
            // handler spawned next on this thread (tokio runs the last spawned task first), which is
            // the order the writer task of engineioxide 0.17 gave.
            let idle = idle && !is_sio_connect(&packet);
            if idle && pacer.is_some() && out.ws.is_some() {
                // Under load: the frame waits for the flush, and what follows it joins it.
                out.queue.push_back(Item::Packet(packet));
                out.due = true;
                noted = true;
                continue;
            }
            if idle && let Some(w) = out.ws.as_mut() {
                // A direct attempt: the no-op waker is never relied on, since on `Pending` the frame is
                // queued and the reader task, polling with its own waker, takes over.
                let (head, body) = ws_frame(&packet, self.protocol);
                let mut cx = Context::from_waker(Waker::noop());
                match write_now(w.as_mut(), &mut cx, head.as_bytes(), &body) {
                    Poll::Ready(Ok(None)) => continue,
                    Poll::Ready(Ok(Some(rest))) => {
                        out.pending = Some(rest);
                        out.behind = true;
                    }
                    Poll::Ready(Err(_)) => out.broken = true,
                    Poll::Pending => {
                        out.queue.push_back(Item::Packet(packet));
                        out.behind = true;
                    }
                }
                queued = true;
                continue;
            }
            out.queue.push_back(Item::Packet(packet));
            queued = true;
        }
        // Frames behind ones that wait for the flush go out with them.
        let flushed = out.due;
        drop(out);
        if noted && let Some((pacer, sid)) = pacer {
            pacer.add(*sid);
        }
        if queued && !flushed {
            self.wake.notify_one();
        }
    }

    /// Writes what waits for the coalescing flush, as far as the socket takes it now; the session's
    /// reader task, woken, writes the rest (or ends the session if the socket failed).
    pub(crate) fn flush_due(&self) {
        let mut cx = Context::from_waker(Waker::noop());
        match self.poll_drain(&mut cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(_)) => {
                self.lock().broken = true;
                self.wake.notify_one();
            }
            Poll::Pending => self.wake.notify_one(),
        }
    }

    /// Writes what waits, with the caller's waker: one frame per call while the socket keeps up, up to
    /// [`BATCH`] frames in one vectored write once it has fallen behind.
    /// `Pending` also when nothing waits (the caller wakes on [`Conn::wake`] for new work); `Ready(Ok)`
    /// once everything is written.
    pub(crate) fn poll_drain(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut out = self.lock();
        // Whoever drains takes over frames that waited for the coalescing flush, and writes them
        // together.
        let coalesced = std::mem::take(&mut out.due);
        if out.broken {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if out.upgrading || (out.queue.is_empty() && out.pending.is_none()) {
            return Poll::Pending;
        }
        let out = &mut *out;
        let Some(w) = out.ws.as_mut() else {
            return Poll::Pending;
        };
        loop {
            if let Some(rest) = out.pending.take() {
                match w.as_mut().poll_write(cx, &rest) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                    Poll::Ready(Ok(n)) if n < rest.len() => {
                        out.pending = Some(rest.slice(n..));
                        out.behind = true;
                    }
                    Poll::Ready(Ok(_)) => {}
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {
                        out.pending = Some(rest);
                        out.behind = true;
                        return Poll::Pending;
                    }
                }
                continue;
            }
            if out.queue.is_empty() {
                // Drained: give the queue's memory back.
                out.queue = VecDeque::new();
                out.behind = false;
                return w.as_mut().poll_flush(cx);
            }
            let mut frames: [(Head, Bytes); BATCH] = Default::default();
            // A socket that keeps up gets one frame per write, as it would from a writer that sends
            // each packet on its own (frames queued only to keep their order, a CONNECT and what follows
            // it, reach the client as separate reads). A socket that is behind would find its frames
            // merged in the kernel's buffer anyway, so they go out together: one call, not one each.
            let count = if out.behind || coalesced {
                out.queue.len().min(BATCH)
            } else {
                1
            };
            for (slot, item) in frames.iter_mut().zip(out.queue.iter()).take(count) {
                *slot = match item {
                    Item::Packet(p) => ws_frame(p, self.protocol),
                    Item::Raw(frame) => (Head::default(), frame.clone()),
                };
            }
            let mut slices = [IoSlice::new(&[]); 2 * BATCH];
            for (i, (head, body)) in frames[..count].iter().enumerate() {
                slices[2 * i] = IoSlice::new(head.as_bytes());
                slices[2 * i + 1] = IoSlice::new(body);
            }
            let total: usize = frames[..count]
                .iter()
                .map(|(h, b)| h.as_bytes().len() + b.len())
                .sum();
            let mut n = match w.as_mut().poll_write_vectored(cx, &slices[..2 * count]) {
                Poll::Ready(Ok(0)) if total > 0 => {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    out.behind = true;
                    return Poll::Pending;
                }
            };
            if n < total {
                out.behind = true;
            }
            for (head, body) in &frames[..count] {
                let head = head.as_bytes();
                let len = head.len() + body.len();
                out.queue.pop_front();
                if n >= len {
                    n -= len;
                    continue;
                }
                out.pending = Some(rest_of(head, body, n));
                break;
            }
        }
    }

    /// Takes the packets a polling response carries: as many as fit in `max` bytes, at least one.
    pub(crate) fn take_packets(&self, max: usize) -> Vec<Packet> {
        let mut out = self.lock();
        let mut size = 0;
        let mut taken = Vec::new();
        while let Some(Item::Packet(p)) = out.queue.front() {
            let n = p.get_size_hint(!self.supports_binary) + 8;
            if !taken.is_empty() && size + n > max {
                break;
            }
            size += n;
            if let Some(Item::Packet(p)) = out.queue.pop_front() {
                taken.push(p);
            }
        }
        if out.queue.is_empty() {
            out.queue = VecDeque::new();
        }
        taken
    }

    /// The largest frame or body this session may send now.
    pub(crate) fn frame_limit(&self, transport_limit: usize) -> usize {
        self.frame_limit
            .as_ref()
            .map_or(transport_limit, |l| l.get().min(transport_limit))
    }
}

/// How a session reports its end: to its engine, or (in socketioxide's tests) to a closure.
pub(crate) enum Closer {
    Engine(Weak<dyn SessionEnd>),
    #[cfg(feature = "__test_harness")]
    Fn(Box<dyn Fn(Sid, DisconnectReason) + Send + Sync>),
}

pub(crate) trait SessionEnd: Send + Sync {
    fn end(&self, sid: Sid, reason: DisconnectReason);
}

/// An Engine.IO session, as the application sees it.
pub struct Socket<D> {
    /// The session id.
    pub id: Sid,
    /// The Engine.IO version the client speaks.
    pub protocol: ProtocolVersion,
    /// The application's per-session state.
    pub data: D,
    /// The request that opened the session (without its body and upgrade handle).
    pub req_parts: Parts,
    pub(crate) conn: Conn,
    closer: Closer,
}

impl<D> Socket<D> {
    pub(crate) fn new(id: Sid, conn: Conn, data: D, req_parts: Parts, closer: Closer) -> Self {
        Self {
            id,
            protocol: conn.protocol,
            data,
            req_parts,
            conn,
            closer,
        }
    }

    /// The transport in use now (polling until an upgrade completes).
    pub fn transport_type(&self) -> TransportType {
        self.conn.transport()
    }

    pub(crate) fn set_websocket(&self) {
        self.conn
            .transport
            .store(TransportType::Websocket as u8, Ordering::Relaxed);
    }

    /// Reserves a place for one emit, so that it cannot fail: a full-buffer error when `max_buffer_size`
    /// packets already wait for a slow client, a closed error once the session is closing.
    pub fn reserve(&self) -> Result<Permit<'_>, TrySendError<()>> {
        self.conn.reserve()
    }

    /// Emits a text message; fails rather than grow the queue past `max_buffer_size`.
    pub fn emit(&self, msg: impl Into<Str>) -> Result<(), TrySendError<Str>> {
        self.conn
            .push_bounded(Packet::Message(msg.into()))
            .map_err(|(e, p)| {
                let msg = match p {
                    Packet::Message(m) => m,
                    _ => Str::from(""),
                };
                match e {
                    PushError::Full => TrySendError::Full(msg),
                    PushError::Closed => TrySendError::Closed(msg),
                }
            })
    }

    /// Emits a binary message; fails rather than grow the queue past `max_buffer_size`.
    pub fn emit_binary<B: Into<Bytes>>(&self, data: B) -> Result<(), TrySendError<Bytes>> {
        self.conn
            .push_bounded(Packet::Binary(data.into()))
            .map_err(|(e, p)| {
                let data = match p {
                    Packet::Binary(b) => b,
                    _ => Bytes::new(),
                };
                match e {
                    PushError::Full => TrySendError::Full(data),
                    PushError::Closed => TrySendError::Closed(data),
                }
            })
    }

    /// Emits a text message if the session is idle; returns whether it was sent.
    pub fn emit_volatile(&self, msg: impl Into<Str>) -> bool {
        self.conn.push_volatile([Packet::Message(msg.into())])
    }

    /// Emits a binary message if the session is idle; returns whether it was sent.
    pub fn emit_binary_volatile<B: Into<Bytes>>(&self, data: B) -> bool {
        self.conn.push_volatile([Packet::Binary(data.into())])
    }

    /// Emits a text message and its attachments if the session is idle; returns whether they were sent.
    pub fn emit_many_volatile(&self, msg: Str, data: VecDeque<Bytes>) -> bool {
        self.conn.push_volatile(
            std::iter::once(Packet::Message(msg)).chain(data.into_iter().map(Packet::Binary)),
        )
    }

    /// Closes the session: the client gets a close packet, and the handler's `on_disconnect` runs once.
    pub fn close(&self, reason: DisconnectReason) {
        self.close_with(reason, Some(Packet::Close));
    }

    /// Closes with `last` as the final packet (a noop when the client asked to close).
    pub(crate) fn close_with(&self, reason: DisconnectReason, last: Option<Packet>) {
        if self.conn.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        if let Some(p) = last {
            self.conn.push_control(p);
        }
        let polling = self.conn.lock().ws.is_none();
        if polling && self.conn.transport() == TransportType::Polling {
            self.conn.mark_gone();
        }
        self.conn.wake.notify_waiters();
        self.conn.wake.notify_one();
        match &self.closer {
            Closer::Engine(engine) => {
                if let Some(engine) = engine.upgrade() {
                    engine.end(self.id, reason);
                }
            }
            #[cfg(feature = "__test_harness")]
            Closer::Fn(f) => {
                self.conn.mark_gone();
                f(self.id, reason);
            }
        }
    }

    /// Whether the session has ended.
    pub fn is_closed(&self) -> bool {
        self.conn.gone.load(Ordering::Acquire)
    }

    /// Waits until the session has ended and its transport has let go.
    pub async fn closed(&self) {
        loop {
            let done = self.conn.done.notified();
            tokio::pin!(done);
            done.as_mut().enable();
            if self.is_closed() {
                return;
            }
            done.await;
        }
    }
}

impl<D: Send + Sync> crate::handle::Session for Socket<D> {
    fn close_now(&self) {
        self.close(DisconnectReason::ClosingServer);
    }
    fn emit_message(&self, msg: Str) -> Result<(), TrySendError<Str>> {
        self.emit(msg)
    }
}

impl<D: Send + Sync> Evict for Socket<D> {
    fn evict(&self) {
        self.close(DisconnectReason::TransportError);
    }
}

impl<D> std::fmt::Debug for Socket<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket")
            .field("id", &self.id)
            .field("protocol", &self.protocol)
            .field("transport", &self.conn.transport())
            .field("closed", &self.is_closed())
            .finish()
    }
}

#[doc(hidden)]
#[cfg(feature = "__test_harness")]
use std::sync::Arc;

#[doc(hidden)]
#[cfg(feature = "__test_harness")]
impl<D: Default + Send + Sync + 'static> Socket<D> {
    /// A session with no client, for socketioxide's tests: what it emits is dropped.
    pub fn new_dummy(
        sid: Sid,
        close_fn: Box<dyn Fn(Sid, DisconnectReason) + Send + Sync>,
    ) -> Arc<Socket<D>> {
        let (socket, mut rx) = Self::new_dummy_piped(sid, close_fn, 1024);
        tokio::spawn(async move { while rx.recv().await.is_some() {} });
        socket
    }

    /// A session with no client, for socketioxide's tests: what it emits comes out of the receiver.
    pub fn new_dummy_piped(
        sid: Sid,
        close_fn: Box<dyn Fn(Sid, DisconnectReason) + Send + Sync>,
        buffer_size: usize,
    ) -> (Arc<Socket<D>>, tokio::sync::mpsc::Receiver<Packet>) {
        let conn = Conn::new(
            ProtocolVersion::V4,
            TransportType::Websocket,
            true,
            buffer_size,
        );
        let parts = http::Request::new(()).into_parts().0;
        let socket = Arc::new(Socket::new(
            sid,
            conn,
            D::default(),
            parts,
            Closer::Fn(close_fn),
        ));
        let (tx, rx) = tokio::sync::mpsc::channel(buffer_size.max(1));
        let weak = Arc::downgrade(&socket);
        tokio::spawn(async move {
            loop {
                let Some(socket) = weak.upgrade() else { return };
                let packets = socket.conn.take_packets(usize::MAX);
                if packets.is_empty() {
                    if socket.is_closed() {
                        return;
                    }
                    socket.conn.wake.notified().await;
                    continue;
                }
                drop(socket);
                for p in packets {
                    if tx.send(p).await.is_err() {
                        return;
                    }
                }
            }
        });
        (socket, rx)
    }
}
