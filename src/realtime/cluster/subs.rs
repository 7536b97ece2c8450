//! Which channels this node wants to read: the control channel always, a room's channel while at
//! least one of its users is in the room here, a user's channel while the user is online here. A
//! channel no longer wanted is kept for [`LINGER`], so a user who leaves and comes back (a page
//! reload) does not cost an unsubscribe and a subscribe.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::wire::Channel;
use crate::auth::UserId;

/// How long a channel nobody here needs any more is still read.
pub const LINGER: Duration = Duration::from_secs(2);

/// The channels wanted, told by this node's presence changes; read by the subscriber as changes
/// ([`Wanted::changes`]), so its work grows with what changed, not with every channel read.
#[derive(Default)]
pub(super) struct Wanted {
    state: Mutex<State>,
    /// Woken when a channel becomes wanted (the subscriber then subscribes at once).
    pub(super) changed: Notify,
}

#[derive(Default)]
struct State {
    /// Group rooms: this node's users in each.
    rooms: HashMap<String, Need>,
    /// Users online here.
    users: HashMap<UserId, Need>,
    /// Channels wanted anew since the subscriber last looked.
    added: Vec<Channel>,
    /// Channels nobody needed any more, and since when, oldest first.
    released: VecDeque<(Instant, Channel)>,
}

/// How many here need a channel.
#[derive(Debug, Clone, Copy, Default)]
struct Need {
    holders: u32,
}

/// What changed in the channels wanted.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Changes {
    pub(super) added: Vec<Channel>,
    pub(super) removed: Vec<Channel>,
}

impl Wanted {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One more of this node's users is in `room`.
    pub(super) fn enter(&self, room: &str) {
        let mut state = self.lock();
        let fresh = hold(state.rooms.entry(room.to_owned()), u32::MAX);
        if fresh {
            state.added.push(Channel::Room(room.to_owned()));
            drop(state);
            self.changed.notify_one();
        }
    }

    /// One of this node's users left `room`.
    pub(super) fn leave(&self, room: &str) {
        let mut state = self.lock();
        if let Some(need) = state.rooms.get_mut(room) {
            need.holders = need.holders.saturating_sub(1);
            if need.holders == 0 {
                state
                    .released
                    .push_back((Instant::now(), Channel::Room(room.to_owned())));
            }
        }
    }

    /// `user` is online here (told again when their profile changes).
    pub(super) fn online(&self, user: UserId) {
        let mut state = self.lock();
        let fresh = hold(state.users.entry(user), 1);
        if fresh {
            state.added.push(Channel::User(user));
            drop(state);
            self.changed.notify_one();
        }
    }

    /// `user` went offline here.
    pub(super) fn offline(&self, user: UserId) {
        let mut state = self.lock();
        if let Some(need) = state.users.get_mut(&user)
            && need.holders > 0
        {
            need.holders = 0;
            state
                .released
                .push_back((Instant::now(), Channel::User(user)));
        }
    }

    /// Whether this node reads (or is about to read) `channel`.
    pub(super) fn reads(&self, channel: &Channel) -> bool {
        let state = self.lock();
        match channel {
            Channel::Control => true,
            Channel::Room(room) => state.rooms.contains_key(room),
            Channel::User(user) => state.users.contains_key(user),
        }
    }

    /// The channels wanted anew, and those nobody here has needed for [`LINGER`] at `now` (they are
    /// forgotten), since the last call.
    pub(super) fn changes(&self, now: Instant) -> Changes {
        let mut state = self.lock();
        let state = &mut *state;
        let mut removed = Vec::new();
        while let Some((since, _)) = state.released.front() {
            if now.duration_since(*since) < LINGER {
                break;
            }
            let Some((_, channel)) = state.released.pop_front() else {
                break;
            };
            let gone = match &channel {
                Channel::Room(room) => forget_idle(&mut state.rooms, room),
                Channel::User(user) => forget_idle(&mut state.users, user),
                Channel::Control => false,
            };
            if gone {
                removed.push(channel);
            }
        }
        Changes {
            added: std::mem::take(&mut state.added),
            removed,
        }
    }

    /// Every channel wanted now, the control channel first (after a reconnection); the changes told
    /// so far are included.
    pub(super) fn all(&self, now: Instant) -> Vec<Channel> {
        let _ = self.changes(now);
        let state = self.lock();
        let mut wanted = Vec::with_capacity(1 + state.rooms.len() + state.users.len());
        wanted.push(Channel::Control);
        wanted.extend(state.rooms.keys().cloned().map(Channel::Room));
        wanted.extend(state.users.keys().copied().map(Channel::User));
        wanted
    }
}

/// Counts one more holder (at most `most`); returns whether the channel was not wanted before.
fn hold<K>(entry: Entry<'_, K, Need>, most: u32) -> bool {
    match entry {
        Entry::Occupied(mut e) => {
            let need = e.get_mut();
            need.holders = (need.holders + 1).min(most);
            false
        }
        Entry::Vacant(e) => {
            e.insert(Need { holders: 1 });
            true
        }
    }
}

/// Forgets `key` if nobody here needs it (someone may have come back since it was released).
fn forget_idle<K, Q>(map: &mut HashMap<K, Need>, key: &Q) -> bool
where
    K: std::borrow::Borrow<Q> + std::hash::Hash + Eq,
    Q: std::hash::Hash + Eq + ?Sized,
{
    if map.get(key).is_some_and(|need| need.holders == 0) {
        map.remove(key);
        true
    } else {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(name: &str) -> Channel {
        Channel::Room(name.into())
    }

    #[test]
    fn a_room_is_read_while_someone_is_in_it_and_for_a_moment_after() {
        let wanted = Wanted::default();
        assert_eq!(wanted.changes(Instant::now()), Changes::default());
        wanted.enter("room1");
        wanted.enter("room1");
        wanted.online(7);
        wanted.online(7);
        let now = Instant::now();
        assert_eq!(
            wanted.changes(now),
            Changes {
                added: vec![room("room1"), Channel::User(7)],
                removed: vec![],
            }
        );
        assert_eq!(wanted.changes(now), Changes::default(), "told once");
        wanted.leave("room1");
        assert!(
            wanted
                .changes(Instant::now() + LINGER * 2)
                .removed
                .is_empty(),
            "one user is still in"
        );
        wanted.leave("room1");
        wanted.offline(7);
        assert!(wanted.changes(Instant::now()).removed.is_empty(), "lingers");
        assert_eq!(
            wanted.changes(Instant::now() + LINGER).removed,
            [room("room1"), Channel::User(7)]
        );
        assert_eq!(wanted.all(Instant::now()), [Channel::Control]);
    }

    #[test]
    fn coming_back_within_the_linger_keeps_the_channel() {
        let wanted = Wanted::default();
        wanted.online(3);
        wanted.offline(3);
        wanted.online(3);
        assert_eq!(wanted.changes(Instant::now()).added, [Channel::User(3)]);
        assert!(
            wanted
                .changes(Instant::now() + LINGER * 3)
                .removed
                .is_empty()
        );
        assert_eq!(
            wanted.all(Instant::now()),
            [Channel::Control, Channel::User(3)]
        );
    }
}
