//! The announcer: takes stored messages from the writer in commit order, delivers each (to its room in
//! every dialect, to the sender's socket when the room does not reach it, into the unread counters
//! and onto the cluster bus), and only then resolves its receipt, so an acknowledgement means "stored
//! and delivered".

use std::sync::Arc;

use tokio::sync::mpsc;

use super::events::Outbound;
use super::{Inner, Origin, Pusher, Target, Ticket};
use crate::auth::UserId;
use crate::error::AppError;
use crate::services::messages::StoredMessage;
use crate::services::rooms::Room;
use crate::services::writer::{Batch, Committed, Saved};

/// Delivers stored messages in commit order, then resolves their receipts.
pub(super) async fn announce_all(inner: Arc<Inner>, mut batches: mpsc::Receiver<Batch<Ticket>>) {
    while let Some(Batch { committed, took }) = batches.recv().await {
        let metrics = &inner.metrics;
        metrics.batch_size.observe(committed.len() as f64);
        metrics.commit_seconds.observe(took.as_secs_f64());
        metrics
            .queue_depth
            .set(inner.writer.in_flight(inner.queue_capacity) as i64);
        for Committed { ticket, result, .. } in committed {
            match &result {
                Ok(Saved::New(m)) => {
                    metrics.stored.inc();
                    inner.announce(m, ticket.origin).await;
                }
                Ok(Saved::Existing(m)) => {
                    // Stored before: only the sender hears of it again, to mark it sent.
                    if let Some(origin) = ticket.origin {
                        let event = Outbound::Message(Arc::new(m.clone()));
                        inner
                            .pusher
                            .push(&Target::Socket(origin.socket), &event)
                            .await;
                    }
                }
                // The database did not answer (a reused client id is the sender's mistake, not a
                // refusal).
                Err(AppError::Unavailable) => {
                    metrics.store_unavailable.inc();
                }
                Err(_) => {}
            }
            let _ = ticket.reply.send(result);
        }
        // This batch's places were given back as its items were dropped: idle means 0.
        metrics
            .queue_depth
            .set(inner.writer.in_flight(inner.queue_capacity) as i64);
    }
    tracing::debug!("announcer drained");
}

impl Inner {
    pub(super) fn is_user_id_online(&self, user: UserId) -> bool {
        self.presence.is_online(user)
    }

    /// Delivers a newly stored message: to its room (group) or to both users' sockets (private), to
    /// the sender's socket as well when the room does not reach it, and into the unread counters.
    async fn announce(&self, message: &StoredMessage, origin: Option<Origin>) {
        let event = Outbound::Message(Arc::new(message.clone()));
        let encoded = self.pusher.encode(&event);
        match &message.room {
            Room::Group(room) => {
                self.pusher
                    .send(&Target::Room(room.clone()), &encoded)
                    .await;
            }
            Room::Private { high, low } => {
                let online: Vec<UserId> = [*high, *low]
                    .into_iter()
                    .filter(|u| self.is_user_id_online(*u))
                    .collect();
                if !online.is_empty() {
                    self.pusher
                        .send(&Pusher::to_user_id(&online), &encoded)
                        .await;
                }
            }
        }
        if let Some(origin) = origin.filter(|o| !o.reached_by_room) {
            self.pusher
                .send(&Target::Socket(origin.socket), &encoded)
                .await;
        }
        self.unread
            .note_message(&message.room, message.author.id, message.message.id);
        if let Some(bus) = &self.bus {
            bus.posted(&message.room, message.author.id, message.message.id);
        }
    }
}
