//! Runtime configuration: command-line flags, each with an environment variable, grouped by area.
//!
//! [`Config`] is what the operator gives us; [`Settings`] is what the server runs with once defaults
//! are resolved (data directory created, database URL chosen, token secret loaded or generated). Each
//! area has a module holding its flags, its resolved settings, how the one becomes the other, and its
//! test values:
//!
//! * [`http`]     – listening, serving, CORS, connection caps and timeouts, proxies, `/metrics`.
//! * [`store`]    – the data directory and the database.
//! * [`auth`]     – the token secret and lifetime, password hashing, sign-up and sign-in limits.
//! * [`realtime`] – rooms, VIP users, the robot, message length, per-socket and per-user limits.
//! * [`uploads`]  – where pictures are stored, their size, and per-user limits.
//! * [`cluster`]  – the Redis that joins nodes.
//!
//! Secrets and URLs that may carry a password are wrapped ([`secret`]), so every `Debug` is derived
//! and none prints them.

pub mod auth;
pub mod cluster;
pub mod http;
pub mod realtime;
pub mod secret;
pub mod store;
pub mod uploads;

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

pub use self::auth::{AuthConfig, AuthSettings};
pub use self::cluster::{ClusterConfig, ClusterSettings};
pub use self::http::{DEFAULT_PORT, HttpConfig, HttpSettings, default_max_connections};
pub use self::realtime::{RealtimeConfig, RealtimeSettings};
pub use self::secret::{Secret, SecretUrl, redact_url};
pub use self::store::{StoreConfig, StoreSettings};
pub use self::uploads::{UploadSettings, UploadsConfig};
pub use crate::proxy::TrustedProxies;

/// chatroom: a Socket.IO chat server for the webchat Vue clients.
#[derive(Debug, Clone, Parser)]
#[command(name = "chatroom", version, about)]
pub struct Config {
    #[command(flatten)]
    pub http: HttpConfig,

    #[command(flatten)]
    pub store: StoreConfig,

    #[command(flatten)]
    pub auth: AuthConfig,

    #[command(flatten)]
    pub realtime: RealtimeConfig,

    #[command(flatten)]
    pub uploads: UploadsConfig,

    #[command(flatten)]
    pub cluster: ClusterConfig,

    /// Log format.
    #[arg(long, env = "CHATROOM_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human,
          help_heading = "Logging", global = true)]
    pub log_format: LogFormat,

    /// Without a command, the server runs.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// What the binary does besides serving.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Operators: grant or revoke the admin role (safe while the server runs; holds from the user's
    /// next request). Reads the same store flags and environment as the server.
    Admin {
        #[command(subcommand)]
        action: AdminAction,
    },
}

/// `chatroom admin …`.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum AdminAction {
    /// Makes user NAME an admin.
    Grant {
        /// The user's name.
        name: String,
    },
    /// Makes admin NAME a member again.
    Revoke {
        /// The user's name.
        name: String,
    },
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Readable lines for a terminal.
    Human,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot use the data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read or write the token secret file {path}: {source}")]
    SecretFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the token secret must be at least 32 bytes long")]
    WeakSecret,
    #[error("invalid listen address {0}")]
    Address(String),
    #[error(
        "at least one group room is required, and room names must be 1–32 letters, digits or _"
    )]
    Rooms,
    #[error("invalid trusted proxy {0}: expected an IP address or a CIDR range")]
    TrustedProxy(String),
    #[error("invalid Redis URL: {0}")]
    RedisUrl(String),
}

/// Everything the server needs at run time, with defaults resolved, by area. `Debug` hides secrets
/// and passwords in URLs, so the whole of it may be logged.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Listening, serving and connections.
    pub http: HttpSettings,
    /// The database.
    pub store: StoreSettings,
    /// Tokens, passwords and sign-up and sign-in limits.
    pub auth: AuthSettings,
    /// Rooms, messages and sockets.
    pub realtime: RealtimeSettings,
    /// Uploaded pictures and avatars.
    pub uploads: UploadSettings,
    /// The cluster's Redis.
    pub cluster: ClusterSettings,
}

impl Config {
    /// Resolves defaults area by area, creating the data directory and the token secret file when
    /// needed.
    ///
    /// # Errors
    /// A [`ConfigError`] when a directory or the secret file cannot be used, or a value is invalid.
    pub fn resolve(self) -> Result<Settings, ConfigError> {
        let data_dir = self.store.data_dir.clone();
        Ok(Settings {
            http: self.http.resolve()?,
            store: self.store.resolve()?,
            auth: self.auth.resolve(&data_dir)?,
            realtime: self.realtime.resolve()?,
            uploads: self.uploads.resolve(&data_dir),
            cluster: self.cluster.resolve()?,
        })
    }
}

impl Settings {
    /// Settings for tests and embedding: everything explicit, nothing read from the environment.
    pub fn for_tests(database_url: impl Into<String>, upload_dir: impl Into<PathBuf>) -> Self {
        Self {
            http: HttpSettings::for_tests(),
            store: StoreSettings::for_tests(database_url),
            auth: AuthSettings::for_tests(),
            realtime: RealtimeSettings::for_tests(),
            uploads: UploadSettings::for_tests(upload_dir),
            cluster: ClusterSettings::for_tests(),
        }
    }
}

/// The entries of a comma-separated list, trimmed, without blank ones.
fn trimmed(list: Vec<String>) -> Vec<String> {
    list.into_iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The configuration `args` give (environment variables still count).
    pub(crate) fn config(args: &[&str]) -> Config {
        Config::try_parse_from(std::iter::once("chatroom").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn refuses_short_secrets_and_never_prints_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().to_str().unwrap();
        let short = config(&["--data-dir", data, "--token-secret", "too-short"]).resolve();
        assert!(matches!(short, Err(ConfigError::WeakSecret)));
        let secret = "a-perfectly-long-secret-of-forty-bytes!!";
        let settings = config(&["--data-dir", data, "--token-secret", secret])
            .resolve()
            .unwrap();
        assert!(!format!("{settings:?}").contains(secret));
        if std::env::var_os("DATABASE_URL").is_none() {
            let url = settings.store.database_url.expose();
            assert!(url.starts_with("sqlite://") && url.contains("chatroom.db"));
        }
        assert_eq!(settings.http.listen.port(), DEFAULT_PORT);
        assert_eq!(settings.realtime.rooms, ["room1", "room2"]);
    }
}
