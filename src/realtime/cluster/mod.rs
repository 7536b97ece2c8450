//! Several nodes as one chat server: a bus over Redis pub/sub that carries what one node does to the
//! others (`--redis-url`).
//!
//! Notes travel on channels scoped to who needs them (`wire::Channel`), so a node hears only about the
//! rooms and users it serves:
//!
//! * **A room's channel** (`<prefix>:r:<room>`), read by a node while at least one of its users is in
//!   the room: the room's events (sent with their frames already encoded for both dialects; each node
//!   hands them to its own sockets in the room), who enters and leaves it, and each message posted (for
//!   unread counts). A node that starts reading a room asks the others who of theirs is in it
//!   (`RoomAsk`, answered by `RoomSnapshot`); a node that stops reading forgets the room's remote
//!   members.
//! * **A user's channel** (`<prefix>:u:<id>`), read while the user is online on the node: events for
//!   that user (private messages, `friend`), their private rooms' posted messages, token revocations
//!   and bans.
//! * **The control channel** (`<prefix>:ctl`), read by every node: liveness, who is online, snapshots,
//!   the group room list, and once a second per node a *digest* of what it posted per group room
//!   (`digest.rs`), from which nodes not reading a room keep its unread counts.
//!
//! Reading a channel follows this node's presence (`subs.rs`); a channel no longer needed is kept for
//! `subs::LINGER`. Single sockets, presence rounds and unread ticks stay local: each node serves its
//! own sockets.
//!
//! **Presence** travels as changes of each node's own sockets ([`Change`]): online and offline on the
//! control channel, in and out of a room on the room's channel. A receiving node counts each other node
//! as one more holder, so "is this user online?" and the room lists cover the cluster. Notes on the
//! control channel and on each room's channel are numbered per sending node; a node that sees a gap (a
//! note lost while Redis was away), or hears a node for the first time, asks that node for a
//! *snapshot* (of the room, or of all its presence) and replaces what it knew. Every node says it is
//! alive every [`HEARTBEAT`]; a node not heard for [`PEER_TTL`] (it crashed) is forgotten with its
//! users, and a node that stops cleanly says goodbye.
//!
//! Redis pub/sub is at-most-once, and so is the bus: notes published while Redis is away are dropped
//! (counted in the log). Local delivery never waits for Redis. Messages are stored in the database
//! before any of this, so a client that missed one reads it in the history. The publisher and the
//! subscriber each reconnect on their own until Redis is back; meanwhile the node is *degraded*
//! ([`Bus::is_connected`], reported by `/readyz`). After a reconnection the subscriber reads its
//! channels again and asks every node for a snapshot, so presence converges again.
//!
//! Why not the socketioxide-redis adapter: its stock driver never recovers from a Redis restart, and it
//! publishes before delivering locally, so while Redis is away even this node's own rooms go silent
//! (stack-notes F4). A bus of our own keeps the default local adapter, encodes each event once for the
//! whole cluster, and lets presence and unread counts ride the same channels.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use redis::IntoConnectionInfo;
use redis::io::tcp::TcpSettings;
use serde_json::value::RawValue;
use tokio::sync::mpsc;

use self::digest::Digests;
use self::link::{heartbeat, publish_all, send_digests, subscribe};
use self::listeners::Listeners;
use self::peers::Peers;
use self::subs::Wanted;
use self::wire::{Body, Channel, Kind, Person, PostedIn, RoomNote, To};
use super::events::Frame;
use super::presence::{Change, PresenceHub, Snapshot};
use super::pusher::{Publish, Pusher, Target};
use super::unread::UnreadHub;
use crate::auth::UserId;
use crate::metrics::{Counter, Family, Gauge, Label, Metrics};
use crate::services::rooms::{Group, Room};

mod digest;
mod link;
mod listeners;
mod peers;
mod shards;
mod subs;
mod wire;

