//! Database connection and migrations.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqliteSynchronous,
};
use sea_orm::sqlx::{self, Connection};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr, RuntimeErr,
};

/// The PostgreSQL advisory lock held while migrations run ("chatroom" in ASCII).
const MIGRATION_LOCK: i64 = 0x6368_6174_726f_6f6d;

/// How often the WAL of a SQLite file is copied back into the database.
pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Connects to `url` and brings the schema up to date.
///
/// SQLite files run in WAL mode with `synchronous=NORMAL` (a committed transaction survives a crash of
/// the process; only an OS crash or power cut can lose the newest ones) and a busy timeout, so the
/// pool's readers never block the writer. Checkpoints do not happen inside commits (SQLite's default
/// would make the message writer copy and sync the WAL in the middle of a burst): [`checkpoints`]
/// runs them on a connection of their own. A WAL started over is cut back to `wal_limit` bytes
/// (`journal_size_limit`). An in-memory SQLite database keeps one connection, because each connection
/// would otherwise see a database of its own.
///
/// On PostgreSQL, migrations run under an advisory lock, so nodes of a cluster starting together apply
/// them once: the first takes the lock and migrates, the others wait for it and find nothing to do.
///
/// # Errors
/// If the database cannot be reached or a migration fails.
pub async fn connect(url: &str, pool: u32, wal_limit: u64) -> Result<DatabaseConnection, DbErr> {
    let in_memory = in_memory(url);
    let mut options = pool_options(url, if in_memory { 1 } else { pool });
    if in_memory {
        // The database lives as long as its last connection: never let the pool close it.
        keep_open(&mut options);
    } else if url.starts_with("sqlite:") {
        options.map_sqlx_sqlite_opts(move |o| tuned(o, wal_limit).create_if_missing(true));
    }
    let db = Database::connect(options).await?;
    if url.starts_with("postgres") {
        migrate_locked(url).await?;
    } else {
        Migrator::up(&db, None).await?;
    }
    Ok(db)
}

/// The store's connections: the pool the application shares, and the message writer's.
#[derive(Debug, Clone)]
pub struct Store {
    /// Requests, sign-ins, reads and every write but the messages'.
    pub pool: DatabaseConnection,
    /// The message writer's: on a SQLite file a connection of its own (kept open, its page cache warm),
    /// elsewhere the pool.
    pub writer: DatabaseConnection,
    /// Whether [`writer`](Self::writer) is the writer's alone (a SQLite file), so that it may keep
    /// the connection between batches.
    pub writer_is_own: bool,
    /// A SQLite file's write-ahead log, which the message writer starts over near its limit.
    pub wal: Option<WalLimit>,
}

/// A SQLite file's write-ahead log and the size near which the message writer starts it over.
///
/// SQLite starts its WAL over when a write transaction begins and finds every frame copied back into
/// the database. The background checkpoints ([`checkpoints`]) run beside the writer, which under a
/// steady load commits again before one ends: each copies what was there when it began, never all,
/// and the WAL would grow for as long as the load lasts. So the writer runs a checkpoint itself
/// ([`checkpoint`]) between two batches: there it is the only connection appending (but for the pool's
/// rarer writes), so the checkpoint finishes and the writer's next batch starts the WAL over.
///
/// When: the background checkpoints ask for it ([`request`](Self::request)) when the WAL would pass
/// the limit before their next run; asked right after one, the writer finds all but a few
/// milliseconds' frames copied already. Should they fall behind (on a saturated core they run last),
/// the writer also looks at the file's size now and then, and starts the WAL over once it is past the
/// limit, cutting the file back to it (`journal_size_limit`).
#[derive(Debug, Clone)]
pub struct WalLimit {
    /// The `-wal` file.
    pub path: PathBuf,
    /// Bytes.
    pub bytes: u64,
    requested: Arc<AtomicBool>,
}

impl WalLimit {
    /// Asks the writer to start the WAL over after its next batch.
    pub fn request(&self) {
        self.requested.store(true, Ordering::Relaxed);
    }

