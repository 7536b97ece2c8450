//! What chatroom knows about one socket: which client it is, whom it acts for (and with which token),
//! which chat rooms it is in, its rate budget, and its inbox of events waiting to be handled in order.
//!
//! Everything mutable sits behind one small mutex, and the inbox is a plain queue drained by a task
//! that exists only while there is work: an idle socket costs a few hundred bytes here, not a task
//! and a channel.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde_json::Value;
use socketioxide::extract::{AckSender, SocketRef};
use socketioxide::socket::Sid;

use crate::auth::UserId;
use crate::auth::token::Claims;
use crate::metrics::Gauge;
use crate::services::users::Author;

/// The two client generations, told apart at connect: the Laravel-era client always puts `api_token`
/// in the handshake query (even before sign-in), the v3 client and modern clients never do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dialect {
    /// hua1995116/webchat and any socket.io 3/4 client: `roomid: 'room1'`, presence keyed by name.
    V3,
    /// The LaravelS tutorial's client: `roomid: '1'`, presence keyed by user id.
    Laravel,
}

impl Dialect {
    /// Both dialects.
    pub const ALL: [Self; 2] = [Self::V3, Self::Laravel];

    /// The prefix of this dialect's socket.io rooms: every chat room and every user has one room per
    /// dialect, so an event encoded once per dialect goes to exactly the sockets that read it.
    pub fn prefix(self) -> &'static str {
        match self {
            Self::V3 => "",
            Self::Laravel => "laravel:",
        }
    }
}

/// The token a socket was bound with: its id (for revocation) and expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub jti: String,
    pub expires_at: i64,
}

impl From<&Claims> for TokenInfo {
    fn from(c: &Claims) -> Self {
        Self {
            jti: c.jti.clone(),
            expires_at: c.exp,
        }
    }
}

/// Who a socket acts for.
#[derive(Debug, Clone)]
pub struct Binding {
    pub author: Author,
    pub token: Option<TokenInfo>,
    /// A hash of the raw token last verified for this binding, so a client repeating it in every
    /// payload (the Laravel-era client) costs one comparison, not a database look-up.
    pub token_hash: Option<u64>,
}

/// An item waiting in a socket's inbox.
pub enum Inbound {
    /// The socket connected, bound to this user if its handshake carried a usable token.
    Connect(Option<Binding>),
    /// A client event: name, first argument, acknowledgement callback.
    Event {
        name: String,
        data: Value,
        ack: AckSender,
    },
    /// The browser holding this socket authenticated over HTTP as this user.
    Adopt { binding: Binding, replace: bool },
    /// The browser holding this socket signed this user out over HTTP, or the token was revoked.
    Release(UserId),
    /// The token with this id was revoked: a socket bound with it stops acting for its user.
    Revoke(String),
    /// The socket is gone.
    Disconnect(String),
}

/// Events one socket may have waiting; beyond it new events are refused (`unavailable`).
pub const INBOX: usize = 64;

/// Starts the task that drains a socket's inbox. Implemented by the socket adapter, which knows how
/// to handle events; one shared value serves every socket.
pub trait Drainer: Send + Sync {
    /// Drains `conn`'s inbox on a new task, with `socket` as the socket handle.
    fn start(&self, conn: Arc<Conn>, socket: SocketRef);
}

/// One socket's place in the node's counts: its dialect (which the Pusher reads to skip dialects
/// nobody here speaks) and `chatroom_socket_connections`. Given back exactly once: when the socket
/// disconnects ([`Tally::release`]), or when the socket's state is dropped if it ended any other way
/// (a connect that failed after its middleware ran never hears a disconnect).
pub struct Tally {
    dialects: Arc<[AtomicUsize; 2]>,
    dialect: Dialect,
    gauge: Arc<Gauge>,
    counted: AtomicBool,
}

impl Tally {
    /// Counts a socket of `dialect` in `dialects` (the Pusher's) and in `gauge`.
    pub(super) fn new(
        dialects: Arc<[AtomicUsize; 2]>,
        dialect: Dialect,
        gauge: Arc<Gauge>,
    ) -> Self {
        dialects[dialect as usize].fetch_add(1, Ordering::Relaxed);
        gauge.inc();
        Self {
            dialects,
            dialect,
            gauge,
            counted: AtomicBool::new(true),
        }
    }

    /// Gives the socket's place back; later calls do nothing.
    pub fn release(&self) {
        if self.counted.swap(false, Ordering::AcqRel) {
            self.dialects[self.dialect as usize].fetch_sub(1, Ordering::Relaxed);
            self.gauge.dec();
        }
    }
}

