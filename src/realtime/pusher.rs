//! The Pusher: the only way server code emits (laravel-swoole's `Pusher`).
//!
//! An event is pushed to a [`Target`]. The Pusher encodes it at most once per client dialect and sends
//! each encoding only to that dialect's sockets. A chat room is one channel per dialect (see
//! [`Dialect::prefix`]) in the Pusher's own index of who is in which ([`Channels`]): a broadcast is
//! encoded into one Socket.IO packet, which every recipient's session gets as it is. A user's sockets on
//! this node are listed in another index ([`UserSockets`]), each socket answering in its dialect. Neither
//! is kept in socketioxide's adapter, whose tables keep the size of the largest crowd. A push therefore
//! costs what its recipients cost, never what everyone online costs. In a cluster, a push to a room or
//! to users is also published through [`Publish`] (the cluster bus) with both dialects' frames, and every
//! other node hands them to its own sockets (`send_frames_here`); single sockets are always local, and so
//! are the `_here` sends (presence rounds and unread counts, which every node serves to its own sockets).
//!
//! After the server has closed (shutdown), pushes are dropped quietly.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use engineioxide::Str;
use serde_json::value::RawValue;
use smallvec::SmallVec;
use socketioxide::SocketIo;
use socketioxide::extract::SocketRef;
use socketioxide::operators::BroadcastOperators;
use socketioxide::socket::Sid;

use super::channels::Channels;
use super::conn::{Conn, Tally};
use super::dialect::Dialect;
use super::events::{Encoded, Frame, Outbound};
use super::peak::shrink_after_peak;
use crate::auth::UserId;
use crate::metrics::Gauge;
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
    /// Every socket of this node (room lists after an admin changed them; never over the bus: each
    /// node tells its own sockets).
    Everyone,
}

/// The channel of a chat room for sockets of `dialect` (its key in [`Channels`]).
pub fn room_channel(room: &str, dialect: Dialect) -> String {
    format!("{}room:{room}", dialect.prefix())
}

/// The sockets of this node bound to each user (laravel-swoole's `uid_<id>` rooms, kept here rather
/// than as socket.io rooms: an entry costs a few dozen bytes instead of a room in both of the
/// adapter's indexes, and the table gives its room back after a peak).
#[derive(Default)]
pub struct UserSockets {
    /// One socket inline: most users are on one device.
    by_user: Mutex<HashMap<UserId, SmallVec<[Sid; 1]>>>,
}

impl UserSockets {
    /// Lists `sid` as one of `user`'s sockets.
    pub fn add(&self, user: UserId, sid: Sid) {
        let mut by_user = self.by_user.lock().unwrap_or_else(PoisonError::into_inner);
        let sockets = by_user.entry(user).or_default();
        if !sockets.contains(&sid) {
            sockets.push(sid);
        }
    }

    /// Takes `sid` off `user`'s list.
    pub fn remove(&self, user: UserId, sid: Sid) {
        let mut by_user = self.by_user.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(sockets) = by_user.get_mut(&user) {
            sockets.retain(|s| *s != sid);
            if sockets.is_empty() {
                by_user.remove(&user);
                shrink_after_peak(&mut by_user);
            }
        }
    }

    /// How many sockets `user` has here.
    pub fn count(&self, user: UserId) -> usize {
        self.by_user
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&user)
            .map_or(0, SmallVec::len)
    }

    /// The sockets of `users` here, each once (a user named twice is reached once, as a socket.io
    /// room named twice would be). Targets name one or two users.
    fn of(&self, users: &[UserId]) -> SmallVec<[Sid; 2]> {
        let by_user = self.by_user.lock().unwrap_or_else(PoisonError::into_inner);
        users
            .iter()
            .enumerate()
            .filter(|(i, u)| !users[..*i].contains(u))
            .filter_map(|(_, u)| by_user.get(u))
            .flatten()
            .copied()
            .collect()
    }
}

/// Where the Pusher publishes what the sockets of other nodes must hear: the cluster bus
/// (`realtime/cluster.rs`), when this node is one of several.
pub trait Publish: Send + Sync {
    /// Publishes an event for `target` (never a single socket), with its frames in both dialects
    /// (`[v3, laravel]`).
    fn emit(&self, target: &Target, frames: [&[Frame]; 2]);
}

/// Sends events. Cheap to clone.
#[derive(Clone)]
pub struct Pusher {
    io: SocketIo,
    rooms: Arc<Rooms>,
    /// Sockets of this node per dialect: a dialect nobody here speaks is not addressed here (other
    /// nodes address their own sockets).
    dialects: Arc<[AtomicUsize; 2]>,
    /// Each user's sockets on this node.
    users: Arc<UserSockets>,
    /// The sockets of this node in each chat room's channels.
    channels: Arc<Channels>,
    /// The cluster bus, when this node is one of several.
    bus: Option<Arc<dyn Publish>>,
}