    /// Whether a restart was asked for since the last call; clears the request.
    pub fn requested(&self) -> bool {
        // A load first: the writer asks after every batch, and requests are rare.
        self.requested.load(Ordering::Relaxed) && self.requested.swap(false, Ordering::Relaxed)
    }

    /// Whether the file is past the limit. The file keeps its size when the WAL starts over, and is
    /// written again from its beginning: it grows past the limit only when the WAL does.
    pub fn passed(&self) -> bool {
        self.size() > self.bytes
    }

    /// The file's size in bytes (0 while there is no file).
    pub fn size(&self) -> u64 {
        std::fs::metadata(&self.path).map_or(0, |m| m.len())
    }
}

/// Connects to `url` ([`connect`]) and opens the message writer's connection.
///
/// # Errors
/// If the database cannot be reached or a migration fails.
pub async fn open(url: &str, pool: u32, wal_limit: u64) -> Result<Store, DbErr> {
    let pool = connect(url, pool, wal_limit).await?;
    let writer_is_own = url.starts_with("sqlite:") && !in_memory(url);
    let (writer, wal) = if writer_is_own {
        let writer = writer_connection(url, wal_limit).await?;
        let wal = wal_path(&writer).await?.map(|path| WalLimit {
            path,
            bytes: wal_limit,
            requested: Arc::default(),
        });
        (writer, wal)
    } else {
        // An in-memory database lives in the pool's one connection; PostgreSQL keeps no cache per
        // connection that a rotation through the pool would throw away.
        (pool.clone(), None)
    };
    Ok(Store {
        pool,
        writer,
        writer_is_own,
        wal,
    })
}

/// The WAL file of the database `db` is connected to: SQLite names the main database's file.
async fn wal_path(db: &DatabaseConnection) -> Result<Option<PathBuf>, DbErr> {
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            DbBackend::Sqlite,
            "SELECT file FROM pragma_database_list WHERE name = 'main'",
        ))
        .await?;
    let file: Option<String> = row.map(|r| r.try_get("", "file")).transpose()?;
    Ok(file
        .filter(|f| !f.is_empty())
        .map(|f| PathBuf::from(format!("{f}-wal"))))
}

/// The name of the thread of the message writer's SQLite connection.
pub const WRITER_THREAD: &str = "chatroom-writer";

/// A SQLite file's connection for the message writer alone, kept open for the server's life.
///
/// Every batch of messages is one transaction, and a transaction that finds the WAL changed by another
/// connection since its own last one empties its page cache and reads the pages it needs again. The
/// pool hands its idle connections out in turn, so through the pool nearly every batch ran on a
/// connection another had written behind, and read the table's and indexes' pages back from the file
/// (S4 with `login`: a third of SQLite's thread time). On a connection of its own the writer finds its
/// pages where it left them; only the pool's rarer writes (read marks, sign-ups) make it read again.
async fn writer_connection(url: &str, wal_limit: u64) -> Result<DatabaseConnection, DbErr> {
    let mut options = pool_options(url, 1);
    keep_open(&mut options);
    options.map_sqlx_sqlite_opts(move |o| {
        tuned(o, wal_limit).thread_name(|_| WRITER_THREAD.to_owned())
    });
    Database::connect(options).await
}

/// The settings every pool of the application's shares: up to `max` connections, one kept, five
/// seconds to connect or to wait for a free one, no statement logging (statements carry message
/// bodies). A SQLite connection lives in this process: nothing can hang up on it, and a ping before
/// each use would be one more round trip to its thread, so it is not tested before use.
fn pool_options(url: &str, max: u32) -> ConnectOptions {
    let mut options = ConnectOptions::new(url.to_owned());
    options
        .max_connections(max)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(5))
        .sqlx_logging(false);
    if url.starts_with("sqlite:") {
        options.test_before_acquire(false);
    }
    options
}

/// Never closes a pool's connections for idleness or age.
fn keep_open(options: &mut ConnectOptions) {
    options
        .idle_timeout(None::<Duration>)
        .max_lifetime(None::<Duration>);
}

