//! Unread counts of online users, kept in memory and pushed in coalesced ticks.
//!
//! The database keeps, per user and room, the id of the last message the user has seen
//! (`read_states`); a user's counts are loaded from it when they send `login`. From then on this hub
//! keeps them current without touching the database: each room has a sequence number that every
//! announced message advances, and a user's count for a room is
//! `base + (room sequence − sequence at the last reset) − (own messages since then)`.
//! A message costs O(1) here, whoever is online.
//!
//! **What each client sees.** A [`tick`](UnreadHub::tick) runs right after the first message that
//! follows a quiet second, then at most once per [`TICK`]: each online user who has loaded their counts
//! and is not in a room that changed gets one `count` event with the new numbers of every room that
//! changed for them. So a count is at most about a second old, and a user gets at most about one
//! `count` per second however busy the rooms are. Entering a room resets its count at once
//! (`count {room: 0}` to that socket).
//!
//! Read marks (entering and leaving a room) are also gathered here and written in one transaction per
//! tick, so a join storm costs one write, not one per join.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;

use crate::auth::UserId;
use crate::services::rooms::Room;

/// The shortest time between two ticks.
pub const TICK: Duration = Duration::from_secs(1);

/// Who may read a room whose count changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Readers {
    Everyone,
    Pair(UserId, UserId),
}

#[derive(Debug, Default)]
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

/// Node-local unread counters. The lock is never held across an `.await`.
#[derive(Default)]
pub struct UnreadHub {
    state: Mutex<State>,
    wake: Notify,
}

#[derive(Default)]
struct State {
    /// Messages announced per room since the start.
    seq: HashMap<String, u64>,
    /// The newest message id per room, once known.
    latest: HashMap<String, i64>,
    /// Rooms with messages since the last tick.
    dirty: HashMap<String, Readers>,
    /// Counters of online users who loaded them (`login`).
    users: HashMap<UserId, HashMap<String, Counter>>,
    /// Read marks to write: user and room → the last message seen (`None`: the newest in the database).
    marks: HashMap<(UserId, String), Option<i64>>,
}

impl State {
    fn seq(&self, room: &str) -> u64 {
        self.seq.get(room).copied().unwrap_or(0)
    }
}

impl UnreadHub {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `user`'s counts for `rooms`, if they are loaded.
    pub fn counts(&self, user: UserId, rooms: &[String]) -> Option<Vec<(String, u64)>> {
        let state = self.lock();
        let counters = state.users.get(&user)?;
        Some(
            rooms
                .iter()
                .map(|room| {
                    let n = counters.get(room).map_or(0, |c| c.value(state.seq(room)));
                    (room.clone(), n)
                })
                .collect(),
        )
    }

    /// Loads `user`'s counts as read from the database, unless they are loaded already (they are then
    /// at least as fresh). Returns the counts in effect for `rooms`.
    pub fn load(
        &self,
        user: UserId,
        loaded: HashMap<String, u64>,
        rooms: &[String],
    ) -> Vec<(String, u64)> {
        {
            let mut state = self.lock();
            if !state.users.contains_key(&user) {
                let counters = loaded
                    .into_iter()
                    .map(|(room, n)| {
                        let counter = Counter {
                            base: n,
                            at_seq: state.seq(&room),
                            sent: n,
                            ..Counter::default()
                        };
                        (room, counter)
                    })
                    .collect();
                state.users.insert(user, counters);
            }
        }
        self.counts(user, rooms).unwrap_or_default()
    }

    /// `user` went offline on this node: their counters are reloaded at their next `login`.
    pub fn forget(&self, user: UserId) {
        self.lock().users.remove(&user);
    }

    /// `user` has seen everything in group room `room` (they entered or left it): the count resets,
    /// and a read mark is queued.
    pub fn mark_read(&self, user: UserId, room: &str) {
        let mut state = self.lock();
        let seq = state.seq(room);
        let latest = state.latest.get(room).copied();
        if let Some(counter) = state
            .users
            .get_mut(&user)
            .map(|c| c.entry(room.to_owned()).or_default())
        {
            counter.reset(seq);
        }
        state.marks.insert((user, room.to_owned()), latest);
    }

