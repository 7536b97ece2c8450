//! A handler's view of one socket.

use std::sync::Arc;

use socketioxide::extract::SocketRef;

use super::payloads::Lenient;
use crate::realtime::events::Outbound;
use crate::realtime::{Conn, Dialect, Realtime, Target};
use crate::services::rooms::Room;
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
}
