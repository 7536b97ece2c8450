//! Runtime configuration: command-line flags, each with an environment variable.
//!
//! [`Config`] is what the operator gives us; [`Settings`] is what the server runs with once defaults
//! are resolved (data directory created, database URL chosen, token secret loaded or generated).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// Default listening port: the one the webchat client's debug build connects to.
pub const DEFAULT_PORT: u16 = 9090;

/// chatroom: a Socket.IO chat server for the webchat Vue clients.
#[derive(Debug, Clone, Parser)]
#[command(name = "chatroom", version, about)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "CHATROOM_HOST", default_value = "0.0.0.0")]
    pub host: String,

    /// Port to listen on.
    #[arg(long, env = "CHATROOM_PORT", default_value_t = DEFAULT_PORT)]
    pub port: u16,

    /// Directory for the SQLite database, uploads and the generated token secret.
    #[arg(long, env = "CHATROOM_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// Database URL: `sqlite://path.db` or `postgres://user@host/db`. Default: SQLite in the data dir.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,

    /// Largest database connection pool. Default: 2 × cores (at least 4) for SQLite, 2 × cores + 2 for
    /// PostgreSQL.
    #[arg(long, env = "CHATROOM_DB_POOL")]
    pub db_pool: Option<u32>,

    /// Serve this built web client (its `index.html` and `static/`) instead of chatroom's own.
    #[arg(long, env = "CHATROOM_STATIC_DIR")]
    pub static_dir: Option<PathBuf>,

    /// Where uploaded images are stored. Default: `<data dir>/uploads`.
    #[arg(long, env = "CHATROOM_UPLOAD_DIR")]
    pub upload_dir: Option<PathBuf>,

    /// Secret that signs tokens (at least 32 bytes). Default: generated once and kept in the data dir.
    #[arg(long, env = "CHATROOM_TOKEN_SECRET", hide_env_values = true)]
    pub token_secret: Option<String>,

    /// How long a token stays valid, in seconds.
    #[arg(long, env = "CHATROOM_TOKEN_TTL", default_value_t = 24 * 3600)]
    pub token_ttl: u64,

    /// bcrypt cost for new password hashes (4–31).
    #[arg(long, env = "CHATROOM_BCRYPT_COST", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(4..=31))]
    pub bcrypt_cost: u32,

    /// Largest accepted upload, in bytes.
    #[arg(long, env = "CHATROOM_UPLOAD_MAX_BYTES", default_value_t = 5 * 1024 * 1024)]
    pub upload_max_bytes: usize,

    /// Origins allowed to call the API from another site (comma-separated, e.g.
    /// `http://localhost:9099`). They are echoed back with credentials allowed.
    #[arg(long, env = "CHATROOM_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,

    /// Group rooms, in the order clients list them.
    #[arg(
        long,
        env = "CHATROOM_ROOMS",
        value_delimiter = ',',
        default_value = "room1,room2"
    )]
    pub rooms: Vec<String>,

    /// Users shown as VIP by `/api/user/vipuser` (comma-separated names).
    #[arg(
        long,
        env = "CHATROOM_VIP_USERS",
        value_delimiter = ',',
        default_value = "hua1995116"
    )]
    pub vip_users: Vec<String>,

    /// Optional robot upstream (a tuling123-compatible JSON API). Without it, or when it fails, the
    /// built-in offline responder answers.
    #[arg(long, env = "CHATROOM_ROBOT_URL")]
    pub robot_url: Option<String>,

    /// Sign-ups allowed per client IP per hour.
    #[arg(long, env = "CHATROOM_SIGNUP_PER_HOUR", default_value_t = 30)]
    pub signup_per_hour: u32,

    /// Failed sign-ins allowed per account and client address per 15 minutes; past it that address is
    /// refused at that account (its owner elsewhere is not). An account is the user a name or e-mail
    /// address resolves to (any capitalisation of the address); a successful sign-in clears the pair's
    /// count. Unknown names are counted the same way.
    #[arg(long, env = "CHATROOM_SIGNIN_FAILURES", default_value_t = 10)]
    pub signin_failures: u32,

    /// Sign-in attempts allowed per client IP per 15 minutes, whatever account they name.
    #[arg(long, env = "CHATROOM_SIGNIN_PER_IP", default_value_t = 50)]
    pub signin_per_ip: u32,

    /// Failed sign-ins at one account per 15 minutes, from all addresses together, past which every
    /// further attempt at it waits before its password is checked (a delay that doubles as the
    /// failures go on, at most 5 s). Attempts are slowed, never refused, so the owner still gets in.
    #[arg(long, env = "CHATROOM_SIGNIN_ACCOUNT_CEILING", default_value_t = 100,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub signin_account_ceiling: u32,

    /// IPv6 clients are counted per network of this many leading bits by every per-address limit
    /// (connections, sign-ups, sign-ins): one host usually holds a whole /64. 128 counts each address.
    #[arg(long, env = "CHATROOM_IPV6_PREFIX", default_value_t = 64,
          value_parser = clap::value_parser!(u8).range(1..=128))]
    pub ipv6_prefix: u8,

    /// Uploads (pictures and avatars) one user may store per hour.
    #[arg(long, env = "CHATROOM_UPLOADS_PER_HOUR", default_value_t = 100)]
    pub uploads_per_hour: u32,

    /// Bytes of uploads one user may keep on disk in total.
    #[arg(long, env = "CHATROOM_UPLOAD_QUOTA_BYTES", default_value_t = 500 * 1024 * 1024)]
    pub upload_quota_bytes: u64,

    /// Seconds a connection may take to send a request's headers (and an idle keep-alive connection
    /// may wait for its next request) before it is closed.
    #[arg(long, env = "CHATROOM_HEADER_TIMEOUT", default_value_t = 10,
          value_parser = clap::value_parser!(u64).range(1..=300))]
    pub header_timeout: u64,

    /// Seconds a write to a client may make no progress (the client stopped reading) before its
    /// connection is closed; 0 turns the deadline off.
    #[arg(long, env = "CHATROOM_WRITE_TIMEOUT", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub write_timeout: u64,

    /// Open connections at most; further ones are refused at once. Default: what the process's
    /// open-file limit leaves room for, keeping a reserve for the database, uploads and logs.
    #[arg(long, env = "CHATROOM_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,

    /// Open connections at most from one client address (trusted proxies are not limited).
    #[arg(long, env = "CHATROOM_MAX_CONNECTIONS_PER_IP", default_value_t = 256,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_connections_per_ip: u64,

    /// Proxies whose `X-Forwarded-For` / `X-Real-IP` headers name the client (comma-separated
    /// addresses or CIDR ranges, e.g. `127.0.0.1,10.0.0.0/8`). From anyone else these headers are
    /// ignored and the peer address is the client's.
    #[arg(long, env = "CHATROOM_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<String>,

    /// A bearer token that may read `/metrics` from anywhere. Without it, only direct (unproxied)
    /// requests from the loopback interface may.
    #[arg(long, env = "CHATROOM_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,

    /// Longest chat message, in characters.
    #[arg(long, env = "CHATROOM_MESSAGE_MAX_CHARS", default_value_t = 200,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub message_max_chars: u32,

    /// Socket events one socket may send per second (bursts of twice as many are allowed).
    #[arg(long, env = "CHATROOM_SOCKET_EVENTS_PER_SECOND", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub socket_events_per_second: u32,

    /// Sockets one user may have bound on this node at once (tabs, devices); one more is refused at
    /// its handshake, or when it signs in.
    #[arg(long, env = "CHATROOM_MAX_SOCKETS_PER_USER", default_value_t = 32,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_sockets_per_user: u32,

    /// Messages waiting to be stored at most; when full, senders get an error instead of a delay.
    #[arg(long, env = "CHATROOM_MESSAGE_QUEUE", default_value_t = 4096)]
    pub message_queue: usize,

    /// Most members a room's presence list names (the first ones by id). Every member of a room gets
    /// the list, so its size is paid once per member; 1 000 names are about 40 KB.
    #[arg(long, env = "CHATROOM_PRESENCE_MAX_MEMBERS", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub presence_max_members: u32,

    /// A socket.io client script to serve at `/socket.io/socket.io.js`, for pages that load it from
    /// the server. Default: `socket.io.js` in the static directory, if there is one.
    #[arg(long, env = "CHATROOM_SOCKET_IO_JS")]
    pub socket_io_js: Option<PathBuf>,

    /// Redis that carries events between the nodes of a cluster: `redis://host:6379` (or with a
    /// password, `redis://:password@host:6379`). Without it the node runs alone, with no Redis.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,

    /// Prefix of the Redis channel the cluster shares; nodes with different prefixes on one Redis are
    /// separate clusters.
    #[arg(long, env = "CHATROOM_REDIS_PREFIX", default_value = "chatroom")]
    pub redis_prefix: String,

    /// Mark the auth cookie `Secure` (set this when chatroom is served over HTTPS).
    #[arg(long, env = "CHATROOM_COOKIE_SECURE", default_value_t = false)]
    pub cookie_secure: bool,

    /// Log format.
    #[arg(long, env = "CHATROOM_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    pub log_format: LogFormat,
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

