//! The other nodes as this node knows them: when each was last heard, its notes' numbers (a gap
//! asks for a snapshot), what it contributes to presence, and how many of its messages were counted;
//! and what its notes do here.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::time::Instant;

use super::digest::Counted;
use super::wire::{Body, Channel, Note, Person, PostedIn, To};
use super::{Bus, Local, PEER_TTL};
use crate::auth::UserId;
use crate::realtime::presence::{Change, PresenceHub};
use crate::realtime::pusher::Target;
use crate::services::rooms::Room;
use crate::services::users::Author;

/// What this node knows of the other nodes.
pub(super) struct Peers {
    state: Mutex<HashMap<String, Peer>>,
    /// Nodes gone: their late notes are ignored. (Node names are random per start.)
    gone: Mutex<HashSet<String>>,
    /// Where other nodes' presence is counted.
    presence: Arc<PresenceHub>,
    /// Every node's snapshot is wanted (after a reconnection), until one `Ask` for all went out.
    want_all: AtomicBool,
}

/// The channels the subscriber reads now.
pub(super) type Held = HashSet<Channel>;

/// Another node: when it was last heard, its last notes' numbers, its presence as counted here, and
/// its messages counted in this node's unread counters.
pub(super) struct Peer {
    seen: Instant,
    /// The number of its last note on the control channel.
    seq: u64,
    /// Whether its presence is known (a snapshot arrived); until then who it has online is not applied.
    synced: bool,
    /// Whether a snapshot is wanted (asked for until one arrives).
    wanted: bool,
    online: HashMap<UserId, Author>,
    /// Its users in the rooms this node reads.
    rooms: HashMap<String, HashSet<UserId>>,
    /// The number of its last note on each room channel read.
    room_seqs: HashMap<String, u64>,
    counted: Counted,
}

/// What a note shows is missing.
enum Resync {
    Nothing,
    /// The node's presence: ask it for a snapshot.
    Node,
    /// The node's users in a room: ask it on the room's channel.
    Room(String),
}

impl Peers {
    pub(super) fn new(presence: Arc<PresenceHub>) -> Self {
        Self {
            state: Mutex::default(),
            gone: Mutex::default(),
            presence,
            want_all: AtomicBool::new(false),
        }
    }

    /// Every node must send its snapshot again.
    pub(super) fn want_all(&self) {
        self.want_all.store(true, Ordering::SeqCst);
        for peer in self.lock().values_mut() {
            peer.wanted = true;
        }
    }

