//! One batch on PostgreSQL: the rows bound as one array per column and expanded by `UNNEST`, so a
//! batch is one statement of eight parameters whatever its size (no per-row placeholders, nothing
//! near the 65 535-parameter bound), and the server parses and plans it once per connection.
//!
//! [`insert`] runs the `INSERT` in a transaction and leaves it open: the caller decides when to
//! [`Open::commit`], which lets the writer insert the next batch while this one commits. Rows whose
//! `(sender, client id)` is already stored are skipped (`ON CONFLICT DO NOTHING`) and looked up with
//! one more statement, bound as arrays too, that probes the unique index once per skipped row.

use std::sync::Arc;

use chrono::{DateTime, SubsecRound, Utc};
use entity::message;
use sea_orm::sqlx::{self, PgPool, Postgres};
use sea_orm::{DbErr, RuntimeErr};

use super::rows::{settle_repeat, stored};
use super::{Job, Saved, key};
use crate::error::AppError;

/// The batch's columns as arrays, in the batch's order (`ORDER BY n`), so ids are drawn in that order.
const INSERT: &str = "INSERT INTO messages \
    (sender_id, room_id, room_type, kind, body, image, client_id, created_at) \
    SELECT sender_id, room_id, room_type, kind, body, image, client_id, $8 \
    FROM UNNEST($1::int8[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[]) \
    WITH ORDINALITY AS t(sender_id, room_id, room_type, kind, body, image, client_id, n) \
    ORDER BY n \
    ON CONFLICT (sender_id, client_id) DO NOTHING \
    RETURNING id, sender_id, client_id";

/// Stored rows with these `(sender, client id)` keys: one unique-index probe per key.
const STORED_WITH_KEYS: &str = "SELECT m.id, m.sender_id, m.room_id, m.room_type, m.kind, m.body, \
    m.image, m.client_id, m.created_at, m.removed \
    FROM UNNEST($1::int8[], $2::text[]) AS k(sender_id, client_id) \
    JOIN messages m ON m.sender_id = k.sender_id AND m.client_id = k.client_id";

type Row = (
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

/// A batch whose rows are inserted by a transaction that is not committed yet, and the outcome of
/// each of its jobs should it commit.
pub(super) struct Open {
    txn: sqlx::Transaction<'static, Postgres>,
    results: Vec<Result<Saved, AppError>>,
}

impl Open {
    /// Commits the transaction; then the outcomes hold.
    pub(super) async fn commit(self) -> Result<Vec<Result<Saved, AppError>>, AppError> {
        self.txn.commit().await.map_err(db_error)?;
        Ok(self.results)
    }

    /// Rolls the transaction back: nothing of the batch is stored.
    pub(super) async fn roll_back(self) {
        if let Err(e) = self.txn.rollback().await {
            tracing::warn!(error = %e, "rolling back a batch of messages failed");
        }
    }
}

fn db_error(e: sqlx::Error) -> AppError {
    AppError::Db(DbErr::Query(RuntimeErr::SqlxError(Arc::new(e))))
}

/// Inserts the jobs at `indexes` of `batch` in a new transaction, left open. The outcomes are in the
/// order of `indexes`.
pub(super) async fn insert<T: Send + Sync>(
    pool: &PgPool,
    batch: &[Job<T>],
    indexes: &[usize],
) -> Result<Open, AppError> {
    let mut txn = pool.begin().await.map_err(db_error)?;
    if indexes.is_empty() {
        return Ok(Open {
            txn,
            results: Vec::new(),
        });
    }
    let jobs: Vec<&Job<T>> = indexes.iter().map(|i| &batch[*i]).collect();
    // PostgreSQL keeps microseconds: the rows handed on carry what a later read returns.
    let now = Utc::now().trunc_subsecs(6);
    let rooms: Vec<String> = jobs.iter().map(|j| j.new.room.id()).collect();
    let inserted: Vec<(i64, i64, Option<String>)> = sqlx::query_as(INSERT)
        .bind(jobs.iter().map(|j| j.new.sender).collect::<Vec<i64>>())
        .bind(&rooms)
        .bind(
            jobs.iter()
                .map(|j| j.new.room.kind())
                .collect::<Vec<&str>>(),
        )
        .bind(
            jobs.iter()
                .map(|j| j.new.kind.as_str())
                .collect::<Vec<&str>>(),
        )
        .bind(
            jobs.iter()
                .map(|j| j.new.body.as_str())
                .collect::<Vec<&str>>(),
        )
        .bind(
            jobs.iter()
                .map(|j| j.new.image.as_str())
                .collect::<Vec<&str>>(),
        )
        .bind(
            jobs.iter()
                .map(|j| j.new.client_id.as_deref())
                .collect::<Vec<Option<&str>>>(),
        )
        .bind(now)
        .fetch_all(&mut *txn)
        .await
        .map_err(db_error)?;

    // The rows come back in the batch's order, without the skipped ones; only rows with a client id
    // can be skipped, and each pairing is checked against the row's sender and client id.
    let mut returned = inserted.into_iter().peekable();
    let mut results: Vec<Option<Result<Saved, AppError>>> = Vec::with_capacity(jobs.len());
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
            results.push(Some(Ok(Saved::New(stored(row, job)))));
        } else if job.new.client_id.is_some() {
            skipped.push(n);
            results.push(None);
        } else {
            return Err(unmatched());
        }
    }
    if returned.next().is_some() {
        return Err(unmatched());
    }

    if !skipped.is_empty() {
        let (senders, client_ids): (Vec<i64>, Vec<&str>) = skipped
            .iter()
            .filter_map(|n| Some((jobs[*n].new.sender, jobs[*n].new.client_id.as_deref()?)))
            .unzip();
        let rows: Vec<Row> = sqlx::query_as(STORED_WITH_KEYS)
            .bind(senders)
            .bind(client_ids)
            .fetch_all(&mut *txn)
            .await
            .map_err(db_error)?;
        let mut existing: std::collections::HashMap<_, _> = rows
            .into_iter()
            .filter_map(|r| {
                let model = message::Model {
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
                };
                Some(((model.sender_id, model.client_id.clone()?), model))
            })
            .collect();
        for n in skipped {
            let job = jobs[n];
            results[n] = Some(match key(&job.new).and_then(|k| existing.remove(&k)) {
                Some(row) => settle_repeat(&job.new, &stored(row, job)),
                // Skipped, yet not there: deleted meanwhile. Rare enough to refuse.
                None => Err(AppError::Unavailable),
            });
        }
    }
    Ok(Open {
        txn,
        results: results
            .into_iter()
            .map(|r| r.unwrap_or(Err(AppError::Unavailable)))
            .collect(),
    })
}

/// The database returned rows that do not pair with the batch's: refuse the batch (it rolls back)
/// rather than answer anyone wrongly.
fn unmatched() -> AppError {
    tracing::error!("the inserted messages returned do not match the batch");
    AppError::Internal(anyhow::anyhow!("inserted rows do not match the batch"))
}
