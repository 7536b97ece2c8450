//! Signing in: one answer for an unknown user and a wrong password, under the sign-in limits (per
//! account and address, per address, and the per-account ceiling that slows guesses down).

use entity::user;
use sea_orm::ConnectionTrait;

use super::{find_by_email, find_by_name};
use crate::auth::password::PasswordHasher;
use crate::error::AppError;
use crate::metrics::Metrics;
use crate::proxy::AddrKey;
use crate::services::limiter::SignInLimits;

/// Checks a sign-in: `login` is a name, or an e-mail address for accounts that have one.
///
/// # Errors
/// [`AppError::Invalid`] with one message for an unknown user and a wrong password alike.
pub async fn sign_in<C: ConnectionTrait>(
    db: &C,
    hasher: &PasswordHasher,
    login: &str,
    password: &str,
) -> Result<user::Model, AppError> {
    let found = find_for_sign_in(db, login, password).await?;
    check_sign_in_password(hasher, found, password).await
}

/// Checks a sign-in under `limits`: the attempt is counted against the account `login` names and
/// the client address `ip` before the (deliberately slow) password check, so parallel guesses
/// cannot all pass the limit; an attempt at an account past its ceiling of failures waits first.
/// See [`SignInLimits`]. Refusals and waits are counted in `metrics`.
///
/// # Errors
/// [`AppError::RateLimited`] past a limit (the password is then not checked at all); otherwise as
/// [`sign_in`].
pub async fn sign_in_limited<C: ConnectionTrait>(
    db: &C,
    hasher: &PasswordHasher,
    limits: &SignInLimits,
    metrics: &Metrics,
    ip: AddrKey,
    login: &str,
    password: &str,
) -> Result<user::Model, AppError> {
    let found = find_for_sign_in(db, login, password).await?;
    let account = sign_in_account_key(login, found.as_ref());
    let attempt = limits.begin(ip, &account).map_err(|refusal| {
        metrics.refused(refusal);
        AppError::RateLimited
    })?;
    if let Some(delay) = attempt.delay() {
        // Dropped while waiting (the client gave up), the attempt stays counted as failed.
        metrics.http.signin_delayed.inc();
        tokio::time::sleep(delay).await;
    }
    match check_sign_in_password(hasher, found, password).await {
        Ok(user) => {
            attempt.succeeded();
            Ok(user)
        }
        Err(e @ AppError::Invalid(_)) => Err(e),
        Err(e) => {
            attempt.void();
            Err(e)
        }
    }
}

/// The key sign-in attempts at `login` are counted under: the account it resolves to, so that a
/// name and an e-mail address, and every capitalisation of the address, share one budget. A login
/// that names no account is counted under its lower-case form, so unknown names are throttled alike.
pub fn sign_in_account_key(login: &str, found: Option<&user::Model>) -> String {
    match found {
        Some(user) => format!("user:{}", user.id),
        None => format!("login:{}", login.trim().to_lowercase()),
    }
}

/// The account a sign-in names: a user with exactly this name, or else the account registered with
/// this e-mail address (compared in lower case).
///
/// # Errors
/// [`AppError::Invalid`] when the login or the password is empty; database failures.
pub async fn find_for_sign_in<C: ConnectionTrait>(
    db: &C,
    login: &str,
    password: &str,
) -> Result<Option<user::Model>, AppError> {
    let login = login.trim();
    if login.is_empty() || password.is_empty() {
        return Err(AppError::invalid("用户名和密码不能为空"));
    }
    let mut found = find_by_name(db, login).await?;
    if found.is_none() && login.contains('@') {
        found = find_by_email(db, &login.to_lowercase()).await?;
    }
    Ok(found)
}

/// Checks `password` against `found` (taking as long when there is no such user).
///
/// # Errors
/// [`AppError::Invalid`] with one message for an unknown user and a wrong password alike;
/// [`AppError::Forbidden`] for a banned user with the right password.
pub async fn check_sign_in_password(
    hasher: &PasswordHasher,
    found: Option<user::Model>,
    password: &str,
) -> Result<user::Model, AppError> {
    if password.len() > crate::auth::password::MAX_PASSWORD_BYTES {
        return Err(AppError::invalid("用户名或密码错误"));
    }
    let ok = hasher
        .verify(password, found.as_ref().map(|u| u.password_hash.as_str()))
        .await?;
    match found {
        // Only the right password learns of a ban: a guesser cannot tell a banned account apart.
        Some(user) if ok => {
            crate::services::moderation::refuse_if_banned(&user, chrono::Utc::now())?;
            Ok(user)
        }
        _ => Err(AppError::invalid("用户名或密码错误")),
    }
}
