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

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use redis::IntoConnectionInfo;
use redis::io::tcp::TcpSettings;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::events::Frame;
use super::presence::{Change, PresenceHub, Snapshot};
use super::pusher::{Publish, Pusher, Target};
use super::unread::UnreadHub;
use crate::auth::UserId;
use crate::metrics::{Counter, Gauge, Metrics};
use crate::services::rooms::Room;
use crate::services::users::Author;

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

/// One note on the bus: who sent it, its number among that node's notes, and what it says. (Written
/// by hand in [`Bus::publish`], in this shape.)
#[derive(Debug, Deserialize)]
struct Note {
    /// The sending node.
    n: String,
    /// The sender's sequence number (gap-free unless notes were dropped).
    s: u64,
    b: Body,
}

/// A user as presence lists show them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Person {
    id: UserId,
    name: String,
    avatar: String,
}

impl From<&Author> for Person {
    fn from(a: &Author) -> Self {
        Self {
            id: a.id,
            name: a.name.clone(),
            avatar: a.avatar.clone(),
        }
    }
}

impl From<Person> for Author {
    fn from(p: Person) -> Self {
        Self {
            id: p.id,
            name: p.name,
            avatar: p.avatar,
        }
    }
}

/// Whom an emit is for, on the other nodes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum To {
    Room(String),
    Users(Vec<UserId>),
}

/// A room a message was posted to.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum PostedIn {
    Group(String),
    Private(UserId, UserId),
}

/// Frames of one event: (name, JSON argument) for the v3 dialect, then for the Laravel-era one.
type Frames = [Vec<(String, Box<RawValue>)>; 2];

/// What a note says. Externally tagged (`{"emit": {…}}`): an internally tagged enum would buffer its
/// content, and the frames' raw JSON cannot be read back from a buffer.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Body {
    Emit {
        to: To,
        frames: Frames,
    },
    Online {
        user: Person,
    },
    Offline {
        user: UserId,
    },
    Enter {
        room: String,
        user: UserId,
    },
    Leave {
        room: String,
        user: UserId,
    },
    Posted {
        room: PostedIn,
        sender: UserId,
        id: i64,
    },
    Revoke {
        user: UserId,
        jti: String,
    },
    Alive,
    /// Asks `node` (or every node, when empty) for a snapshot of its presence.
    Ask {
        node: String,
    },
    Snapshot {
        online: Vec<Person>,
        rooms: Vec<(String, Vec<UserId>)>,
    },
    Goodbye,
}

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
            Target::Socket(_) => return,
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

/// Sends queued notes in pipelines, reconnecting whenever Redis goes away.
async fn publish_all(bus: Bus, client: redis::Client, mut notes: mpsc::Receiver<Vec<u8>>) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let mut conn = match client.get_multiplexed_async_connection().await {
            Ok(conn) => conn,
            Err(e) => {
                tracing::debug!(error = %e, "cluster: Redis unreachable (publisher)");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        backoff = Duration::from_millis(50);
        bus.set_up(&bus.inner.publishing, true);
        tracing::info!("cluster: publishing to Redis");
        let mut batch = Vec::with_capacity(PIPELINE);
        loop {
            if notes.recv_many(&mut batch, PIPELINE).await == 0 {
                return;
            }
            let mut pipe = redis::pipe();
            for note in batch.drain(..) {
                pipe.publish(&bus.inner.channel, note).ignore();
            }
            if let Err(e) = pipe.query_async::<()>(&mut conn).await {
                tracing::warn!(error = %e, "cluster: lost Redis (publisher); reconnecting");
                break;
            }
        }
        bus.set_up(&bus.inner.publishing, false);
        // Whatever was queued is dropped: it would arrive late, and out of turn with newer events.
        while let Ok(_stale) = notes.try_recv() {
            bus.note_dropped();
        }
    }
}

/// Reads the other nodes' notes, reconnecting whenever Redis goes away.
async fn subscribe(bus: Bus, client: redis::Client, local: Local, peers: Arc<Peers>) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let pubsub = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&bus.inner.channel).await?;
            redis::RedisResult::Ok(pubsub)
        };
        let mut pubsub = match pubsub.await {
            Ok(pubsub) => pubsub,
            Err(e) => {
                tracing::debug!(error = %e, "cluster: Redis unreachable (subscriber)");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        backoff = Duration::from_millis(50);
        bus.set_up(&bus.inner.subscribed, true);
        tracing::info!("cluster: subscribed to Redis");
        // Notes were missed while away: start again from every node's snapshot (asked for now, and again
        // with each heartbeat until each node has sent one: the publisher may still be reconnecting).
        peers.all_seen_now();
        peers.want_all();
        peers.ask(&bus);
        publish_snapshot(&bus, &local.presence);
        let mut messages = pubsub.on_message();
        while let Some(message) = messages.next().await {
            match serde_json::from_slice::<Note>(message.get_payload_bytes()) {
                Ok(note) if note.n != bus.inner.node => receive(&bus, &local, &peers, note).await,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cluster: unreadable note"),
            }
        }
        drop(messages);
        bus.set_up(&bus.inner.subscribed, false);
        tracing::warn!("cluster: lost Redis (subscriber); reconnecting");
    }
}