/// How often a node says it is alive.
pub const HEARTBEAT: Duration = Duration::from_secs(2);
/// How long a silent node is still counted: its users then drop out of every list.
pub const PEER_TTL: Duration = Duration::from_secs(10);
/// Notes waiting for the publisher at most; beyond it they are dropped (Redis is too slow or away).
const QUEUE: usize = 16 * 1024;
/// Notes sent to Redis in one pipeline at most.
const PIPELINE: usize = 256;
/// The longest wait between two attempts to reach Redis.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// A note on its way: its channel, the note, and when it was queued.
struct Outgoing {
    channel: Channel,
    note: Vec<u8>,
    at: tokio::time::Instant,
}

/// The sending side of the bus. Cheap to clone.
#[derive(Clone)]
pub struct Bus {
    inner: Arc<BusInner>,
}

struct BusInner {
    node: String,
    prefix: String,
    /// The last note's number on each numbered channel (the control channel and rooms). Numbering and
    /// queueing happen under this lock, so notes are queued in the order of their numbers.
    seqs: Mutex<HashMap<Channel, u64>>,
    queue: mpsc::Sender<Outgoing>,
    publishing: AtomicBool,
    subscribed: AtomicBool,
    dropped: AtomicU64,
    /// The channels this node's presence wants read.
    wanted: Wanted,
    /// What this node posted per group room, for the next digest.
    digests: Mutex<Digests>,
    /// Channels no other node reads: notes there are not sent.
    listeners: Listeners,
    metrics: BusMetrics,
}

/// The bus's metrics.
#[derive(Default)]
struct BusMetrics {
    /// `chatroom_cluster_connected`: 1 while notes go out and come in.
    connected: Gauge,
    /// `chatroom_cluster_notes_dropped_total`.
    dropped: Counter,
    /// `chatroom_cluster_nodes`: the other nodes heard from.
    nodes: Gauge,
    /// `chatroom_cluster_subscriptions`: channels read.
    subscriptions: Gauge,
    /// `chatroom_cluster_notes_published_total{kind}`, in [`Kind::ALL`]'s order.
    published: [Counter; 4],
    /// `chatroom_cluster_notes_received_total{kind}`, in [`Kind::ALL`]'s order.
    received: [Counter; 4],
}

impl BusMetrics {
    fn register(metrics: &Metrics) -> Self {
        let published: Family<Label, Counter> = metrics.register(
            "chatroom_cluster_notes_published_total",
            "Notes this node published to the other nodes, by kind (room, user, digest, control).",
            Family::default(),
        );
        let received: Family<Label, Counter> = metrics.register(
            "chatroom_cluster_notes_received_total",
            "Notes from the other nodes this node received, by kind (room, user, digest, control).",
            Family::default(),
        );
        let by_kind = |family: &Family<Label, Counter>| {
            Kind::ALL.map(|k| family.get_or_create_owned(&[("kind", k.label())]))
        };
        Self {
            connected: metrics.register(
                "chatroom_cluster_connected",
                "1 while this node reaches the cluster's Redis both ways, 0 while it is degraded.",
                Gauge::default(),
            ),
            dropped: metrics.register(
                "chatroom_cluster_notes_dropped_total",
                "Notes for the other nodes dropped because Redis was away or too slow.",
                Counter::default(),
            ),
            nodes: metrics.register(
                "chatroom_cluster_nodes",
                "Other nodes of the cluster heard from lately.",
                Gauge::default(),
            ),
            subscriptions: metrics.register(
                "chatroom_cluster_subscriptions",
                "Redis channels this node reads: the control channel, its rooms' and its users'.",
                Gauge::default(),
            ),
            published: by_kind(&published),
            received: by_kind(&received),
        }
    }

    fn kind(counters: &[Counter; 4], kind: Kind) -> &Counter {
        &counters[Kind::ALL.iter().position(|k| *k == kind).unwrap_or(0)]
    }
}

