//! One batch on PostgreSQL: the rows bound as one array per column and expanded by `UNNEST`, so a
//! batch is one statement of eight parameters whatever its size (no per-row placeholders, nothing
//! near the 65 535-parameter bound), and the server parses and plans it once per connection.
//!
//! [`insert`] runs the `INSERT` in a transaction and leaves it open: the caller decides when to
//! [`Open::commit`], which lets the writer insert the next batch while this one commits. Rows whose
//! `(sender, client id)` is already stored are skipped (`ON CONFLICT DO NOTHING`) and looked up with
//! one more statement, bound as arrays too, that probes the unique index once per skipped row.

use chrono::{SubsecRound, Utc};
use sea_orm::sqlx::{self, PgPool, Postgres};

use super::rows::{Row, answer_skipped, db_error, pair};
use super::{Job, Saved};
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

    let (mut results, skipped) = pair(&jobs, rooms, inserted, now)?;
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
        answer_skipped(&jobs, &mut results, skipped, rows);
    }
    Ok(Open { txn, results })
}
