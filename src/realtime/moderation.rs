//! What operators do to the live system, for both adapters: taking a message down (an admin's removal
//! over HTTP, an author's recall over a socket) and closing a banned user's sockets. The decisions are
//! the service's ([`crate::services::moderation`]); here the picture file goes, the room hears
//! `messageRemoved` on every node, banned users' sockets close on every node, and the audit trail
//! records it.

use std::time::Duration;

use chrono::Utc;

use super::events::{Outbound, Refusal};
use super::{Pusher, Realtime, Target};
use crate::auth::UserId;
use crate::error::AppError;
use crate::services::moderation::{self, Actor, Audit, Removal, RemovedBy};
use crate::services::rooms::{Group, Room};
use crate::services::uploads::UploadStore;

/// A request to take message `id` down.
#[derive(Debug, Clone)]
pub struct TakeDown<'a> {
    pub actor: &'a Actor,
    pub by: RemovedBy,
    pub id: i64,
    /// Why (admins may say; recalls say nothing).
    pub reason: &'a str,
    /// How long after sending an author may recall.
    pub window: Duration,
}

impl Realtime {
    /// Takes a message down: marks it removed, deletes its picture when no standing message shows it,
    /// tells everyone in its room (`messageRemoved`, every node), and writes the audit trail (an
    /// admin's refused attempts too). A second removal changes nothing and tells nobody.
    ///
    /// # Errors
    /// The service's refusals ([`moderation::remove`], [`moderation::recall`]); database failures.
    pub async fn take_down(
        &self,
        uploads: &UploadStore,
        request: TakeDown<'_>,
    ) -> Result<Removal, AppError> {
        let db = &self.inner.db;
        let outcome = match (request.by, request.actor) {
            (RemovedBy::Admin, _) => moderation::remove(db, request.id).await,
            (RemovedBy::Author, Actor::User { id: author, .. }) => {
                moderation::recall(db, *author, request.id, request.window, Utc::now()).await
            }
            (RemovedBy::Author, Actor::Console) => {
                Err(AppError::Forbidden("只能撤回自己的消息".into()))
            }
        };
        let audited = match (&outcome, request.by) {
            (Ok(removal), _) if removal.now => true,
            (Err(e), RemovedBy::Admin) => !e.is_internal(),
            _ => false,
        };
        if audited {
            let action = match request.by {
                RemovedBy::Admin => "remove",
                RemovedBy::Author => "recall",
            };
            let target = request.id.to_string();
            moderation::record(
                db,
                Audit {
                    actor: request.actor,
                    action,
                    target: &target,
                    reason: request.reason,
                    refused: outcome.as_ref().err(),
                },
            )
            .await?;
        }
        let removal = outcome?;
        if removal.now {
            if !removal.image.is_empty() && !moderation::image_in_use(db, &removal.image).await? {
                uploads.remove_url(&removal.image).await;
            }
            let event = Outbound::MessageRemoved {
                id: removal.id,
                room: removal.room_id.clone(),
                by: request.by.as_str(),
            };
            let target = match self.inner.rooms.parse(&removal.room_id) {
                Some(Room::Private { high, low }) => Pusher::to_user_id(&[high, low]),
                _ => Target::Room(removal.room_id.clone()),
            };
            self.inner.pusher.push(&target, &event).await;
        }
        Ok(removal)
    }
}

impl Realtime {
    /// `user` was banned: every socket of theirs, on every node, hears why (`notice` with event `ban`,
    /// code `forbidden`) and is closed. Their tokens are already refused, so reconnecting fails.
    pub async fn ban(&self, user: UserId, message: &str) {
        ban_here(&self.inner.pusher, user, message).await;
        if let Some(bus) = &self.inner.bus {
            bus.ban(user, message);
        }
    }
}

/// Tells this node's sockets of `user` they are banned, and closes them.
pub(crate) async fn ban_here(pusher: &Pusher, user: UserId, message: &str) {
    let sockets = pusher.user_sockets(user);
    if sockets.is_empty() {
        return;
    }
    let notice = Outbound::Notice {
        event: "ban".to_owned(),
        error: Refusal {
            code: "forbidden",
            message: message.to_owned(),
        },
    };
    pusher.send_to(&sockets, &pusher.encode(&notice));
    for socket in sockets {
        // The Socket.IO DISCONNECT tells the client not to reconnect; then the whole Engine.IO
        // session ends, so a client that ignores it keeps nothing open.
        let session = socket
            .req_parts()
            .extensions
            .get::<engineioxide::handle::SessionHandle>()
            .cloned();
        if let Err(e) = socket.disconnect() {
            tracing::debug!(error = %e, "a banned user's socket was already gone");
        }
        if let Some(session) = session {
            session.close();
        }
    }
}

impl Realtime {
    /// The group rooms changed (an admin created or archived one, `groups` as stored now): this
    /// node's list follows at once and every socket here hears it (`rooms`); the other nodes follow
    /// through the bus, and each node also reloads the list from the database every few seconds,
    /// so one that missed the note catches up.
    pub async fn rooms_changed(&self, groups: Vec<Group>) {
        if let Some(bus) = &self.inner.bus {
            bus.rooms(&groups);
        }
        rooms_here(&self.inner.pusher, groups).await;
    }
}

/// Makes `groups` this node's room list; when that changes it, tells every socket of this node.
pub(crate) async fn rooms_here(pusher: &Pusher, groups: Vec<Group>) {
    if pusher.rooms().replace(groups) {
        let event = Outbound::Rooms(pusher.rooms().all());
        pusher.push_here(&Target::Everyone, &event).await;
    }
}
