//! Unread counts of online users, kept in memory and pushed in coalesced ticks.
//!
//! The database keeps, per user and room, the id of the last message the user has seen
//! (`read_states`); a user's counts are loaded from it when they send `login`. From then on this hub
//! keeps them current without touching the database: each room has a sequence number that every
//! announced message advances, and a user's count for a room is
//! `base + (room sequence − sequence at the last reset) − (own messages since then)`.
//! A message costs O(1) here, whoever is online.
//!
//! **What each client sees.** Online users who loaded their counts are split into [`SLICES`] slices;
//! a [`tick`](UnreadHub::tick) every [`TICK`] ÷ [`SLICES`] serves one slice: each of its users who is
//! not in a room that changed since the slice's last tick gets one `count` event with the new numbers
//! of every such room. So a count is at most about a second old, a user gets at most one `count` per
//! second however busy the rooms are, and the work of a second is spread over ten small ticks instead
//! of one burst. Entering a room resets its count at once (`count {room: 0}` to that socket).
//!
//! Read marks (entering and leaving a room) are also gathered here and written in one transaction a
//! second, so a join storm costs one write, not one per join.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;

use super::peak::shrink_after_peak;
use crate::auth::UserId;
use crate::services::rooms::Room;

/// The longest a count waits, and the shortest time between two counts to one user.
pub const TICK: Duration = Duration::from_secs(1);
/// How many slices of users share out a second's ticks.
pub const SLICES: usize = 10;
/// All slices' bits.
const ALL_SLICES: u16 = (1 << SLICES) - 1;

/// Who may read a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Readers {
    Everyone,
    Pair(UserId, UserId),
}

#[derive(Debug)]
struct RoomState {
    id: Arc<str>,
    readers: Readers,
    /// Messages announced since the start.
    seq: u64,
    /// The newest message id, once known.
    latest: Option<i64>,
    /// Slices that have not been told of this room's newest messages yet (one bit per slice).
    pending: u16,
}

#[derive(Debug, Clone, Default)]
struct Counter {
    base: u64,
    at_seq: u64,
    own: u64,
    own_at: u64,
    /// The value last told to the user.
    sent: u64,
}

impl Counter {
    fn value(&self, seq: u64) -> u64 {
        (self.base + seq.saturating_sub(self.at_seq)).saturating_sub(self.own - self.own_at)
    }

    fn reset(&mut self, seq: u64) {
        self.base = 0;
        self.at_seq = seq;
        self.own_at = self.own;
        self.sent = 0;
    }
}

/// One user's counters: a short list (their group rooms and private conversations), by room index.
type Counters = Vec<(usize, Counter)>;

/// Counts of some rooms, as told to one user.
pub type Counts = Vec<(Arc<str>, u64)>;

fn counter(counters: &mut Counters, room: usize) -> Option<&mut Counter> {
    counters
        .iter_mut()
        .find(|(r, _)| *r == room)
        .map(|(_, c)| c)
}

fn counter_or_insert(
    counters: &mut Counters,
    room: usize,
    new: impl FnOnce() -> Counter,
) -> &mut Counter {
    let at = match counters.iter().position(|(r, _)| *r == room) {
        Some(at) => at,
        None => {
            counters.push((room, new()));
            counters.len() - 1
        }
    };
    &mut counters[at].1
}

fn slice_of(user: UserId) -> usize {
    user.rem_euclid(SLICES as i64) as usize
}

/// Node-local unread counters. The lock is never held across an `.await`.
#[derive(Default)]
pub struct UnreadHub {
    state: Mutex<State>,
    wake: Notify,
}

#[derive(Default)]
struct State {
    rooms: Vec<RoomState>,
    index: HashMap<Arc<str>, usize>,
    /// Counters of online users who loaded them (`login`), by slice.
    users: [HashMap<UserId, Counters>; SLICES],
    /// Read marks to write: user and room → the last message seen (`None`: the newest in the database).
    marks: HashMap<(UserId, Arc<str>), Option<i64>>,
}

