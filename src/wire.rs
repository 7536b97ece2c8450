//! The JSON shapes clients read, over HTTP and over the socket alike. Outbound payloads are built only
//! from these types, so account data (password hashes, e-mail addresses, tokens) can never slip into
//! another user's view.

use chrono::{DateTime, SecondsFormat, Utc};
use entity::{friend, user};
use serde::Serialize;

use crate::services::messages::StoredMessage;
use crate::services::rooms::Rooms;

/// Time as clients parse it: ISO-8601 in UTC with milliseconds (what Mongo's dates looked like).
pub fn iso_time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// `userInfo` in the v3 sign-in and sign-up replies, and the profile of `/api/user/getInfo`.
#[derive(Debug, Serialize)]
pub struct UserInfo {
    pub name: String,
    pub src: String,
    pub id: String,
}

impl From<&user::Model> for UserInfo {
    fn from(u: &user::Model) -> Self {
        Self {
            name: u.name.clone(),
            src: u.avatar.clone(),
            id: u.id.to_string(),
        }
    }
}

/// Another user as lists show them (`{_id, name, src}`).
#[derive(Debug, Clone, Serialize)]
pub struct PublicUser {
    #[serde(rename = "_id")]
    pub id: String,
    pub name: String,
    pub src: String,
}

impl From<&user::Model> for PublicUser {
    fn from(u: &user::Model) -> Self {
        Self {
            id: u.id.to_string(),
            name: u.name.clone(),
            src: u.avatar.clone(),
        }
    }
}

/// A message as the v3 client reads it.
#[derive(Debug, Serialize)]
pub struct V3Message {
    #[serde(rename = "_id")]
    pub id: String,
    pub username: String,
    pub src: String,
    pub msg: String,
    pub img: String,
    pub roomid: String,
    #[serde(rename = "roomType")]
    pub room_type: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub time: String,
    #[serde(rename = "clientId")]
    pub client_id: String,
}

impl From<&StoredMessage> for V3Message {
    fn from(m: &StoredMessage) -> Self {
        Self {
            id: m.message.id.to_string(),
            username: m.author.name.clone(),
            src: m.author.avatar.clone(),
            msg: m.message.body.clone(),
            img: m.message.image.clone(),
            roomid: m.message.room_id.clone(),
            room_type: m.message.room_type.clone(),
            kind: m.message.kind.clone(),
            time: iso_time(m.message.created_at),
            client_id: m.message.client_id.clone().unwrap_or_default(),
        }
    }
}

/// An entry of `/api/message/getHot`.
#[derive(Debug, Serialize)]
pub struct HotUser {
    /// The user's name: the client shows it and opens the profile by it.
    #[serde(rename = "_id")]
    pub name: String,
    pub count: i64,
    pub user: PublicUser,
}

/// An entry of `/api/friend/list` (and of the `friend` socket event).
#[derive(Debug, Clone, Serialize)]
pub struct FriendView {
    #[serde(rename = "_id")]
    pub id: String,
    #[serde(rename = "selfId")]
    pub self_id: String,
    #[serde(rename = "friendId")]
    pub friend: PublicUser,
    pub time: String,
}

impl From<&(friend::Model, user::Model)> for FriendView {
    fn from((row, friend): &(friend::Model, user::Model)) -> Self {
        Self {
            id: row.id.to_string(),
            self_id: row.user_id.to_string(),
            friend: friend.into(),
            time: iso_time(row.created_at),
        }
    }
}

/// The account as the Laravel-era client reads it after signing in.
///
/// That client compares `email` with each message's `userid` to tell its own messages apart, and shows
/// it as the user's handle. chatroom fills both with the public user name, so no e-mail address ever
/// reaches another user.
#[derive(Debug, Serialize)]
pub struct LegacyUser {
    pub id: i64,
    pub name: String,
    pub email: String,
    pub avatar: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_token: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl LegacyUser {
    /// The account of `u`, with its own token when it is the reply to that user's sign-in.
    pub fn new(u: &user::Model, api_token: Option<String>) -> Self {
        let laravel_time = |t: DateTime<Utc>| t.format("%Y-%m-%d %H:%M:%S").to_string();
        Self {
            id: u.id,
            name: u.name.clone(),
            email: u.name.clone(),
            avatar: u.avatar.clone(),
            api_token,
            created_at: laravel_time(u.created_at),
            updated_at: laravel_time(u.updated_at),
        }
    }
}

/// A message as the Laravel-era client reads it.
#[derive(Debug, Serialize)]
pub struct LegacyMessage {
    pub id: i64,
    /// The sender's public handle (see [`LegacyUser`]).
    pub userid: String,
    pub username: String,
    pub src: String,
    pub msg: String,
    pub img: String,
    /// The group room's number (the client's `1`/`2`), or the room id for other rooms.
    pub roomid: serde_json::Value,
    pub time: String,
}

impl LegacyMessage {
    /// `m` for the Laravel-era client, numbering group rooms as `rooms` does.
    pub fn new(m: &StoredMessage, rooms: &Rooms) -> Self {
        let roomid = rooms.legacy_number(&m.message.room_id).map_or_else(
            || serde_json::Value::from(m.message.room_id.clone()),
            serde_json::Value::from,
        );
        Self {
            id: m.message.id,
            userid: m.author.name.clone(),
            username: m.author.name.clone(),
            src: m.author.avatar.clone(),
            msg: m.message.body.clone(),
            img: m.message.image.clone(),
            roomid,
            time: iso_time(m.message.created_at),
        }
    }
}

/// A group room as clients list it (`GET /api/rooms`, the `rooms` event).
#[derive(Debug, Clone, Serialize)]
pub struct RoomView {
    pub roomid: String,
    pub name: String,
    pub archived: bool,
}

impl From<&crate::services::rooms::Group> for RoomView {
    fn from(g: &crate::services::rooms::Group) -> Self {
        Self {
            roomid: g.id.clone(),
            name: g.name.clone(),
            archived: g.archived,
        }
    }
}

impl RoomView {
    /// Every room of `groups`, in order.
    pub fn list(groups: &[crate::services::rooms::Group]) -> Vec<Self> {
        groups.iter().map(Self::from).collect()
    }
}