/// Everything the server needs at run time, with defaults resolved.
#[derive(Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub database_url: String,
    pub db_pool: u32,
    pub static_dir: Option<PathBuf>,
    pub upload_dir: PathBuf,
    pub token_secret: Vec<u8>,
    pub token_ttl: Duration,
    pub bcrypt_cost: u32,
    pub upload_max_bytes: usize,
    pub cors_origins: Vec<String>,
    pub rooms: Vec<String>,
    pub vip_users: Vec<String>,
    pub robot_url: Option<String>,
    pub signup_per_hour: u32,
    pub signin_failures: u32,
    pub signin_per_ip: u32,
    pub signin_account_ceiling: u32,
    pub ipv6_prefix: u8,
    pub uploads_per_hour: u32,
    pub upload_quota_bytes: u64,
    pub header_timeout: Duration,
    pub write_timeout: Duration,
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub trusted_proxies: TrustedProxies,
    pub metrics_token: Option<String>,
    pub cookie_secure: bool,
    pub message_max_chars: usize,
    pub socket_events_per_second: u32,
    pub max_sockets_per_user: usize,
    pub message_queue: usize,
    pub presence_max_members: usize,
    pub socket_io_js: Option<PathBuf>,
    /// The cluster's Redis, if the node is one of several.
    pub redis_url: Option<String>,
    /// Prefix of the cluster's Redis channel.
    pub redis_prefix: String,
}

