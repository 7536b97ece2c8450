//! Room ids and who may use them.
//!
//! Group rooms are stored (`rooms`): `--rooms` seeds the first ones (`room1`, `room2` by default),
//! admins create and archive more at runtime. A private room between two users
//! is named `<larger id>-<smaller id>`, ordered the way JavaScript compares strings, exactly as the v3
//! client computes it. The Laravel-era client numbers the group rooms from 1 (`'1'` is `room1`).

use std::sync::{Arc, PoisonError, RwLock};

use chrono::Utc;
use entity::room;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, Set, SqlErr,
};

use crate::auth::UserId;
use crate::error::AppError;

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

/// A group room as clients list it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// The room id clients use (`room1`).
    pub id: String,
    /// The name clients show (HTML-escaped).
    pub name: String,
    /// Archived: its history stays readable, new messages are refused.
    pub archived: bool,
}

impl Group {
    /// An open room named after its id.
    pub fn open(id: impl Into<String>) -> Self {
        let id = id.into();
        Self {
            name: id.clone(),
            id,
            archived: false,
        }
    }
}

/// The group rooms, in the order clients list them. They change at runtime (admins create and
/// archive rooms), so readers take a snapshot: an `Arc` of the list, never a lock held across work.
#[derive(Debug)]
pub struct Rooms {
    groups: RwLock<Arc<[Group]>>,
}

impl Rooms {
    /// Open rooms with these ids, named after them.
    pub fn new(ids: Vec<String>) -> Self {
        Self::with_groups(ids.into_iter().map(Group::open).collect())
    }

    /// These rooms, in this order.
    pub fn with_groups(groups: Vec<Group>) -> Self {
        Self {
            groups: RwLock::new(groups.into()),
        }
    }

    /// Replaces the list (rooms created or archived); returns whether it changed.
    pub fn replace(&self, groups: Vec<Group>) -> bool {
        let mut current = self.groups.write().unwrap_or_else(PoisonError::into_inner);
        if current.as_ref() == groups.as_slice() {
            return false;
        }
        *current = groups.into();
        true
    }

