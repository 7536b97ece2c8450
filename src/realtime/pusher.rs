//! The Pusher: the only way server code emits (laravel-swoole's `Pusher`).
//!
//! An event is pushed to a [`Target`]. The Pusher encodes it at most once per client dialect and sends
//! each encoding only to that dialect's sockets, by addressing a socket.io room per dialect: every chat
//! room and every user has one room per dialect (see [`Dialect::prefix`]). A push therefore costs what
//! its recipients cost, never what everyone online costs. Rooms go through the adapter, so the same
//! calls reach other nodes once an adapter shares rooms; single sockets are always local.
//!
//! After the server has closed (shutdown), pushes are dropped quietly.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::value::RawValue;
use socketioxide::SocketIo;
use socketioxide::extract::SocketRef;
use socketioxide::operators::BroadcastOperators;
use socketioxide::socket::Sid;

use super::conn::{Conn, Dialect};
use super::events::{Encoded, Outbound};
use crate::auth::UserId;
use crate::services::rooms::Rooms;

/// Whom an event is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Every socket present in a chat room.
    Room(String),
    /// Every socket present in a chat room except one (laravel-swoole's `toOthers`).
    RoomExcept(String, Sid),
    /// Every socket of these users, on every device.
    Users(Vec<UserId>),
    /// One socket of this node.
    Socket(Sid),
}

/// The socket.io room of a chat room, for sockets of `dialect`.
pub fn room_channel(room: &str, dialect: Dialect) -> String {
    format!("{}room:{room}", dialect.prefix())
}

/// The socket.io room holding every socket of `dialect` bound to `user` (laravel-swoole's `uid_<id>`).
pub fn user_channel(user: UserId, dialect: Dialect) -> String {
    format!("{}uid:{user}", dialect.prefix())
}

/// Sends events. Cheap to clone.
#[derive(Clone)]
pub struct Pusher {
    io: SocketIo,
    rooms: Arc<Rooms>,
    /// Sockets of this node per dialect: a dialect nobody speaks is not encoded or addressed. (With
    /// an adapter that shares rooms between nodes, other nodes' sockets count too: address both.)
    dialects: Arc<[AtomicUsize; 2]>,
}

impl Pusher {
    /// A pusher over `io`, numbering group rooms as `rooms` does for the Laravel-era client.
    pub fn new(io: SocketIo, rooms: Arc<Rooms>) -> Self {
        Self {
            io,
            rooms,
            dialects: Arc::default(),
        }
    }

    /// A socket of `dialect` connected.
    pub fn dialect_joined(&self, dialect: Dialect) {
        self.dialects[dialect as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// A socket of `dialect` disconnected.
    pub fn dialect_left(&self, dialect: Dialect) {
        self.dialects[dialect as usize].fetch_sub(1, Ordering::Relaxed);
    }

    /// Whether any socket of this node speaks `dialect`.
    fn spoken(&self, dialect: Dialect) -> bool {
        self.dialects[dialect as usize].load(Ordering::Relaxed) > 0
    }

    /// laravel-swoole's `toUserId`: the target holding every socket of these users.
    pub fn to_user_id(ids: &[UserId]) -> Target {
        Target::Users(ids.to_vec())
    }

    /// The default namespace, unless the server has closed.
    fn ns(&self) -> Option<BroadcastOperators> {
        self.io.of("/")
    }

    /// Whether the server has closed (after shutdown nothing is sent).
    pub fn is_closed(&self) -> bool {
        self.ns().is_none()
    }

    /// The sockets of this node present in chat room `room`, of every dialect.
    pub fn room_sockets(&self, room: &str) -> Vec<SocketRef> {
        let Some(ns) = self.ns() else {
            return Vec::new();
        };
        let channels: Vec<String> = Dialect::ALL
            .iter()
            .map(|d| room_channel(room, *d))
            .collect();
        ns.to(channels).local().sockets()
    }

    /// The sockets of this node bound to `user`, of every dialect.
    pub fn user_sockets(&self, user: UserId) -> Vec<SocketRef> {
        let Some(ns) = self.ns() else {
            return Vec::new();
        };
        let channels: Vec<String> = Dialect::ALL
            .iter()
            .map(|d| user_channel(user, *d))
            .collect();
        ns.to(channels).local().sockets()
    }

    /// A socket of this node, if it is still connected.
    pub fn socket(&self, sid: Sid) -> Option<SocketRef> {
        self.ns()?.get_socket(sid)
    }

    /// Prepares `event` for sending (encodings are written on first use).
    pub fn encode<'a>(&'a self, event: &'a Outbound) -> Encoded<'a> {
        Encoded::new(event, &self.rooms)
    }

    /// Sends `event` to `target`, each socket in its own dialect.
    pub async fn push(&self, target: &Target, event: &Outbound) {
        self.send(target, &self.encode(event)).await;
    }

    /// Sends an encoded event to `target`. Sockets that cannot take it (a full send buffer: a client
    /// that stopped reading) are logged and skipped; the others still get it.
    pub async fn send(&self, target: &Target, event: &Encoded<'_>) {
        let Some(ns) = self.ns() else {
            return;
        };
        for dialect in Dialect::ALL {
            if !self.spoken(dialect) && !matches!(target, Target::Socket(_)) {
                continue;
            }
            let operators = match target {
                Target::Socket(sid) => {
                    if let Some(socket) = ns.get_socket(*sid) {
                        send_to_socket(&socket, event);
                    }
                    return;
                }
                Target::Room(room) => ns.clone().to(room_channel(room, dialect)),
                // A socket's own broadcast operator leaves that socket out.
                Target::RoomExcept(room, sid) => match ns.get_socket(*sid) {
                    Some(socket) => socket.to(room_channel(room, dialect)),
                    None => ns.clone().to(room_channel(room, dialect)),
                },
                Target::Users(users) => ns.clone().to(users
                    .iter()
                    .map(|u| user_channel(*u, dialect))
                    .collect::<Vec<_>>()),
            };
            for (name, payload) in event.frames(dialect) {
                let payload: &RawValue = payload;
                if let Err(e) = operators.clone().emit(*name, payload).await {
                    tracing::warn!(event = *name, error = %e, "some sockets missed an event");
                }
            }
        }
    }

    /// Sends an encoded event to sockets already in hand (presence rounds pace themselves this way).
    pub fn send_to(&self, sockets: &[SocketRef], event: &Encoded<'_>) {
        for socket in sockets {
            send_to_socket(socket, event);
        }
    }
}

fn send_to_socket(socket: &SocketRef, event: &Encoded<'_>) {
    let dialect = socket
        .extensions
        .get::<Arc<Conn>>()
        .map_or(Dialect::V3, |c| c.dialect);
    for (name, payload) in event.frames(dialect) {
        let payload: &RawValue = payload;
        if let Err(e) = socket.emit(*name, payload) {
            tracing::debug!(sid = %socket.id, event = *name, error = %e, "a socket missed an event");
        }
    }
}
