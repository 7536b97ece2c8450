//! The one error type of chatroom's services and handlers.
//!
//! Services return [`AppError`]; how it looks on the wire is decided in one place per client dialect
//! (`api::envelope`), so no handler builds error JSON by hand. Messages meant for users are in Chinese,
//! like the web clients that show them.

use sea_orm::{DbErr, SqlErr};

/// Everything that can go wrong while serving a request or an event.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The input is malformed or breaks a rule; the text tells the user which.
    #[error("{0}")]
    Invalid(String),
    /// No usable token: missing, malformed, expired, revoked, or its user is gone.
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// Authenticated, but not allowed to do this.
    #[error("{0}")]
    Forbidden(String),
    /// The thing asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// It already exists (a taken name, an existing friendship).
    #[error("{0}")]
    Conflict(String),
    /// The body or file is larger than allowed.
    #[error("{0}")]
    TooLarge(String),
    /// It could have been done earlier, not now (a recall after its window).
    #[error("{0}")]
    TooLate(String),
    /// Too many attempts in a short time.
    #[error("操作过于频繁，请稍后再试")]
    RateLimited,
    /// A per-user allowance is used up: uploads this hour, or (`storage`) disk space.
    #[error("{message}")]
    OverQuota { message: String, storage: bool },
    /// The server is shutting down or overloaded; try again.
    #[error("服务器繁忙，请稍后再试")]
    Unavailable,
    /// A database failure. Logged; clients only see a generic message.
    #[error("database error: {0}")]
    Db(#[from] DbErr),
    /// Any other failure that is ours, not the client's. Logged; clients see a generic message.
    #[error("internal error: {0}")]
    Internal(#[from] anyhow::Error),
}

/// What clients are shown instead of an internal failure's details.
pub const INTERNAL_MESSAGE: &str = "服务器异常";
/// Shown when a request carries no token.
pub const LOGIN_REQUIRED: &str = "请先登录";
/// Shown to a socket of a user who has `--max-sockets-per-user` sockets already.
pub const TOO_MANY_SOCKETS: &str = "该账号打开的连接过多，请关闭其他窗口后重试";
/// Shown when a token is present but unusable.
pub const BAD_TOKEN: &str = "token 校验错误";

impl AppError {
    /// Shorthand for [`AppError::Invalid`].
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid(message.into())
    }

    /// The text a client may show: the user-facing message, or a generic one for internal failures.
    pub fn public_message(&self) -> String {
        match self {
            Self::Db(_) | Self::Internal(_) => INTERNAL_MESSAGE.to_owned(),
            other => other.to_string(),
        }
    }

    /// Machine-readable, for clients that branch on it (socket acks and notices, the admin API).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Invalid(_) => "invalid",
            Self::Unauthenticated(_) => "unauthenticated",
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::Conflict(_) => "conflict",
            Self::TooLarge(_) => "too_large",
            Self::TooLate(_) => "too_late",
            Self::RateLimited => "rate_limited",
            Self::OverQuota { .. } => "over_quota",
            Self::Unavailable => "unavailable",
            Self::Db(_) | Self::Internal(_) => "internal",
        }
    }

    /// Whether this is our fault (worth an error log) rather than the client's.
    pub fn is_internal(&self) -> bool {
        matches!(self, Self::Db(_) | Self::Internal(_))
    }
}

/// Turns unique-constraint violations into a client error, leaving other database errors alone.
pub trait ResultExt<T> {
    /// Maps a unique-constraint violation to `err()`.
    ///
    /// # Errors
    /// `err()` on a unique violation, otherwise the original error as [`AppError::Db`].
    fn on_unique(self, err: impl FnOnce() -> AppError) -> Result<T, AppError>;
}

impl<T> ResultExt<T> for Result<T, DbErr> {
    fn on_unique(self, err: impl FnOnce() -> AppError) -> Result<T, AppError> {
        self.map_err(|e| match e.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(_)) => err(),
            _ => AppError::Db(e),
        })
    }
}
