//! What chatroom knows about one socket: which client it is, whom it acts for (and with which token),
//! which chat rooms it is in, and its place in the node's counts. Its events wait in its
//! [`Inbox`] (`realtime/inbox.rs`).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use socketioxide::socket::Sid;

use self::inbox::Inbox;
use super::dialect::Dialect;
use super::identity::Binding;
use crate::auth::UserId;
use crate::metrics::Gauge;
use crate::services::users::Author;

pub mod inbox;

/// One socket's place in the node's counts: its dialect (which the Pusher reads to skip dialects
/// nobody here speaks) and `chatroom_socket_connections`. Given back exactly once: when the socket
/// disconnects ([`Tally::release`]), or when the socket's state is dropped if it ended any other way
/// (a connect that failed after its middleware ran never hears a disconnect).
pub struct Tally {
    dialects: Arc<[AtomicUsize; 2]>,
    dialect: Dialect,
    gauge: Gauge,
    counted: AtomicBool,
}

impl Tally {
    /// Counts a socket of `dialect` in `dialects` (the Pusher's) and in `gauge`.
    pub(super) fn new(dialects: Arc<[AtomicUsize; 2]>, dialect: Dialect, gauge: Gauge) -> Self {
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

/// What the core knows about one socket: its client's dialect, whom it acts for, which chat rooms it
/// is in, its place in the node's counts, and its [`Inbox`]. Shared by the socket's handlers (through
/// the socket's extensions) and the core (which binds sockets on behalf of HTTP requests).
pub struct Conn {
    pub sid: Sid,
    pub dialect: Dialect,
    /// The socket's place in the node's counts, given back when it disconnects or is dropped.
    pub tally: Tally,
    pub(super) inbox: Inbox,
    state: Mutex<State>,
}

struct State {
    binding: Option<Binding>,
    /// Chat rooms the socket is in, with the version of the room's list it has seen.
    rooms: Vec<(String, u64)>,
}

impl Conn {
    /// A new connection, not bound yet: its inbox's first item (`Connect`) binds it.
    pub fn new(sid: Sid, dialect: Dialect, inbox: Inbox, tally: Tally) -> Self {
        Self {
            sid,
            dialect,
            tally,
            inbox,
            state: Mutex::new(State {
                binding: None,
                rooms: Vec::new(),
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
}