impl State {
    /// The index of `room`, registered on first sight.
    fn room(&mut self, room: &str, readers: impl FnOnce() -> Readers) -> usize {
        if let Some(i) = self.index.get(room) {
            return *i;
        }
        let id: Arc<str> = Arc::from(room);
        self.rooms.push(RoomState {
            id: id.clone(),
            readers: readers(),
            seq: 0,
            latest: None,
            pending: 0,
        });
        self.index.insert(id, self.rooms.len() - 1);
        self.rooms.len() - 1
    }

    fn group(&mut self, room: &str) -> usize {
        self.room(room, || Readers::Everyone)
    }

    fn user(&mut self, user: UserId) -> Option<&mut Counters> {
        self.users[slice_of(user)].get_mut(&user)
    }
}

impl UnreadHub {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `user`'s counts for `rooms`, if they are loaded.
    pub fn counts(&self, user: UserId, rooms: &[String]) -> Option<Counts> {
        let mut state = self.lock();
        state.users[slice_of(user)].get(&user)?;
        let indexes: Vec<usize> = rooms.iter().map(|r| state.group(r)).collect();
        let state = &mut *state;
        let counters = state.users[slice_of(user)].get(&user)?;
        Some(
            indexes
                .into_iter()
                .map(|i| {
                    let room = &state.rooms[i];
                    let n = counters
                        .iter()
                        .find(|(r, _)| *r == i)
                        .map_or(0, |(_, c)| c.value(room.seq));
                    (room.id.clone(), n)
                })
                .collect(),
        )
    }

    /// Loads `user`'s counts as read from the database, unless they are loaded already (they are then
    /// at least as fresh). Returns the counts in effect for `rooms`.
    pub fn load(&self, user: UserId, loaded: HashMap<String, u64>, rooms: &[String]) -> Counts {
        {
            let mut state = self.lock();
            if state.user(user).is_none() {
                let counters: Counters = loaded
                    .into_iter()
                    .map(|(room, n)| {
                        let i = state.group(&room);
                        let counter = Counter {
                            base: n,
                            at_seq: state.rooms[i].seq,
                            sent: n,
                            ..Counter::default()
                        };
                        (i, counter)
                    })
                    .collect();
                state.users[slice_of(user)].insert(user, counters);
            }
        }
        self.counts(user, rooms).unwrap_or_default()
    }

    /// `user` went offline on this node: their counters are reloaded at their next `login`.
    pub fn forget(&self, user: UserId) {
        let mut state = self.lock();
        let slice = &mut state.users[slice_of(user)];
        slice.remove(&user);
        shrink_after_peak(slice);
    }

    /// `user` has seen everything in group room `room` (they entered or left it): the count resets,
    /// and a read mark is queued.
    pub fn mark_read(&self, user: UserId, room: &str) {
        let mut state = self.lock();
        let i = state.group(room);
        let (seq, latest, id) = {
            let r = &state.rooms[i];
            (r.seq, r.latest, r.id.clone())
        };
        if let Some(counters) = state.user(user) {
            counter_or_insert(counters, i, Counter::default).reset(seq);
        }
        state.marks.insert((user, id), latest);
    }

    /// Records the newest message id of `room` as read from the database (at start), unless a newer
    /// one is known.
    pub fn know_latest(&self, room: &str, id: i64) {
        let mut state = self.lock();
        let i = state.group(room);
        let latest = &mut state.rooms[i].latest;
        *latest = Some(latest.map_or(id, |l| l.max(id)));
    }

    /// A message `id` from `sender` was announced in `room`. O(1).
    pub fn note_message(&self, room: &Room, sender: UserId, id: i64) {
        self.note_messages(room, 1, id, &[(sender, 1)]);
    }