impl Drop for Tally {
    fn drop(&mut self) {
        self.release();
    }
}

/// Per-socket state, shared by the socket's handlers (through the socket's extensions) and the realtime
/// core (which binds sockets on behalf of HTTP requests).
pub struct Conn {
    pub sid: Sid,
    pub dialect: Dialect,
    /// The socket's place in the node's counts, given back when it disconnects or is dropped.
    pub tally: Tally,
    drainer: Arc<dyn Drainer>,
    state: Mutex<State>,
    /// Held while an event is taken in, and while shutdown disconnects the socket; true once the
    /// socket was told it is disconnected.
    farewell: Mutex<bool>,
}

struct State {
    binding: Option<Binding>,
    /// Chat rooms the socket is in, with the version of the room's list it has seen.
    rooms: Vec<(String, u64)>,
    inbox: VecDeque<Inbound>,
    draining: bool,
    closed: bool,
    /// Shutting down: events are refused at once, no longer queued.
    stopping: bool,
    bucket: Bucket,
    flood_notice: Option<Instant>,
}

impl Conn {
    /// A new connection. Its inbox starts with `Connect(binding)`, handled before any event.
    pub fn new(
        sid: Sid,
        dialect: Dialect,
        events_per_second: u32,
        binding: Option<Binding>,
        drainer: Arc<dyn Drainer>,
        tally: Tally,
    ) -> Self {
        let mut inbox = VecDeque::new();
        inbox.push_back(Inbound::Connect(binding));
        Self {
            sid,
            dialect,
            tally,
            drainer,
            farewell: Mutex::new(false),
            state: Mutex::new(State {
                binding: None,
                rooms: Vec::new(),
                inbox,
                draining: false,
                closed: false,
                stopping: false,
                bucket: Bucket::new(events_per_second),
                flood_notice: None,
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The bound user.
    pub fn author(&self) -> Option<Author> {
        self.lock().binding.as_ref().map(|b| b.author.clone())
    }

    /// The binding: user and token.
    pub fn binding(&self) -> Option<Binding> {
        self.lock().binding.clone()
    }

    /// The bound user's id.
    pub fn user_id(&self) -> Option<UserId> {
        self.lock().binding.as_ref().map(|b| b.author.id)
    }

    /// Binds the socket (or unbinds it), returning the previous binding.
    pub fn set_binding(&self, binding: Option<Binding>) -> Option<Binding> {
        std::mem::replace(&mut self.lock().binding, binding)
    }

    /// Marks the socket as present in `room`; false if it already was.
    pub fn enter(&self, room: &str) -> bool {
        let mut state = self.lock();
        if state.rooms.iter().any(|(r, _)| r == room) {
            return false;
        }
        state.rooms.push((room.to_owned(), 0));
        true
    }

    /// Marks the socket as gone from `room`; false if it was not there.
    pub fn leave(&self, room: &str) -> bool {
        let mut state = self.lock();
        let before = state.rooms.len();
        state.rooms.retain(|(r, _)| r != room);
        state.rooms.len() != before
    }

    /// Whether the socket is present in `room`.
    pub fn is_in(&self, room: &str) -> bool {
        self.lock().rooms.iter().any(|(r, _)| r == room)
    }

    /// The rooms the socket is present in.
    pub fn rooms(&self) -> Vec<String> {
        self.lock().rooms.iter().map(|(r, _)| r.clone()).collect()
    }

    /// The version of `room`'s list this socket has seen (0: none, or not in the room).
    pub fn presence_seen(&self, room: &str) -> u64 {
        self.lock()
            .rooms
            .iter()
            .find(|(r, _)| r == room)
            .map_or(0, |(_, v)| *v)
    }

    /// Records that this socket's newest list of `room` may be `version` again (it was sent that one
    /// after a newer one), so the next round sends it the newest.
    pub fn forget_presence_after(&self, room: &str, version: u64) {
        if let Some((_, seen)) = self.lock().rooms.iter_mut().find(|(r, _)| r == room) {
            *seen = (*seen).min(version);
        }
    }

    /// Records that this socket was sent version `version` of `room`'s list.
    pub fn saw_presence(&self, room: &str, version: u64) {
        if let Some((_, seen)) = self.lock().rooms.iter_mut().find(|(r, _)| r == room) {
            *seen = (*seen).max(version);
        }
    }

    /// Takes one event's worth from the rate budget. False when the socket is over its rate.
    pub fn allow_event(&self) -> bool {
        self.lock().bucket.take(Instant::now())
    }

    /// Whether a flood refusal should also be told as a `notice` now (at most one per
    /// [`FLOOD_NOTICE_EVERY`], so the refusals themselves cannot flood).
    pub fn flood_notice_due(&self) -> bool {
        let now = Instant::now();
        let mut state = self.lock();
        if state
            .flood_notice
            .is_some_and(|t| now.duration_since(t) < FLOOD_NOTICE_EVERY)
        {
            return false;
        }
        state.flood_notice = Some(now);
        true
    }

    /// Queues `item` and makes sure a task drains the inbox. Events are refused (handed back) when the
    /// inbox is full; other items (bindings, the disconnect) are always queued, so presence is always
    /// cleaned up. Nothing is queued once the socket is gone.
    ///
    /// # Errors
    /// The item itself, when it was not queued.
    pub fn post(self: &Arc<Self>, item: Inbound, socket: &SocketRef) -> Result<(), Inbound> {
        let start = {
            let mut state = self.lock();
            if state.closed {
                return Err(item);
            }
            if matches!(item, Inbound::Event { .. })
                && (state.stopping || state.inbox.len() >= INBOX)
            {
                return Err(item);
            }
            if matches!(item, Inbound::Disconnect(_)) {
                state.closed = true;
            }
            state.inbox.push_back(item);
            !std::mem::replace(&mut state.draining, true)
        };
        if start {
            self.drainer.start(self.clone(), socket.clone());
        }
        Ok(())
    }

    /// Shutdown: from now on events are refused at once (handed back by [`post`](Self::post)) instead
    /// of queued, so every event the socket sends until it is disconnected is answered.
    pub fn stop(&self) {
        self.lock().stopping = true;
    }

    /// The gate between taking in events and saying goodbye: holds `true` once the socket was told
    /// it is disconnected.
    pub fn gate(&self) -> MutexGuard<'_, bool> {
        self.farewell.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether [`stop`](Self::stop) was called.
    pub fn is_stopping(&self) -> bool {
        self.lock().stopping
    }

    /// Whether the inbox is empty and no task is handling its events or waiting to send their
    /// replies.
    pub fn is_idle(&self) -> bool {
        let state = self.lock();
        state.inbox.is_empty() && !state.draining
    }

    /// Starts draining what is queued (the `Connect` item), if no task does yet.
    pub fn start_draining(self: &Arc<Self>, socket: &SocketRef) {
        let start = {
            let mut state = self.lock();
            !state.inbox.is_empty() && !std::mem::replace(&mut state.draining, true)
        };
        if start {
            self.drainer.start(self.clone(), socket.clone());
        }
    }

    /// The next item to handle. `None` tells the draining task to stop: the inbox is empty (and, when
    /// `idle`, the task has nothing else in flight, so it may end; a later post starts a new one).
    pub fn next(&self, idle: bool) -> Option<Inbound> {
        let mut state = self.lock();
        match state.inbox.pop_front() {
            Some(item) => Some(item),
            None => {
                if idle {
                    state.draining = false;
                    if state.inbox.capacity() > 8 {
                        state.inbox.shrink_to(0);
                    }
                }
                None
            }
        }
    }
}

/// A token bucket: `rate` tokens per second, holding at most `2 × rate`.
#[derive(Debug)]
pub struct Bucket {
    rate: f32,
    capacity: f32,
    tokens: f32,
    last: Instant,
}

impl Bucket {
    /// A bucket for `per_second` events, full.
    pub fn new(per_second: u32) -> Self {
        let rate = per_second.max(1) as f32;
        Self {
            rate,
            capacity: rate * 2.0,
            tokens: rate * 2.0,
            last: Instant::now(),
        }
    }

    /// Whether the bucket has refilled completely by `now` (an idle sender).
    pub fn is_full(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last);
        self.tokens + elapsed.as_secs_f32() * self.rate >= self.capacity
    }

    /// Takes a token at `now`; false when there is none.
    pub fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last);
        self.last = now;
        self.tokens = (self.tokens + elapsed.as_secs_f32() * self.rate).min(self.capacity);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// How long refusals for flooding are spaced out, so the refusals themselves cannot flood.
pub const FLOOD_NOTICE_EVERY: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_allows_bursts_then_the_rate() {
        let mut b = Bucket::new(5);
        let t = b.last;
        assert_eq!((0..20).filter(|_| b.take(t)).count(), 10);
        assert!(!b.take(t));
        assert!(b.take(t + Duration::from_millis(200)));
        assert!(!b.take(t + Duration::from_millis(200)));
    }
}
