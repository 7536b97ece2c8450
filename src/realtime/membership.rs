//! Who a socket acts for and which rooms it is in: the rules both adapters follow.
//!
//! * **Binding** a socket to a user ([`Realtime::bind`]) lists it among the user's sockets in the
//!   Pusher's index (every socket of a user on every device is one target) and counts the user online;
//!   **unbinding** ([`Realtime::unbind`]) first takes the socket out of every room it is in, and
//!   forgets the user's unread counters once their last socket here is gone.
//! * **Entering** a group room ([`Realtime::enter`]) gives the socket the room's member list at once
//!   (the others hear of a new arrival in the next presence round), resets the user's unread count
//!   for the room and records how far they have read; **leaving** ([`Realtime::leave`]) marks the
//!   room read again and, with the user's last socket gone from it, changes the member list.
//! * A socket that has not signed in may send only small frames (`--anonymous-frame-bytes`); binding
//!   lifts that limit, unbinding puts it back.
//! * A user's **unread counts** ([`Realtime::unread_counts`]) are loaded from the database by the
//!   first socket that asks, and kept current in memory since.

use engineioxide::budget::FrameLimit;
use engineioxide::handle::SessionHandle;
use socketioxide::extract::SocketRef;

use super::events::Outbound;
use super::pusher::room_channel;
use super::unread::Counts;
use super::{Binding, Conn, Realtime, Target};
use crate::error::AppError;
use crate::services::unread;
use crate::services::users::Author;

impl Realtime {
    /// Binds `socket` as `binding` says. The same user again keeps the socket's rooms and refreshes
    /// the profile and token; another user is unbound first.
    pub fn bind(&self, socket: &SocketRef, conn: &Conn, binding: Binding) {
        let presence = &self.inner.presence;
        match conn.user_id() {
            Some(id) if id == binding.author.id => {
                presence.refresh(&binding.author);
                conn.set_binding(Some(binding));
                return;
            }
            Some(_) => self.unbind(socket, conn),
            None => {}
        }
        let id = binding.author.id;
        self.inner.pusher.users().add(id, socket.id);
        presence.connect(&binding.author);
        // A signed-in socket may send large frames (a Laravel-era picture message).
        if let Some(limit) = frame_limit(socket) {
            limit.lift();
        }
        tracing::debug!(sid = %socket.id, user = id, "socket bound");
        conn.set_binding(Some(binding));
    }

    /// Unbinds `socket`: it leaves every room it is in and is anonymous afterwards.
    pub fn unbind(&self, socket: &SocketRef, conn: &Conn) {
        for room in conn.rooms() {
            self.leave(socket, conn, &room);
        }
        if let Some(binding) = conn.set_binding(None) {
            let id = binding.author.id;
            self.inner.pusher.users().remove(id, socket.id);
            if self.inner.presence.disconnect(id) {
                self.inner.unread.forget(id);
            }
            if let (Some(limit), Some(bytes)) =
                (frame_limit(socket), self.inner.limits.first_frame_limit)
            {
                limit.set(bytes);
            }
            tracing::debug!(sid = %socket.id, user = id, "socket unbound");
        }
    }

    /// Puts `socket` in group room `room` for `author`, tells it the room's members, and marks the
    /// room read for the user.
    pub async fn enter(&self, socket: &SocketRef, conn: &Conn, room: &str, author: &Author) {
        let presence = &self.inner.presence;
        let listing = if conn.enter(room) {
            if let Some(handle) = socket.req_parts().extensions.get::<SessionHandle>() {
                let channel = room_channel(room, conn.dialect);
                self.inner
                    .pusher
                    .channels()
                    .join(channel, socket.id, handle.clone());
            }
            presence.enter(room, author.id)
        } else {
            match presence.current(room) {
                Some(listing) => listing,
                None => presence.enter(room, author.id),
            }
        };
        conn.saw_presence(room, listing.version);
        let here = Target::Socket(socket.id);
        let members = Outbound::Presence {
            room: room.to_owned(),
            entered: true,
            members: listing.members,
        };
        self.inner.pusher.push(&here, &members).await;
        self.inner.unread.mark_read(author.id, room);
        let read = Outbound::Unread(vec![(room.into(), 0)]);
        self.inner.pusher.push(&here, &read).await;
    }

    /// Takes `socket` out of `room`; if that was the user's last socket there, the room hears the new
    /// list in the next presence round.
    pub fn leave(&self, socket: &SocketRef, conn: &Conn, room: &str) {
        if !conn.leave(room) {
            return;
        }
        let channel = room_channel(room, conn.dialect);
        self.inner.pusher.channels().leave(&channel, socket.id);
        if let Some(user) = conn.user_id() {
            self.inner.presence.leave(room, user);
            self.inner.unread.mark_read(user, room);
        }
    }

    /// `author`'s unread counts of the group rooms: from memory when another socket of the user
    /// loaded them (they are kept current since), else from the database.
    ///
    /// # Errors
    /// Database failures.
    pub async fn unread_counts(&self, author: &Author) -> Result<Counts, AppError> {
        let groups = self.inner.rooms.groups();
        let hub = &self.inner.unread;
        if let Some(counts) = hub.counts(author.id, &groups) {
            return Ok(counts);
        }
        let loaded = unread::counts(&self.inner.db, author.id, &groups).await?;
        Ok(hub.load(author.id, loaded, &groups))
    }
}

/// The handle on `socket`'s frame limit, which the engine put in its request's extensions.
fn frame_limit(socket: &SocketRef) -> Option<&FrameLimit> {
    socket.req_parts().extensions.get::<FrameLimit>()
}
