//! Who is online, and who is in which room, on this node.
//!
//! A user is online while at least one of their sockets is bound to them, and listed in a room while at
//! least one of their sockets is in it: a second tab or device joining changes nothing, and the user
//! leaves a list only when the last of their sockets does. The map also caches each online user's
//! unread counters (see [`crate::services::unread`] for where they come from).
//!
//! This is the one place node-local realtime state lives. Everything else asks it through the
//! methods below, so a shared store (Redis) can replace it without touching callers.

use std::collections::{BTreeMap, HashMap};

use crate::auth::UserId;

/// A user as presence lists show them: never more than the public name and avatar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: UserId,
    pub name: String,
    pub src: String,
}

#[derive(Debug)]
struct Online {
    member: Member,
    sockets: usize,
    /// Unread counters per room, once loaded from the database.
    unread: Option<HashMap<String, u64>>,
}

/// Node-local presence and unread cache. Not thread-safe by itself: the owner wraps it in a mutex and
/// never holds that across an `.await`.
#[derive(Debug, Default)]
pub struct Presence {
    online: HashMap<UserId, Online>,
    /// Room id → user → how many of that user's sockets are in the room. Ordered by user id so lists
    /// come out in a stable order.
    rooms: HashMap<String, BTreeMap<UserId, usize>>,
}

impl Presence {
    /// A socket of `member` was bound. Returns whether the user just came online.
    pub fn connect(&mut self, member: Member) -> bool {
        let entry = self.online.entry(member.id).or_insert_with(|| Online {
            member: member.clone(),
            sockets: 0,
            unread: None,
        });
        entry.member = member;
        entry.sockets += 1;
        entry.sockets == 1
    }

    /// A socket of `user` was unbound. Returns whether the user is now offline.
    pub fn disconnect(&mut self, user: UserId) -> bool {
        let Some(entry) = self.online.get_mut(&user) else {
            return false;
        };
        entry.sockets = entry.sockets.saturating_sub(1);
        if entry.sockets == 0 {
            self.online.remove(&user);
            true
        } else {
            false
        }
    }

    /// Whether `user` has a bound socket on this node.
    pub fn is_online(&self, user: UserId) -> bool {
        self.online.contains_key(&user)
    }

    /// The users with a bound socket, in no particular order.
    pub fn online_users(&self) -> impl Iterator<Item = UserId> + '_ {
        self.online.keys().copied()
    }

    /// A socket of `user` entered `room`. Returns whether the user was not listed before.
    pub fn enter(&mut self, room: &str, user: UserId) -> bool {
        let count = self
            .rooms
            .entry(room.to_owned())
            .or_default()
            .entry(user)
            .or_insert(0);
        *count += 1;
        *count == 1
    }

    /// A socket of `user` left `room`. Returns whether the user is no longer listed.
    pub fn leave(&mut self, room: &str, user: UserId) -> bool {
        let Some(members) = self.rooms.get_mut(room) else {
            return false;
        };
        let Some(count) = members.get_mut(&user) else {
            return false;
        };
        *count -= 1;
        if *count > 0 {
            return false;
        }
        members.remove(&user);
        if members.is_empty() {
            self.rooms.remove(room);
        }
        true
    }

    /// Whether one of `user`'s sockets is in `room`.
    pub fn is_present(&self, room: &str, user: UserId) -> bool {
        self.rooms.get(room).is_some_and(|m| m.contains_key(&user))
    }

    /// The users listed in `room`, ordered by id.
    pub fn members(&self, room: &str) -> Vec<Member> {
        self.rooms
            .get(room)
            .map(|m| {
                m.keys()
                    .filter_map(|id| self.online.get(id).map(|o| o.member.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Stores `user`'s unread counters as loaded from the database, unless counters are already
    /// cached (they are then at least as fresh). Returns the counters in effect.
    pub fn load_unread(
        &mut self,
        user: UserId,
        counts: HashMap<String, u64>,
    ) -> HashMap<String, u64> {
        let Some(online) = self.online.get_mut(&user) else {
            return counts;
        };
        online.unread.get_or_insert(counts).clone()
    }

    /// `user`'s cached unread counters, if they are loaded.
    pub fn unread(&self, user: UserId) -> Option<HashMap<String, u64>> {
        self.online.get(&user)?.unread.clone()
    }

    /// `user` has seen everything in `room`.
    pub fn clear_unread(&mut self, user: UserId, room: &str) {
        if let Some(unread) = self.online.get_mut(&user).and_then(|o| o.unread.as_mut()) {
            unread.insert(room.to_owned(), 0);
        }
    }

    /// A message arrived in `room`: every online user in `readers` (those who may read the room) who
    /// is neither its sender nor present in the room, and whose counters are loaded, has one more
    /// unread message. Returns those users with their new count.
    pub fn bump_unread(
        &mut self,
        room: &str,
        sender: UserId,
        readers: impl IntoIterator<Item = UserId>,
    ) -> Vec<(UserId, u64)> {
        let present = self.rooms.get(room);
        let mut bumped = Vec::new();
        for user in readers {
            if user == sender || present.is_some_and(|m| m.contains_key(&user)) {
                continue;
            }
            let Some(unread) = self.online.get_mut(&user).and_then(|o| o.unread.as_mut()) else {
                continue;
            };
            let n = unread.entry(room.to_owned()).or_insert(0);
            *n += 1;
            bumped.push((user, *n));
        }
        bumped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: UserId) -> Member {
        Member {
            id,
            name: format!("u{id}"),
            src: String::new(),
        }
    }

    #[test]
    fn a_user_stays_listed_until_the_last_socket_leaves() {
        let mut p = Presence::default();
        assert!(p.connect(member(1)));
        assert!(!p.connect(member(1)));
        assert!(p.enter("room1", 1));
        assert!(!p.enter("room1", 1));
        assert_eq!(p.members("room1"), vec![member(1)]);
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
    fn unread_counts_skip_the_sender_and_those_in_the_room() {
        let mut p = Presence::default();
        for id in 1..=4 {
            p.connect(member(id));
        }
        p.enter("room1", 2);
        for id in [1, 2, 3] {
            p.load_unread(id, HashMap::from([("room1".to_owned(), 5)]));
        }
        // 4 has no counters loaded yet: it gets them from the database at login.
        let bumped = p.bump_unread("room1", 1, [1, 2, 3, 4]);
        assert_eq!(bumped, vec![(3, 6)]);
        p.clear_unread(3, "room1");
        assert_eq!(p.bump_unread("room1", 1, [3]), vec![(3, 1)]);
        // Cached counters win over a later, older load.
        let counts = p.load_unread(3, HashMap::from([("room1".to_owned(), 0)]));
        assert_eq!(counts["room1"], 1);
        assert_eq!(p.unread(3), Some(HashMap::from([("room1".to_owned(), 1)])));
        assert_eq!(p.unread(4), None);
    }
}
