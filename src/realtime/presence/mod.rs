//! Who is online, and who is listed in which group room, on this node; and how room lists reach rooms
//! without costing the square of the room.
//!
//! A user is online while at least one of their sockets is bound to them, and listed in a room while at
//! least one of their sockets is in it: a second tab or device changes nothing, and the user leaves a
//! list only when the last of their sockets does.
//!
//! **What each client sees.** A socket that enters a room gets the room's current list at once (its own
//! `room` event). Everyone else in the room hears about changes in *rounds*: the first change after a
//! quiet spell starts a round at once; changes during or right after a round are folded into the next
//! one. A round sends the newest list to every socket of the room that has not seen it yet, in chunks
//! paced to [`ROUND_BYTES_PER_SECOND`], and the next round waits at least as long as the last one took
//! (and at least [`MIN_GAP`]). So a list is never more than about two rounds old: immediate in small
//! rooms, about 100 ms under churn in rooms of a few hundred, a few seconds in a room of 1 000, and up
//! to about ten seconds in a room of 5 000, where one round is 5 000 lists. Lists name at most
//! `--presence-max-members` members (1 000 by default, the first by id): every member of the room gets
//! the list, and a socket that reads slowly holds the unwritten end of it. The
//! event is `room` when the latest change was an arrival and `roomout` when it was a departure; both
//! clients treat them alike (replace the list).
//!
//! **Several nodes.** With a cluster bus (`--redis-url`), each node tells the others of its own
//! sockets' changes ([`Change`], through the observer set with [`PresenceHub::observe`]) and counts
//! each other node where a user is online or listed as one more holder ([`PresenceHub::apply_remote`]).
//! So "online" and the lists cover the whole cluster, while rounds still reach this node's sockets only:
//! every node serves its own.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::peak::shrink_after_peak;
use crate::auth::UserId;
use crate::services::users::Author;

mod remote;
mod rounds;

pub use self::rounds::run_rounds;

/// The pace of one round: bytes of list frames per second.
pub const ROUND_BYTES_PER_SECOND: f64 = 16.0 * 1024.0 * 1024.0;
/// Bytes sent per chunk of a round, before it pauses to keep its pace.
const CHUNK_BYTES: usize = 256 * 1024;
/// The shortest time between two rounds of one room.
pub const MIN_GAP: Duration = Duration::from_millis(100);

/// A room's list as one version of it.
#[derive(Debug, Clone)]
pub struct Listing {
    pub version: u64,
    pub entered: bool,
    pub members: Arc<[Author]>,
}

/// A change of this node's own presence, for the other nodes of a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change<'a> {
    /// The user's first socket on this node was bound, or their profile changed.
    Online(&'a Author),
    /// The user's last socket on this node was unbound.
    Offline(UserId),
    /// The user's first socket on this node entered the room.
    Enter(&'a str, UserId),
    /// The user's last socket on this node left the room.
    Leave(&'a str, UserId),
}

/// This node's own presence, whole: what a node that missed changes starts again from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub online: Vec<Author>,
    pub rooms: Vec<(String, Vec<UserId>)>,
}

/// Told of every [`Change`], in order, while the hub's lock is held (so it must not block).
pub type Observer = Box<dyn Fn(Change<'_>) + Send + Sync>;

/// Presence: this node's sockets, plus other nodes' users when a cluster bus feeds them in. Cheap to
/// share behind an `Arc`; the lock is never held across an `.await`.
pub struct PresenceHub {
    state: Mutex<State>,
    wake: Notify,
    /// Most members a list names.
    max_members: usize,
    observer: OnceLock<Observer>,
}

impl Default for PresenceHub {
    fn default() -> Self {
        Self::new(usize::MAX)
    }
}

#[derive(Default)]
struct State {
    online: HashMap<UserId, Online>,
    rooms: HashMap<String, RoomList>,
    /// Users listed in rooms while not known to be online (another node's note that they entered a
    /// room arrived before the one that they came online, which travels on another channel): lists
    /// name only online users, so these rooms get a new list when the user comes online.
    awaiting: HashMap<UserId, Vec<String>>,
}

/// Removals from the hub's tables, each of which gives its room back after a peak.
impl State {
    fn forget_online(&mut self, user: UserId) {
        self.online.remove(&user);
        shrink_after_peak(&mut self.online);
    }

    fn forget_room(&mut self, room: &str) {
        self.rooms.remove(room);
        shrink_after_peak(&mut self.rooms);
    }

    /// The rooms that listed `user` while not known to be online, no longer awaiting them.
    fn take_awaiting(&mut self, user: UserId) -> Option<Vec<String>> {
        let rooms = self.awaiting.remove(&user);
        shrink_after_peak(&mut self.awaiting);
        rooms
    }
}

struct Online {
    author: Author,
    /// Bound sockets on this node.
    sockets: u32,
    /// Other nodes where the user is online.
    remote: u32,
}

impl Online {
    /// `author`'s entry, made if missing, with the profile as it is now.
    fn of<'a>(online: &'a mut HashMap<UserId, Online>, author: &Author) -> &'a mut Online {
        let entry = online.entry(author.id).or_insert_with(|| Online {
            author: author.clone(),
            sockets: 0,
            remote: 0,
        });
        entry.author = author.clone();
        entry
    }
}

