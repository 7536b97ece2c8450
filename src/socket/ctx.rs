//! A handler's view of one socket.

use std::sync::Arc;

use socketioxide::extract::SocketRef;

use super::payloads::Lenient;
use crate::realtime::events::Outbound;
use crate::realtime::pusher::room_channel;
use crate::realtime::{Conn, Dialect, Realtime, Target};
use crate::services::rooms::Room;
use crate::services::users::Author;
use crate::state::AppState;

/// One socket, its state, and the application's.
#[derive(Clone)]
pub struct Ctx {
    pub socket: SocketRef,
    pub conn: Arc<Conn>,
    pub state: AppState,
}

impl Ctx {
    /// The realtime core.
    pub fn realtime(&self) -> &Realtime {
        &self.state.realtime
    }

    /// The group or private room a payload's `roomid` names, read the way this socket's client
    /// writes room ids.
    pub fn room_of(&self, roomid: &Lenient) -> Option<Room> {
        let text = roomid.text()?;
        let rooms = &self.state.rooms;
        match self.conn.dialect {
            Dialect::Laravel => rooms.parse_legacy(text),
            Dialect::V3 => rooms.parse(text),
        }
    }

    /// Sends `event` to this socket only.
    pub async fn tell(&self, event: &Outbound) {
        self.realtime()
            .pusher()
            .push(&Target::Socket(self.socket.id), event)
            .await;
    }

    /// Puts this socket in group room `room` for `author`: the socket gets the room's list at once
    /// (the others hear of a new arrival in the next presence round), and the user's unread count for
    /// the room is reset.
    pub async fn enter(&self, room: &str, author: &Author) {
        let presence = self.realtime().presence();
        let listing = if self.conn.enter(room) {
            self.socket.join(room_channel(room, self.conn.dialect));
            presence.enter(room, author.id)
        } else {
            match presence.current(room) {
                Some(listing) => listing,
                None => presence.enter(room, author.id),
            }
        };
        self.conn.saw_presence(room, listing.version);
        self.tell(&Outbound::Presence {
            room: room.to_owned(),
            entered: true,
            members: listing.members,
        })
        .await;
        self.realtime().unread().mark_read(author.id, room);
        self.tell(&Outbound::Unread(vec![(room.into(), 0)])).await;
    }

    /// Takes this socket out of `room`; if that was the user's last socket there, the room hears the
    /// new list in the next presence round.
    pub fn leave(&self, room: &str) {
        if !self.conn.leave(room) {
            return;
        }
        self.socket.leave(room_channel(room, self.conn.dialect));
        if let Some(user) = self.conn.user_id() {
            self.realtime().presence().leave(room, user);
            self.realtime().unread().mark_read(user, room);
        }
    }
}
