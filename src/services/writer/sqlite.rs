//! One batch on SQLite, on a connection the writer keeps between batches: a multi-row
//! `INSERT … VALUES … ON CONFLICT DO NOTHING RETURNING`, one statement (so a transaction of its own)
//! for up to [`ROWS_PER_STATEMENT`] rows, and for more, one transaction around several. Rows whose
//! `(sender, client id)` is already stored are skipped and looked up in the unique index.
//!
//! Written for sqlx directly rather than through sea-orm: sea-orm takes a connection from its pool
//! for each statement and gives it back after, and sqlx tests every connection given back with a
//! round trip to its thread. Kept by the writer, the connection makes one round trip per statement.

use chrono::Utc;
use sea_orm::sqlx::{self, AssertSqlSafe, Connection, SqliteConnection};

use super::rows::{Outcomes, Returned, Row, answer_skipped, db_error, pair};
use super::{Job, ROWS_PER_STATEMENT};
use crate::error::AppError;

const INSERT: &str = "INSERT INTO messages \
    (sender_id, room_id, room_type, kind, body, image, client_id, created_at) VALUES ";
const ROW: &str = "(?, ?, ?, ?, ?, ?, ?, ?)";
const ON_CONFLICT: &str =
    " ON CONFLICT (sender_id, client_id) DO NOTHING RETURNING id, sender_id, client_id";

const STORED: &str = "SELECT id, sender_id, room_id, room_type, kind, body, image, client_id, \
    created_at, removed FROM messages WHERE ";
const KEY: &str = "(sender_id = ? AND client_id = ?)";

/// Stores the jobs at `indexes` of `batch`; the outcomes are in the order of `indexes`.
pub(super) async fn store<T>(
    conn: &mut SqliteConnection,
    batch: &[Job<T>],
    indexes: &[usize],
) -> Result<Outcomes, AppError> {
    let jobs: Vec<&Job<T>> = indexes.iter().map(|i| &batch[*i]).collect();
    if jobs.len() <= ROWS_PER_STATEMENT {
        // One statement is a transaction of its own: no BEGIN and COMMIT, each a round trip to the
        // connection's thread.
        return insert(conn, &jobs).await;
    }
    let mut txn = conn.begin().await.map_err(db_error)?;
    let mut results = Vec::with_capacity(jobs.len());
    for chunk in jobs.chunks(ROWS_PER_STATEMENT) {
        results.append(&mut insert(&mut txn, chunk).await?);
    }
    txn.commit().await.map_err(db_error)?;
    Ok(results)
}

/// One `INSERT` of at most [`ROWS_PER_STATEMENT`] jobs, and the look-up of the rows it skipped.
async fn insert<T>(conn: &mut SqliteConnection, jobs: &[&Job<T>]) -> Result<Outcomes, AppError> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let now = Utc::now();
    let rooms: Vec<String> = jobs.iter().map(|j| j.new.room.id()).collect();
    // Built of the constants above and placeholders only: nothing of a message is in the text.
    let sql = listed(INSERT, ROW, ", ", jobs.len(), ON_CONFLICT);
    let mut query = sqlx::query_as::<_, Returned>(AssertSqlSafe(sql));
    for (job, room) in jobs.iter().zip(&rooms) {
        query = query
            .bind(job.new.sender)
            .bind(room.as_str())
            .bind(job.new.room.kind())
            .bind(job.new.kind.as_str())
            .bind(job.new.body.as_str())
            .bind(job.new.image.as_str())
            .bind(job.new.client_id.as_deref())
            .bind(now);
    }
    let inserted = query.fetch_all(&mut *conn).await.map_err(db_error)?;

    let (mut results, skipped) = pair(jobs, rooms, inserted, now)?;
    if !skipped.is_empty() {
        let sql = listed(STORED, KEY, " OR ", skipped.len(), "");
        let mut query = sqlx::query_as::<_, Row>(AssertSqlSafe(sql)).persistent(false);
        for n in &skipped {
            query = query
                .bind(jobs[*n].new.sender)
                .bind(jobs[*n].new.client_id.as_deref());
        }
        let rows = query.fetch_all(&mut *conn).await.map_err(db_error)?;
        answer_skipped(jobs, &mut results, skipped, rows);
    }
    Ok(results)
}

/// `head`, then `item` `n` times with `between` between them, then `tail`.
fn listed(head: &str, item: &str, between: &str, n: usize, tail: &str) -> String {
    let mut sql = String::with_capacity(head.len() + n * (item.len() + between.len()) + tail.len());
    sql.push_str(head);
    for i in 0..n {
        if i > 0 {
            sql.push_str(between);
        }
        sql.push_str(item);
    }
    sql.push_str(tail);
    sql
}