impl Publish for Bus {
    fn emit(&self, target: &Target, frames: [&[Frame]; 2]) {
        self.publish_emit(target, frames);
    }
}

impl Bus {
    /// Whether notes both go out and come in: false while Redis is away (the node is degraded).
    pub fn is_connected(&self) -> bool {
        self.inner.publishing.load(Ordering::SeqCst) && self.inner.subscribed.load(Ordering::SeqCst)
    }

    /// Sets one direction's state and the `chatroom_cluster_connected` gauge.
    fn set_up(&self, flag: &AtomicBool, up: bool) {
        flag.store(up, Ordering::SeqCst);
        self.inner
            .metrics
            .connected
            .set(i64::from(self.is_connected()));
    }

    fn note_dropped(&self) {
        self.inner.dropped.fetch_add(1, Ordering::Relaxed);
        self.inner.metrics.dropped.inc();
    }

    /// Redis answered that the note queued at `at` on `channel` reached `readers` connections.
    fn learn(&self, channel: &Channel, readers: i64, at: tokio::time::Instant) {
        if !self.is_connected() {
            return;
        }
        let ours = self.inner.wanted.reads(channel);
        let now = tokio::time::Instant::now();
        self.inner.listeners.learn(channel, readers, ours, at, now);
    }

    /// This node's name on the bus (random, new at each start).
    pub fn node(&self) -> &str {
        &self.inner.node
    }

