//! Database connection and migrations.

use std::str::FromStr;
use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteSynchronous,
};
use sea_orm::sqlx::{self, Connection};
use sea_orm::{ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbErr};

/// The PostgreSQL advisory lock held while migrations run ("chatroom" in ASCII).
const MIGRATION_LOCK: i64 = 0x6368_6174_726f_6f6d;

/// How often the WAL of a SQLite file is copied back into the database.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Connects to `url` and brings the schema up to date.
///
/// SQLite files run in WAL mode with `synchronous=NORMAL` (a committed transaction survives a crash of
/// the process; only an OS crash or power cut can lose the newest ones) and a busy timeout, so the
/// pool's readers never block the writer. Checkpoints do not happen inside commits (SQLite's default
/// would make the message writer copy and sync the WAL in the middle of a burst): [`checkpoints`]
/// runs them on a connection of their own. An in-memory SQLite database keeps one connection, because
/// each connection would otherwise see a database of its own.
///
/// On PostgreSQL, migrations run under an advisory lock, so nodes of a cluster starting together apply
/// them once: the first takes the lock and migrates, the others wait for it and find nothing to do.
///
/// # Errors
/// If the database cannot be reached or a migration fails.
pub async fn connect(url: &str, pool: u32) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(url.to_owned());
    let in_memory = in_memory(url);
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
            durable(o)
                // 16 MiB of page cache per connection (taken as pages are read): the message writer
                // keeps the indexes it updates cached instead of reading them back for each batch.
                .pragma("cache_size", "-16384")
                .pragma("wal_autocheckpoint", "0")
                // Rows a statement may hand over before its worker thread waits for the reader: the
                // writer's `INSERT … RETURNING` of a whole batch then runs without a thread switch
                // every 50 rows (sqlx's default), which cost it about a fifth of its throughput.
                .row_buffer_size(4096)
                .create_if_missing(true)
        });
    }
    let db = Database::connect(options).await?;
    if url.starts_with("postgres") {
        migrate_locked(url).await?;
    } else {
        Migrator::up(&db, None).await?;
    }
    Ok(db)
}

/// Whether `url` names an in-memory SQLite database (one per connection unless shared).
fn in_memory(url: &str) -> bool {
    url.contains(":memory:") || url.contains("mode=memory")
}

/// What every connection chatroom opens to a SQLite file shares: WAL mode, `synchronous=NORMAL` (which
/// also decides whether a checkpoint syncs the file) and the busy timeout.
fn durable(options: SqliteConnectOptions) -> SqliteConnectOptions {
    options
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(5))
}

/// Applies the migrations on one PostgreSQL connection of its own, holding [`MIGRATION_LOCK`] (a
/// session lock: the connection must be the same for the lock, the migrations and the unlock).
async fn migrate_locked(url: &str) -> Result<(), DbErr> {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(1)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(5))
        .sqlx_logging(false);
    let session = Database::connect(options).await?;
    session
        .execute_unprepared(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))
        .await?;
    let migrated = Migrator::up(&session, None).await;
    let unlocked = session
        .execute_unprepared(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"))
        .await;
    // Closing the session releases the lock in any case.
    let _ = session.close().await;
    migrated?;
    unlocked.map(|_| ())
}

/// The name of the thread that runs the WAL checkpoints (sqlx gives each SQLite connection a thread).
pub const CHECKPOINT_THREAD: &str = "chatroom-wal-ckpt";

/// Copies a SQLite file's WAL back into the database every second, without waiting for readers or
/// writers (`PASSIVE`): commits never pay for a checkpoint, and the WAL stays small. The checkpoints
/// run on a connection of their own, whose thread ([`CHECKPOINT_THREAD`]) runs below the event loop's
/// priority: a checkpoint copies pages for milliseconds, and on a busy core it waits for the event
/// loop instead of holding messages up. Where that connection cannot be opened, the pool's
/// connections take the checkpoints. Does nothing for other databases. Ends with the runtime.
pub fn checkpoints(db: &DatabaseConnection, url: &str) {
    if !url.starts_with("sqlite:") || in_memory(url) {
        return;
    }
    let db = db.clone();
    let url = url.to_owned();
    tokio::spawn(async move {
        let mut own = match checkpoint_connection(&url).await {
            Ok(conn) => Some(conn),
            Err(e) => {
                tracing::warn!(error = %e, "no connection of its own for WAL checkpoints: using the pool's");
                None
            }
        };
        let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let done = match own.as_mut() {
                Some(conn) => sqlx::query(CHECKPOINT)
                    .execute(conn)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
                None => db
                    .execute_unprepared(CHECKPOINT)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
            };
            if let Err(e) = done {
                tracing::debug!(error = %e, "WAL checkpoint failed");
            }
        }
    });
}

const CHECKPOINT: &str = "PRAGMA wal_checkpoint(PASSIVE)";

/// A connection for checkpoints alone. It is opened from a thread of its own that first demotes
/// itself ([`crate::sys::demote_current_thread`]), so the connection's worker thread, which sqlx starts
/// from there, inherits the low priority; it is named [`CHECKPOINT_THREAD`].
async fn checkpoint_connection(url: &str) -> Result<SqliteConnection, String> {
    let options = durable(SqliteConnectOptions::from_str(url).map_err(|e| e.to_string())?)
        .thread_name(|_| CHECKPOINT_THREAD.to_owned());
    let runtime = tokio::runtime::Handle::current();
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("chatroom-wal-open".to_owned())
        .spawn(move || {
            let opened = crate::sys::demote_current_thread().and_then(|()| {
                runtime
                    .block_on(SqliteConnection::connect_with(&options))
                    .map_err(|e| e.to_string())
            });
            let _ = tx.send(opened);
        })
        .map_err(|e| e.to_string())?;
    rx.await.map_err(|e| e.to_string())?
}
