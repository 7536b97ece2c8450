//! Database connection and migrations.

use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{ConnectOptions, Database, DatabaseConnection, DbErr};

/// Connects to `url` and brings the schema up to date.
///
/// SQLite files run in WAL mode with `synchronous=NORMAL` (a committed transaction survives a crash of
/// the process; only an OS crash or power cut can lose the newest ones) and a busy timeout, so the
/// pool's readers never block the writer. An in-memory SQLite database keeps one connection, because
/// each connection would otherwise see a database of its own.
///
/// # Errors
/// If the database cannot be reached or a migration fails.
pub async fn connect(url: &str, pool: u32) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(url.to_owned());
    let in_memory = url.contains(":memory:") || url.contains("mode=memory");
    options
        .max_connections(if in_memory { 1 } else { pool })
        .min_connections(1)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(5))
        .sqlx_logging(false);
    if in_memory {
        // The database lives as long as its last connection: never let the pool close it.
        options
            .idle_timeout(None::<Duration>)
            .max_lifetime(None::<Duration>);
    } else if url.starts_with("sqlite:") {
        options.map_sqlx_sqlite_opts(|o| {
            o.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(5))
                // 16 MiB of page cache per connection (taken as pages are read): the message writer
                // keeps the indexes it updates cached instead of reading them back for each batch.
                .pragma("cache_size", "-16384")
                .create_if_missing(true)
        });
    }
    let db = Database::connect(options).await?;
    Migrator::up(&db, None).await?;
    Ok(db)
}