impl std::fmt::Debug for Settings {
    // Hand-written so the token secret never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("listen", &self.listen)
            .field("database", &redact_url(&self.database_url))
            .field("db_pool", &self.db_pool)
            .field("static_dir", &self.static_dir)
            .field("upload_dir", &self.upload_dir)
            .field("token_secret", &"<redacted>")
            .field("token_ttl", &self.token_ttl)
            .field("bcrypt_cost", &self.bcrypt_cost)
            .field("upload_max_bytes", &self.upload_max_bytes)
            .field("cors_origins", &self.cors_origins)
            .field("rooms", &self.rooms)
            .field("vip_users", &self.vip_users)
            .field("robot_url", &self.robot_url.as_deref().map(redact_url))
            .field("signup_per_hour", &self.signup_per_hour)
            .field("signin_failures", &self.signin_failures)
            .field("signin_per_ip", &self.signin_per_ip)
            .field("signin_account_ceiling", &self.signin_account_ceiling)
            .field("ipv6_prefix", &self.ipv6_prefix)
            .field("uploads_per_hour", &self.uploads_per_hour)
            .field("upload_quota_bytes", &self.upload_quota_bytes)
            .field("header_timeout", &self.header_timeout)
            .field("write_timeout", &self.write_timeout)
            .field("max_connections", &self.max_connections)
            .field("max_connections_per_ip", &self.max_connections_per_ip)
            .field("trusted_proxies", &self.trusted_proxies)
            .field(
                "metrics_token",
                &self.metrics_token.as_ref().map(|_| "<redacted>"),
            )
            .field("cookie_secure", &self.cookie_secure)
            .field("message_max_chars", &self.message_max_chars)
            .field("socket_events_per_second", &self.socket_events_per_second)
            .field("max_sockets_per_user", &self.max_sockets_per_user)
            .field("message_queue", &self.message_queue)
            .field("presence_max_members", &self.presence_max_members)
            .field("socket_io_js", &self.socket_io_js)
            .field("redis", &self.redis_url.as_deref().map(redact_url))
            .field("redis_prefix", &self.redis_prefix)
            .finish()
    }
}