    /// Asks for the snapshots still wanted, if notes can go out now (otherwise at the next heartbeat).
    pub(super) fn ask(&self, bus: &Bus) {
        if !bus.inner.publishing.load(Ordering::SeqCst) {
            return;
        }
        if self.want_all.swap(false, Ordering::SeqCst) {
            bus.publish(
                &Channel::Control,
                &Body::Ask {
                    node: String::new(),
                },
            );
            return;
        }
        let wanted: Vec<String> = self
            .lock()
            .iter()
            .filter(|(_, p)| p.wanted)
            .map(|(n, _)| n.clone())
            .collect();
        for node in wanted {
            bus.publish(&Channel::Control, &Body::Ask { node });
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, HashMap<String, Peer>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn all_seen_now(&self) {
        let now = Instant::now();
        for peer in self.lock().values_mut() {
            peer.seen = now;
        }
    }

    /// Forgets the nodes not heard since `now − PEER_TTL`, with their users.
    pub(super) fn expire(&self, now: Instant) {
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
pub(super) fn forget(presence: &PresenceHub, peer: Peer) {
    for (room, users) in &peer.rooms {
        for user in users {
            presence.apply_remote(Change::Enter(room, *user), false);
        }
    }
    for author in peer.online.values() {
        presence.apply_remote(Change::Online(author), false);
    }
}

/// Handles one note from another node, heard on `channel`: a goodbye forgets the node; otherwise the
/// node's presence is kept (asking for a snapshot on a gap or a new node), then the note is delivered
/// here.
pub(super) async fn receive(
    bus: &Bus,
    local: &Local,
    peers: &Peers,
    channel: &Channel,
    held: &Held,
    note: Note,
) {
    let Note {
        n: node,
        s: seq,
        b: body,
    } = note;
    if let Body::Goodbye = body {
        peers.goodbye(&node);
        return;
    }
    if peers.is_gone(&node) {
        return;
    }
    match peers.track(&node, channel, seq, &body, held) {
        Resync::Nothing => {}
        Resync::Node => bus.publish(&Channel::Control, &Body::Ask { node: node.clone() }),
        Resync::Room(room) => bus.publish(
            &Channel::Room(room.clone()),
            &Body::RoomAsk {
                room,
                node: node.clone(),
            },
        ),
    }
    deliver(bus, local, peers, (&node, channel), held, body).await;
}

impl Peers {
    /// `node` stopped: its late notes are ignored, its users forgotten.
    fn goodbye(&self, node: &str) {
        tracing::info!(node, "cluster: a node stopped");
        self.gone
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(node.to_owned());
        if let Some(peer) = self.lock().remove(node) {
            forget(&self.presence, peer);
        }
    }

    fn is_gone(&self, node: &str) -> bool {
        self.gone
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(node)
    }

    /// Notes `node`'s note number `seq` on `channel` and applies what `body` changes in its presence
    /// (under the peers' lock, never across an await). Returns what to ask the node for: everything
    /// when it is new or notes of it were lost on the control channel, a room when notes were lost on
    /// the room's channel.
    fn track(&self, node: &str, channel: &Channel, seq: u64, body: &Body, held: &Held) -> Resync {
        let mut resync = Resync::Nothing;
        let mut all = self.lock();
        let is_snapshot = matches!(body, Body::Snapshot { .. });
        let peer = all.entry(node.to_owned()).or_insert_with(|| {
            if !is_snapshot {
                resync = Resync::Node;
            }
            Peer {
                seen: Instant::now(),
                seq: if *channel == Channel::Control { seq } else { 0 },
                synced: false,
                wanted: !is_snapshot,
                online: HashMap::new(),
                rooms: HashMap::new(),
                room_seqs: HashMap::new(),
                counted: Counted::default(),
            }
        });
        peer.seen = Instant::now();
        let fresh = matches!(resync, Resync::Nothing);
        match channel {
            Channel::Control => {
                if fresh && seq != peer.seq + 1 && peer.synced && !is_snapshot {
                    tracing::debug!(node, "cluster: notes were lost; asking for a snapshot");
                    resync = Resync::Node;
                    peer.wanted = true;
                }
                peer.seq = seq;
            }
            Channel::Room(room) => {
                let last = peer.room_seqs.insert(room.clone(), seq);
                let answers = matches!(body, Body::RoomSnapshot { .. });
                if fresh && !answers && last.is_some_and(|last| seq != last + 1) {
                    tracing::debug!(node, "cluster: room notes were lost; asking who is in it");
                    resync = Resync::Room(room.clone());
                }
            }
            Channel::User(_) => {}
        }
        apply_presence(&self.presence, peer, body, held);
        resync
    }

    /// How many of `node`'s messages in group room `room` a note numbered `c` covering `n` of them
    /// brings that were not counted yet.
    fn count(&self, node: &str, room: &str, c: u64, n: u64) -> u64 {
        self.lock()
            .get_mut(node)
            .map_or(n, |peer| peer.counted.take(room, c, n))
    }

    /// This node stopped reading `room`: every other node's users there are forgotten.
    pub(super) fn forget_room(&self, room: &str) {
        for peer in self.lock().values_mut() {
            peer.room_seqs.remove(room);
            for user in peer.rooms.remove(room).unwrap_or_default() {
                self.presence.apply_remote(Change::Enter(room, user), false);
            }
        }
    }
}

/// Applies a presence note of `peer`: who is online once its presence is known (a snapshot arrived),
/// who is in a room when this node reads the room.
fn apply_presence(presence: &PresenceHub, peer: &mut Peer, body: &Body, held: &Held) {
    let reads = |room: &str| held.contains(&Channel::Room(room.to_owned()));
    match body {
        Body::Snapshot {
            online,
            rooms,
            seqs,
        } => {
            let rooms: Vec<&(String, Vec<UserId>)> =
                rooms.iter().filter(|(r, _)| reads(r)).collect();
            let seqs: HashMap<&str, u64> = seqs.iter().map(|(r, s)| (r.as_str(), *s)).collect();
            replace(presence, peer, online, &rooms, &seqs);
            peer.synced = true;
            peer.wanted = false;
        }
        Body::Online { user } if peer.synced => {
            let author = Author::from(user.clone());
            if peer.online.insert(author.id, author.clone()).is_none() {
                presence.apply_remote(Change::Online(&author), true);
            } else {
                presence.refresh_remote(&author);
            }
        }
        Body::Offline { user } if peer.synced => {
            if let Some(author) = peer.online.remove(user) {
                presence.apply_remote(Change::Online(&author), false);
            }
        }
        Body::Enter { room, user }
            if reads(room) && peer.rooms.entry(room.clone()).or_default().insert(*user) =>
        {
            presence.apply_remote(Change::Enter(room, *user), true);
        }
        Body::Leave { room, user } => {
            if let Some(users) = peer.rooms.get_mut(room)
                && users.remove(user)
            {
                if users.is_empty() {
                    peer.rooms.remove(room);
                }
                presence.apply_remote(Change::Enter(room, *user), false);
            }
        }
        Body::RoomSnapshot { room, users } if reads(room) => {
            replace_room(presence, peer, room, users.iter().copied().collect());
        }
        _ => {}
    }
}

/// Replaces `peer`'s users in `room` with `users`.
fn replace_room(presence: &PresenceHub, peer: &mut Peer, room: &str, users: HashSet<UserId>) {
    let old = peer.rooms.remove(room).unwrap_or_default();
    for user in users.difference(&old) {
        presence.apply_remote(Change::Enter(room, *user), true);
    }
    for user in old.difference(&users) {
        presence.apply_remote(Change::Enter(room, *user), false);
    }
    if !users.is_empty() {
        peer.rooms.insert(room.to_owned(), users);
    }
}

/// Delivers what a note from `from` (a node, and the channel it came on) carries to this node: an
/// emit to its sockets, posted messages to its unread counters, a revocation to its sockets bound with
/// that token, a snapshot to whoever asked.
async fn deliver(
    bus: &Bus,
    local: &Local,
    peers: &Peers,
    from: (&str, &Channel),
    held: &Held,
    body: Body,
) {
    let (node, channel) = from;
    match body {
        Body::Emit { to, frames } => {
            let target = match to {
                To::Room(room) => Target::Room(room),
                To::Users(users) => Target::Users(users),
            };
            local.pusher.send_frames_here(&target, &frames).await;
        }
        Body::Posted {
            room: PostedIn::Group(room),
            sender,
            id,
            c,
        } => {
            let n = peers.count(node, &room, c, 1);
            if n > 0 {
                local
                    .unread
                    .note_messages(&Room::Group(room), n, id, &[(sender, 1)]);
            }
        }
        Body::Posted {
            room: PostedIn::Private(high, low),
            sender,
            id,
            ..
        } => {
            // It comes on both users' channels: when this node reads both, the copy on the first
            // user's channel is the one counted.
            if *channel == Channel::User(high) && held.contains(&Channel::User(low)) && low != high
            {
                return;
            }
            local
                .unread
                .note_messages(&Room::Private { high, low }, 1, id, &[(sender, 1)]);
        }
        Body::Digest { rooms } => {
            for digest in rooms {
                let n = peers.count(node, &digest.room, digest.c, digest.n);
                if n == 0 {
                    continue;
                }
                // Senders are known for the digest's own messages only.
                let own = if n >= digest.n {
                    &digest.senders[..]
                } else {
                    &[]
                };
                local
                    .unread
                    .note_messages(&Room::Group(digest.room), n, digest.latest, own);
            }
        }
        Body::Revoke { user, jti } => crate::realtime::revoke_here(&local.pusher, user, &jti),
        Body::Rooms { groups } => {
            let groups = groups.into_iter().map(Into::into).collect();
            crate::realtime::moderation::rooms_here(&local.pusher, groups).await;
        }
        Body::Ban { user, message } => {
            crate::realtime::moderation::ban_here(&local.pusher, user, &message).await;
        }
        Body::Ask { node: asked } if asked.is_empty() || asked == bus.inner.node => {
            bus.publish_snapshot(&local.presence);
        }
        Body::RoomAsk { room, node: asked } if asked.is_empty() || asked == bus.inner.node => {
            bus.publish_room_snapshot(&local.presence, &room, !asked.is_empty());
        }
        _ => {}
    }
}

/// Replaces what `peer` contributed to presence with its snapshot (`rooms`: those this node reads,
/// each numbered in `seqs`). A room of which a later note was read already is left as it is.
pub(super) fn replace(
    presence: &PresenceHub,
    peer: &mut Peer,
    online: &[Person],
    rooms: &[&(String, Vec<UserId>)],
    seqs: &HashMap<&str, u64>,
) {
    let online: HashMap<UserId, Author> = online
        .iter()
        .map(|p| (p.id, Author::from(p.clone())))
        .collect();
    // Arrivals first (a user enters a room while online), departures last.
    for (id, author) in &online {
        match peer.online.get(id) {
            None => presence.apply_remote(Change::Online(author), true),
            Some(known) if known != author => presence.refresh_remote(author),
            Some(_) => {}
        }
    }
    let listed: HashSet<&str> = rooms.iter().map(|(room, _)| room.as_str()).collect();
    let unlisted: Vec<String> = peer
        .rooms
        .keys()
        .filter(|room| !listed.contains(room.as_str()))
        .cloned()
        .collect();
    let parts = rooms
        .iter()
        .map(|(room, users)| (room.clone(), users.iter().copied().collect()))
        .chain(unlisted.into_iter().map(|room| (room, HashSet::new())));
    for (room, users) in parts {
        let at = seqs.get(room.as_str()).copied().unwrap_or(0);
        if peer.room_seqs.get(&room).is_some_and(|seen| *seen > at) {
            continue;
        }
        peer.room_seqs.insert(room.clone(), at);
        replace_room(presence, peer, &room, users);
    }
    for (id, author) in &peer.online {
        if !online.contains_key(id) {
            presence.apply_remote(Change::Online(author), false);
        }
    }
    peer.online = online;
}
