//! Events the server sends, built once as typed values and encoded for each client dialect.
//!
//! | event | v3 client | Laravel-era client |
//! |---|---|---|
//! | a stored message | `message` [`V3Message`] | `message` [`LegacyMessage`] |
//! | presence of a group room | `room` / `roomout` `{roomid, onlineUsers: {<name>: {src}}}` | `room` / `roomout` `{<user id>: {id, name, email, src, avatar}}` |
//! | unread counts | `count` `{<room id>: n}` | `count` `{room<N>: n}`, group rooms only |
//! | the friend list | `friend` `[FriendView…]` | not sent |
//! | a refusal | `notice` `{errno, code, data, msg, event}` | `notice` `{errno, code, message, event}`; without a sign-in also `login` `"登录后才能进入聊天室"` (what the seed sent) |

use serde_json::{Map, Value, json};

use super::conn::Dialect;
use crate::api::views::{LegacyMessage, V3Message};
use crate::error::AppError;
use crate::services::messages::StoredMessage;
use crate::services::presence::Member;
use crate::services::rooms::Rooms;

/// Something to tell clients.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// A stored message.
    Message(Box<StoredMessage>),
    /// Who is in a group room now, after someone entered (`entered`) or left it.
    Presence {
        room: String,
        entered: bool,
        members: Vec<Member>,
    },
    /// Unread counts of some rooms.
    Unread(Vec<(String, u64)>),
    /// The recipient's friend list (already in its client shape).
    Friends(Value),
    /// A refused event.
    Notice { event: String, error: Refusal },
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
        let code = match e {
            AppError::Invalid(_) => "invalid",
            AppError::Unauthenticated(_) => "unauthenticated",
            AppError::Forbidden(_) => "forbidden",
            AppError::NotFound(_) => "not_found",
            AppError::Conflict(_) => "conflict",
            AppError::TooLarge(_) => "too_large",
            AppError::RateLimited => "rate_limited",
            AppError::Unavailable => "unavailable",
            AppError::Db(_) | AppError::Internal(_) => "internal",
        };
        Self {
            code,
            message: e.public_message(),
        }
    }
}

/// What the seed told a client that was not signed in.
pub const LEGACY_LOGIN_REQUIRED: &str = "登录后才能进入聊天室";

impl Outbound {
    /// The events that carry this to a client of `dialect`, with their payloads (none when that
    /// client has no use for it).
    pub fn encode(&self, dialect: Dialect, rooms: &Rooms) -> Vec<(&'static str, Value)> {
        match (self, dialect) {
            (Self::Message(m), Dialect::V3) => {
                vec![("message", json!(V3Message::from(m.as_ref())))]
            }
            (Self::Message(m), Dialect::Laravel) => {
                vec![("message", json!(LegacyMessage::new(m.as_ref(), rooms)))]
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
                let map: Map<String, Value> = counts
                    .iter()
                    .map(|(room, n)| (room.clone(), json!(n)))
                    .collect();
                vec![("count", Value::Object(map))]
            }
            (Self::Unread(counts), Dialect::Laravel) => {
                let map: Map<String, Value> = counts
                    .iter()
                    .filter_map(|(room, n)| {
                        rooms
                            .legacy_number(room)
                            .map(|k| (format!("room{k}"), json!(n)))
                    })
                    .collect();
                if map.is_empty() {
                    Vec::new()
                } else {
                    vec![("count", Value::Object(map))]
                }
            }
            (Self::Friends(list), Dialect::V3) => vec![("friend", list.clone())],
            (Self::Friends(_), Dialect::Laravel) => Vec::new(),
            (Self::Notice { event, error }, Dialect::V3) => vec![(
                "notice",
                json!({ "errno": 1, "code": error.code, "data": error.message, "msg": error.message, "event": event }),
            )],
            (Self::Notice { event, error }, Dialect::Laravel) => {
                let mut events = vec![(
                    "notice",
                    json!({ "errno": 1, "code": error.code, "message": error.message, "event": event }),
                )];
                if error.code == "unauthenticated" {
                    events.push(("login", json!(LEGACY_LOGIN_REQUIRED)));
                }
                events
            }
        }
    }
}

/// A room's presence list. Only public names and avatars: never tokens or e-mail addresses.
fn presence(dialect: Dialect, room: &str, members: &[Member]) -> Value {
    match dialect {
        Dialect::V3 => {
            let users: Map<String, Value> = members
                .iter()
                .map(|m| (m.name.clone(), json!({ "src": m.src })))
                .collect();
            json!({ "roomid": room, "onlineUsers": users })
        }
        Dialect::Laravel => {
            let users: Map<String, Value> = members
                .iter()
                .map(|m| {
                    let entry = json!({
                        "id": m.id, "name": m.name, "email": m.name, "src": m.src, "avatar": m.src,
                    });
                    (m.id.to_string(), entry)
                })
                .collect();
            Value::Object(users)
        }
    }
}

/// The acknowledgement of an event that was handled.
pub fn ack_ok(id: Option<i64>) -> Value {
    match id {
        Some(id) => json!({ "ok": true, "id": id }),
        None => json!({ "ok": true }),
    }
}

/// The acknowledgement of a refused event.
pub fn ack_refused(error: &Refusal) -> Value {
    json!({ "ok": false, "error": error.message, "code": error.code })
}