/// Says this node is alive, forgets nodes that went silent, and logs dropped notes.
async fn heartbeat(bus: Bus, peers: Arc<Peers>) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut dropped = 0;
    loop {
        tick.tick().await;
        bus.publish(Body::Alive);
        let now_dropped = bus.inner.dropped.load(Ordering::Relaxed);
        if now_dropped > dropped {
            tracing::warn!(
                notes = now_dropped - dropped,
                "cluster: notes dropped while Redis was slow or away"
            );
            dropped = now_dropped;
        }
        if bus.inner.subscribed.load(Ordering::SeqCst) {
            peers.expire(Instant::now());
            peers.ask(&bus);
        }
        bus.inner.nodes.set(peers.lock().len() as i64);
    }
}

/// Publishes this node's presence, whole. It is taken and numbered under the hub's lock, so no change
/// can slip between the snapshot and its number.
fn publish_snapshot(bus: &Bus, presence: &PresenceHub) {
    presence.with_snapshot(|Snapshot { online, rooms }| {
        bus.publish(Body::Snapshot {
            online: online.iter().map(Person::from).collect(),
            rooms,
        });
    });
}

/// What this node knows of the other nodes.
struct Peers {
    state: Mutex<HashMap<String, Peer>>,
    /// Nodes gone: their late notes are ignored. (Node names are random per start.)
    gone: Mutex<HashSet<String>>,
    /// Where other nodes' presence is counted.
    presence: Arc<PresenceHub>,
    /// Every node's snapshot is wanted (after a reconnection), until one `Ask` for all went out.
    want_all: AtomicBool,
}

/// Another node: when it was last heard, its last note's number, and its presence as counted here.
struct Peer {
    seen: Instant,
    seq: u64,
    /// Whether its presence is known (a snapshot arrived); until then its changes are not applied.
    synced: bool,
    /// Whether a snapshot is wanted (asked for until one arrives).
    wanted: bool,
    online: HashMap<UserId, Author>,
    rooms: HashSet<(String, UserId)>,
}

impl Peers {
    fn new(presence: Arc<PresenceHub>) -> Self {
        Self {
            state: Mutex::default(),
            gone: Mutex::default(),
            presence,
            want_all: AtomicBool::new(false),
        }
    }

    /// Every node must send its snapshot again.
    fn want_all(&self) {
        self.want_all.store(true, Ordering::SeqCst);
        for peer in self.lock().values_mut() {
            peer.wanted = true;
        }
    }