    /// Every group room, archived ones included, in order.
    pub fn all(&self) -> Arc<[Group]> {
        self.groups
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The ids of the open group rooms, in order: what clients list and count.
    pub fn groups(&self) -> Vec<String> {
        self.all()
            .iter()
            .filter(|g| !g.archived)
            .map(|g| g.id.clone())
            .collect()
    }

    /// Whether new messages may be posted to `room`: a private room, or a group room not archived.
    pub fn is_open(&self, room: &Room) -> bool {
        match room {
            Room::Private { .. } => true,
            Room::Group(id) => self.all().iter().any(|g| g.id == *id && !g.archived),
        }
    }

    /// Parses a room id: a group room (archived ones too: their history is readable), or a
    /// well-formed private room id in canonical order.
    pub fn parse(&self, id: &str) -> Option<Room> {
        if self.all().iter().any(|g| g.id == id) {
            return Some(Room::Group(id.to_owned()));
        }
        let (high, low) = id.split_once('-')?;
        let (high, low) = (parse_user_id(high)?, parse_user_id(low)?);
        let room = private_room(high, low);
        (high != low && room == Room::Private { high, low }).then_some(room)
    }

    /// The group room the Laravel-era client means by its number (`"1"` → the first group room).
    /// Numbers follow the list's order, archived rooms included, so they never shift.
    pub fn legacy_group(&self, number: &str) -> Option<Room> {
        let n: usize = number.trim().parse().ok()?;
        let all = self.all();
        let group = all.get(n.checked_sub(1)?)?;
        Some(Room::Group(group.id.clone()))
    }

    /// A room id as the Laravel-era client writes it: a group room's number, or any room id.
    pub fn parse_legacy(&self, id: &str) -> Option<Room> {
        self.legacy_group(id).or_else(|| self.parse(id))
    }

    /// The number the Laravel-era client uses for a group room (1-based), if it is one.
    pub fn legacy_number(&self, room: &str) -> Option<usize> {
        self.all().iter().position(|g| g.id == room).map(|i| i + 1)
    }
}

/// Whether `id` may name a new group room: 1 to 32 ASCII letters, digits or `_` (never the
/// `<id>-<id>` form of a private room).
pub fn valid_group_id(id: &str) -> bool {
    (1..=32).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// The longest room name (characters).
pub const MAX_ROOM_NAME_CHARS: usize = 30;

/// Stores the rooms of `--rooms` that are not stored yet, after the stored ones (the first start
/// stores them all, in order); returns every group room, in order.
///
/// # Errors
/// Database failures.
pub async fn seed<C: ConnectionTrait>(db: &C, ids: &[String]) -> Result<Vec<Group>, AppError> {
    let stored = room::Entity::find()
        .order_by_asc(room::Column::Position)
        .all(db)
        .await?;
    let mut next = stored.iter().map(|r| r.position).max().unwrap_or(0) + 1;
    for id in ids {
        if stored.iter().any(|r| r.id == *id) {
            continue;
        }
        let row = room::ActiveModel {
            id: Set(id.clone()),
            name: Set(id.clone()),
            position: Set(next),
            created_at: Set(Utc::now()),
            archived_at: Set(None),
        };
        // Another node seeding at the same moment stored it first: fine.
        room::Entity::insert(row)
            .on_conflict(OnConflict::column(room::Column::Id).do_nothing().to_owned())
            .exec_without_returning(db)
            .await?;
        next += 1;
    }
    load(db).await
}

/// Every stored group room, in order.
///
/// # Errors
/// Database failures.
pub async fn load<C: ConnectionTrait>(db: &C) -> Result<Vec<Group>, AppError> {
    Ok(room::Entity::find()
        .order_by_asc(room::Column::Position)
        .order_by_asc(room::Column::Id)
        .all(db)
        .await?
        .into_iter()
        .map(|r| Group {
            id: r.id,
            name: r.name,
            archived: r.archived_at.is_some(),
        })
        .collect())
}

/// Creates group room `id` named `name`, listed last.
///
/// # Errors
/// [`AppError::Invalid`] for an id that is not a valid group id (a private room's form included)
/// or a blank or long name, [`AppError::Conflict`] for an id in use (archived rooms included);
/// database failures.
pub async fn create<C: ConnectionTrait>(db: &C, id: &str, name: &str) -> Result<Group, AppError> {
    let id = id.trim();
    if !valid_group_id(id) {
        return Err(AppError::invalid(
            "房间 id 只能由 1 到 32 个字母、数字或下划线组成",
        ));
    }
    let name = name.trim();
    if name.is_empty()
        || name.chars().count() > MAX_ROOM_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        return Err(AppError::Invalid(format!(
            "房间名称应为 1 到 {MAX_ROOM_NAME_CHARS} 个字"
        )));
    }
    if room::Entity::find_by_id(id.to_owned())
        .one(db)
        .await?
        .is_some()
    {
        return Err(AppError::Conflict(format!("房间 {id} 已存在")));
    }
    let last: Option<Option<i64>> = room::Entity::find()
        .select_only()
        .column_as(room::Column::Position.max(), "last")
        .into_tuple()
        .one(db)
        .await?;
    let name = crate::text::escape_html(name);
    room::ActiveModel {
        id: Set(id.to_owned()),
        name: Set(name.clone()),
        position: Set(last.flatten().unwrap_or(0) + 1),
        created_at: Set(Utc::now()),
        archived_at: Set(None),
    }
    .insert(db)
    .await
    .map_err(|e| {
        if matches!(e.sql_err(), Some(SqlErr::UniqueConstraintViolation(_))) {
            AppError::Conflict(format!("房间 {id} 已存在"))
        } else {
            AppError::Db(e)
        }
    })?;
    Ok(Group {
        id: id.to_owned(),
        name,
        archived: false,
    })
}

/// Archives group room `id`: its history stays readable, new messages are refused. Archiving an
/// archived room changes nothing; the last open room cannot be archived (clients need one).
///
/// # Errors
/// [`AppError::NotFound`] for an unknown room, [`AppError::Conflict`] for the last open one;
/// database failures.
pub async fn archive<C: ConnectionTrait>(db: &C, id: &str) -> Result<Group, AppError> {
    let row = room::Entity::find_by_id(id.to_owned())
        .one(db)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("房间 {id} 不存在")))?;
    if row.archived_at.is_none() {
        let open = room::Entity::find()
            .filter(room::Column::ArchivedAt.is_null())
            .count(db)
            .await?;
        if open <= 1 {
            return Err(AppError::Conflict("至少要保留一个开放的房间".into()));
        }
        room::Entity::update_many()
            .col_expr(room::Column::ArchivedAt, Expr::value(Utc::now()))
            .filter(room::Column::Id.eq(id))
            .filter(room::Column::ArchivedAt.is_null())
            .exec(db)
            .await?;
    }
    Ok(Group {
        id: row.id,
        name: row.name,
        archived: true,
    })
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