/// Who holds a user's place in a room list: sockets of this node, and other nodes.
#[derive(Debug, Clone, Copy, Default)]
struct Holders {
    local: u32,
    remote: u32,
}

impl Holders {
    fn total(self) -> u32 {
        self.local + self.remote
    }
}

struct RoomList {
    /// Listed users, with how many of their sockets (and other nodes) hold them there. Ordered by id
    /// so lists come out in a stable order.
    members: BTreeMap<UserId, Holders>,
    version: u64,
    /// The version the last round started with.
    sent: u64,
    entered: bool,
    in_round: bool,
    next_round: Instant,
    cached: Option<Listing>,
}

impl RoomList {
    fn new() -> Self {
        Self {
            members: BTreeMap::new(),
            version: 0,
            sent: 0,
            entered: true,
            in_round: false,
            next_round: Instant::now(),
            cached: None,
        }
    }
}

impl PresenceHub {
    /// A hub whose lists name at most `max_members` members (the first by id).
    pub fn new(max_members: usize) -> Self {
        Self {
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            max_members: max_members.max(1),
            observer: OnceLock::new(),
        }
    }

    /// Tells `observer` of every later change of this node's own presence (once; later calls are
    /// ignored).
    pub fn observe(&self, observer: Observer) {
        let _ = self.observer.set(observer);
    }

