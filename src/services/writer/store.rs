//! One batch in SQL: a multi-row `INSERT … VALUES` on SQLite, one `INSERT … SELECT … FROM UNNEST`
//! of arrays on PostgreSQL ([`super::postgres`]), both `ON CONFLICT DO NOTHING` on
//! `(sender_id, client_id)`; rows the database skipped are answered from the stored row (a resend) or
//! refused (a client id reused for another message).

use std::collections::HashMap;

use entity::message;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DatabaseConnection, DbBackend, EntityTrait,
    QueryFilter, TransactionTrait,
};

use super::rows::{settle_repeat, stored};
use super::{Job, Key, ROWS_PER_STATEMENT, Saved, key, postgres};
use crate::error::AppError;
use crate::services::messages;

/// Stores the jobs at `indexes` of `batch` in one transaction. Rows whose `(sender, client id)` is
/// already stored are skipped by the database (`ON CONFLICT DO NOTHING`) and answered from the stored row.
pub(super) async fn store<T: Send + Sync>(
    db: &DatabaseConnection,
    batch: &[Job<T>],
    indexes: &[usize],
) -> Result<Vec<Result<Saved, AppError>>, AppError> {
    if indexes.is_empty() {
        return Ok(Vec::new());
    }
    if db.get_database_backend() == DbBackend::Postgres {
        return postgres::insert(db.get_postgres_connection_pool(), batch, indexes)
            .await?
            .commit()
            .await;
    }
    let jobs: Vec<&Job<T>> = indexes.iter().map(|i| &batch[*i]).collect();
    if jobs.len() <= ROWS_PER_STATEMENT {
        // One statement is a transaction of its own: no BEGIN and COMMIT, each a round trip to the
        // database thread (and, on a busy core, a thread switch each way).
        let inserted = insert_as_values(db, &jobs).await?;
        return answer(db, &jobs, inserted).await;
    }
    let txn = db.begin().await?;
    let inserted = insert_as_values(&txn, &jobs).await?;
    let results = answer(&txn, &jobs, inserted).await?;
    txn.commit().await?;
    Ok(results)
}

/// Each job's result: its inserted row, or for a job the database skipped, the row stored before it.
async fn answer<C: ConnectionTrait, T>(
    db: &C,
    jobs: &[&Job<T>],
    inserted: Vec<message::Model>,
) -> Result<Vec<Result<Saved, AppError>>, AppError> {
    let (mut results, skipped) = match_rows(jobs, inserted);
    if !skipped.is_empty() {
        let keys: Vec<Key> = skipped.iter().filter_map(|i| key(&jobs[*i].new)).collect();
        let existing = stored_with_keys(db, &keys).await?;
        for i in skipped {
            let job = jobs[i];
            results[i] = Some(match key(&job.new).and_then(|k| existing.get(&k)) {
                Some(row) => settle_repeat(&job.new, &stored(row.clone(), job)),
                // Skipped, yet not there: deleted meanwhile. Rare enough to refuse.
                None => Err(AppError::Unavailable),
            });
        }
    }
    Ok(results
        .into_iter()
        .map(|r| r.unwrap_or(Err(AppError::Unavailable)))
        .collect())
}

/// The multi-row `INSERT … VALUES` SQLite runs fast (PostgreSQL takes arrays: [`postgres`]).
async fn insert_as_values<C: ConnectionTrait, T>(
    txn: &C,
    jobs: &[&Job<T>],
) -> Result<Vec<message::Model>, AppError> {
    let mut inserted: Vec<message::Model> = Vec::with_capacity(jobs.len());
    for chunk in jobs.chunks(ROWS_PER_STATEMENT) {
        let rows = chunk.iter().map(|job| job.new.to_row());
        let mut returned = message::Entity::insert_many(rows)
            .on_conflict(
                OnConflict::columns([message::Column::SenderId, message::Column::ClientId])
                    .do_nothing()
                    .to_owned(),
            )
            .exec_with_returning(txn)
            .await?;
        inserted.append(&mut returned);
    }
    Ok(inserted)
}

