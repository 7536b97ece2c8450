//! The Pusher: the only way server code emits.
//!
//! An event is pushed to a [`Target`]; the Pusher encodes it once per client dialect and sends each
//! encoding to the target's sockets of that dialect only. Targets are socket.io rooms (a chat room, a
//! user's sockets, one socket), so the same calls reach other nodes once an adapter shares rooms.

use std::sync::Arc;

use socketioxide::SocketIo;
use socketioxide::socket::Sid;

use super::conn::Dialect;
use super::events::Outbound;
use crate::auth::UserId;
use crate::services::rooms::Rooms;

/// Whom an event is for.
#[derive(Debug, Clone)]
pub enum Target {
    /// Every socket present in a chat room.
    Room(String),
    /// Every socket present in a chat room except one (usually the sender).
    RoomExcept(String, Sid),
    /// Every socket of these users, on every device.
    Users(Vec<UserId>),
    /// One socket.
    Socket(Sid),
}

/// The socket.io room of a chat room.
pub fn room_channel(room: &str) -> String {
    format!("room:{room}")
}

/// The socket.io room holding every socket bound to `user` (Laravel-swoole's `uid_<id>`).
pub fn user_channel(user: UserId) -> String {
    format!("uid:{user}")
}

/// Sends events. Cheap to clone.
#[derive(Clone)]
pub struct Pusher {
    io: SocketIo,
    rooms: Arc<Rooms>,
}

impl Pusher {
    /// A pusher over `io`, numbering group rooms as `rooms` does for the Laravel-era client.
    pub fn new(io: SocketIo, rooms: Arc<Rooms>) -> Self {
        Self { io, rooms }
    }

    /// Sends `event` to `target`, each socket in its own dialect. Sockets that cannot take it (a full
    /// send buffer: a client that stopped reading) are logged and skipped; the others still get it.
    pub async fn push(&self, target: &Target, event: &Outbound) {
        for dialect in Dialect::ALL {
            for (name, payload) in event.encode(dialect, &self.rooms) {
                let operators = match target {
                    Target::Room(room) => self.io.to(room_channel(room)),
                    Target::RoomExcept(room, sid) => self.io.to(room_channel(room)).except(*sid),
                    Target::Users(users) => self
                        .io
                        .to(users.iter().map(|u| user_channel(*u)).collect::<Vec<_>>()),
                    Target::Socket(sid) => self.io.to(*sid),
                };
                let sent = operators
                    .except(dialect.other().room())
                    .emit(name, &payload)
                    .await;
                if let Err(e) = sent {
                    tracing::warn!(event = name, error = %e, "some sockets missed an event");
                }
            }
        }
    }
}