    fn tell(&self, change: Change<'_>) {
        if let Some(observer) = self.observer.get() {
            observer(change);
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A socket of `author` was bound. Returns whether the user just came online.
    pub fn connect(&self, author: &Author) -> bool {
        let mut state = self.lock();
        let entry = Online::of(&mut state.online, author);
        entry.sockets += 1;
        let first = entry.sockets == 1;
        if first {
            self.tell(Change::Online(author));
            self.came_online(&mut state, author.id);
        }
        first
    }

    /// `user` is now in the online map: the rooms that listed them meanwhile get a new list.
    fn came_online(&self, state: &mut State, user: UserId) {
        let awaited = state.take_awaiting(user);
        for room in awaited.unwrap_or_default() {
            if let Some(list) = state.rooms.get_mut(&room)
                && list.members.contains_key(&user)
            {
                self.listed(list);
            }
        }
    }

    /// Refreshes an online user's public profile (a new avatar shows in the next lists).
    pub fn refresh(&self, author: &Author) {
        let mut state = self.lock();
        if let Some(online) = state.online.get_mut(&author.id) {
            online.author = author.clone();
            if online.sockets > 0 {
                self.tell(Change::Online(author));
            }
        }
    }

    /// A socket of `user` was unbound. Returns whether the user is now offline (on this node).
    pub fn disconnect(&self, user: UserId) -> bool {
        let mut state = self.lock();
        let Some(entry) = state.online.get_mut(&user) else {
            return false;
        };
        if entry.sockets == 0 {
            return false;
        }
        entry.sockets -= 1;
        if entry.sockets > 0 {
            return false;
        }
        self.tell(Change::Offline(user));
        if entry.remote == 0 {
            state.forget_online(user);
        }
        true
    }

    /// Whether `user` has a bound socket on this node or, in a cluster, on another node.
    pub fn is_online(&self, user: UserId) -> bool {
        self.lock().online.contains_key(&user)
    }

    /// The users with a bound socket on this node or on another node of the cluster.
    pub fn online_users(&self) -> Vec<UserId> {
        self.lock().online.keys().copied().collect()
    }

    /// A socket of `user` entered `room`. Returns the room's list for that socket, and schedules a
    /// round for the others when the user was not listed before.
    pub fn enter(&self, room: &str, user: UserId) -> Listing {
        let mut state = self.lock();
        let state = &mut *state;
        let list = state
            .rooms
            .entry(room.to_owned())
            .or_insert_with(RoomList::new);
        let holders = list.members.entry(user).or_default();
        holders.local += 1;
        if holders.local == 1 {
            self.tell(Change::Enter(room, user));
        }
        if holders.total() == 1 {
            self.listed(list);
        }
        listing(list, &state.online, self.max_members)
    }

    /// A user joined `list`: a new version, announced as an arrival.
    fn listed(&self, list: &mut RoomList) {
        list.version += 1;
        list.entered = true;
        list.cached = None;
        self.wake.notify_one();
    }

    /// `user` is no longer held in `room`'s list: a new version, announced as a departure.
    fn unlisted(&self, state: &mut State, room: &str, user: UserId) {
        if let Some(rooms) = state.awaiting.get_mut(&user) {
            rooms.retain(|r| r != room);
            if rooms.is_empty() {
                state.take_awaiting(user);
            }
        }
        let Some(list) = state.rooms.get_mut(room) else {
            return;
        };
        list.members.remove(&user);
        list.version += 1;
        list.entered = false;
        list.cached = None;
        if list.members.is_empty() && !list.in_round {
            // Nobody is left to tell.
            state.forget_room(room);
        } else {
            self.wake.notify_one();
        }
    }

    /// A socket of `user` left `room`. Returns whether the user is no longer listed (the others then
    /// hear of it in the next round).
    pub fn leave(&self, room: &str, user: UserId) -> bool {
        let mut state = self.lock();
        let Some(list) = state.rooms.get_mut(room) else {
            return false;
        };
        let Some(holders) = list.members.get_mut(&user) else {
            return false;
        };
        if holders.local == 0 {
            return false;
        }
        holders.local -= 1;
        if holders.local > 0 {
            return false;
        }
        self.tell(Change::Leave(room, user));
        if holders.remote > 0 {
            return false;
        }
        let state = &mut *state;
        self.unlisted(state, room, user);
        true
    }

    /// The ids of the users listed in each of `rooms` (every member, however long the list).
    pub fn member_ids(
        &self,
        rooms: &[String],
    ) -> HashMap<String, std::collections::HashSet<UserId>> {
        let state = self.lock();
        rooms
            .iter()
            .map(|room| {
                let ids = state
                    .rooms
                    .get(room)
                    .map(|l| l.members.keys().copied().collect())
                    .unwrap_or_default();
                (room.clone(), ids)
            })
            .collect()
    }

    /// Whether one of `user`'s sockets is in `room`.
    pub fn is_present(&self, room: &str, user: UserId) -> bool {
        self.lock()
            .rooms
            .get(room)
            .is_some_and(|l| l.members.contains_key(&user))
    }

    /// The users listed in `room`, ordered by id.
    pub fn members(&self, room: &str) -> Arc<[Author]> {
        let mut state = self.lock();
        let state = &mut *state;
        match state.rooms.get_mut(room) {
            Some(list) => listing(list, &state.online, self.max_members).members,
            None => Arc::from(Vec::new()),
        }
    }

    /// The room's newest list, if the room has one.
    pub fn current(&self, room: &str) -> Option<Listing> {
        let mut state = self.lock();
        let state = &mut *state;
        let list = state.rooms.get_mut(room)?;
        Some(listing(list, &state.online, self.max_members))
    }

    /// Starts the rounds that are due at `now`; returns their rooms and when the next one falls due.
    fn due_rounds(&self, now: Instant) -> (Vec<String>, Option<Instant>) {
        let mut state = self.lock();
        let mut due = Vec::new();
        let mut next: Option<Instant> = None;
        for (room, list) in &mut state.rooms {
            if list.in_round || list.version == list.sent {
                continue;
            }
            if list.next_round <= now {
                list.in_round = true;
                list.sent = list.version;
                due.push(room.clone());
            } else {
                next = Some(next.map_or(list.next_round, |n| n.min(list.next_round)));
            }
        }
        (due, next)
    }

    /// A round of `room` ended after `took`.
    fn finish_round(&self, room: &str, took: Duration) {
        let mut state = self.lock();
        if let Some(list) = state.rooms.get_mut(room) {
            list.in_round = false;
            list.next_round = Instant::now() + took.max(MIN_GAP);
            if list.members.is_empty() {
                state.forget_room(room);
            }
        }
        self.wake.notify_one();
    }
}

fn listing(list: &mut RoomList, online: &HashMap<UserId, Online>, max: usize) -> Listing {
    if let Some(cached) = &list.cached {
        return cached.clone();
    }
    let members: Arc<[Author]> = list
        .members
        .keys()
        .filter_map(|id| online.get(id).map(|o| o.author.clone()))
        .take(max)
        .collect();
    let listing = Listing {
        version: list.version,
        entered: list.entered,
        members,
    };
    list.cached = Some(listing.clone());
    listing
}

#[cfg(test)]
mod tests {
    use super::*;

    fn author(id: UserId) -> Author {
        Author {
            id,
            name: format!("u{id}"),
            avatar: String::new(),
        }
    }

    #[test]
    fn a_member_heard_of_before_coming_online_is_listed_once_online() {
        let hub = PresenceHub::default();
        hub.connect(&author(1));
        hub.enter("room1", 1);
        // Another node's notes: user 2 entered room1, and (on another channel, later) came online.
        hub.apply_remote(Change::Enter("room1", 2), true);
        let before = hub.current("room1").map(|l| l.version);
        let names = |hub: &PresenceHub| -> Vec<UserId> {
            hub.members("room1").iter().map(|a| a.id).collect()
        };
        assert_eq!(names(&hub), [1], "not online yet: not listed");
        hub.apply_remote(Change::Online(&author(2)), true);
        assert_eq!(names(&hub), [1, 2]);
        let after = hub.current("room1").map(|l| l.version);
        assert!(
            after > before,
            "a new list goes out: {before:?} -> {after:?}"
        );
    }

    #[test]
    fn a_user_stays_listed_until_the_last_socket_leaves() {
        let p = PresenceHub::default();
        assert!(p.connect(&author(1)));
        assert!(!p.connect(&author(1)));
        let first = p.enter("room1", 1);
        assert_eq!(first.members.as_ref(), &[author(1)]);
        let second = p.enter("room1", 1);
        assert_eq!(
            second.version, first.version,
            "a second tab changes nothing"
        );
        assert!(!p.leave("room1", 1));
        assert!(p.is_present("room1", 1));
        assert!(p.leave("room1", 1));
        assert!(p.members("room1").is_empty());
        assert!(!p.leave("room1", 1));
        assert!(!p.disconnect(1));
        assert!(p.disconnect(1));
        assert!(!p.is_online(1));
    }

    #[test]
    fn changes_are_folded_into_rounds_spaced_by_the_last_round() {
        let p = PresenceHub::default();
        for id in 1..=3 {
            p.connect(&author(id));
        }
        p.enter("room1", 1);
        let t0 = Instant::now();
        // The first change goes out at once.
        assert_eq!(p.due_rounds(t0).0, vec!["room1".to_owned()]);
        // Changes during the round wait for it, and then for the gap.
        p.enter("room1", 2);
        p.enter("room1", 3);
        assert!(p.due_rounds(t0).0.is_empty());
        p.finish_round("room1", Duration::from_millis(300));
        let (due, next) = p.due_rounds(Instant::now());
        assert!(due.is_empty());
        let next = next.expect("a round is scheduled");
        assert!(next >= Instant::now() + Duration::from_millis(299));
        // One round carries both arrivals.
        assert_eq!(p.due_rounds(next).0, vec!["room1".to_owned()]);
        assert_eq!(p.current("room1").unwrap().members.len(), 3);
        p.finish_round("room1", Duration::ZERO);
        // Nothing changed since: no round.
        let later = Instant::now() + Duration::from_secs(1);
        assert_eq!(p.due_rounds(later), (Vec::new(), None));
    }

    #[test]
    fn other_nodes_hold_users_online_and_listed_and_local_changes_are_told() {
        let p = PresenceHub::default();
        let told = Arc::new(Mutex::new(Vec::new()));
        let sink = told.clone();
        p.observe(Box::new(move |c| {
            sink.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(format!("{c:?}"));
        }));
        // Another node has user 2 in room1; this node has user 1 there too.
        p.apply_remote(Change::Online(&author(2)), true);
        p.apply_remote(Change::Enter("room1", 2), true);
        assert!(p.is_online(2));
        p.connect(&author(1));
        let listing = p.enter("room1", 1);
        assert_eq!(listing.members.len(), 2);
        // User 2 also opens a socket here: leaving here keeps them listed (the other node holds them).
        p.connect(&author(2));
        p.enter("room1", 2);
        assert!(!p.leave("room1", 2));
        assert!(p.is_present("room1", 2));
        p.apply_remote(Change::Enter("room1", 2), false);
        assert!(!p.is_present("room1", 2));
        p.disconnect(2);
        assert!(p.is_online(2), "still online on the other node");
        p.apply_remote(Change::Online(&author(2)), false);
        assert!(!p.is_online(2));
        let mut snapshot = Snapshot::default();
        p.with_snapshot(|s| snapshot = s);
        assert_eq!(snapshot.online, [author(1)]);
        assert_eq!(snapshot.rooms, [("room1".to_owned(), vec![1])]);
        let told = told.lock().unwrap_or_else(PoisonError::into_inner).clone();
        assert_eq!(told.len(), 6, "{told:?}");
        assert_eq!(told[4..], ["Leave(\"room1\", 2)", "Offline(2)"]);
    }

    #[test]
    fn long_lists_name_the_first_members_only() {
        let p = PresenceHub::new(2);
        for id in [5, 1, 3] {
            p.connect(&author(id));
            p.enter("room1", id);
        }
        let ids: Vec<_> = p.members("room1").iter().map(|a| a.id).collect();
        assert_eq!(ids, [1, 3]);
        assert!(p.is_present("room1", 5));
    }

    #[test]
    fn lists_carry_public_profiles_in_id_order() {
        let p = PresenceHub::default();
        for id in [3, 1, 2] {
            p.connect(&author(id));
            p.enter("room1", id);
        }
        let names: Vec<_> = p.members("room1").iter().map(|a| a.name.clone()).collect();
        assert_eq!(names, ["u1", "u2", "u3"]);
        p.leave("room1", 2);
        let listing = p.current("room1").unwrap();
        assert!(!listing.entered, "the latest change was a departure");
    }
}