impl Config {
    /// Resolves defaults, creating the data directory and the token secret file when needed.
    ///
    /// # Errors
    /// A [`ConfigError`] when a directory or the secret file cannot be used, or a value is invalid.
    pub fn resolve(self) -> Result<Settings, ConfigError> {
        let listen: SocketAddr = format!("{}:{}", bracket_v6(&self.host), self.port)
            .parse()
            .map_err(|_| ConfigError::Address(self.host.clone()))?;
        std::fs::create_dir_all(&self.data_dir).map_err(|source| ConfigError::DataDir {
            path: self.data_dir.clone(),
            source,
        })?;
        let database_url = self.database_url.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("chatroom.db").display()
            )
        });
        let is_sqlite = database_url.starts_with("sqlite:");
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get()) as u32;
        // SQLite has one writer but many readers: a couple of connections per core, at least 4.
        let db_pool = self
            .db_pool
            .unwrap_or(if is_sqlite {
                (2 * cores).max(4)
            } else {
                2 * cores + 2
            })
            .max(1);
        let upload_dir = self
            .upload_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("uploads"));
        let token_secret = match &self.token_secret {
            Some(secret) => secret.as_bytes().to_vec(),
            None => load_or_create_secret(&self.data_dir.join("token_secret"))?,
        };
        if token_secret.len() < 32 {
            return Err(ConfigError::WeakSecret);
        }
        let rooms: Vec<String> = self
            .rooms
            .iter()
            .map(|r| r.trim().to_owned())
            .filter(|r| !r.is_empty())
            .collect();
        if rooms.is_empty() || !rooms.iter().all(|r| valid_room_name(r)) {
            return Err(ConfigError::Rooms);
        }
        let trusted_proxies = TrustedProxies::parse(&trimmed(self.trusted_proxies.clone()))
            .map_err(ConfigError::TrustedProxy)?;
        let max_connections = self
            .max_connections
            .unwrap_or_else(|| default_max_connections(crate::sys::open_file_limit()))
            .max(1);
        let socket_io_js = self.socket_io_js.or_else(|| {
            self.static_dir
                .as_ref()
                .map(|d| d.join("socket.io.js"))
                .filter(|f| f.is_file())
        });
        let redis_url = self.redis_url.filter(|u| !u.trim().is_empty());
        if let Some(url) = &redis_url {
            redis::Client::open(url.as_str())
                .map_err(|e| ConfigError::RedisUrl(format!("{}: {e}", redact_url(url))))?;
        }
        Ok(Settings {
            listen,
            database_url,
            db_pool,
            static_dir: self.static_dir,
            upload_dir,
            token_secret,
            token_ttl: Duration::from_secs(self.token_ttl.max(60)),
            bcrypt_cost: self.bcrypt_cost,
            upload_max_bytes: self.upload_max_bytes.max(1024),
            cors_origins: trimmed(self.cors_origins),
            rooms,
            vip_users: trimmed(self.vip_users),
            robot_url: self.robot_url.filter(|u| !u.trim().is_empty()),
            signup_per_hour: self.signup_per_hour,
            signin_failures: self.signin_failures,
            signin_per_ip: self.signin_per_ip,
            signin_account_ceiling: self.signin_account_ceiling.max(1),
            ipv6_prefix: self.ipv6_prefix.clamp(1, 128),
            uploads_per_hour: self.uploads_per_hour,
            upload_quota_bytes: self.upload_quota_bytes,
            header_timeout: Duration::from_secs(self.header_timeout),
            write_timeout: Duration::from_secs(self.write_timeout),
            max_connections,
            max_connections_per_ip: usize::try_from(self.max_connections_per_ip)
                .unwrap_or(usize::MAX),
            trusted_proxies,
            metrics_token: self.metrics_token.filter(|t| !t.trim().is_empty()),
            cookie_secure: self.cookie_secure,
            message_max_chars: self.message_max_chars as usize,
            socket_events_per_second: self.socket_events_per_second,
            max_sockets_per_user: self.max_sockets_per_user as usize,
            message_queue: self.message_queue.max(1),
            presence_max_members: self.presence_max_members as usize,
            socket_io_js,
            redis_url,
            redis_prefix: self.redis_prefix,
        })
    }
}

impl Settings {
    /// What per-address limits count for the client address `ip` (its /64 for IPv6; see
    /// [`AddrKey`](crate::proxy::AddrKey)).
    pub fn addr_key(&self, ip: std::net::IpAddr) -> crate::proxy::AddrKey {
        crate::proxy::AddrKey::new(ip, self.ipv6_prefix)
    }

    /// Settings for tests and embedding: everything explicit, nothing read from the environment.
    pub fn for_tests(database_url: impl Into<String>, upload_dir: impl Into<PathBuf>) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            database_url: database_url.into(),
            db_pool: 1,
            static_dir: None,
            upload_dir: upload_dir.into(),
            token_secret: b"test-secret-test-secret-test-secret!".to_vec(),
            token_ttl: Duration::from_secs(3600),
            bcrypt_cost: 4,
            upload_max_bytes: 5 * 1024 * 1024,
            cors_origins: Vec::new(),
            rooms: vec!["room1".into(), "room2".into()],
            vip_users: vec!["hua1995116".into()],
            robot_url: None,
            signup_per_hour: 10_000,
            signin_failures: 10,
            signin_per_ip: 1000,
            signin_account_ceiling: 100,
            ipv6_prefix: 64,
            uploads_per_hour: 1000,
            upload_quota_bytes: 1 << 30,
            header_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(30),
            max_connections: 4096,
            max_connections_per_ip: 4096,
            trusted_proxies: TrustedProxies::default(),
            metrics_token: None,
            cookie_secure: false,
            message_max_chars: 200,
            socket_events_per_second: 1000,
            max_sockets_per_user: 4096,
            message_queue: 4096,
            presence_max_members: 1000,
            socket_io_js: None,
            redis_url: None,
            redis_prefix: "chatroom".into(),
        }
    }
}

