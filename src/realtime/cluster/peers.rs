//! The other nodes as this node knows them: when each was last heard, its notes' numbers (a gap
//! asks for a snapshot), and what it contributes to presence; and what its notes do here.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::time::Instant;

use super::wire::{Body, Note, Person, PostedIn, To};
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

/// Another node: when it was last heard, its last note's number, and its presence as counted here.
pub(super) struct Peer {
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
    for (room, user) in &peer.rooms {
        presence.apply_remote(Change::Enter(room, *user), false);
    }
    for author in peer.online.values() {
        presence.apply_remote(Change::Online(author), false);
    }
}

/// Handles one note from another node: a goodbye forgets the node; otherwise the node's presence is
/// kept (asking for a snapshot on a gap or a new node), then the note is delivered here.
pub(super) async fn receive(bus: &Bus, local: &Local, peers: &Peers, note: Note) {
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
    if peers.track(&node, seq, &body) {
        bus.publish(Body::Ask { node });
    }
    deliver(bus, local, body).await;
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

    /// Notes `node`'s note number `seq` and applies what `body` changes in its presence (under the
    /// peers' lock, never across an await). Returns whether to ask the node for a snapshot: it is
    /// new, or notes of it were lost.
    fn track(&self, node: &str, seq: u64, body: &Body) -> bool {
        let mut ask = false;
        let mut all = self.lock();
        let is_snapshot = matches!(body, Body::Snapshot { .. });
        let peer = all.entry(node.to_owned()).or_insert_with(|| {
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
        apply_presence(&self.presence, peer, body);
        ask
    }
}

/// Applies a presence note of `peer` (once its presence is known: a snapshot arrived).
fn apply_presence(presence: &PresenceHub, peer: &mut Peer, body: &Body) {
    match body {
        Body::Snapshot { online, rooms } => {
            replace(presence, peer, online, rooms);
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
        Body::Enter { room, user } if peer.synced && peer.rooms.insert((room.clone(), *user)) => {
            presence.apply_remote(Change::Enter(room, *user), true);
        }
        Body::Leave { room, user } if peer.synced && peer.rooms.remove(&(room.clone(), *user)) => {
            presence.apply_remote(Change::Enter(room, *user), false);
        }
        _ => {}
    }
}

/// Delivers what a note carries to this node: an emit to its sockets, a posted message to its
/// unread counters, a revocation to its sockets bound with that token, a snapshot to whoever asked.
async fn deliver(bus: &Bus, local: &Local, body: Body) {
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
        _ => {}
    }
}

/// Replaces what `peer` contributed to presence with its snapshot.
pub(super) fn replace(
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