impl Pusher {
    /// A pusher over `io`, numbering group rooms as `rooms` does for the Laravel-era client.
    pub fn new(io: SocketIo, rooms: Arc<Rooms>, bus: Option<Arc<dyn Publish>>) -> Self {
        Self {
            io,
            rooms,
            dialects: Arc::default(),
            users: Arc::default(),
            channels: Arc::default(),
            bus,
        }
    }

    /// Counts a socket of `dialect` here, and in `gauge`, until the returned tally is released.
    pub fn tally(&self, dialect: Dialect, gauge: Gauge) -> Tally {
        Tally::new(self.dialects.clone(), dialect, gauge)
    }

    /// The group rooms this pusher numbers (the node's list).
    pub fn rooms(&self) -> &Rooms {
        &self.rooms
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
        Dialect::ALL
            .iter()
            .flat_map(|d| self.channels.sids(&room_channel(room, *d)))
            .filter_map(|sid| ns.get_socket(sid))
            .collect()
    }

    /// Which sockets of this node are in which chat room channel (entering and leaving keep it).
    pub fn channels(&self) -> &Channels {
        &self.channels
    }

    /// The index of each user's sockets on this node (binding and unbinding keep it).
    pub fn users(&self) -> &UserSockets {
        &self.users
    }

    /// The sockets of this node bound to `user`, of every dialect.
    pub fn user_sockets(&self, user: UserId) -> Vec<SocketRef> {
        self.sockets_of(&[user]).collect()
    }

    /// The connected sockets of this node bound to any of `users`.
    fn sockets_of(&self, users: &[UserId]) -> impl Iterator<Item = SocketRef> {
        let ns = self.ns();
        let sids = if ns.is_some() {
            self.users.of(users)
        } else {
            SmallVec::new()
        };
        sids.into_iter()
            .filter_map(move |sid| ns.as_ref()?.get_socket(sid))
    }

    /// A socket of this node, if it is still connected.
    pub fn socket(&self, sid: Sid) -> Option<SocketRef> {
        self.ns()?.get_socket(sid)
    }

    /// Prepares `event` for sending (encodings are written on first use).
    pub fn encode<'a>(&'a self, event: &'a Outbound) -> Encoded<'a> {
        Encoded::new(event, &self.rooms)
    }

    /// Sends `event` to `target`, each socket in its own dialect, on every node.
    pub async fn push(&self, target: &Target, event: &Outbound) {
        self.send(target, &self.encode(event)).await;
    }

    /// Sends `event` to `target`'s sockets on this node only.
    pub async fn push_here(&self, target: &Target, event: &Outbound) {
        self.send_here(target, &self.encode(event)).await;
    }

    /// Sends an encoded event to `target`, on this node and (in a cluster) on the others. Sockets that
    /// cannot take it (a full send buffer: a client that stopped reading) are logged and skipped; the
    /// others still get it.
    pub async fn send(&self, target: &Target, event: &Encoded<'_>) {
        self.send_here(target, event).await;
        if let Some(bus) = &self.bus
            && !matches!(target, Target::Socket(_) | Target::Everyone)
            && !self.is_closed()
        {
            bus.emit(
                target,
                [event.frames(Dialect::V3), event.frames(Dialect::Laravel)],
            );
        }
    }

    /// Sends an encoded event to `target`'s sockets on this node only.
    pub async fn send_here(&self, target: &Target, event: &Encoded<'_>) {
        if let Target::Everyone = target {
            // One encoding for everyone: only events both dialects read alike go to everyone.
            if let Some(ns) = self.ns() {
                let everyone = ns.local();
                for (name, payload) in event.frames(Dialect::V3) {
                    emit(&everyone, name, payload).await;
                }
            }
            return;
        }
        if let Target::Socket(sid) = target {
            if let Some(socket) = self.socket(*sid) {
                send_to_socket(&socket, event);
            }
            return;
        }
        if let Target::Users(users) = target {
            for socket in self.sockets_of(users) {
                send_to_socket(&socket, event);
            }
            return;
        }
        for dialect in Dialect::ALL {
            if self.reaches(dialect) {
                let frames = event.frames(dialect).iter();
                self.send_to_room(target, dialect, frames.map(|(n, p)| (*n, &**p)));
            }
        }
    }

    /// Hands an event another node published to `target`'s sockets on this node.
    pub(crate) async fn send_frames_here(
        &self,
        target: &Target,
        frames: &[Vec<(String, Box<RawValue>)>; 2],
    ) {
        if let Target::Users(users) = target {
            for socket in self.sockets_of(users) {
                emit_frames(&socket, &frames[dialect_of(&socket) as usize]);
            }
            return;
        }
        for dialect in Dialect::ALL {
            if self.reaches(dialect) {
                let frames = frames[dialect as usize].iter();
                self.send_to_room(target, dialect, frames.map(|(n, p)| (n.as_str(), &**p)));
            }
        }
    }

    /// Whether sockets of `dialect` may be reached here: someone here speaks it and the server is open.
    fn reaches(&self, dialect: Dialect) -> bool {
        self.spoken(dialect) && !self.is_closed()
    }