    /// `n` messages were announced in `room` (on another node), the newest `latest`; `own` says who
    /// sent how many of them, where known (their own messages are not unread to them). O(senders).
    pub fn note_messages(&self, room: &Room, n: u64, latest: i64, own: &[(UserId, u64)]) {
        if n == 0 {
            return;
        }
        let room_id = room.id();
        let mut state = self.lock();
        let readers = match room {
            Room::Group(_) => Readers::Everyone,
            Room::Private { high, low } => Readers::Pair(*high, *low),
        };
        let i = state.room(&room_id, || readers);
        let seq = {
            let r = &mut state.rooms[i];
            r.seq += n;
            r.latest = Some(r.latest.map_or(latest, |l| l.max(latest)));
            r.pending = ALL_SLICES;
            r.seq
        };
        if let Readers::Pair(a, b) = readers {
            // Private rooms are counted from the first message after `login`.
            for user in [a, b] {
                if let Some(counters) = state.user(user) {
                    counter_or_insert(counters, i, || Counter {
                        at_seq: seq - n,
                        ..Counter::default()
                    });
                }
            }
        }
        for (sender, k) in own {
            if let Some(counter) = state.user(*sender).and_then(|c| counter(c, i)) {
                counter.own += k;
            }
        }
        drop(state);
        self.wake.notify_one();
    }

    /// Waits until a message arrives (then a tick is due).
    pub async fn wait_for_messages(&self) {
        self.wake.notified().await;
    }

    /// Whether any slice has news to be told.
    pub fn any_pending(&self) -> bool {
        self.lock().rooms.iter().any(|r| r.pending != 0)
    }

    /// The rooms with news for slice `slice`.
    pub fn pending_rooms(&self, slice: usize) -> Vec<Arc<str>> {
        let bit = 1 << slice;
        self.lock()
            .rooms
            .iter()
            .filter(|r| r.pending & bit != 0)
            .map(|r| r.id.clone())
            .collect()
    }

    /// Serves slice `slice`: for each of its users whose count of a room changed since the slice's
    /// last tick and who is not in that room (`present`), the new counts. Users in a changed room have
    /// read it: their count there resets.
    pub fn tick(
        &self,
        slice: usize,
        present: impl Fn(&str, UserId) -> bool,
    ) -> Vec<(UserId, Counts)> {
        let bit = 1 << slice;
        let mut state = self.lock();
        let state = &mut *state;
        let mut out: HashMap<UserId, Counts> = HashMap::new();
        let users = &mut state.users[slice];
        for (i, room) in state.rooms.iter_mut().enumerate() {
            if room.pending & bit == 0 {
                continue;
            }
            room.pending &= !bit;
            let mut visit = |user: UserId, counters: &mut Counters| {
                let Some(counter) = counter(counters, i) else {
                    return;
                };
                if present(&room.id, user) {
                    counter.reset(room.seq);
                    return;
                }
                let n = counter.value(room.seq);
                if n != counter.sent {
                    counter.sent = n;
                    out.entry(user).or_default().push((room.id.clone(), n));
                }
            };
            match room.readers {
                Readers::Everyone => {
                    for (user, counters) in users.iter_mut() {
                        visit(*user, counters);
                    }
                }
                Readers::Pair(a, b) => {
                    for user in [a, b] {
                        if slice_of(user) == slice
                            && let Some(counters) = users.get_mut(&user)
                        {
                            visit(user, counters);
                        }
                    }
                }
            }
        }
        out.into_iter().collect()
    }

    /// Takes the read marks gathered since the last call.
    pub fn take_marks(&self) -> Vec<(UserId, String, Option<i64>)> {
        let mut state = self.lock();
        let marks = std::mem::take(&mut state.marks);
        marks
            .into_iter()
            .map(|((user, room), id)| (user, room.to_string(), id))
            .collect()
    }

