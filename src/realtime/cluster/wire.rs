//! The bus's wire format: one JSON note per Redis message, `{"n": node, "s": seq, "b": body}`.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::auth::UserId;
use crate::services::rooms::Group;
use crate::services::users::Author;

/// One note on the bus: who sent it, its number among that node's notes, and what it says. (Written
/// by hand in [`Bus::publish`], in this shape.)
#[derive(Debug, Deserialize)]
pub(super) struct Note {
    /// The sending node.
    pub(super) n: String,
    /// The sender's sequence number (gap-free unless notes were dropped).
    pub(super) s: u64,
    pub(super) b: Body,
}

/// A user as presence lists show them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Person {
    pub(super) id: UserId,
    pub(super) name: String,
    pub(super) avatar: String,
}

impl From<&Author> for Person {
    fn from(a: &Author) -> Self {
        Self {
            id: a.id,
            name: a.name.clone(),
            avatar: a.avatar.clone(),
        }
    }
}

impl From<Person> for Author {
    fn from(p: Person) -> Self {
        Self {
            id: p.id,
            name: p.name,
            avatar: p.avatar,
        }
    }
}

/// Whom an emit is for, on the other nodes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum To {
    Room(String),
    Users(Vec<UserId>),
}

/// A room a message was posted to.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum PostedIn {
    Group(String),
    Private(UserId, UserId),
}

/// A group room on the wire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct RoomNote {
    id: String,
    name: String,
    archived: bool,
}

impl From<&Group> for RoomNote {
    fn from(g: &Group) -> Self {
        Self {
            id: g.id.clone(),
            name: g.name.clone(),
            archived: g.archived,
        }
    }
}

impl From<RoomNote> for Group {
    fn from(n: RoomNote) -> Self {
        Self {
            id: n.id,
            name: n.name,
            archived: n.archived,
        }
    }
}

/// Frames of one event: (name, JSON argument) for the v3 dialect, then for the Laravel-era one.
pub(super) type Frames = [Vec<(String, Box<RawValue>)>; 2];

/// What a note says. Externally tagged (`{"emit": {…}}`): an internally tagged enum would buffer its
/// content, and the frames' raw JSON cannot be read back from a buffer.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Body {
    Emit {
        to: To,
        frames: Frames,
    },
    Online {
        user: Person,
    },
    Offline {
        user: UserId,
    },
    Enter {
        room: String,
        user: UserId,
    },
    Leave {
        room: String,
        user: UserId,
    },
    Posted {
        room: PostedIn,
        sender: UserId,
        id: i64,
    },
    Revoke {
        user: UserId,
        jti: String,
    },
    /// The group rooms, after an admin created or archived one.
    Rooms {
        groups: Vec<RoomNote>,
    },
    /// A user was banned: their sockets close (`message` says why).
    Ban {
        user: UserId,
        message: String,
    },
    Alive,
    /// Asks `node` (or every node, when empty) for a snapshot of its presence.
    Ask {
        node: String,
    },
    Snapshot {
        online: Vec<Person>,
        rooms: Vec<(String, Vec<UserId>)>,
    },
    Goodbye,
}
