//! Several nodes as one chat server: a bus over Redis pub/sub that carries what one node does to the
//! others (`--redis-url`).
//!
//! Every node publishes its *notes* on one channel (`<prefix>:bus`) and reads everyone else's:
//!
//! * **Emits.** A push to a room or to users is delivered to this node's sockets at once, then published
//!   with its frames already encoded for both dialects; each other node hands the frames to its own
//!   sockets in that room or of those users. Single sockets, presence rounds and unread counts stay
//!   local: each node serves its own sockets.
//! * **Presence** as changes of each node's own sockets ([`Change`]): a user online, offline, in a room,
//!   out of it. A receiving node counts each other node as one more holder, so "is this user online?"
//!   and the room lists cover the cluster. Each node's notes carry a sequence number; a node that sees a
//!   gap (a note lost while Redis was away), or hears a node for the first time, asks that node for a
//!   *snapshot* of its presence and replaces what it knew. Every node says it is alive every
//!   [`HEARTBEAT`]; a node not heard for [`PEER_TTL`] (it crashed) is forgotten with its users, and a
//!   node that stops cleanly says goodbye.
//! * **Posted messages**, so every node's unread counters count them, and **token revocations**, so a
//!   socket bound with a revoked token stops acting for its user on whatever node it is.
//!
//! Redis pub/sub is at-most-once, and so is the bus: notes published while Redis is away are dropped
//! (counted in the log). Local delivery never waits for Redis. Messages are stored in the database
//! before any of this, so a client that missed one reads it in the history. The publisher and the
//! subscriber each reconnect on their own until Redis is back; meanwhile the node is *degraded*
//! ([`Bus::is_connected`], reported by `/readyz`). After a reconnection the subscriber asks every node
//! for a snapshot, so presence converges again.
//!
//! Why not the socketioxide-redis adapter: its stock driver never recovers from a Redis restart, and it
//! publishes before delivering locally, so while Redis is away even this node's own rooms go silent
//! (stack-notes F4). A bus of our own keeps the default local adapter, encodes each event once for the
//! whole cluster, and lets presence and unread counts ride the same ordered channel.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use redis::IntoConnectionInfo;
use redis::io::tcp::TcpSettings;
use serde_json::value::RawValue;
use tokio::sync::mpsc;

use self::link::{heartbeat, publish_all, subscribe};
use self::peers::Peers;
use self::wire::{Body, Person, PostedIn, RoomNote, To};
use super::events::Frame;
use super::presence::{Change, PresenceHub, Snapshot};
use super::pusher::{Publish, Pusher, Target};
use super::unread::UnreadHub;
use crate::auth::UserId;
use crate::metrics::{Counter, Gauge, Metrics};
use crate::services::rooms::{Group, Room};

mod link;
mod peers;
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

/// The sending side of the bus. Cheap to clone.
#[derive(Clone)]
pub struct Bus {
    inner: Arc<BusInner>,
}