/// The default connection cap for an open-file limit of `fd_limit`: room for every connection, with a
/// reserve for the database pool, upload files, the log and the listener, so that the server refuses
/// connections itself before `accept` starts failing.
pub fn default_max_connections(fd_limit: u64) -> usize {
    let reserve = (fd_limit / 10).clamp(64, 1024);
    let room = fd_limit.saturating_sub(reserve).max(16);
    usize::try_from(room.min(1_000_000)).unwrap_or(1_000_000)
}

pub use crate::proxy::TrustedProxies;

/// Group room names appear in URLs and private room ids use `-`, so keep them to a safe alphabet.
fn valid_room_name(room: &str) -> bool {
    (1..=32).contains(&room.len()) && room.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn trimmed(list: Vec<String>) -> Vec<String> {
    list.into_iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

fn bracket_v6(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

/// Reads the secret kept in the data dir, or writes a new random one (owner-readable only), so that
/// tokens stay valid across restarts: the v3 client never refreshes its token.
fn load_or_create_secret(path: &Path) -> Result<Vec<u8>, ConfigError> {
    let err = |source| ConfigError::SecretFile {
        path: path.to_owned(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text.trim().as_bytes().to_vec()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let secret = hex::encode(rand::random::<[u8; 32]>());
            write_private(path, secret.as_bytes()).map_err(err)?;
            Ok(secret.into_bytes())
        }
        Err(e) => Err(err(e)),
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)?.write_all(bytes)
}

/// Hides credentials in a URL (`postgres://user:pass@host` → `postgres://user:***@host`).
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_passwords_in_urls() {
        assert_eq!(
            redact_url("postgres://bob:hunter2@db/chat"),
            "postgres://bob:***@db/chat"
        );
        assert_eq!(redact_url("sqlite://data/chat.db"), "sqlite://data/chat.db");
    }

    fn config(args: &[&str]) -> Config {
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
            assert!(
                settings.database_url.starts_with("sqlite://")
                    && settings.database_url.contains("chatroom.db")
            );
        }
        assert_eq!(settings.listen.port(), DEFAULT_PORT);
        assert_eq!(settings.rooms, ["room1", "room2"]);
    }

    #[test]
    fn refuses_room_names_that_could_collide_with_private_rooms() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().to_str().unwrap();
        assert!(matches!(
            config(&["--data-dir", data, "--rooms", "1-2"]).resolve(),
            Err(ConfigError::Rooms)
        ));
        assert!(matches!(
            config(&["--data-dir", data, "--rooms", ","]).resolve(),
            Err(ConfigError::Rooms)
        ));
    }

    #[test]
    fn connection_caps_leave_a_file_descriptor_reserve() {
        assert_eq!(default_max_connections(1024), 922);
        assert_eq!(default_max_connections(20_000), 18_976);
        assert_eq!(default_max_connections(500_000), 500_000 - 1024);
        assert_eq!(default_max_connections(u64::MAX), 1_000_000);
        assert_eq!(default_max_connections(10), 16);
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().to_str().unwrap();
        let settings = config(&["--data-dir", data]).resolve().unwrap();
        assert!(settings.max_connections >= 16);
        assert_eq!(settings.header_timeout, Duration::from_secs(10));
        assert!(matches!(
            config(&["--data-dir", data, "--trusted-proxies", "10.0.0.0/99"]).resolve(),
            Err(ConfigError::TrustedProxy(_))
        ));
        let secret = "metrics-token-of-some-length";
        let settings = config(&["--data-dir", data, "--metrics-token", secret])
            .resolve()
            .unwrap();
        assert!(!format!("{settings:?}").contains(secret));
    }

    #[test]
    fn generated_secret_is_kept_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create_secret(&dir.path().join("s")).unwrap();
        let second = load_or_create_secret(&dir.path().join("s")).unwrap();
        assert_eq!(first, second);
        assert_eq!(first.len(), 64);
    }
}
