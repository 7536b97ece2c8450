//! One batch in SQL on a connection from the pool: a multi-row `INSERT … VALUES` on SQLite
//! ([`super::sqlite`]), one `INSERT … SELECT … FROM UNNEST` of arrays on PostgreSQL
//! ([`super::postgres`]), both `ON CONFLICT DO NOTHING` on `(sender_id, client_id)`; rows the
//! database skipped are answered from the stored row (a resend) or refused (a client id reused for
//! another message). And one message on its own, the fallback when a batch fails.

use entity::message;
use sea_orm::{ColumnTrait, DatabaseConnection, DbBackend, EntityTrait, QueryFilter};

use super::rows::{db_error, settle_repeat, stored};
use super::{Job, Key, Saved, key, postgres, sqlite};
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
    let mut conn = db
        .get_sqlite_connection_pool()
        .acquire()
        .await
        .map_err(db_error)?;
    sqlite::store(&mut conn, batch, indexes).await
}

/// The stored message with this `(sender, client id)` key: one look-up in the unique index.
async fn stored_with_key(
    db: &DatabaseConnection,
    (sender, client_id): &Key,
) -> Result<Option<message::Model>, AppError> {
    Ok(message::Entity::find()
        .filter(message::Column::SenderId.eq(*sender))
        .filter(message::Column::ClientId.eq(client_id.as_str()))
        .one(db)
        .await?)
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
                && let Ok(Some(row)) = stored_with_key(db, &k).await
            {
                return settle_repeat(&job.new, &stored(row, job));
            }
            tracing::error!(error = %e, "storing a message failed");
            Err(AppError::Unavailable)
        }
    }
}
