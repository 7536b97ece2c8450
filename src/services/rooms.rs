//! Room ids and who may use them.
//!
//! Group rooms come from configuration (`room1`, `room2` by default). A private room between two users
//! is named `<larger id>-<smaller id>`, ordered the way JavaScript compares strings, exactly as the v3
//! client computes it. The Laravel-era client numbers the group rooms from 1 (`'1'` is `room1`).

use crate::auth::UserId;

/// A room a message can be posted to or read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Room {
    /// A configured public room.
    Group(String),
    /// The private room of two users (`high`-`low` in string order).
    Private { high: UserId, low: UserId },
}

impl Room {
    /// The room id clients use.
    pub fn id(&self) -> String {
        match self {
            Self::Group(name) => name.clone(),
            Self::Private { high, low } => format!("{high}-{low}"),
        }
    }

    /// `group` or `single`, as the v3 client labels rooms.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Group(_) => "group",
            Self::Private { .. } => "single",
        }
    }

    /// Whether `user` may read and post here: anyone in a group room, only its two users in a private one.
    pub fn admits(&self, user: UserId) -> bool {
        match self {
            Self::Group(_) => true,
            Self::Private { high, low } => user == *high || user == *low,
        }
    }
}

/// The private room of `a` and `b`.
pub fn private_room(a: UserId, b: UserId) -> Room {
    // Digits compare like JavaScript strings when compared as strings, not as numbers ("9" > "10").
    let (sa, sb) = (a.to_string(), b.to_string());
    if sa > sb {
        Room::Private { high: a, low: b }
    } else {
        Room::Private { high: b, low: a }
    }
}

/// The configured group rooms.
#[derive(Debug, Clone)]
pub struct Rooms {
    groups: Vec<String>,
}

impl Rooms {
    /// Rooms with these group names.
    pub fn new(groups: Vec<String>) -> Self {
        Self { groups }
    }

    /// The group room names, in order.
    pub fn groups(&self) -> &[String] {
        &self.groups
    }

    /// Parses a room id: a configured group, or a well-formed private room id in canonical order.
    pub fn parse(&self, id: &str) -> Option<Room> {
        if self.groups.iter().any(|g| g == id) {
            return Some(Room::Group(id.to_owned()));
        }
        let (high, low) = id.split_once('-')?;
        let (high, low) = (parse_user_id(high)?, parse_user_id(low)?);
        let room = private_room(high, low);
        (high != low && room == Room::Private { high, low }).then_some(room)
    }

    /// The group room the Laravel-era client means by its number (`"1"` → the first group room).
    pub fn legacy_group(&self, number: &str) -> Option<Room> {
        let n: usize = number.trim().parse().ok()?;
        let name = self.groups.get(n.checked_sub(1)?)?;
        Some(Room::Group(name.clone()))
    }

    /// A room id as the Laravel-era client writes it: a group room's number, or any room id.
    pub fn parse_legacy(&self, id: &str) -> Option<Room> {
        self.legacy_group(id).or_else(|| self.parse(id))
    }

    /// The number the Laravel-era client uses for a group room (1-based), if it is one.
    pub fn legacy_number(&self, room: &str) -> Option<usize> {
        self.groups.iter().position(|g| g == room).map(|i| i + 1)
    }
}

/// A user id in canonical decimal form (no sign, no leading zeros).
pub fn parse_user_id(text: &str) -> Option<UserId> {
    let id: UserId = text.parse().ok()?;
    (id > 0 && id.to_string() == text).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rooms() -> Rooms {
        Rooms::new(vec!["room1".into(), "room2".into()])
    }

    #[test]
    fn private_room_ids_order_like_javascript_strings() {
        assert_eq!(private_room(9, 10).id(), "9-10");
        assert_eq!(private_room(10, 9).id(), "9-10");
        assert_eq!(private_room(2, 13).id(), "2-13");
        assert_eq!(private_room(21, 3).id(), "3-21");
    }

    #[test]
    fn parses_groups_and_canonical_private_rooms_only() {
        let r = rooms();
        assert_eq!(r.parse("room1"), Some(Room::Group("room1".into())));
        assert_eq!(r.parse("9-10"), Some(Room::Private { high: 9, low: 10 }));
        assert_eq!(r.parse("10-9"), None);
        assert_eq!(r.parse("5-5"), None);
        assert_eq!(r.parse("05-1"), None);
        assert_eq!(r.parse("room3"), None);
        assert_eq!(r.parse("1-2-3"), None);
        assert_eq!(r.parse("-1-2"), None);
        assert_eq!(r.parse(""), None);
    }

    #[test]
    fn private_rooms_admit_their_two_users() {
        let room = private_room(3, 4);
        assert!(room.admits(3) && room.admits(4) && !room.admits(5));
        assert!(Room::Group("room1".into()).admits(5));
    }

    #[test]
    fn legacy_numbers_map_to_group_rooms() {
        let r = rooms();
        assert_eq!(r.legacy_group("1"), Some(Room::Group("room1".into())));
        assert_eq!(r.legacy_group("2"), Some(Room::Group("room2".into())));
        assert_eq!(r.legacy_group("0"), None);
        assert_eq!(r.legacy_group("3"), None);
        assert_eq!(r.legacy_group("x"), None);
        assert_eq!(r.legacy_number("room2"), Some(2));
        assert_eq!(r.parse_legacy("2"), Some(Room::Group("room2".into())));
        assert_eq!(r.parse_legacy("room1"), Some(Room::Group("room1".into())));
        assert_eq!(
            r.parse_legacy("9-10"),
            Some(Room::Private { high: 9, low: 10 })
        );
        assert_eq!(r.parse_legacy("3"), None);
    }
}
