//! The bus's wire format: one JSON note per Redis message, `{"n": node, "s": seq, "b": body}`, and the
//! channels notes travel on.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::auth::UserId;
use crate::services::rooms::Group;
use crate::services::users::Author;

/// One note on the bus: who sent it, its number among that node's notes on its channel, and what it
/// says. (Written by hand in [`Bus::publish`](super::Bus), in this shape.)
#[derive(Debug, Deserialize)]
pub(super) struct Note {
    /// The sending node.
    pub(super) n: String,
    /// The sender's number of this note on its channel: gap-free unless notes were dropped, on the
    /// control channel and on room channels; 0 on user channels (they carry no state to resync).
    pub(super) s: u64,
    pub(super) b: Body,
}

/// Where a note travels. A node reads the control channel always, a room's channel while it has
/// sockets in the room, and a user's channel while the user has sockets on it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Channel {
    /// `<prefix>:ctl`: liveness, snapshots, who is online, unread digests, the room list.
    Control,
    /// `<prefix>:r:<room>`: a group room's events, presence and posted messages.
    Room(String),
    /// `<prefix>:u:<id>`: events for one user, their private messages' counts, revocations, bans.
    User(UserId),
}

impl Channel {
    /// The Redis channel's name.
    pub(super) fn name(&self, prefix: &str) -> String {
        match self {
            Self::Control => format!("{prefix}:ctl"),
            Self::Room(room) => format!("{prefix}:r:{room}"),
            Self::User(user) => format!("{prefix}:u:{user}"),
        }
    }

    /// The channel a Redis channel name stands for, if it is one of ours.
    pub(super) fn parse(prefix: &str, name: &str) -> Option<Self> {
        let rest = name.strip_prefix(prefix)?.strip_prefix(':')?;
        if rest == "ctl" {
            Some(Self::Control)
        } else if let Some(room) = rest.strip_prefix("r:") {
            Some(Self::Room(room.to_owned()))
        } else {
            rest.strip_prefix("u:")?.parse().ok().map(Self::User)
        }
    }

    /// Whether its notes are numbered (a gap then asks for a snapshot).
    pub(super) fn numbered(&self) -> bool {
        !matches!(self, Self::User(_))
    }
}

/// What a note is, for the metrics: `room`, `user`, `digest` or `control`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Room,
    User,
    Digest,
    Control,
}

impl Kind {
    pub(super) const ALL: [Self; 4] = [Self::Room, Self::User, Self::Digest, Self::Control];

    pub(super) fn of(channel: &Channel, body: &Body) -> Self {
        match (channel, body) {
            (Channel::Room(_), _) => Self::Room,
            (Channel::User(_), _) => Self::User,
            (Channel::Control, Body::Digest { .. }) => Self::Digest,
            (Channel::Control, _) => Self::Control,
        }
    }

    pub(super) fn label(self) -> &'static str {
        match self {
            Self::Room => "room",
            Self::User => "user",
            Self::Digest => "digest",
            Self::Control => "control",
        }
    }
}

/// What one node posted to one group room since its last digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct RoomDigest {
    pub(super) room: String,
    /// How many messages the node has posted to the room since it started (its last one's number).
    pub(super) c: u64,
    /// How many of them since its last digest.
    pub(super) n: u64,
    /// The newest message's id.
    pub(super) latest: i64,
    /// Who sent the `n` messages, and how many each (their own messages are not unread to them).
    pub(super) senders: Vec<(UserId, u64)>,
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
    /// A stored message (for unread counts). `c` numbers the sender node's messages in a group room
    /// (1, 2, …), so a node that hears of them twice (here and in a digest) counts them once; 0 in a
    /// private room.
    Posted {
        room: PostedIn,
        sender: UserId,
        id: i64,
        #[serde(default)]
        c: u64,
    },
    /// The group rooms' messages of the last second, for the nodes not reading those rooms' channels.
    Digest {
        rooms: Vec<RoomDigest>,
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
    /// The sender's presence, whole. `seqs` numbers each room's part: the number of the sender's last
    /// note on that room's channel when the snapshot was taken (channels are not ordered with each
    /// other, so a receiver that already read a later note of a room keeps what it knows of it).
    Snapshot {
        online: Vec<Person>,
        rooms: Vec<(String, Vec<UserId>)>,
        #[serde(default)]
        seqs: Vec<(String, u64)>,
    },
    /// On a room's channel: asks `node` (or every node with sockets in the room, when empty) who of
    /// its users are in the room.
    RoomAsk {
        room: String,
        node: String,
    },
    /// On a room's channel: the sender's users in the room, whole.
    RoomSnapshot {
        room: String,
        users: Vec<UserId>,
    },
    Goodbye,
}