    /// Queues a note on `channel`. Never waits: when Redis is away or the queue is full, the note is
    /// dropped (its number is used all the same, so the other nodes see the gap). A note on a channel
    /// no other node reads is not sent ([`Listeners`]).
    fn publish(&self, channel: &Channel, body: &Body) {
        let encoded = match serde_json::to_vec(body) {
            Ok(encoded) => encoded,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a cluster note");
                return;
            }
        };
        let kind = Kind::of(channel, body);
        let mut seqs = self
            .inner
            .seqs
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let seq = if channel.numbered() {
            let seq = seqs.entry(channel.clone()).or_default();
            *seq += 1;
            *seq
        } else {
            0
        };
        let now = tokio::time::Instant::now();
        let traffic = matches!(body, Body::Emit { .. } | Body::Posted { .. });
        if traffic && self.inner.listeners.skip(channel, now) {
            return;
        }
        if !self.inner.publishing.load(Ordering::SeqCst) {
            self.note_dropped();
            return;
        }
        // The node name is hex: it needs no escaping.
        let mut note = Vec::with_capacity(encoded.len() + 48);
        note.extend_from_slice(
            format!("{{\"n\":\"{}\",\"s\":{seq},\"b\":", self.inner.node).as_bytes(),
        );
        note.extend_from_slice(&encoded);
        note.push(b'}');
        let outgoing = Outgoing {
            channel: channel.clone(),
            note,
            at: now,
        };
        if self.inner.queue.try_send(outgoing).is_err() {
            self.note_dropped();
            return;
        }
        BusMetrics::kind(&self.inner.metrics.published, kind).inc();
    }

    /// Publishes an event pushed to `target`: on the room's channel, or on each user's channel (rooms
    /// and users only: a single socket is always local).
    fn publish_emit(&self, target: &Target, frames: [&[Frame]; 2]) {
        let own = |f: &[Frame]| -> Vec<(String, Box<RawValue>)> {
            f.iter()
                .map(|(name, payload)| ((*name).to_owned(), payload.clone()))
                .collect()
        };
        match target {
            Target::Room(room) | Target::RoomExcept(room, _) => self.publish(
                &Channel::Room(room.clone()),
                &Body::Emit {
                    to: To::Room(room.clone()),
                    frames: [own(frames[0]), own(frames[1])],
                },
            ),
            Target::Users(users) => {
                for user in users {
                    self.publish(
                        &Channel::User(*user),
                        &Body::Emit {
                            to: To::Users(vec![*user]),
                            frames: [own(frames[0]), own(frames[1])],
                        },
                    );
                }
            }
            // Single sockets are local; everyone hears room lists from their own node.
            Target::Socket(_) | Target::Everyone => {}
        }
    }

    /// Publishes a change of this node's presence, and reads the channels it now needs. (Called under
    /// the presence hub's lock, in the order of the changes.)
    pub(crate) fn presence(&self, change: Change<'_>) {
        let wanted = &self.inner.wanted;
        match change {
            Change::Online(author) => {
                wanted.online(author.id);
                self.publish(
                    &Channel::Control,
                    &Body::Online {
                        user: author.into(),
                    },
                );
            }
            Change::Offline(user) => {
                wanted.offline(user);
                self.publish(&Channel::Control, &Body::Offline { user });
            }
            Change::Enter(room, user) => {
                wanted.enter(room);
                self.publish(
                    &Channel::Room(room.to_owned()),
                    &Body::Enter {
                        room: room.to_owned(),
                        user,
                    },
                );
            }
            Change::Leave(room, user) => {
                wanted.leave(room);
                self.publish(
                    &Channel::Room(room.to_owned()),
                    &Body::Leave {
                        room: room.to_owned(),
                        user,
                    },
                );
            }
        }
    }

    /// Publishes a stored message, for the other nodes' unread counters: a group room's on its channel
    /// (and in the next digest), a private one's on both users' channels.
    pub(crate) fn posted(&self, room: &Room, sender: UserId, id: i64) {
        match room {
            Room::Group(name) => {
                let c = self
                    .inner
                    .digests
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .posted(name, sender, id);
                self.publish(
                    &Channel::Room(name.clone()),
                    &Body::Posted {
                        room: PostedIn::Group(name.clone()),
                        sender,
                        id,
                        c,
                    },
                );
            }
            Room::Private { high, low } => {
                let body = Body::Posted {
                    room: PostedIn::Private(*high, *low),
                    sender,
                    id,
                    c: 0,
                };
                self.publish(&Channel::User(*high), &body);
                if low != high {
                    self.publish(&Channel::User(*low), &body);
                }
            }
        }
    }

    /// Publishes the digest of what this node posted since the last one, if anything.
    fn publish_digest(&self) {
        let rooms = self
            .inner
            .digests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if !rooms.is_empty() {
            self.publish(&Channel::Control, &Body::Digest { rooms });
        }
    }

    /// Publishes a token revocation.
    pub(crate) fn revoke(&self, user: UserId, jti: &str) {
        self.publish(
            &Channel::User(user),
            &Body::Revoke {
                user,
                jti: jti.to_owned(),
            },
        );
    }

    /// Publishes the group rooms after an admin changed them: every node's list follows.
    pub(crate) fn rooms(&self, groups: &[Group]) {
        self.publish(
            &Channel::Control,
            &Body::Rooms {
                groups: groups.iter().map(RoomNote::from).collect(),
            },
        );
    }

    /// Publishes a ban: every node closes the user's sockets.
    pub(crate) fn ban(&self, user: UserId, message: &str) {
        self.publish(
            &Channel::User(user),
            &Body::Ban {
                user,
                message: message.to_owned(),
            },
        );
    }

    /// Publishes this node's presence, whole, with the number of its last note on each room's channel.
    /// It is taken and numbered under the hub's lock (room notes are numbered under it too), so no
    /// change can slip between the snapshot and its numbers.
    pub(super) fn publish_snapshot(&self, presence: &PresenceHub) {
        presence.with_snapshot(|Snapshot { online, rooms }| {
            let seqs = self
                .inner
                .seqs
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .filter_map(|(channel, seq)| match channel {
                    Channel::Room(room) => Some((room.clone(), *seq)),
                    _ => None,
                })
                .collect();
            self.publish(
                &Channel::Control,
                &Body::Snapshot {
                    online: online.iter().map(Person::from).collect(),
                    rooms,
                    seqs,
                },
            );
        });
    }

    /// Publishes who of this node's users is in `room`, on the room's channel, under the hub's lock
    /// (as [`publish_snapshot`](Self::publish_snapshot)). Nothing when nobody is and `always` is false.
    fn publish_room_snapshot(&self, presence: &PresenceHub, room: &str, always: bool) {
        presence.with_room(room, |users| {
            if always || !users.is_empty() {
                self.publish(
                    &Channel::Room(room.to_owned()),
                    &Body::RoomSnapshot {
                        room: room.to_owned(),
                        users,
                    },
                );
            }
        });
    }

    /// Says goodbye (the node is stopping: the others forget its users at once), and gives the
    /// publisher a moment to send it.
    pub async fn goodbye(&self) {
        self.publish_digest();
        self.publish(&Channel::Control, &Body::Goodbye);
        for _ in 0..20 {
            if self.inner.queue.capacity() == self.inner.queue.max_capacity() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        // The last pipeline may still be on its way.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What the receiving side delivers to: this node's sockets, presence and unread counters.
pub struct Local {
    pub pusher: Pusher,
    pub presence: Arc<PresenceHub>,
    pub unread: Arc<UnreadHub>,
}

/// Starts the bus on the Redis at `url`, or on the Redis Cluster whose nodes `url` lists (several
/// comma-separated URLs: sharded pub/sub): the publisher, the subscriber and the heartbeat run until
/// the runtime ends. Returns the sending side.
///
/// # Errors
/// If `url` is not a Redis URL, or one of the listed URLs is not.
pub fn start(url: &str, prefix: &str, metrics: &Metrics) -> redis::RedisResult<(Bus, Starter)> {
    let seeds: Vec<String> = url
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_owned)
        .collect();
    let link = if seeds.len() > 1 {
        shards::check(&seeds)?;
        Link::Shards(seeds)
    } else {
        let info = url
            .trim()
            .into_connection_info()?
            .set_tcp_settings(TcpSettings::default().set_nodelay(true));
        Link::One(redis::Client::open(info)?)
    };
    let (queue, notes) = mpsc::channel(QUEUE);
    let bus = Bus::new(prefix, queue, BusMetrics::register(metrics));
    Ok((bus.clone(), Starter { bus, link, notes }))
}

/// Where the bus's notes go: one Redis server, or a Redis Cluster's shards.
enum Link {
    One(redis::Client),
    Shards(Vec<String>),
}

impl Bus {
    fn new(prefix: &str, queue: mpsc::Sender<Outgoing>, metrics: BusMetrics) -> Self {
        Self {
            inner: Arc::new(BusInner {
                node: format!("{:016x}", rand::random::<u64>()),
                prefix: prefix.to_owned(),
                seqs: Mutex::default(),
                queue,
                publishing: AtomicBool::new(false),
                subscribed: AtomicBool::new(false),
                dropped: AtomicU64::new(0),
                wanted: Wanted::default(),
                digests: Mutex::default(),
                listeners: Listeners::default(),
                metrics,
            }),
        }
    }
}

/// The bus's tasks, ready to run once what they deliver to exists.
pub struct Starter {
    bus: Bus,
    link: Link,
    notes: mpsc::Receiver<Outgoing>,
}

impl Starter {
    /// Spawns the publisher, the subscriber, the heartbeat and the digests.
    pub fn run(self, local: Local) {
        let Self { bus, link, notes } = self;
        let peers = Arc::new(Peers::new(local.presence.clone()));
        match link {
            Link::One(client) => {
                tokio::spawn(publish_all(bus.clone(), client.clone(), notes));
                tokio::spawn(subscribe(bus.clone(), client, local, peers.clone()));
            }
            Link::Shards(seeds) => {
                tokio::spawn(shards::publish_all(bus.clone(), seeds.clone(), notes));
                tokio::spawn(shards::subscribe(bus.clone(), seeds, local, peers.clone()));
            }
        }
        tokio::spawn(send_digests(bus.clone()));
        tokio::spawn(heartbeat(bus, peers));
    }
}

#[cfg(test)]
mod tests {
    use super::wire::Note;
    use super::*;

    fn bus() -> (Bus, mpsc::Receiver<Outgoing>) {
        let (queue, notes) = mpsc::channel(16);
        let bus = Bus::new("t", queue, BusMetrics::default());
        bus.inner.publishing.store(true, Ordering::SeqCst);
        (bus, notes)
    }

    fn next(notes: &mut mpsc::Receiver<Outgoing>) -> (String, Note) {
        let outgoing = notes.try_recv().unwrap_or_else(|e| panic!("{e}"));
        let note = serde_json::from_slice(&outgoing.note).unwrap_or_else(|e| panic!("{e}"));
        (outgoing.channel.name("t"), note)
    }

    #[test]
    fn an_emit_to_users_goes_to_each_users_channel_with_its_raw_frames() {
        let (bus, mut notes) = bus();
        let payload = serde_json::value::to_raw_value(&serde_json::json!({"msg": "<b>hi</b>"}))
            .unwrap_or_else(|_| RawValue::NULL.to_owned());
        let v3: Vec<Frame> = vec![("message", payload.clone())];
        bus.emit(&Target::Users(vec![7, 8]), [&v3, &[]]);
        for user in [7, 8] {
            let (channel, note) = next(&mut notes);
            assert_eq!(channel, format!("t:u:{user}"));
            assert_eq!(
                (note.n.len(), note.s),
                (16, 0),
                "user channels are not numbered"
            );
            let Body::Emit {
                to: To::Users(users),
                frames,
            } = note.b
            else {
                panic!("not an emit: {:?}", note.b);
            };
            assert_eq!(users, [user]);
            assert_eq!(frames[0][0].0, "message");
            assert_eq!(frames[0][0].1.get(), payload.get());
            assert!(frames[1].is_empty());
        }
        assert!(notes.try_recv().is_err());
    }

    #[test]
    fn room_notes_go_on_the_rooms_channel_numbered_per_channel() {
        let (bus, mut notes) = bus();
        bus.presence(Change::Enter("room1", 7));
        bus.emit(&Target::Room("room1".into()), [&[], &[]]);
        bus.presence(Change::Enter("room2", 7));
        bus.posted(&Room::Group("room1".into()), 7, 41);
        let seen: Vec<(String, u64)> = (0..4)
            .map(|_| {
                let (channel, note) = next(&mut notes);
                (channel, note.s)
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("t:r:room1".to_owned(), 1),
                ("t:r:room1".to_owned(), 2),
                ("t:r:room2".to_owned(), 1),
                ("t:r:room1".to_owned(), 3),
            ]
        );
        // The digest of room1 goes on the control channel, once, with the count.
        bus.posted(&Room::Group("room1".into()), 8, 42);
        let _ = next(&mut notes);
        bus.publish_digest();
        let (channel, note) = next(&mut notes);
        assert_eq!((channel.as_str(), note.s), ("t:ctl", 1));
        let Body::Digest { rooms } = note.b else {
            panic!("not a digest: {:?}", note.b);
        };
        assert_eq!(
            (rooms.len(), rooms[0].c, rooms[0].n, rooms[0].latest),
            (1, 2, 2, 42)
        );
        bus.publish_digest();
        assert!(notes.try_recv().is_err(), "no digest without messages");
    }

    #[test]
    fn channel_names_read_back() {
        for channel in [
            Channel::Control,
            Channel::Room("room:1".into()),
            Channel::User(-3),
        ] {
            assert_eq!(Channel::parse("p", &channel.name("p")), Some(channel));
        }
        assert_eq!(Channel::parse("p", "q:ctl"), None);
        assert_eq!(Channel::parse("p", "p:u:x"), None);
    }
}
