//! Channels no other node reads. A room whose members are all on this node still has its channel read
//! here (this node's users are in it), so each of its notes would travel to Redis and straight back to
//! this node, which ignores its own notes. Redis answers each publish with how many connections
//! received it; when only this node did, later events and posted messages on that channel are not
//! sent (presence notes always are: they are few, and a node that missed one would not notice), until
//! another node speaks on the channel (a node starting to read a room asks who is in it there; a user
//! coming online elsewhere is announced on the control channel; a node that subscribed again after
//! losing Redis, or a shard, sends its snapshot, which names its users and rooms) or [`RELEARN`] has
//! passed.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use super::wire::Channel;

/// How long "nobody else reads it" holds before a note goes out again to learn afresh.
pub const RELEARN: Duration = Duration::from_secs(2);
/// Channels neither published to nor heard from for this long are forgotten.
const FORGET: Duration = Duration::from_secs(60);

/// What this node learnt of who reads each channel it publishes to.
#[derive(Default)]
pub(super) struct Listeners {
    state: Mutex<HashMap<Channel, Heard>>,
}

#[derive(Debug, Clone, Copy)]
struct Heard {
    /// Since when only this node reads the channel, as far as is known.
    alone_since: Option<Instant>,
    /// When another node was last heard on it.
    heard: Option<Instant>,
    touched: Instant,
}

impl Listeners {
    fn lock(&self) -> MutexGuard<'_, HashMap<Channel, Heard>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a note on `channel` would reach no other node (the control channel always goes out).
    pub(super) fn skip(&self, channel: &Channel, now: Instant) -> bool {
        if *channel == Channel::Control {
            return false;
        }
        self.lock()
            .get(channel)
            .and_then(|h| h.alone_since)
            .is_some_and(|since| now.duration_since(since) < RELEARN)
    }

    /// A note queued at `at` on `channel` reached `readers` connections, this node's among them when
    /// `ours`; the answer came at `now`. A later sign of another reader wins over an earlier answer.
    pub(super) fn learn(
        &self,
        channel: &Channel,
        readers: i64,
        ours: bool,
        at: Instant,
        now: Instant,
    ) {
        if *channel == Channel::Control {
            return;
        }
        let mut state = self.lock();
        let heard = state.entry(channel.clone()).or_insert(Heard {
            alone_since: None,
            heard: None,
            touched: now,
        });
        heard.touched = now;
        // Fewer readers than this node's own subscription: Redis does not see it (yet), so the answer
        // says nothing of the others.
        if readers == i64::from(ours) && heard.heard.is_none_or(|h| h < at) {
            heard.alone_since = Some(now);
        } else {
            heard.alone_since = None;
        }
    }

    /// Another node spoke on `channel`, or `channel` is a user's who came online on another node: it
    /// is read elsewhere.
    pub(super) fn heard(&self, channel: &Channel) {
        let now = Instant::now();
        if let Some(heard) = self.lock().get_mut(channel) {
            heard.alone_since = None;
            heard.heard = Some(now);
            heard.touched = now;
        }
    }

    /// Forgets everything learnt (this node subscribed again: what Redis answered before may not hold).
    pub(super) fn forget_all(&self) {
        self.lock().clear();
    }

    /// Forgets the channels untouched for a while.
    pub(super) fn prune(&self, now: Instant) {
        self.lock()
            .retain(|_, h| now.duration_since(h.touched) < FORGET);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channel_read_by_this_node_alone_is_skipped_until_another_is_heard() {
        let listeners = Listeners::default();
        let room = Channel::Room("room1".into());
        let now = Instant::now();
        assert!(!listeners.skip(&room, now), "unknown: sent");
        listeners.learn(&room, 1, true, now, now);
        assert!(listeners.skip(&room, now), "only this node read it");
        let later = now + RELEARN;
        assert!(!listeners.skip(&room, later), "learnt afresh");
        listeners.learn(&room, 1, true, later, later);
        assert!(
            listeners.skip(&room, later + RELEARN / 2),
            "and skipped again"
        );
        listeners.heard(&room);
        assert!(!listeners.skip(&room, Instant::now()));
        // An answer about a note queued before another node was heard does not count.
        listeners.learn(&room, 1, true, now, Instant::now());
        assert!(!listeners.skip(&room, Instant::now()));
        listeners.learn(&room, 2, true, Instant::now(), Instant::now());
        assert!(!listeners.skip(&room, Instant::now()), "two readers");
        listeners.learn(&room, 0, false, Instant::now(), Instant::now());
        assert!(listeners.skip(&room, Instant::now()), "nobody reads it");
        listeners.learn(&room, 0, true, Instant::now(), Instant::now());
        assert!(
            !listeners.skip(&room, Instant::now()),
            "not even this node: unknown"
        );
        listeners.learn(&room, 1, true, Instant::now(), Instant::now());
        listeners.forget_all();
        assert!(!listeners.skip(&room, Instant::now()));
        assert!(!listeners.skip(&Channel::Control, Instant::now()));
    }
}