    /// Sends `frames` to `target`'s sockets of `dialect` on this node when `target` is a chat room (its
    /// channel for `dialect`; never through another node: the bus carries what other nodes need). Each
    /// frame is encoded once, when someone there is to get it, and every recipient gets the same bytes.
    fn send_to_room<'f>(
        &self,
        target: &Target,
        dialect: Dialect,
        frames: impl Iterator<Item = (&'f str, &'f RawValue)>,
    ) {
        let (room, except) = match target {
            Target::Room(room) => (room, None),
            // laravel-swoole's `toOthers`: the sender's socket is left out.
            Target::RoomExcept(room, sid) => (room, Some(*sid)),
            Target::Socket(_) | Target::Everyone | Target::Users(_) => return,
        };
        let channel = room_channel(room, dialect);
        for (name, payload) in frames {
            let missed = self
                .channels
                .send(&channel, except, || event_packet(name, payload));
            if missed > 0 {
                tracing::warn!(event = name, missed, "some sockets missed an event");
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

async fn emit(operators: &BroadcastOperators, name: &str, payload: &RawValue) {
    if let Err(e) = operators.clone().emit(name, payload).await {
        tracing::warn!(event = name, error = %e, "some sockets missed an event");
    }
}

/// The Socket.IO EVENT packet of `name` with `payload` as its one argument, in the default namespace:
/// `2["name",payload]`, byte for byte what socketioxide's parser writes for `emit(name, payload)`.
fn event_packet(name: &str, payload: &RawValue) -> Str {
    let mut packet = Vec::with_capacity(name.len() + payload.get().len() + 8);
    packet.push(b'2');
    serde_json::to_writer(&mut packet, &(name, payload))
        .expect("a string and a JSON value always serialize");
    String::from_utf8(packet)
        .expect("serde_json writes UTF-8")
        .into()
}

/// The dialect `socket` speaks (told at connect).
fn dialect_of(socket: &SocketRef) -> Dialect {
    socket
        .extensions
        .get::<Arc<Conn>>()
        .map_or(Dialect::V3, |c| c.dialect)
}

fn send_to_socket(socket: &SocketRef, event: &Encoded<'_>) {
    emit_frames(socket, event.frames(dialect_of(socket)));
}

/// Sends `frames` (event name and payload) to one socket; a socket that cannot take them is skipped.
fn emit_frames<N: AsRef<str>>(socket: &SocketRef, frames: &[(N, Box<RawValue>)]) {
    for (name, payload) in frames {
        let (name, payload): (&str, &RawValue) = (name.as_ref(), payload);
        if let Err(e) = socket.emit(name, payload) {
            tracing::debug!(sid = %socket.id, event = name, error = %e, "a socket missed an event");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_packet_is_what_socketioxide_writes_for_an_emit() {
        use socketioxide_core::packet::Packet;
        use socketioxide_core::parser::Parse;
        use socketioxide_parser_common::CommonParser;
        let cases = [
            (
                "message",
                r#"{"msg":"caf\u00e9 \"x\" 😀","n":[1,2.5,null],"t":true}"#,
            ),
            ("a\"b\\c\u{1}\n", "[1,2]"),
            ("room", r#""text""#),
            ("count", "0"),
            ("x", "[]"),
            ("y", "null"),
        ];
        for (name, raw) in cases {
            let payload = RawValue::from_string(raw.to_owned()).unwrap();
            let value = CommonParser.encode_value(&*payload, Some(name)).unwrap();
            let theirs = match CommonParser.encode(Packet::event("/", value)) {
                socketioxide_core::Value::Str(s, None) => s,
                other => panic!("{other:?}"),
            };
            assert_eq!(
                event_packet(name, &payload).as_str(),
                theirs.as_str(),
                "{name} {raw}"
            );
        }
    }

    fn sid(n: u8) -> Sid {
        format!("AAAAAAAAAAAAAAA{}", char::from(b'A' + n))
            .parse()
            .expect("a socket id")
    }

    #[test]
    fn a_users_sockets_are_listed_once_and_forgotten_with_the_last() {
        let users = UserSockets::default();
        users.add(7, sid(1));
        users.add(7, sid(1));
        users.add(7, sid(2));
        users.add(8, sid(3));
        assert_eq!(users.count(7), 2, "a socket bound twice is listed once");
        assert_eq!(users.of(&[7, 8, 9]).len(), 3);
        assert_eq!(
            users.of(&[7, 7]).len(),
            2,
            "a user named twice is reached once"
        );
        users.remove(7, sid(1));
        assert_eq!(users.of(&[7]).as_slice(), &[sid(2)]);
        users.remove(7, sid(2));
        users.remove(8, sid(9));
        assert_eq!(users.count(7), 0);
        assert_eq!(
            users.count(8),
            1,
            "another socket's removal leaves the user's own"
        );
        let by_user = users.by_user.lock().unwrap_or_else(PoisonError::into_inner);
        assert!(!by_user.contains_key(&7), "no empty list is kept");
    }
}
