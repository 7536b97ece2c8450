//! Events the server sends, built once as typed values and encoded once per client dialect.
//!
//! | event | v3 client | Laravel-era client |
//! |---|---|---|
//! | a stored message | `message` [`V3Message`] | `message` [`LegacyMessage`] |
//! | presence of a group room | `room` / `roomout` `{roomid, onlineUsers: {<name>: {src}}}` | `room` / `roomout` `{<user id>: {id, name, email, src, avatar}}` |
//! | unread counts | `count` `{<room id>: n}` | `count` `{room<N>: n}`, group rooms only |
//! | the friend list | `friend` `[FriendView…]` | not sent |
//! | the group rooms changed | `rooms` `[{roomid, name, archived}]` | the same |
//! | a message taken down | `messageRemoved` `{id, roomid, by}` | the same, with the group room's number as `roomid` |
//! | a refusal | `notice` `{errno, code, data, msg, event}` | `notice` `{errno, code, message, event}`; without a sign-in also `login` `"登录后才能进入聊天室"` (what the seed sent) |
//!
//! An [`Encoded`] event holds each dialect's JSON, written on first use and then reused for every
//! recipient of that dialect: a message's room broadcast and its sender's echo share one encoding.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use serde::Serialize;
use serde_json::json;
use serde_json::value::RawValue;

use super::dialect::Dialect;
use crate::error::AppError;
use crate::services::messages::StoredMessage;
use crate::services::rooms::Group;
use crate::services::rooms::Rooms;
use crate::services::users::Author;
use crate::wire::{FriendView, LegacyMessage, RoomView, V3Message};

/// Something to tell clients.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// A stored message.
    Message(Arc<StoredMessage>),
    /// Who is in a group room now; `entered` tells whether the latest change was an arrival (`room`)
    /// or a departure (`roomout`).
    Presence {
        room: String,
        entered: bool,
        members: Arc<[Author]>,
    },
    /// Unread counts of some rooms.
    Unread(Vec<(Arc<str>, u64)>),
    /// The recipient's friend list.
    Friends(Vec<FriendView>),
    /// A refused event.
    Notice { event: String, error: Refusal },
    /// The group rooms, after an admin created or archived one (the same for both dialects).
    Rooms(Arc<[Group]>),
    /// A message taken down (`by` is `admin` or `author`).
    MessageRemoved {
        id: i64,
        room: String,
        by: &'static str,
    },
}

/// A refusal as clients see it.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// Machine-readable: `unauthenticated`, `invalid`, `forbidden`, `rate_limited`, `unavailable`, …
    pub code: &'static str,
    /// For people (Chinese, like the rest of the clients' texts).
    pub message: String,
}

impl From<&AppError> for Refusal {
    fn from(e: &AppError) -> Self {
        let code = e.code();
        Self {
            code,
            message: e.public_message(),
        }
    }
}

/// What the seed told a client that was not signed in.
pub const LEGACY_LOGIN_REQUIRED: &str = "登录后才能进入聊天室";

/// One event name with its JSON argument, ready to send.
pub type Frame = (&'static str, Box<RawValue>);

/// An event with its encodings, written lazily once per dialect.
pub struct Encoded<'a> {
    event: &'a Outbound,
    rooms: &'a Rooms,
    v3: OnceLock<Vec<Frame>>,
    laravel: OnceLock<Vec<Frame>>,
}

impl<'a> Encoded<'a> {
    /// `event`, to be encoded on demand (`rooms` numbers group rooms for the Laravel-era client).
    pub fn new(event: &'a Outbound, rooms: &'a Rooms) -> Self {
        Self {
            event,
            rooms,
            v3: OnceLock::new(),
            laravel: OnceLock::new(),
        }
    }

    /// The frames that carry the event to a client of `dialect` (none when that client has no use
    /// for it).
    pub fn frames(&self, dialect: Dialect) -> &[Frame] {
        let cell = match dialect {
            Dialect::V3 => &self.v3,
            Dialect::Laravel => &self.laravel,
        };
        cell.get_or_init(|| self.event.encode(dialect, self.rooms))
    }

    /// The size in bytes of the largest frame, over both dialects.
    pub fn largest_frame(&self) -> usize {
        Dialect::ALL
            .iter()
            .flat_map(|d| self.frames(*d))
            .map(|(_, payload)| payload.get().len())
            .max()
            .unwrap_or(0)
    }
}

fn raw<T: Serialize + ?Sized>(value: &T) -> Box<RawValue> {
    // Serializing our own view types cannot fail (no maps with non-string keys, no failing impls).
    serde_json::value::to_raw_value(value).unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot encode an event");
        RawValue::NULL.to_owned()
    })
}

