//! Which channels this node wants to read: the control channel always, a room's channel while at
//! least one of its users is in the room here, a user's channel while the user is online here. A
//! channel no longer wanted is kept for [`LINGER`], so a user who leaves and comes back (a page
//! reload) does not cost an unsubscribe and a subscribe.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::wire::Channel;
use crate::auth::UserId;

/// How long a channel nobody here needs any more is still read.
pub const LINGER: Duration = Duration::from_secs(2);

/// The channels wanted, told by this node's presence changes; read by the subscriber.
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
}

/// How many here need a channel, and since when nobody does.
#[derive(Debug, Clone, Copy)]
struct Need {
    holders: u32,
    idle_since: Option<Instant>,
}

impl Need {
    fn is_gone(self, now: Instant) -> bool {
        self.holders == 0
            && self
                .idle_since
                .is_some_and(|t| now.duration_since(t) >= LINGER)
    }
}

impl Wanted {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// One more of this node's users is in `room`.
    pub(super) fn enter(&self, room: &str) {
        let fresh = hold(self.lock().rooms.entry(room.to_owned()));
        if fresh {
            self.changed.notify_one();
        }
    }

    /// One of this node's users left `room`.
    pub(super) fn leave(&self, room: &str) {
        if let Some(need) = self.lock().rooms.get_mut(room) {
            release(need);
        }
    }

    /// `user` is online here (told again when their profile changes).
    pub(super) fn online(&self, user: UserId) {
        let fresh = {
            let mut state = self.lock();
            let need = state.users.entry(user).or_insert(Need {
                holders: 0,
                idle_since: None,
            });
            let fresh = need.holders == 0 && need.idle_since.is_none();
            need.holders = 1;
            need.idle_since = None;
            fresh
        };
        if fresh {
            self.changed.notify_one();
        }
    }

    /// `user` went offline here.
    pub(super) fn offline(&self, user: UserId) {
        if let Some(need) = self.lock().users.get_mut(&user) {
            release(need);
        }
    }

    /// The channels wanted at `now` (the control channel among them); forgets those idle for
    /// [`LINGER`].
    pub(super) fn at(&self, now: Instant) -> Vec<Channel> {
        let mut state = self.lock();
        state.rooms.retain(|_, need| !need.is_gone(now));
        state.users.retain(|_, need| !need.is_gone(now));
        let mut wanted = Vec::with_capacity(1 + state.rooms.len() + state.users.len());
        wanted.push(Channel::Control);
        wanted.extend(state.rooms.keys().cloned().map(Channel::Room));
        wanted.extend(state.users.keys().copied().map(Channel::User));
        wanted
    }
}

/// Counts one more holder; returns whether the channel was not wanted before.
fn hold(entry: Entry<'_, String, Need>) -> bool {
    match entry {
        Entry::Occupied(mut e) => {
            let need = e.get_mut();
            need.holders += 1;
            need.idle_since = None;
            false
        }
        Entry::Vacant(e) => {
            e.insert(Need {
                holders: 1,
                idle_since: None,
            });
            true
        }
    }
}

fn release(need: &mut Need) {
    need.holders = need.holders.saturating_sub(1);
    if need.holders == 0 {
        need.idle_since = Some(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn has(channels: &[Channel], c: &Channel) -> bool {
        channels.contains(c)
    }

    #[test]
    fn a_room_is_read_while_someone_is_in_it_and_for_a_moment_after() {
        let wanted = Wanted::default();
        let room = Channel::Room("room1".into());
        assert!(!has(&wanted.at(Instant::now()), &room));
        wanted.enter("room1");
        wanted.enter("room1");
        wanted.online(7);
        let now = Instant::now();
        assert!(has(&wanted.at(now), &room));
        assert!(has(&wanted.at(now), &Channel::User(7)));
        assert!(has(&wanted.at(now), &Channel::Control));
        wanted.leave("room1");
        let later = Instant::now() + LINGER * 2;
        assert!(has(&wanted.at(later), &room), "one user is still in");
        wanted.leave("room1");
        wanted.offline(7);
        assert!(has(&wanted.at(Instant::now()), &room), "lingers");
        let later = wanted.at(Instant::now() + LINGER);
        assert!(!has(&later, &room) && !has(&later, &Channel::User(7)));
        assert_eq!(later, [Channel::Control]);
    }

    #[test]
    fn coming_back_within_the_linger_keeps_the_channel() {
        let wanted = Wanted::default();
        wanted.online(3);
        wanted.offline(3);
        assert!(has(
            &wanted.at(Instant::now() + LINGER / 2),
            &Channel::User(3)
        ));
        wanted.online(3);
        assert!(has(
            &wanted.at(Instant::now() + LINGER * 3),
            &Channel::User(3)
        ));
    }
}