    /// Whether read marks are waiting to be written.
    pub fn has_marks(&self) -> bool {
        !self.lock().marks.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(name: &str) -> Room {
        Room::Group(name.into())
    }

    fn rooms() -> Vec<String> {
        vec!["room1".into(), "room2".into()]
    }

    /// Every slice's tick, as a second of ticks does.
    fn second(
        hub: &UnreadHub,
        present: impl Fn(&str, UserId) -> bool,
    ) -> Vec<(UserId, Vec<(String, u64)>)> {
        let mut told: Vec<(UserId, Vec<(String, u64)>)> = (0..SLICES)
            .flat_map(|s| hub.tick(s, &present))
            .map(|(u, counts)| {
                let mut counts: Vec<(String, u64)> = counts
                    .into_iter()
                    .map(|(r, n)| (r.to_string(), n))
                    .collect();
                counts.sort();
                (u, counts)
            })
            .collect();
        told.sort();
        told
    }

    fn plain(counts: Option<Vec<(Arc<str>, u64)>>) -> Option<Vec<(String, u64)>> {
        counts.map(|c| c.into_iter().map(|(r, n)| (r.to_string(), n)).collect())
    }

    #[test]
    fn counts_skip_the_sender_and_those_in_the_room_and_reset_on_reading() {
        let hub = UnreadHub::default();
        for user in [1, 2, 3] {
            hub.load(
                user,
                HashMap::from([("room1".into(), 5), ("room2".into(), 0)]),
                &rooms(),
            );
        }
        // User 4 never sent `login`: no counters, no counts.
        for id in 1..=3 {
            hub.note_message(&group("room1"), 1, id);
        }
        let present = |room: &str, user: UserId| room == "room1" && user == 2;
        // The sender's own messages are not unread to them; user 2 is in the room.
        assert_eq!(
            second(&hub, present),
            vec![(3, vec![("room1".to_owned(), 8)])]
        );
        assert_eq!(
            plain(hub.counts(2, &rooms())).unwrap()[0].1,
            0,
            "present: read"
        );
        assert_eq!(plain(hub.counts(1, &rooms())).unwrap()[0].1, 5);
        // Nothing new: nothing to tell.
        assert!(second(&hub, present).is_empty());
        hub.mark_read(3, "room1");
        assert_eq!(
            plain(hub.counts(3, &rooms())),
            Some(vec![("room1".into(), 0), ("room2".into(), 0)])
        );
        assert_eq!(hub.take_marks(), vec![(3, "room1".to_owned(), Some(3))]);
        assert!(hub.counts(4, &rooms()).is_none());
    }

    #[test]
    fn one_tick_carries_many_messages_and_loaded_counts_are_kept() {
        let hub = UnreadHub::default();
        hub.load(
            7,
            HashMap::from([("room1".into(), 0), ("room2".into(), 0)]),
            &rooms(),
        );
        for id in 1..=100 {
            hub.note_message(&group(if id % 2 == 0 { "room1" } else { "room2" }), 9, id);
        }
        assert_eq!(
            second(&hub, |_, _| false),
            vec![(7, vec![("room1".into(), 50), ("room2".into(), 50)])],
            "one event per user per second"
        );
        // A second login does not overwrite the live counters with an older load.
        let counts = hub.load(7, HashMap::from([("room1".into(), 0)]), &rooms());
        assert_eq!(
            plain(Some(counts)).unwrap(),
            vec![("room1".into(), 50), ("room2".into(), 50)]
        );
    }

    #[test]
    fn a_slice_is_told_once_and_only_about_its_own_users() {
        let hub = UnreadHub::default();
        for user in [3, 13, 4] {
            hub.load(user, HashMap::from([("room1".into(), 0)]), &rooms());
        }
        hub.note_message(&group("room1"), 9, 1);
        let three = slice_of(3);
        let mut told: Vec<UserId> = hub
            .tick(three, |_, _| false)
            .into_iter()
            .map(|(u, _)| u)
            .collect();
        told.sort();
        assert_eq!(told, vec![3, 13]);
        assert!(hub.tick(three, |_, _| false).is_empty(), "told once");
        assert_eq!(hub.pending_rooms(slice_of(4)), vec![Arc::from("room1")]);
        assert_eq!(hub.tick(slice_of(4), |_, _| false).len(), 1);
    }

    #[test]
    fn private_rooms_count_for_their_two_users_from_the_first_message() {
        let hub = UnreadHub::default();
        for user in [2, 3, 4] {
            hub.load(user, HashMap::new(), &rooms());
        }
        let room = crate::services::rooms::private_room(2, 3);
        hub.note_message(&room, 2, 10);
        hub.note_message(&room, 2, 11);
        assert_eq!(second(&hub, |_, _| false), vec![(3, vec![(room.id(), 2)])]);
    }
}