/// Pairs inserted rows with their jobs. A multi-row INSERT assigns increasing ids in the order of its
/// rows on both SQLite and PostgreSQL, and only rows with a client id can be skipped; each pairing is
/// still checked against the row's content, and a row that does not fit is looked up by content.
/// Returns the results (by job index) and the indexes of the jobs the database skipped.
fn match_rows<T>(
    jobs: &[&Job<T>],
    mut inserted: Vec<message::Model>,
) -> (Vec<Option<Result<Saved, AppError>>>, Vec<usize>) {
    inserted.sort_by_key(|m| m.id);
    let inserted_keys: HashMap<Key, usize> = inserted
        .iter()
        .enumerate()
        .filter_map(|(n, m)| Some(((m.sender_id, m.client_id.clone()?), n)))
        .collect();
    let mut taken = vec![false; inserted.len()];
    let mut results: Vec<Option<Result<Saved, AppError>>> = (0..jobs.len()).map(|_| None).collect();
    let mut skipped = Vec::new();
    let mut next = 0;
    for (i, job) in jobs.iter().enumerate() {
        let found = match key(&job.new) {
            Some(k) => match inserted_keys.get(&k) {
                Some(n) => Some(*n),
                None => {
                    skipped.push(i);
                    continue;
                }
            },
            None => {
                while next < inserted.len() && taken[next] {
                    next += 1;
                }
                let fits = next < inserted.len()
                    && inserted[next].client_id.is_none()
                    && job.new.is_same_as(&inserted[next]);
                if fits {
                    Some(next)
                } else {
                    (0..inserted.len()).find(|n| {
                        !taken[*n]
                            && inserted[*n].client_id.is_none()
                            && job.new.is_same_as(&inserted[*n])
                    })
                }
            }
        };
        results[i] = Some(match found {
            Some(n) => {
                taken[n] = true;
                Ok(Saved::New(stored(inserted[n].clone(), job)))
            }
            None => {
                tracing::error!("an inserted message was not returned by the database");
                Err(AppError::Unavailable)
            }
        });
    }
    (results, skipped)
}

/// Stored messages with these `(sender, client id)` keys, by key. Each key is one look-up in the
/// unique index, however many messages are stored.
async fn stored_with_keys<C: ConnectionTrait>(
    db: &C,
    keys: &[Key],
) -> Result<HashMap<Key, message::Model>, AppError> {
    let mut found = HashMap::with_capacity(keys.len());
    for chunk in keys.chunks(ROWS_PER_STATEMENT) {
        let mut any = Condition::any();
        for (sender, client_id) in chunk {
            any = any.add(
                Condition::all()
                    .add(message::Column::SenderId.eq(*sender))
                    .add(message::Column::ClientId.eq(client_id.as_str())),
            );
        }
        let rows = message::Entity::find().filter(any).all(db).await?;
        for row in rows {
            if let Some(client_id) = row.client_id.clone() {
                found.insert((row.sender_id, client_id), row);
            }
        }
    }
    Ok(found)
}

/// Stores one job on its own (the fallback when a batch fails).
pub(super) async fn store_one<T: Send + Sync>(
    db: &DatabaseConnection,
    job: &Job<T>,
) -> Result<Saved, AppError> {
    match messages::insert(db, job.new.clone(), job.author.clone()).await {
        Ok(m) => Ok(Saved::New(m)),
        Err(e) => {
            // A repeat that raced us in (from another node): answer from the stored row.
            if let Some(k) = key(&job.new)
                && let Ok(mut existing) = stored_with_keys(db, std::slice::from_ref(&k)).await
                && let Some(row) = existing.remove(&k)
            {
                return settle_repeat(&job.new, &stored(row, job));
            }
            tracing::error!(error = %e, "storing a message failed");
            Err(AppError::Unavailable)
        }
    }
}