    /// Records the newest message id of `room` as read from the database (at start), unless a newer
    /// one is known.
    pub fn know_latest(&self, room: &str, id: i64) {
        let mut state = self.lock();
        let latest = state.latest.entry(room.to_owned()).or_insert(id);
        *latest = (*latest).max(id);
    }

    /// A message `id` from `sender` was announced in `room`. O(1).
    pub fn note_message(&self, room: &Room, sender: UserId, id: i64) {
        let room_id = room.id();
        let mut state = self.lock();
        let seq = {
            let seq = state.seq.entry(room_id.clone()).or_insert(0);
            *seq += 1;
            *seq
        };
        state.latest.insert(room_id.clone(), id);
        let readers = match room {
            Room::Group(_) => Readers::Everyone,
            Room::Private { high, low } => Readers::Pair(*high, *low),
        };
        if let Readers::Pair(a, b) = readers {
            // Private rooms are counted from the first message after `login`.
            for user in [a, b] {
                if let Some(counters) = state.users.get_mut(&user) {
                    counters.entry(room_id.clone()).or_insert_with(|| Counter {
                        at_seq: seq - 1,
                        ..Counter::default()
                    });
                }
            }
        }
        if let Some(counter) = state
            .users
            .get_mut(&sender)
            .and_then(|c| c.get_mut(&room_id))
        {
            counter.own += 1;
        }
        state.dirty.insert(room_id, readers);
        drop(state);
        self.wake.notify_one();
    }

    /// The rooms that got messages since the last tick.
    pub fn dirty_rooms(&self) -> Vec<String> {
        self.lock().dirty.keys().cloned().collect()
    }

    /// Waits until a message arrives (then a tick is due).
    pub async fn wait_for_messages(&self) {
        self.wake.notified().await;
    }

    /// Collects the counts to tell: for each user whose count of a room changed since the last tick
    /// and who is not in that room (`present`), the new counts. Users in a changed room have read it:
    /// their count there resets.
    pub fn tick(
        &self,
        present: impl Fn(&str, UserId) -> bool,
    ) -> Vec<(UserId, Vec<(String, u64)>)> {
        let mut state = self.lock();
        let state = &mut *state;
        let mut out: HashMap<UserId, Vec<(String, u64)>> = HashMap::new();
        for (room, readers) in state.dirty.drain() {
            let seq = state.seq.get(&room).copied().unwrap_or(0);
            let mut visit = |user: UserId, counters: &mut HashMap<String, Counter>| {
                let Some(counter) = counters.get_mut(&room) else {
                    return;
                };
                if present(&room, user) {
                    counter.reset(seq);
                    return;
                }
                let n = counter.value(seq);
                if n != counter.sent {
                    counter.sent = n;
                    out.entry(user).or_default().push((room.clone(), n));
                }
            };
            match readers {
                Readers::Everyone => {
                    for (user, counters) in &mut state.users {
                        visit(*user, counters);
                    }
                }
                Readers::Pair(a, b) => {
                    for user in [a, b] {
                        if let Some(counters) = state.users.get_mut(&user) {
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
            .map(|((user, room), id)| (user, room, id))
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
        let mut told = hub.tick(present);
        told.sort();
        // The sender's own messages are not unread to them; user 2 is in the room.
        assert_eq!(told, vec![(3, vec![("room1".to_owned(), 8)])]);
        assert_eq!(hub.counts(2, &rooms()).unwrap()[0].1, 0, "present: read");
        assert_eq!(hub.counts(1, &rooms()).unwrap()[0].1, 5);
        // Nothing new: nothing to tell.
        assert!(hub.tick(present).is_empty());
        hub.mark_read(3, "room1");
        assert_eq!(
            hub.counts(3, &rooms()),
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
        let mut told = hub.tick(|_, _| false);
        assert_eq!(told.len(), 1, "one event per user per tick");
        let (user, mut counts) = told.remove(0);
        counts.sort();
        assert_eq!(user, 7);
        assert_eq!(counts, vec![("room1".into(), 50), ("room2".into(), 50)]);
        // A second login does not overwrite the live counters with an older load.
        let counts = hub.load(7, HashMap::from([("room1".into(), 0)]), &rooms());
        assert_eq!(counts, vec![("room1".into(), 50), ("room2".into(), 50)]);
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
        let told = hub.tick(|_, _| false);
        assert_eq!(told, vec![(3, vec![(room.id(), 2)])]);
    }
}
