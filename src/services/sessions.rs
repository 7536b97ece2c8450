//! Signed-in sessions: issuing tokens, resolving them to users, and revoking them.

use chrono::Utc;
use entity::{revoked_token, user};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set, sea_query::OnConflict};

use crate::auth::Authenticatable;
use crate::auth::token::{Claims, IssuedToken, TokenError, TokenService};
use crate::error::{AppError, BAD_TOKEN};
use crate::services::moderation;

/// Issues a token for `user`.
///
/// # Errors
/// [`AppError::Internal`] if signing fails.
pub fn issue(tokens: &TokenService, user: &user::Model) -> Result<IssuedToken, AppError> {
    tokens
        .issue(user.auth_id())
        .map_err(|e| AppError::Internal(e.into()))
}

/// The user a token stands for, if the token is genuine, unexpired, not revoked (by logout, or by a
/// ban of its user), and its user exists and is not banned.
///
/// # Errors
/// [`AppError::Unauthenticated`] for any unusable token; database failures.
pub async fn resolve<C: ConnectionTrait>(
    db: &C,
    tokens: &TokenService,
    token: &str,
) -> Result<(user::Model, Claims), AppError> {
    let claims = tokens.verify(token).map_err(|e| match e {
        TokenError::Expired => AppError::Unauthenticated("登录已过期，请重新登录"),
        TokenError::Invalid => AppError::Unauthenticated(BAD_TOKEN),
    })?;
    let id = claims
        .user_id()
        .ok_or(AppError::Unauthenticated(BAD_TOKEN))?;
    if revoked_token::Entity::find_by_id(claims.jti.clone())
        .one(db)
        .await?
        .is_some()
    {
        return Err(AppError::Unauthenticated("登录已失效，请重新登录"));
    }
    let user = user::Model::find_by_auth_id(db, id)
        .await?
        .ok_or(AppError::Unauthenticated(BAD_TOKEN))?;
    if moderation::token_revoked(&user, claims.iat) {
        return Err(AppError::Unauthenticated("登录已失效，请重新登录"));
    }
    moderation::refuse_if_banned(&user, Utc::now())?;
    Ok((user, claims))
}

/// Revokes the token with these claims: it is refused everywhere from now on.
///
/// # Errors
/// Database failures.
pub async fn revoke<C: ConnectionTrait>(db: &C, claims: &Claims) -> Result<(), AppError> {
    let row = revoked_token::ActiveModel {
        jti: Set(claims.jti.clone()),
        user_id: Set(claims.user_id().unwrap_or_default()),
        expires_at: Set(claims.expires_at()),
    };
    revoked_token::Entity::insert(row)
        .on_conflict(
            OnConflict::column(revoked_token::Column::Jti)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// Deletes revocations of tokens that have expired anyway; returns how many.
///
/// # Errors
/// Database failures.
pub async fn prune_revoked<C: ConnectionTrait>(db: &C) -> Result<u64, AppError> {
    let result = revoked_token::Entity::delete_many()
        .filter(revoked_token::Column::ExpiresAt.lt(Utc::now()))
        .exec(db)
        .await?;
    Ok(result.rows_affected)
}
