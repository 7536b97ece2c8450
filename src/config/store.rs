//! The store: the data directory (SQLite database, uploads and the generated token secret by default)
//! and the database connection.

use std::path::PathBuf;

use clap::Args;

use super::{ConfigError, SecretUrl};

/// Flags for the data directory and the database.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Store")]
pub struct StoreConfig {
    /// Directory for the SQLite database, uploads and the generated token secret.
    #[arg(
        long,
        env = "CHATROOM_DATA_DIR",
        default_value = "./data",
        global = true
    )]
    pub data_dir: PathBuf,

    /// Database URL: `sqlite://path.db` or `postgres://user@host/db`. Default: SQLite in the data dir.
    #[arg(long, env = "DATABASE_URL", global = true)]
    pub database_url: Option<SecretUrl>,

    /// Largest database connection pool. Default: 2 × cores (at least 4) for SQLite, 2 × cores + 2 for
    /// PostgreSQL.
    #[arg(long, env = "CHATROOM_DB_POOL", global = true)]
    pub db_pool: Option<u32>,

    /// Size near which a SQLite file's write-ahead log is started over, in bytes (at least 1 MiB).
    /// While commits never pause the background checkpoints can't finish, so near this size the
    /// message writer finishes one between two batches and the WAL starts over; a WAL that went past
    /// it is cut back to it.
    #[arg(
        long,
        env = "CHATROOM_WAL_LIMIT_BYTES",
        default_value_t = DEFAULT_WAL_LIMIT,
        value_parser = clap::value_parser!(u64).range(MIN_WAL_LIMIT..),
        global = true
    )]
    pub wal_limit_bytes: u64,
}

/// 64 MiB: at the WAL growth of S4's load (about 28 MB/s) the writer finishes a checkpoint every
/// two seconds or so.
pub const DEFAULT_WAL_LIMIT: u64 = 64 << 20;
/// 1 MiB.
pub const MIN_WAL_LIMIT: u64 = 1 << 20;

/// The database connection, resolved.
#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// `sqlite://…` or `postgres://…`; its password is hidden from `Debug`.
    pub database_url: SecretUrl,
    /// Largest connection pool.
    pub pool: u32,
    /// Size near which a SQLite file's WAL is started over, in bytes.
    pub wal_limit: u64,
}

impl StoreConfig {
    /// Creates the data directory and chooses the database URL and pool size.
    ///
    /// # Errors
    /// [`ConfigError::DataDir`] when the data directory cannot be created.
    pub fn resolve(self) -> Result<StoreSettings, ConfigError> {
        std::fs::create_dir_all(&self.data_dir).map_err(|source| ConfigError::DataDir {
            path: self.data_dir.clone(),
            source,
        })?;
        let database_url = self.database_url.unwrap_or_else(|| {
            let path = self.data_dir.join("chatroom.db");
            format!("sqlite://{}?mode=rwc", path.display()).into()
        });
        let is_sqlite = database_url.expose().starts_with("sqlite:");
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get()) as u32;
        // SQLite has one writer but many readers: a couple of connections per core, at least 4.
        let pool = self
            .db_pool
            .unwrap_or(if is_sqlite {
                (2 * cores).max(4)
            } else {
                2 * cores + 2
            })
            .max(1);
        Ok(StoreSettings {
            database_url,
            pool,
            wal_limit: self.wal_limit_bytes,
        })
    }
}

impl StoreSettings {
    /// Test values: the database at `database_url`, one connection.
    pub fn for_tests(database_url: impl Into<String>) -> Self {
        Self {
            database_url: SecretUrl::from(database_url.into()),
            pool: 1,
            wal_limit: DEFAULT_WAL_LIMIT,
        }
    }
}