    /// Asks for the snapshots still wanted, if notes can go out now (otherwise at the next heartbeat).
    fn ask(&self, bus: &Bus) {
        if !bus.inner.publishing.load(Ordering::SeqCst) {
            return;
        }
        if self.want_all.swap(false, Ordering::SeqCst) {
            bus.publish(Body::Ask {
                node: String::new(),
            });
            return;
        }
        let wanted: Vec<String> = self
            .lock()
            .iter()
            .filter(|(_, p)| p.wanted)
            .map(|(n, _)| n.clone())
            .collect();
        for node in wanted {
            bus.publish(Body::Ask { node });
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Peer>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn all_seen_now(&self) {
        let now = Instant::now();
        for peer in self.lock().values_mut() {
            peer.seen = now;
        }
    }

    /// Forgets the nodes not heard since `now − PEER_TTL`, with their users.
    fn expire(&self, now: Instant) {
        let mut peers = self.lock();
        let silent: Vec<String> = peers
            .iter()
            .filter(|(_, p)| now.duration_since(p.seen) > PEER_TTL)
            .map(|(n, _)| n.clone())
            .collect();
        for node in silent {
            if let Some(peer) = peers.remove(&node) {
                tracing::warn!(node, "cluster: a node went silent; forgetting its users");
                forget(&self.presence, peer);
            }
        }
    }
}

/// Undoes everything `peer` added to presence.
fn forget(presence: &PresenceHub, peer: Peer) {
    for (room, user) in &peer.rooms {
        presence.apply_remote(Change::Enter(room, *user), false);
    }
    for author in peer.online.values() {
        presence.apply_remote(Change::Online(author), false);
    }
}

/// Handles one note from another node.
async fn receive(bus: &Bus, local: &Local, peers: &Peers, note: Note) {
    let Note {
        n: node,
        s: seq,
        b: body,
    } = note;
    if let Body::Goodbye = body {
        tracing::info!(node, "cluster: a node stopped");
        peers
            .gone
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(node.clone());
        if let Some(peer) = peers.lock().remove(&node) {
            forget(&local.presence, peer);
        }
        return;
    }
    if peers
        .gone
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .contains(&node)
    {
        return;
    }
    // Presence bookkeeping first (under the peers' lock, never across an await).
    let mut ask = false;
    {
        let mut all = peers.lock();
        let is_snapshot = matches!(body, Body::Snapshot { .. });
        let peer = all.entry(node.clone()).or_insert_with(|| {
            ask = !is_snapshot;
            Peer {
                seen: Instant::now(),
                seq,
                synced: false,
                wanted: !is_snapshot,
                online: HashMap::new(),
                rooms: HashSet::new(),
            }
        });
        peer.seen = Instant::now();
        if !ask && seq != peer.seq + 1 && peer.synced && !is_snapshot {
            tracing::debug!(node, "cluster: notes were lost; asking for a snapshot");
            ask = true;
            peer.wanted = true;
        }
        peer.seq = seq;
        match &body {
            Body::Snapshot { online, rooms } => {
                replace(&local.presence, peer, online, rooms);
                peer.synced = true;
                peer.wanted = false;
            }
            Body::Online { user } if peer.synced => {
                let author = Author::from(user.clone());
                if peer.online.insert(author.id, author.clone()).is_none() {
                    local.presence.apply_remote(Change::Online(&author), true);
                } else {
                    local.presence.refresh_remote(&author);
                }
            }
            Body::Offline { user } if peer.synced => {
                if let Some(author) = peer.online.remove(user) {
                    local.presence.apply_remote(Change::Online(&author), false);
                }
            }
            Body::Enter { room, user }
                if peer.synced && peer.rooms.insert((room.clone(), *user)) =>
            {
                local
                    .presence
                    .apply_remote(Change::Enter(room, *user), true);
            }
            Body::Leave { room, user }
                if peer.synced && peer.rooms.remove(&(room.clone(), *user)) =>
            {
                local
                    .presence
                    .apply_remote(Change::Enter(room, *user), false);
            }
            _ => {}
        }
    }
    if ask {
        bus.publish(Body::Ask { node: node.clone() });
    }
    match body {
        Body::Emit { to, frames } => {
            let target = match to {
                To::Room(room) => Target::Room(room),
                To::Users(users) => Target::Users(users),
            };
            local.pusher.send_frames_here(&target, &frames).await;
        }
        Body::Posted { room, sender, id } => {
            let room = match room {
                PostedIn::Group(name) => Room::Group(name),
                PostedIn::Private(high, low) => Room::Private { high, low },
            };
            local.unread.note_message(&room, sender, id);
        }
        Body::Revoke { user, jti } => super::revoke_here(&local.pusher, user, &jti),
        Body::Ask { node: asked } if asked.is_empty() || asked == bus.inner.node => {
            publish_snapshot(bus, &local.presence);
        }
        _ => {}
    }
}

/// Replaces what `peer` contributed to presence with its snapshot.
fn replace(
    presence: &PresenceHub,
    peer: &mut Peer,
    online: &[Person],
    rooms: &[(String, Vec<UserId>)],
) {
    let online: HashMap<UserId, Author> = online
        .iter()
        .map(|p| (p.id, Author::from(p.clone())))
        .collect();
    let rooms: HashSet<(String, UserId)> = rooms
        .iter()
        .flat_map(|(room, users)| users.iter().map(move |u| (room.clone(), *u)))
        .collect();
    // Arrivals first (a user enters a room while online), departures last.
    for (id, author) in &online {
        match peer.online.get(id) {
            None => presence.apply_remote(Change::Online(author), true),
            Some(known) if known != author => presence.refresh_remote(author),
            Some(_) => {}
        }
    }
    for (room, user) in rooms.difference(&peer.rooms) {
        presence.apply_remote(Change::Enter(room, *user), true);
    }
    for (room, user) in peer.rooms.difference(&rooms) {
        presence.apply_remote(Change::Enter(room, *user), false);
    }
    for (id, author) in &peer.online {
        if !online.contains_key(id) {
            presence.apply_remote(Change::Online(author), false);
        }
    }
    peer.online = online;
    peer.rooms = rooms;
}

#[cfg(test)]
mod tests {
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