/// The settings of the connections that carry the application's work (the checkpoint connection
/// takes only [`durable`]'s).
fn tuned(options: SqliteConnectOptions, wal_limit: u64) -> SqliteConnectOptions {
    durable(options)
        // The connection that starts the WAL over cuts the file back to this size.
        .pragma("journal_size_limit", wal_limit.to_string())
        // 16 MiB of page cache per connection (taken as pages are read): the message writer keeps the
        // indexes it updates cached instead of reading them back for each batch.
        .pragma("cache_size", "-16384")
        .pragma("wal_autocheckpoint", "0")
        // Rows a statement may hand over before its worker thread waits for the reader: the writer's
        // `INSERT … RETURNING` of a whole batch then runs without a thread switch every 50 rows
        // (sqlx's default), which cost it about a fifth of its throughput.
        .row_buffer_size(4096)
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

/// Gives back what a SQLite pool holds once a crowd has left: its page cache (`shrink_memory`: this
/// build of SQLite, with memory management enabled, keeps one cache for all connections, so one call
/// empties it of every page not in use) and its idle connections but the one that ran the pragma, whose
/// threads take their allocator caches with them when they end. The pool opens connections again as
/// work returns, and the cache fills again as pages are read. Never closes the last connection (an
/// in-memory database lives in it), nor one in use. Does nothing for other databases.
///
/// # Errors
/// If the pool cannot run the pragma; connections closed before that stay closed.
pub async fn release_after_peak(db: &DatabaseConnection) -> Result<(), DbErr> {
    if db.get_database_backend() != DbBackend::Sqlite {
        return Ok(());
    }
    let pool = db.get_sqlite_connection_pool();
    let released = async {
        let mut kept = pool.acquire().await?;
        sqlx::query("PRAGMA shrink_memory")
            .execute(&mut *kept)
            .await?;
        while let Some(idle) = pool.try_acquire() {
            // A connection that fails to close cleanly is gone all the same.
            let _ = idle.close().await;
        }
        Ok::<_, sqlx::Error>(())
    };
    released
        .await
        .map_err(|e| DbErr::Conn(RuntimeErr::SqlxError(Arc::new(e))))?;
    Ok(())
}

/// The name of the thread that runs the WAL checkpoints (sqlx gives each SQLite connection a thread).
pub const CHECKPOINT_THREAD: &str = "chatroom-wal-ckpt";

/// Copies a SQLite file's WAL back into the database every `every` (the server: [`CHECKPOINT_EVERY`]),
/// without waiting for readers or writers (`PASSIVE`): commits never pay for a checkpoint. The
/// checkpoints run on a connection of their own, whose thread ([`CHECKPOINT_THREAD`]) runs below the
/// event loop's priority: a checkpoint copies pages for milliseconds, and on a busy core it waits for
/// the event loop instead of holding messages up. Where that connection cannot be opened, the pool's
/// connections take the checkpoints. Under a load that never pauses they can't finish; they ask the
/// message writer to start the WAL over when it nears the store's limit, and leave it to the writer
/// once it is past it ([`WalLimit`]). Does nothing for other databases. Ends with the runtime.
pub fn checkpoints(store: &Store, url: &str, every: Duration) {
    if !url.starts_with("sqlite:") || in_memory(url) {
        return;
    }
    let db = store.pool.clone();
    let wal = store.wal.clone();
    let url = url.to_owned();
    tokio::spawn(async move {
        let mut own = match checkpoint_connection(&url).await {
            Ok(conn) => Some(conn),
            Err(e) => {
                tracing::warn!(error = %e, "no connection of its own for WAL checkpoints: using the pool's");
                None
            }
        };
        let page_size = match own.as_mut() {
            Some(conn) => page_size(conn).await,
            None => page_size(db.get_sqlite_connection_pool()).await,
        };
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last = 0;
        loop {
            tick.tick().await;
            if wal.as_ref().is_some_and(WalLimit::passed) {
                // The writer is starting it over: a checkpoint here, slow on a saturated core, would
                // only hold the checkpoint lock it needs.
                continue;
            }
            let done = match own.as_mut() {
                Some(conn) => checkpoint(conn).await,
                None => checkpoint(db.get_sqlite_connection_pool()).await,
            };
            match done {
                Ok(done) => {
                    if let Some(wal) = &wal
                        && restart_due(done.frames, last, page_size, wal.bytes)
                    {
                        wal.request();
                    }
                    last = done.frames;
                }
                Err(e) => tracing::debug!(error = %e, "WAL checkpoint failed"),
            }
        }
    });
}

/// Whether the WAL should start over now: when it holds `frames` (of `page_size` bytes) after `last`
/// at the previous checkpoint, and would pass `limit` bytes were it to grow as much again before the
/// next one.
fn restart_due(frames: u64, last: u64, page_size: u64, limit: u64) -> bool {
    // Fewer frames than last time: the WAL started over in between, and all of them are new.
    let grown = if frames >= last {
        frames - last
    } else {
        frames
    };
    // A frame is a page and its 24-byte header; the WAL's own header is 32 bytes.
    32 + frames.saturating_add(grown).saturating_mul(page_size + 24) > limit
}

/// What a checkpoint found and did.
#[derive(Debug, Clone, Copy)]
pub struct Checkpointed {
    /// Whether it could not start (another checkpoint was running) or not finish.
    pub busy: bool,
    /// Frames in the WAL.
    pub frames: u64,
    /// Frames of those copied back into the database, by this checkpoint or earlier ones.
    pub copied: u64,
}

impl Checkpointed {
    /// Whether every frame is back in the database: the next write transaction starts the WAL over
    /// (unless a reader still uses it).
    pub fn finished(&self) -> bool {
        !self.busy && self.copied == self.frames
    }
}

/// Runs a `PASSIVE` checkpoint of a SQLite file's WAL on `conn` (a connection or a pool).
///
/// # Errors
/// If the connection fails.
pub async fn checkpoint<'c, E>(conn: E) -> Result<Checkpointed, sqlx::Error>
where
    E: sqlx::Executor<'c, Database = sqlx::Sqlite>,
{
    let (busy, frames, copied): (i64, i64, i64) =
        sqlx::query_as(CHECKPOINT).fetch_one(conn).await?;
    // SQLite answers -1 for frames it cannot count (the database is not in WAL mode).
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    Ok(Checkpointed {
        busy: busy != 0,
        frames: count(frames),
        copied: count(copied),
    })
}

const CHECKPOINT: &str = "PRAGMA wal_checkpoint(PASSIVE)";

/// The database's page size; SQLite's default when it can't be read.
async fn page_size<'c, E>(conn: E) -> u64
where
    E: sqlx::Executor<'c, Database = sqlx::Sqlite>,
{
    sqlx::query_scalar::<_, i64>("PRAGMA page_size")
        .fetch_one(conn)
        .await
        .ok()
        .and_then(|n| u64::try_from(n).ok())
        .unwrap_or(4096)
}

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

#[cfg(test)]
mod tests {
    use futures_util::future::try_join_all;
    use sea_orm::{ConnectionTrait, Statement};

    use super::*;
    use crate::config::store::DEFAULT_WAL_LIMIT;

    /// Rows in `t`, read through the pool.
    async fn rows(db: &DatabaseConnection) -> i64 {
        let row = db
            .query_one_raw(Statement::from_string(
                DbBackend::Sqlite,
                "SELECT count(*) AS n FROM t",
            ))
            .await
            .expect("count")
            .expect("a row");
        row.try_get("", "n").expect("n")
    }

    #[tokio::test]
    async fn a_release_after_a_peak_closes_idle_connections_and_keeps_every_row() {
        let dir = tempfile::tempdir().expect("dir");
        let url = format!("sqlite://{}/chat.db?mode=rwc", dir.path().display());
        let db = connect(&url, 4, DEFAULT_WAL_LIMIT).await.expect("connect");
        db.execute_unprepared("CREATE TABLE t (x INTEGER)")
            .await
            .expect("create");
        db.execute_unprepared(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5000) \
             INSERT INTO t SELECT i FROM n",
        )
        .await
        .expect("insert");
        let pool = db.get_sqlite_connection_pool();
        // A crowd's worth of work: four connections at once.
        let held = try_join_all((0..4).map(|_| pool.acquire()))
            .await
            .expect("four connections");
        drop(held);
        // Dropped connections go back to the pool in a task of their own.
        for _ in 0..100 {
            if pool.num_idle() == 4 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(pool.num_idle(), 4);

        release_after_peak(&db).await.expect("release");

        assert_eq!(pool.size(), 1, "idle connections beyond one are closed");
        assert_eq!(rows(&db).await, 5000);
        // Work comes back: the pool opens connections again.
        let held = try_join_all((0..3).map(|_| pool.acquire()))
            .await
            .expect("three connections again");
        drop(held);
        assert_eq!(rows(&db).await, 5000);
    }

    #[tokio::test]
    async fn the_writer_has_a_connection_of_its_own_on_a_file_and_shares_the_memory_one() {
        let dir = tempfile::tempdir().expect("dir");
        let url = format!("sqlite://{}/chat.db?mode=rwc", dir.path().display());
        let store = open(&url, 4, DEFAULT_WAL_LIMIT).await.expect("open");
        store
            .writer
            .execute_unprepared("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1), (2), (3)")
            .await
            .expect("write through the writer's connection");
        // What the writer commits, the pool reads; and the pool's writes reach the writer.
        assert_eq!(rows(&store.pool).await, 3);
        store
            .pool
            .execute_unprepared("INSERT INTO t VALUES (4)")
            .await
            .expect("write through the pool");
        assert_eq!(rows(&store.writer).await, 4);
        let writer = store.writer.get_sqlite_connection_pool();
        assert_eq!(writer.size(), 1, "one connection, kept open");
        assert_eq!(writer.options().get_max_connections(), 1);
        // Closing the pool's idle connections after a peak leaves the writer's alone.
        release_after_peak(&store.pool).await.expect("release");
        assert_eq!(writer.size(), 1);

        // An in-memory database lives in one connection: the writer must use that very one.
        let memory = open("sqlite::memory:", 4, DEFAULT_WAL_LIMIT)
            .await
            .expect("open");
        memory
            .writer
            .execute_unprepared("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1)")
            .await
            .expect("create");
        assert_eq!(rows(&memory.pool).await, 1);
    }

    #[test]
    fn the_wal_starts_over_before_it_would_pass_its_limit() {
        const MIB: u64 = 1 << 20;
        // 4 KiB pages: a frame is 4,120 bytes, 16,287 frames fill 64 MiB.
        let frames = |mb: u64| mb * MIB / 4120;
        // Growing 20 MiB a run: at 40 MiB the next run would reach 60, at 50 it would reach 70.
        assert!(!restart_due(frames(40), frames(20), 4096, 64 * MIB));
        assert!(restart_due(frames(50), frames(30), 4096, 64 * MIB));
        // Idle: no growth, no restart below the limit; past it, a restart.
        assert!(!restart_due(frames(63), frames(63), 4096, 64 * MIB));
        assert!(restart_due(frames(65), frames(65), 4096, 64 * MIB));
        // Started over since the last run: every frame is new, 40 MiB now would be 80 by the next.
        assert!(restart_due(frames(40), frames(60), 4096, 64 * MIB));
        assert!(!restart_due(frames(10), frames(60), 4096, 64 * MIB));
    }

    #[tokio::test]
    async fn an_in_memory_database_outlives_a_release() {
        let db = connect("sqlite::memory:", 4, DEFAULT_WAL_LIMIT)
            .await
            .expect("connect");
        db.execute_unprepared("CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1), (2)")
            .await
            .expect("create");

        release_after_peak(&db).await.expect("release");

        assert_eq!(db.get_sqlite_connection_pool().size(), 1);
        assert_eq!(rows(&db).await, 2);
    }
}