struct BusInner {
    node: String,
    channel: String,
    /// The last note's number. Numbering and queueing happen under this lock, so notes are queued in
    /// the order of their numbers.
    seq: Mutex<u64>,
    queue: mpsc::Sender<Vec<u8>>,
    publishing: AtomicBool,
    subscribed: AtomicBool,
    dropped: AtomicU64,
    /// `chatroom_cluster_connected`: 1 while notes go out and come in.
    connected: Gauge,
    /// `chatroom_cluster_notes_dropped_total`.
    dropped_total: Counter,
    /// `chatroom_cluster_nodes`: the other nodes heard from.
    nodes: Gauge,
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
        self.inner.connected.set(i64::from(self.is_connected()));
    }

    fn note_dropped(&self) {
        self.inner.dropped.fetch_add(1, Ordering::Relaxed);
        self.inner.dropped_total.inc();
    }

    /// This node's name on the bus (random, new at each start).
    pub fn node(&self) -> &str {
        &self.inner.node
    }

    /// Queues a note. Never waits: when Redis is away or the queue is full, the note is dropped (its
    /// number is used all the same, so the other nodes see the gap).
    fn publish(&self, body: Body) {
        let body = match serde_json::to_vec(&body) {
            Ok(body) => body,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode a cluster note");
                return;
            }
        };
        let mut seq = self
            .inner
            .seq
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *seq += 1;
        if !self.inner.publishing.load(Ordering::SeqCst) {
            self.note_dropped();
            return;
        }
        // The node name is hex: it needs no escaping.
        let mut note = Vec::with_capacity(body.len() + 48);
        note.extend_from_slice(
            format!("{{\"n\":\"{}\",\"s\":{},\"b\":", self.inner.node, *seq).as_bytes(),
        );
        note.extend_from_slice(&body);
        note.push(b'}');
        if self.inner.queue.try_send(note).is_err() {
            self.note_dropped();
        }
    }

    /// Publishes an event pushed to `target` (rooms and users only: a single socket is always local).
    fn publish_emit(&self, target: &Target, frames: [&[Frame]; 2]) {
        let to = match target {
            Target::Room(room) | Target::RoomExcept(room, _) => To::Room(room.clone()),
            Target::Users(users) => To::Users(users.clone()),
            // Single sockets are local; everyone hears room lists from their own node.
            Target::Socket(_) | Target::Everyone => return,
        };
        let own = |f: &[Frame]| -> Vec<(String, Box<RawValue>)> {
            f.iter()
                .map(|(name, payload)| ((*name).to_owned(), payload.clone()))
                .collect()
        };
        self.publish(Body::Emit {
            to,
            frames: [own(frames[0]), own(frames[1])],
        });
    }

    /// Publishes a change of this node's presence.
    pub(crate) fn presence(&self, change: Change<'_>) {
        self.publish(match change {
            Change::Online(author) => Body::Online {
                user: author.into(),
            },
            Change::Offline(user) => Body::Offline { user },
            Change::Enter(room, user) => Body::Enter {
                room: room.to_owned(),
                user,
            },
            Change::Leave(room, user) => Body::Leave {
                room: room.to_owned(),
                user,
            },
        });
    }

    /// Publishes a stored message, for the other nodes' unread counters.
    pub(crate) fn posted(&self, room: &Room, sender: UserId, id: i64) {
        let room = match room {
            Room::Group(name) => PostedIn::Group(name.clone()),
            Room::Private { high, low } => PostedIn::Private(*high, *low),
        };
        self.publish(Body::Posted { room, sender, id });
    }

    /// Publishes a token revocation.
    pub(crate) fn revoke(&self, user: UserId, jti: &str) {
        self.publish(Body::Revoke {
            user,
            jti: jti.to_owned(),
        });
    }

    /// Publishes the group rooms after an admin changed them: every node's list follows.
    pub(crate) fn rooms(&self, groups: &[Group]) {
        self.publish(Body::Rooms {
            groups: groups.iter().map(RoomNote::from).collect(),
        });
    }

    /// Publishes a ban: every node closes the user's sockets.
    pub(crate) fn ban(&self, user: UserId, message: &str) {
        self.publish(Body::Ban {
            user,
            message: message.to_owned(),
        });
    }

    /// Publishes this node's presence, whole. It is taken and numbered under the hub's lock, so no
    /// change can slip between the snapshot and its number.
    pub(super) fn publish_snapshot(&self, presence: &PresenceHub) {
        presence.with_snapshot(|Snapshot { online, rooms }| {
            self.publish(Body::Snapshot {
                online: online.iter().map(Person::from).collect(),
                rooms,
            });
        });
    }

    /// Says goodbye (the node is stopping: the others forget its users at once), and gives the
    /// publisher a moment to send it.
    pub async fn goodbye(&self) {
        self.publish(Body::Goodbye);
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

/// Starts the bus on the Redis at `url`: the publisher, the subscriber and the heartbeat run until the
/// runtime ends. Returns the sending side.
///
/// # Errors
/// If `url` is not a Redis URL.
pub fn start(url: &str, prefix: &str, metrics: &Metrics) -> redis::RedisResult<(Bus, Starter)> {
    let info = url
        .into_connection_info()?
        .set_tcp_settings(TcpSettings::default().set_nodelay(true));
    let client = redis::Client::open(info)?;
    let (queue, notes) = mpsc::channel(QUEUE);
    let bus = Bus {
        inner: Arc::new(BusInner {
            node: format!("{:016x}", rand::random::<u64>()),
            channel: format!("{prefix}:bus"),
            seq: Mutex::new(0),
            queue,
            publishing: AtomicBool::new(false),
            subscribed: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            connected: metrics.register(
                "chatroom_cluster_connected",
                "1 while this node reaches the cluster's Redis both ways, 0 while it is degraded.",
                Gauge::default(),
            ),
            dropped_total: metrics.register(
                "chatroom_cluster_notes_dropped_total",
                "Notes for the other nodes dropped because Redis was away or too slow.",
                Counter::default(),
            ),
            nodes: metrics.register(
                "chatroom_cluster_nodes",
                "Other nodes of the cluster heard from lately.",
                Gauge::default(),
            ),
        }),
    };
    Ok((bus.clone(), Starter { bus, client, notes }))
}

/// The bus's tasks, ready to run once what they deliver to exists.
pub struct Starter {
    bus: Bus,
    client: redis::Client,
    notes: mpsc::Receiver<Vec<u8>>,
}

impl Starter {
    /// Spawns the publisher, the subscriber and the heartbeat.
    pub fn run(self, local: Local) {
        let Self { bus, client, notes } = self;
        let peers = Arc::new(Peers::new(local.presence.clone()));
        tokio::spawn(publish_all(bus.clone(), client.clone(), notes));
        tokio::spawn(subscribe(bus.clone(), client, local, peers.clone()));
        tokio::spawn(heartbeat(bus, peers));
    }
}

#[cfg(test)]
mod tests {
    use super::wire::Note;
    use super::*;

    #[test]
    fn a_published_emit_reads_back_with_its_raw_frames() {
        let (queue, mut notes) = mpsc::channel(4);
        let bus = Bus {
            inner: Arc::new(BusInner {
                node: "00ff".into(),
                channel: "t:bus".into(),
                seq: Mutex::new(0),
                queue,
                publishing: AtomicBool::new(true),
                subscribed: AtomicBool::new(true),
                dropped: AtomicU64::new(0),
                connected: Gauge::default(),
                dropped_total: Counter::default(),
                nodes: Gauge::default(),
            }),
        };
        let payload = serde_json::value::to_raw_value(&serde_json::json!({"msg": "<b>hi</b>"}))
            .unwrap_or_else(|_| RawValue::NULL.to_owned());
        let v3: Vec<Frame> = vec![("message", payload.clone())];
        bus.emit(&Target::Users(vec![7]), [&v3, &[]]);
        bus.presence(Change::Enter("room1", 7));
        let bytes = notes.try_recv().unwrap_or_default();
        let note: Note = serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((note.n.as_str(), note.s), ("00ff", 1));
        let Body::Emit {
            to: To::Users(users),
            frames,
        } = note.b
        else {
            panic!("not an emit: {:?}", note.b);
        };
        assert_eq!(users, [7]);
        assert_eq!(frames[0][0].0, "message");
        assert_eq!(frames[0][0].1.get(), payload.get());
        assert!(frames[1].is_empty());
        let bytes = notes.try_recv().unwrap_or_default();
        let note: Note = serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(note.s, 2, "numbers follow each other");
        assert!(matches!(note.b, Body::Enter { user: 7, .. }));
    }
}
