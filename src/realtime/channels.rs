//! Which sockets of this node are present in each chat room's channel (one per dialect, see
//! [`super::pusher::room_channel`]), kept here rather than in socketioxide's adapter.
//!
//! The adapter keeps two indexes (room → sockets and socket → rooms), and its socket → rooms table
//! keeps the capacity of the largest crowd for the process's life: about 1.3 MB after 10,000 sockets
//! have come and gone. Here a socket's entry is its id and the engine's [`SessionHandle`] in its room's
//! table (the socket's own rooms are already listed in its [`super::Conn`]); a room nobody is in is
//! dropped, and each table gives its room back after a peak (`peak.rs`).
//!
//! A broadcast is encoded once, and only when someone is there to get it; every recipient is handed
//! the same bytes through its session handle, into the same queue as socketioxide's own emits.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use engineioxide::Str;
use engineioxide::handle::SessionHandle;
use socketioxide::socket::Sid;

use super::peak::shrink_after_peak;

/// The sockets of this node present in each channel.
#[derive(Default)]
pub struct Channels {
    by_channel: RwLock<HashMap<String, HashMap<Sid, SessionHandle>>>,
}

impl Channels {
    /// Lists socket `sid` (reached through `handle`) in `channel`.
    pub fn join(&self, channel: String, sid: Sid, handle: SessionHandle) {
        let mut by_channel = self
            .by_channel
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        by_channel.entry(channel).or_default().insert(sid, handle);
    }

    /// Takes socket `sid` off `channel`'s list.
    pub fn leave(&self, channel: &str, sid: Sid) {
        let mut by_channel = self
            .by_channel
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(members) = by_channel.get_mut(channel) else {
            return;
        };
        if members.remove(&sid).is_none() {
            return;
        }
        if members.is_empty() {
            by_channel.remove(channel);
            shrink_after_peak(&mut by_channel);
        } else {
            shrink_after_peak(members);
        }
    }

    /// The sockets present in `channel`.
    pub fn sids(&self, channel: &str) -> Vec<Sid> {
        let by_channel = self
            .by_channel
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        by_channel
            .get(channel)
            .map(|members| members.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Hands every socket present in `channel` but `except` the message `encode` makes (called once,
    /// and only if there is a recipient). Returns how many could not take it: a client that stopped
    /// reading (its queue is full) or a session that is closing; the others still get it.
    pub fn send(&self, channel: &str, except: Option<Sid>, encode: impl FnOnce() -> Str) -> usize {
        let by_channel = self
            .by_channel
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(members) = by_channel.get(channel) else {
            return 0;
        };
        let mut recipients = members
            .iter()
            .filter(|(sid, _)| Some(**sid) != except)
            .map(|(_, handle)| handle)
            .peekable();
        if recipients.peek().is_none() {
            return 0;
        }
        let msg = encode();
        recipients
            .filter(|handle| handle.emit(msg.clone()).is_err())
            .count()
    }

    /// How many channels have anyone in them.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_channel
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sid(n: u32) -> Sid {
        format!("{n:0>16}").parse().unwrap()
    }

    #[test]
    fn a_socket_is_listed_in_the_channels_it_joined_until_it_leaves() {
        let channels = Channels::default();
        channels.join("room:a".into(), sid(1), SessionHandle::default());
        channels.join("room:a".into(), sid(2), SessionHandle::default());
        channels.join("room:b".into(), sid(1), SessionHandle::default());
        let mut a = channels.sids("room:a");
        a.sort_by_key(ToString::to_string);
        assert_eq!(a, vec![sid(1), sid(2)]);
        channels.leave("room:a", sid(1));
        assert_eq!(channels.sids("room:a"), vec![sid(2)]);
        assert_eq!(channels.sids("room:b"), vec![sid(1)]);
        assert!(channels.sids("room:c").is_empty());
        // Leaving twice, or a channel never joined, changes nothing.
        channels.leave("room:a", sid(1));
        channels.leave("room:c", sid(1));
        assert_eq!(channels.sids("room:a"), vec![sid(2)]);
    }

    #[test]
    fn a_channel_nobody_is_in_is_forgotten_and_a_crowd_gives_its_room_back() {
        let channels = Channels::default();
        for n in 0..10_000 {
            channels.join("room:a".into(), sid(n), SessionHandle::default());
        }
        let peak = channels.by_channel.read().unwrap()["room:a"].capacity();
        for n in 0..9_990 {
            channels.leave("room:a", sid(n));
        }
        let after = channels.by_channel.read().unwrap()["room:a"].capacity();
        assert!(after * 10 < peak, "{after} of {peak}");
        for n in 9_990..10_000 {
            channels.leave("room:a", sid(n));
        }
        assert_eq!(channels.len(), 0);
    }

    #[test]
    fn a_send_encodes_once_only_for_someone_and_counts_who_missed_it() {
        let channels = Channels::default();
        let mut encoded = 0;
        assert_eq!(
            channels.send("room:a", None, || {
                encoded += 1;
                Str::from("2[\"x\"]")
            }),
            0
        );
        assert_eq!(encoded, 0, "nobody there: nothing encoded");
        channels.join("room:a".into(), sid(1), SessionHandle::default());
        assert_eq!(
            channels.send("room:a", Some(sid(1)), || {
                encoded += 1;
                Str::from("2[\"x\"]")
            }),
            0
        );
        assert_eq!(encoded, 0, "only the sender there: nothing encoded");
        channels.join("room:a".into(), sid(2), SessionHandle::default());
        // Handles of sessions that are gone: each recipient is counted as missing the message.
        let missed = channels.send("room:a", None, || {
            encoded += 1;
            Str::from("2[\"x\"]")
        });
        assert_eq!((missed, encoded), (2, 1));
    }
}