impl Outbound {
    /// The frames that carry this to a client of `dialect`.
    pub fn encode(&self, dialect: Dialect, rooms: &Rooms) -> Vec<Frame> {
        match (self, dialect) {
            (Self::Message(m), Dialect::V3) => vec![("message", raw(&V3Message::from(m.as_ref())))],
            (Self::Message(m), Dialect::Laravel) => {
                vec![("message", raw(&LegacyMessage::new(m.as_ref(), rooms)))]
            }
            (
                Self::Presence {
                    room,
                    entered,
                    members,
                },
                dialect,
            ) => {
                let event = if *entered { "room" } else { "roomout" };
                vec![(event, presence(dialect, room, members))]
            }
            (Self::Unread(counts), Dialect::V3) => {
                vec![(
                    "count",
                    counts_object(counts.iter().map(|(r, n)| (r.to_string(), *n))),
                )]
            }
            (Self::Unread(counts), Dialect::Laravel) => {
                let legacy: Vec<(String, u64)> = counts
                    .iter()
                    .filter_map(|(room, n)| {
                        Some((format!("room{}", rooms.legacy_number(room)?), *n))
                    })
                    .collect();
                if legacy.is_empty() {
                    Vec::new()
                } else {
                    vec![("count", counts_object(legacy.into_iter()))]
                }
            }
            (Self::MessageRemoved { id, room, by }, dialect) => {
                // Each client names rooms its own way (the Laravel-era one numbers group rooms).
                let roomid = match dialect {
                    Dialect::Laravel => rooms
                        .legacy_number(room)
                        .map_or_else(|| json!(room), |n| json!(n)),
                    Dialect::V3 => json!(room),
                };
                vec![(
                    "messageRemoved",
                    raw(&json!({ "id": id, "roomid": roomid, "by": by })),
                )]
            }
            (Self::Rooms(groups), _) => vec![("rooms", raw(&RoomView::list(groups)))],
            (Self::Friends(list), Dialect::V3) => vec![("friend", raw(list))],
            (Self::Friends(_), Dialect::Laravel) => Vec::new(),
            (Self::Notice { event, error }, Dialect::V3) => vec![(
                "notice",
                raw(
                    &json!({ "errno": 1, "code": error.code, "data": error.message, "msg": error.message, "event": event }),
                ),
            )],
            (Self::Notice { event, error }, Dialect::Laravel) => {
                let mut events = vec![(
                    "notice",
                    raw(
                        &json!({ "errno": 1, "code": error.code, "message": error.message, "event": event }),
                    ),
                )];
                if error.code == "unauthenticated" {
                    events.push(("login", raw(LEGACY_LOGIN_REQUIRED)));
                }
                events
            }
        }
    }
}

/// `{"<room>": n, …}`, written directly: a tick writes one per online reader.
fn counts_object(counts: impl Iterator<Item = (String, u64)>) -> Box<RawValue> {
    let mut json = String::from("{");
    for (i, (room, n)) in counts.enumerate() {
        if i > 0 {
            json.push(',');
        }
        // A room id is plain text; serde_json escapes it as a JSON string.
        json.push_str(&serde_json::to_string(&room).unwrap_or_else(|_| "\"\"".to_owned()));
        json.push(':');
        json.push_str(&n.to_string());
    }
    json.push('}');
    RawValue::from_string(json).unwrap_or_else(|_| RawValue::NULL.to_owned())
}

/// A room's presence list. Only public names and avatars: never tokens or e-mail addresses.
fn presence(dialect: Dialect, room: &str, members: &[Author]) -> Box<RawValue> {
    #[derive(Serialize)]
    struct Src<'a> {
        src: &'a str,
    }
    #[derive(Serialize)]
    struct V3List<'a> {
        roomid: &'a str,
        #[serde(rename = "onlineUsers")]
        online_users: std::collections::BTreeMap<&'a str, Src<'a>>,
    }
    #[derive(Serialize)]
    struct LegacyEntry<'a> {
        id: i64,
        name: &'a str,
        email: &'a str,
        src: &'a str,
        avatar: &'a str,
    }
    match dialect {
        Dialect::V3 => raw(&V3List {
            roomid: room,
            online_users: members
                .iter()
                .map(|m| (m.name.as_str(), Src { src: &m.avatar }))
                .collect(),
        }),
        Dialect::Laravel => {
            let users: std::collections::BTreeMap<String, LegacyEntry<'_>> = members
                .iter()
                .map(|m| {
                    let entry = LegacyEntry {
                        id: m.id,
                        name: &m.name,
                        email: &m.name,
                        src: &m.avatar,
                        avatar: &m.avatar,
                    };
                    (m.id.to_string(), entry)
                })
                .collect();
            raw(&users)
        }
    }
}

/// An acknowledgement, as both clients read it.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Ack {
    /// `{ok: true}`, or `{ok: true, id}` for a stored message.
    Done {
        ok: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<i64>,
    },
    /// `{ok: true, rooms}`: what `sync` found, room by room.
    Synced {
        ok: bool,
        rooms: BTreeMap<String, SyncedRoom>,
    },
    /// `{ok: false, error, code}`.
    Refused {
        ok: bool,
        error: String,
        code: &'static str,
    },
}

impl Ack {
    /// An event handled; `id` is a stored message's.
    pub fn done(id: Option<i64>) -> Self {
        Self::Done { ok: true, id }
    }

    /// `sync`'s answer.
    pub fn synced(rooms: BTreeMap<String, SyncedRoom>) -> Self {
        Self::Synced { ok: true, rooms }
    }

    /// An event refused.
    pub fn refused(error: &Refusal) -> Self {
        Self::Refused {
            ok: false,
            error: error.message.clone(),
            code: error.code,
        }
    }
}

/// One room of a `sync` answer.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum SyncedRoom {
    /// The messages after the client's newest, oldest first; or none and `resync: true` when there
    /// were too many (the client reloads the room's history).
    Missed {
        messages: Vec<V3Message>,
        resync: bool,
    },
    /// This room could not be read.
    Refused { error: String, code: &'static str },
}
