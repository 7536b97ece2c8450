//! What the SQL of both databases shares about a row: the stored message a job becomes, the pairing
//! of a batch's jobs with the rows its `INSERT … RETURNING` gave back, and the answer to a job whose
//! client id was stored before.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use entity::message;
use sea_orm::sqlx;
use sea_orm::{DbErr, RuntimeErr};

use super::{Job, Saved, key};
use crate::error::AppError;
use crate::services::messages::{NewMessage, StoredMessage};

/// Each job's outcome, in the order of its batch (or of the indexes it was stored by).
pub(super) type Outcomes = Vec<Result<Saved, AppError>>;

/// What an `INSERT … RETURNING` gives back of each row it stored.
pub(super) type Returned = (i64, i64, Option<String>);

/// A whole stored row, in the columns' order.
pub(super) type Row = (
    i64,
    i64,
    String,
    String,
    String,
    String,
    String,
    Option<String>,
    DateTime<Utc>,
    Option<String>,
);

/// The message a whole row holds.
pub(super) fn model(r: Row) -> message::Model {
    message::Model {
        id: r.0,
        sender_id: r.1,
        room_id: r.2,
        room_type: r.3,
        kind: r.4,
        body: r.5,
        image: r.6,
        client_id: r.7,
        created_at: r.8,
        removed: r.9,
    }
}

/// A database error of sqlx's, as the writer's callers see it.
pub(super) fn db_error(e: sqlx::Error) -> AppError {
    AppError::Db(DbErr::Query(RuntimeErr::SqlxError(Arc::new(e))))
}

/// Pairs the rows an `INSERT … RETURNING` stored (`returned`, `id`s growing in the batch's order)
/// with `jobs`, whose rooms' ids are `rooms` and whose rows were stamped `now`. Only a job with a
/// client id can have been skipped; each pairing is checked against the row's sender and client id.
/// Returns every job's outcome and the indexes of the skipped jobs, whose outcomes are placeholders
/// until [`answer_skipped`] fills them in.
///
/// # Errors
/// When the rows do not pair with the jobs: the batch is refused rather than anyone answered wrongly.
pub(super) fn pair<T>(
    jobs: &[&Job<T>],
    rooms: Vec<String>,
    mut returned: Vec<Returned>,
    now: DateTime<Utc>,
) -> Result<(Outcomes, Vec<usize>), AppError> {
    returned.sort_unstable_by_key(|r| r.0);
    let mut returned = returned.into_iter().peekable();
    let mut results = Vec::with_capacity(jobs.len());
    let mut skipped = Vec::new();
    for (n, (job, room_id)) in jobs.iter().zip(rooms).enumerate() {
        let matched = returned.next_if(|(_, sender, client_id)| {
            *sender == job.new.sender && client_id.as_deref() == job.new.client_id.as_deref()
        });
        if let Some((id, _, _)) = matched {
            let row = message::Model {
                id,
                sender_id: job.new.sender,
                room_id,
                room_type: job.new.room.kind().to_owned(),
                kind: job.new.kind.as_str().to_owned(),
                body: job.new.body.clone(),
                image: job.new.image.clone(),
                client_id: job.new.client_id.clone(),
                created_at: now,
                removed: None,
            };
            results.push(Ok(Saved::New(stored(row, job))));
        } else if job.new.client_id.is_some() {
            skipped.push(n);
            results.push(Err(AppError::Unavailable));
        } else {
            return Err(unmatched());
        }
    }
    if returned.next().is_some() {
        return Err(unmatched());
    }
    Ok((results, skipped))
}

/// Answers the `skipped` jobs from the rows stored before them with their `(sender, client id)`.
pub(super) fn answer_skipped<T>(
    jobs: &[&Job<T>],
    results: &mut [Result<Saved, AppError>],
    skipped: Vec<usize>,
    rows: Vec<Row>,
) {
    let mut existing: HashMap<_, _> = rows
        .into_iter()
        .filter_map(|r| {
            let model = model(r);
            Some(((model.sender_id, model.client_id.clone()?), model))
        })
        .collect();
    for n in skipped {
        let job = jobs[n];
        results[n] = match key(&job.new).and_then(|k| existing.remove(&k)) {
            Some(row) => settle_repeat(&job.new, &stored(row, job)),
            // Skipped, yet not there: deleted meanwhile. Rare enough to refuse.
            None => Err(AppError::Unavailable),
        };
    }
}

/// The database returned rows that do not pair with the batch's: refuse the batch (it rolls back)
/// rather than answer anyone wrongly.
fn unmatched() -> AppError {
    tracing::error!("the inserted messages returned do not match the batch");
    AppError::Internal(anyhow::anyhow!("inserted rows do not match the batch"))
}

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
