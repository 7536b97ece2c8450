//! Shared application state handed to every handler.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRef;
use sea_orm::DatabaseConnection;

use crate::auth::password::PasswordHasher;
use crate::auth::token::TokenService;
use crate::config::Settings;
use crate::db::Store;
use crate::metrics::Metrics;
use crate::realtime::{Engine, Realtime};
use crate::services::limiter::{RateLimiter, SignInLimits};
use crate::services::robot::Robot;
use crate::services::rooms::{Group, Rooms};
use crate::services::uploads::{UploadQuota, UploadStore};

/// Everything handlers share. Cheap to clone: every field is a handle. A handler that needs one or
/// two of them takes those as sub-states (`State<DatabaseConnection>`, `State<Arc<Settings>>`, …,
/// through the derived `FromRef`).
#[derive(Clone, FromRef)]
pub struct AppState {
    pub db: DatabaseConnection,
    pub settings: Arc<Settings>,
    pub tokens: TokenService,
    pub hasher: PasswordHasher,
    pub rooms: Arc<Rooms>,
    /// Uploaded images, their quotas, and the permits to read one into memory.
    pub uploads: UploadStore,
    pub robot: Robot,
    pub limits: Limits,
    /// Sockets, presence, the Pusher and the message writer.
    pub realtime: Realtime,
    /// Counters and gauges served at `/metrics`.
    pub metrics: Arc<Metrics>,
}

/// Per-node rate limits.
#[derive(Clone)]
pub struct Limits {
    /// Sign-ups per client address (per network for IPv6).
    pub signup: RateLimiter,
    /// Sign-in attempts per account and address pair and per client address, slowed per account.
    pub signin: SignInLimits,
    /// Robot questions per user.
    pub robot: RateLimiter,
}

impl AppState {
    /// Builds the state from settings, an open, migrated database, the Socket.IO engine (configured
    /// by `socket::engine`), the metrics it already reports in, and the stored group rooms.
    ///
    /// # Errors
    /// If the upload directory cannot be created or the robot's HTTP client cannot be built.
    /// Must run inside a Tokio runtime (it starts the message writer).
    pub fn new(
        settings: Settings,
        store: Store,
        engine: Engine,
        metrics: Arc<Metrics>,
        groups: Vec<Group>,
    ) -> anyhow::Result<Self> {
        let quota = UploadQuota {
            per_hour: settings.uploads.per_hour,
            bytes: settings.uploads.quota_bytes,
        };
        let uploads =
            UploadStore::with_quota(&settings.uploads.dir, settings.uploads.max_bytes, quota)?;
        let limits = Limits {
            signup: RateLimiter::new(settings.auth.signup_per_hour, Duration::from_secs(3600)),
            signin: SignInLimits::new(
                settings.auth.signin_failures,
                settings.auth.signin_per_ip,
                settings.auth.signin_account_ceiling,
                Duration::from_secs(15 * 60),
            ),
            robot: RateLimiter::new(30, Duration::from_secs(60)),
        };
        let rooms = Arc::new(Rooms::with_groups(groups));
        let db = store.pool.clone();
        let realtime = Realtime::new(&settings, engine, store, rooms.clone(), &metrics);
        Ok(Self {
            db,
            realtime,
            tokens: TokenService::new(settings.auth.token_secret.expose(), settings.auth.token_ttl),
            hasher: PasswordHasher::new(settings.auth.bcrypt_cost),
            rooms,
            uploads,
            robot: Robot::new(
                settings
                    .realtime
                    .robot_url
                    .as_ref()
                    .map(|url| url.expose().to_owned()),
            )?,
            limits,
            metrics,
            settings: Arc::new(settings),
        })
    }

    /// Marks the node as shutting down: readiness fails and new messages are refused from now on
    /// (the core's shutdown phase, [`Realtime::stop_accepting`]).
    pub fn start_draining(&self) {
        self.realtime.stop_accepting();
    }
}
