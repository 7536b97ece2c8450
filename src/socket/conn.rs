//! What chatroom knows about one socket: which client it is, whom it is bound to, which rooms it is
//! present in, and its inbox of events waiting to be handled in order.

use std::collections::BTreeSet;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use entity::user;
use serde_json::Value;
use socketioxide::extract::AckSender;
use tokio::sync::mpsc;

use crate::auth::UserId;

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

    /// The socket.io room every socket of this dialect is in, so one emit can reach only them.
    pub fn room(self) -> &'static str {
        match self {
            Self::V3 => "dialect:v3",
            Self::Laravel => "dialect:laravel",
        }
    }

    /// The room of the other dialect.
    pub fn other(self) -> Self {
        match self {
            Self::V3 => Self::Laravel,
            Self::Laravel => Self::V3,
        }
    }
}

/// An event waiting in a socket's inbox.
pub enum Inbound {
    /// A client event: name, first argument, acknowledgement callback.
    Event(String, Value, Option<AckSender>),
    /// The browser holding this socket authenticated over HTTP as this user.
    Adopt {
        user: Box<user::Model>,
        replace: bool,
    },
    /// The browser holding this socket signed this user out over HTTP.
    Release(UserId),
    /// The socket is gone.
    Disconnect(String),
}

/// Events one socket may have waiting; beyond it, new events are dropped (a flood).
pub const INBOX: usize = 64;

/// Per-socket state, shared by the socket's handlers (through the socket's extensions) and HTTP
/// handlers that bind sockets.
pub struct Conn {
    pub dialect: Dialect,
    user: Mutex<Option<user::Model>>,
    rooms: Mutex<BTreeSet<String>>,
    inbox: Mutex<Option<mpsc::Sender<Inbound>>>,
    bucket: Mutex<Bucket>,
}

impl Conn {
    /// A new connection and the receiving end of its inbox.
    pub fn new(dialect: Dialect, events_per_second: u32) -> (Self, mpsc::Receiver<Inbound>) {
        let (tx, rx) = mpsc::channel(INBOX);
        let conn = Self {
            dialect,
            user: Mutex::new(None),
            rooms: Mutex::new(BTreeSet::new()),
            inbox: Mutex::new(Some(tx)),
            bucket: Mutex::new(Bucket::new(events_per_second)),
        };
        (conn, rx)
    }

    /// The bound user.
    pub fn user(&self) -> Option<user::Model> {
        lock(&self.user).clone()
    }

    /// The bound user's id.
    pub fn user_id(&self) -> Option<UserId> {
        lock(&self.user).as_ref().map(|u| u.id)
    }

    /// Binds the socket to `user` (or unbinds it), returning the previous user.
    pub fn set_user(&self, user: Option<user::Model>) -> Option<user::Model> {
        std::mem::replace(&mut *lock(&self.user), user)
    }

    /// Marks the socket as present in `room`; false if it already was.
    pub fn enter(&self, room: &str) -> bool {
        lock(&self.rooms).insert(room.to_owned())
    }

    /// Marks the socket as gone from `room`; false if it was not there.
    pub fn leave(&self, room: &str) -> bool {
        lock(&self.rooms).remove(room)
    }

    /// Whether the socket is present in `room`.
    pub fn is_in(&self, room: &str) -> bool {
        lock(&self.rooms).contains(room)
    }

    /// The rooms the socket is present in.
    pub fn rooms(&self) -> Vec<String> {
        lock(&self.rooms).iter().cloned().collect()
    }

    /// Queues an event for the socket's handler task. False when the inbox is full or closed.
    pub fn post(&self, item: Inbound) -> bool {
        lock(&self.inbox)
            .as_ref()
            .is_some_and(|tx| tx.try_send(item).is_ok())
    }

    /// Queues the disconnect and closes the inbox: the handler task finishes what is queued, then ends.
    pub fn close(&self, reason: String) {
        if let Some(tx) = lock(&self.inbox).take() {
            // Sent even when the inbox is full, so presence is always cleaned up.
            tokio::spawn(async move {
                let _ = tx.send(Inbound::Disconnect(reason)).await;
            });
        }
    }

    /// Takes one event's worth from the rate budget. False when the socket is over its rate.
    pub fn allow_event(&self) -> bool {
        lock(&self.bucket).take(Instant::now())
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A token bucket: `rate` tokens per second, holding at most `2 × rate`.
#[derive(Debug)]
struct Bucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    fn new(per_second: u32) -> Self {
        let rate = f64::from(per_second.max(1));
        Self {
            rate,
            capacity: rate * 2.0,
            tokens: rate * 2.0,
            last: Instant::now(),
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last);
        self.last = now;
        self.tokens = (self.tokens + elapsed.as_secs_f64() * self.rate).min(self.capacity);
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
