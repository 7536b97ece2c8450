//! Unread counts without the messages. A node that reads a group room's channel hears of each message
//! posted there (`posted`); every other node needs only the room's count, so each node gathers what it
//! posted per room and publishes it on the control channel at most once every [`DIGEST_EVERY`]: one
//! note a second per node, whatever the traffic. Messages are numbered per (node, room), so a node that
//! hears of a message both ways counts it once ([`Counted`]).

use std::collections::HashMap;
use std::time::Duration;

use super::wire::RoomDigest;
use crate::auth::UserId;

/// How often a node publishes what it posted.
pub const DIGEST_EVERY: Duration = Duration::from_secs(1);

/// The sending side: per group room, the number of this node's last message there, and what the next
/// digest says.
#[derive(Default)]
pub(super) struct Digests {
    counts: HashMap<String, u64>,
    pending: HashMap<String, RoomDigest>,
}

impl Digests {
    /// Counts a message posted here to `room` by `sender`; returns its number in the room.
    pub(super) fn posted(&mut self, room: &str, sender: UserId, id: i64) -> u64 {
        let count = self.counts.entry(room.to_owned()).or_default();
        *count += 1;
        let c = *count;
        let digest = self
            .pending
            .entry(room.to_owned())
            .or_insert_with(|| RoomDigest {
                room: room.to_owned(),
                c,
                n: 0,
                latest: id,
                senders: Vec::new(),
            });
        digest.c = c;
        digest.n += 1;
        digest.latest = digest.latest.max(id);
        match digest.senders.iter_mut().find(|(s, _)| *s == sender) {
            Some((_, n)) => *n += 1,
            None => digest.senders.push((sender, 1)),
        }
        c
    }

    /// What was posted since the last call, per room.
    pub(super) fn take(&mut self) -> Vec<RoomDigest> {
        self.pending.drain().map(|(_, d)| d).collect()
    }
}

/// The receiving side, per other node and group room: the number of the last message counted.
#[derive(Default)]
pub(super) struct Counted {
    last: HashMap<String, u64>,
}

impl Counted {
    /// How many new messages a note numbered `c` that covers `n` messages brings: those between the
    /// last counted and `c` (notes lost on the way included), or `n` when nothing was counted yet.
    pub(super) fn take(&mut self, room: &str, c: u64, n: u64) -> u64 {
        match self.last.get_mut(room) {
            Some(last) if c > *last => {
                let new = c - *last;
                *last = c;
                new
            }
            Some(_) => 0,
            None => {
                self.last.insert(room.to_owned(), c);
                n
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_says_what_was_posted_since_the_last_one() {
        let mut d = Digests::default();
        assert_eq!(d.posted("room1", 1, 10), 1);
        assert_eq!(d.posted("room1", 2, 11), 2);
        assert_eq!(d.posted("room1", 1, 12), 3);
        assert_eq!(d.posted("room2", 1, 13), 1);
        let mut taken = d.take();
        taken.sort_by(|a, b| a.room.cmp(&b.room));
        assert_eq!(
            taken[0],
            RoomDigest {
                room: "room1".into(),
                c: 3,
                n: 3,
                latest: 12,
                senders: vec![(1, 2), (2, 1)],
            }
        );
        assert_eq!((taken[1].c, taken[1].n), (1, 1));
        assert!(d.take().is_empty());
        assert_eq!(d.posted("room1", 1, 14), 4, "numbers go on");
    }

    #[test]
    fn a_message_heard_twice_is_counted_once_and_lost_ones_are_counted() {
        let mut counted = Counted::default();
        // Heard as it was posted (numbers 1 and 2), then in the digest covering both.
        assert_eq!(counted.take("room1", 1, 1), 1);
        assert_eq!(counted.take("room1", 2, 1), 1);
        assert_eq!(counted.take("room1", 2, 2), 0);
        // Number 3 was lost on the way; 4 brings both.
        assert_eq!(counted.take("room1", 4, 1), 2);
        // A digest first: its count; later posts go on from it.
        assert_eq!(counted.take("room2", 5, 5), 5);
        assert_eq!(counted.take("room2", 6, 1), 1);
        assert_eq!(counted.take("room2", 3, 1), 0, "late and old");
    }
}
