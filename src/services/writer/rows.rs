//! What the SQL of both databases shares about a row: the stored message a job becomes, and the answer
//! to a job whose client id was stored before.

use entity::message;

use super::{Job, Saved};
use crate::error::AppError;
use crate::services::messages::{NewMessage, StoredMessage};

/// A message whose client id is already stored: the stored row if it is the same message, a refusal
/// if it is another one.
pub(super) fn settle_repeat(new: &NewMessage, stored: &StoredMessage) -> Result<Saved, AppError> {
    if stored.message.removed.is_some() {
        // A resend of a message taken down since: it stays down.
        return Err(AppError::Conflict("这条消息已被撤回或删除".into()));
    }
    if new.is_same_as(&stored.message) {
        Ok(Saved::Existing(stored.clone()))
    } else {
        Err(AppError::Conflict(
            "clientId 已被另一条消息使用，请换一个".into(),
        ))
    }
}

/// The stored message a job's inserted row becomes.
pub(super) fn stored<T>(row: message::Model, job: &Job<T>) -> StoredMessage {
    StoredMessage {
        message: row,
        room: job.new.room.clone(),
        author: job.author.clone(),
    }
}
