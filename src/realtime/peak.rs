//! Tables keyed by user, room or socket grow with the crowd; after a peak they give the memory back.

use std::collections::HashMap;
use std::hash::Hash;

/// Tables smaller than this keep what they have.
const KEEP: usize = 64;

/// Sockets a crowd must have counted for its leaving to be worth releasing the store's memory.
const CROWD: usize = 1_000;

/// Follows how many sockets are connected and says when a crowd has left: when the count falls under a
/// quarter of the highest since it last said so, and that highest was at least [`CROWD`]. Then it
/// counts afresh, so one fall is reported once.
#[derive(Debug, Default)]
pub(crate) struct PeakWatch {
    highest: usize,
}

impl PeakWatch {
    /// Takes the count now; true once a crowd has left.
    pub(crate) fn passed(&mut self, now: usize) -> bool {
        self.highest = self.highest.max(now);
        if self.highest >= CROWD && now < self.highest / 4 {
            self.highest = 0;
            true
        } else {
            false
        }
    }
}

/// Shrinks `map` once it holds under a quarter of what it has room for, keeping room for twice what
/// it holds: a peak of sockets that has passed does not stay in memory as an empty table, and each
/// shrink rehashes at most a quarter of the largest size, so a removal costs O(1) amortized.
pub(crate) fn shrink_after_peak<K: Eq + Hash, V>(map: &mut HashMap<K, V>) {
    if map.capacity() > KEEP && map.len() < map.capacity() / 4 {
        map.shrink_to((map.len() * 2).max(KEEP));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_emptied_after_a_peak_gives_its_room_back() {
        let mut map: HashMap<u32, u64> = (0..10_000).map(|k| (k, 0)).collect();
        let peak = map.capacity();
        let mut shrinks = 0;
        for k in 0..9_990 {
            map.remove(&k);
            let before = map.capacity();
            shrink_after_peak(&mut map);
            if map.capacity() < before {
                shrinks += 1;
            }
        }
        assert_eq!(map.len(), 10);
        assert!(map.capacity() <= 4 * KEEP, "{} of {peak}", map.capacity());
        // Halving each time: a handful of rehashes, not one per removal.
        assert!(shrinks <= 10, "{shrinks} shrinks");
    }

    #[test]
    fn a_crowd_leaving_is_reported_once_and_a_small_one_never() {
        let mut watch = PeakWatch::default();
        // A small server's ups and downs: nothing to release.
        for now in [10, 400, 3, 900, 0] {
            assert!(!watch.passed(now), "{now}");
        }
        // 10,000 arrive, and leave: reported when under a quarter, once.
        for now in [5_000, 10_000, 8_000, 2_600] {
            assert!(!watch.passed(now), "{now}");
        }
        assert!(watch.passed(2_400));
        assert!(!watch.passed(100));
        assert!(!watch.passed(0));
        // A second crowd is a second peak.
        assert!(!watch.passed(4_000));
        assert!(watch.passed(900));
    }

    #[test]
    fn a_table_above_a_quarter_full_keeps_its_room() {
        let mut map: HashMap<u32, u64> = (0..1_000).map(|k| (k, 0)).collect();
        let room = map.capacity();
        // Down to just over a quarter of the room: no rehash (one would leave room for about 900).
        let keep = room / 4 + 10;
        for k in 0..(1_000 - keep as u32) {
            map.remove(&k);
            shrink_after_peak(&mut map);
        }
        assert_eq!(map.len(), keep);
        assert!(map.capacity() >= 1_000, "{} of {room}", map.capacity());
    }
}
