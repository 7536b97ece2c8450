//! Where a token becomes a user, for both transports' sockets: [`resolve`] turns a token into the
//! [`Binding`] a socket acts under, [`Binding::issued`] is the same for a token chatroom has just
//! issued at sign-in, and [`Realtime::admit`] decides whether one more socket may act for that user.
//! HTTP requests read tokens through `services::sessions::resolve` too; only sockets carry a
//! `Binding`.

use std::hash::{Hash, Hasher};

use entity::user;
use sea_orm::ConnectionTrait;

use super::Realtime;
use crate::auth::token::{Claims, TokenService};
use crate::error::{AppError, TOO_MANY_SOCKETS};
use crate::services::sessions;
use crate::services::users::Author;

/// The token a socket was bound with: its id (for revocation) and expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub jti: String,
    pub expires_at: i64,
}

impl From<&Claims> for TokenInfo {
    fn from(c: &Claims) -> Self {
        Self {
            jti: c.jti.clone(),
            expires_at: c.exp,
        }
    }
}

/// Who a socket acts for.
#[derive(Debug, Clone)]
pub struct Binding {
    pub author: Author,
    pub token: Option<TokenInfo>,
    /// A hash of the raw token verified for this binding, so a client repeating it in every payload
    /// (the Laravel-era client) costs one comparison, not a database look-up.
    pub token_hash: Option<u64>,
}

impl Binding {
    /// The binding of `user` signed in with `token` (whose claims are `claims`), as chatroom has just
    /// issued it.
    pub fn issued(user: &user::Model, claims: &Claims, token: &str) -> Self {
        Self {
            author: Author::from(user),
            token: Some(TokenInfo::from(claims)),
            token_hash: Some(token_hash(token)),
        }
    }

    /// Whether this binding was verified with exactly `token`.
    pub fn holds(&self, token: &str) -> bool {
        self.token_hash == Some(token_hash(token))
    }
}

/// The binding `token` stands for, if the token is genuine, unexpired, not revoked and its user
/// exists.
///
/// # Errors
/// [`AppError::Unauthenticated`] for any unusable token; database failures.
pub async fn resolve<C: ConnectionTrait>(
    db: &C,
    tokens: &TokenService,
    token: &str,
) -> Result<Binding, AppError> {
    let (user, claims) = sessions::resolve(db, tokens, token).await?;
    Ok(Binding::issued(&user, &claims, token))
}

fn token_hash(token: &str) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    token.hash(&mut hasher);
    hasher.finish()
}

impl Realtime {
    /// Whether one more socket of this node may act for `binding`'s user: at most
    /// `--max-sockets-per-user` (work grows with that user's sockets only).
    ///
    /// # Errors
    /// [`AppError::OverQuota`] when the user already has that many.
    pub fn admit(&self, binding: &Binding) -> Result<(), AppError> {
        let held = self.inner.pusher.users().count(binding.author.id);
        if held >= self.inner.max_sockets_per_user {
            return Err(AppError::OverQuota {
                message: TOO_MANY_SOCKETS.into(),
                storage: false,
            });
        }
        Ok(())
    }
}
