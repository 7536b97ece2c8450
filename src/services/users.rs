//! Accounts: registration, sign-in checks, profiles, search and avatars.

use chrono::Utc;
use entity::user;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, ExprTrait, QueryFilter,
    QueryOrder, QuerySelect, Set, sea_query::Expr, sea_query::Func,
};

use crate::auth::UserId;
use crate::auth::password::PasswordHasher;
use crate::error::{AppError, ResultExt};
use crate::metrics::Metrics;
use crate::proxy::AddrKey;
use crate::services::limiter::{RateLimiter, SignInLimits};

/// The longest name the v3 client lets users pick.
pub const MAX_NAME_CHARS: usize = 15;
/// The longest password the v3 client lets users pick.
pub const MAX_PASSWORD_CHARS: usize = 20;
/// The shortest password accepted from either client.
pub const MIN_PASSWORD_CHARS: usize = 6;
/// Avatar used when a client offers none, or one we will not serve to other users.
pub const DEFAULT_AVATAR: &str = "/avatar/default.svg";
const MAX_AVATAR_BYTES: usize = 512;
const MAX_EMAIL_CHARS: usize = 100;

/// A user as other users see them: the public name and avatar, nothing else. This is what travels with
/// messages and presence, so an account's e-mail address or password hash can never reach a view.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Author {
    pub id: UserId,
    pub name: String,
    pub avatar: String,
}

impl From<&user::Model> for Author {
    fn from(u: &user::Model) -> Self {
        Self {
            id: u.id,
            name: u.name.clone(),
            avatar: u.avatar.clone(),
        }
    }
}

/// Counts a sign-up from the client `from` against `limiter` (sign-ups per address per hour).
///
/// # Errors
/// [`AppError::RateLimited`] past the limit.
pub fn allow_sign_up(limiter: &RateLimiter, from: AddrKey) -> Result<(), AppError> {
    if limiter.hit(&from.to_string()) {
        Ok(())
    } else {
        Err(AppError::RateLimited)
    }
}

/// Registers a user of the v3 client, which picks a name and sends an avatar URL.
///
/// # Errors
/// [`AppError::Invalid`] for a bad name or password, [`AppError::Conflict`] if the name is taken.
pub async fn register<C: ConnectionTrait>(
    db: &C,
    hasher: &PasswordHasher,
    name: &str,
    password: &str,
    avatar: Option<&str>,
) -> Result<user::Model, AppError> {
    let name = check_name(name)?;
    check_password(password, MAX_PASSWORD_CHARS)?;
    if find_by_name(db, &name).await?.is_some() {
        return Err(AppError::Conflict("用户名已存在".into()));
    }
    let hash = hasher.hash(password).await?;
    insert(db, name, None, hash, avatar)
        .await
        .on_unique(|| AppError::Conflict("用户名已存在".into()))
}

/// Registers a user of the Laravel-era client, which signs up with an e-mail address. The display name
/// is the address's local part, made unique with a number when it is taken.
///
/// # Errors
/// [`AppError::Invalid`] for a bad address or password, [`AppError::Conflict`] if the address is taken.
pub async fn register_with_email<C: ConnectionTrait>(
    db: &C,
    hasher: &PasswordHasher,
    email: &str,
    password: &str,
    avatar: Option<&str>,
) -> Result<user::Model, AppError> {
    let email = check_email(email)?;
    check_password(password, usize::MAX)?;
    let taken = || AppError::Conflict("该邮箱已注册".into());
    if find_by_email(db, &email).await?.is_some() {
        return Err(taken());
    }
    let hash = hasher.hash(password).await?;
    let base = name_from_email(&email);
    for attempt in 0..20u32 {
        let name = match attempt {
            0 => base.clone(),
            1..10 => suffixed(&base, &(attempt + 1).to_string()),
            _ => suffixed(&base, &hex::encode(rand::random::<[u8; 2]>())),
        };
        if find_by_name(db, &name).await?.is_some() {
            continue;
        }
        match insert(db, name, Some(email.clone()), hash.clone(), avatar).await {
            Ok(user) => return Ok(user),
            Err(e) if e.sql_err().is_some() => {
                // Lost a race for the name or the address: the next round tells which.
                if find_by_email(db, &email).await?.is_some() {
                    return Err(taken());
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(AppError::Conflict("用户名已存在".into()))
}

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
/// [`AppError::Invalid`] with one message for an unknown user and a wrong password alike.
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
        Some(user) if ok => Ok(user),
        _ => Err(AppError::invalid("用户名或密码错误")),
    }
}

/// The user with exactly this name.
///
/// # Errors
/// Database failures.
pub async fn find_by_name<C: ConnectionTrait>(
    db: &C,
    name: &str,
) -> Result<Option<user::Model>, AppError> {
    Ok(user::Entity::find()
        .filter(user::Column::Name.eq(name))
        .one(db)
        .await?)
}

/// The user registered with this (lower-case) e-mail address.
///
/// # Errors
/// Database failures.
async fn find_by_email<C: ConnectionTrait>(
    db: &C,
    email: &str,
) -> Result<Option<user::Model>, AppError> {
    Ok(user::Entity::find()
        .filter(user::Column::Email.eq(email))
        .one(db)
        .await?)
}

/// The user with this id.
///
/// # Errors
/// Database failures.
pub async fn find<C: ConnectionTrait>(db: &C, id: UserId) -> Result<Option<user::Model>, AppError> {
    Ok(user::Entity::find_by_id(id).one(db).await?)
}

/// Users whose name contains `text`, ignoring ASCII case, at most `limit`, oldest accounts first.
///
/// # Errors
/// Database failures.
pub async fn search<C: ConnectionTrait>(
    db: &C,
    text: &str,
    limit: u64,
) -> Result<Vec<user::Model>, AppError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let pattern = format!("%{}%", escape_like(&text.to_lowercase()));
    Ok(user::Entity::find()
        .filter(
            Expr::expr(Func::lower(Expr::col(user::Column::Name)))
                .like(sea_orm::sea_query::LikeExpr::new(pattern).escape('\\')),
        )
        .order_by_asc(user::Column::Id)
        .limit(limit)
        .all(db)
        .await?)
}

/// The users with these names, in the order given.
///
/// # Errors
/// Database failures.
pub async fn by_names<C: ConnectionTrait>(
    db: &C,
    names: &[String],
) -> Result<Vec<user::Model>, AppError> {
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let mut users = user::Entity::find()
        .filter(user::Column::Name.is_in(names.iter().cloned()))
        .all(db)
        .await?;
    users.sort_by_key(|u| names.iter().position(|n| *n == u.name));
    Ok(users)
}

/// Replaces `user`'s avatar with `url`.
///
/// # Errors
/// [`AppError::NotFound`] if the user is gone; database failures.
pub async fn set_avatar<C: ConnectionTrait>(
    db: &C,
    user: UserId,
    url: &str,
) -> Result<user::Model, AppError> {
    let Some(found) = find(db, user).await? else {
        return Err(AppError::NotFound("用户不存在".into()));
    };
    let mut active: user::ActiveModel = found.into();
    active.avatar = Set(url.to_owned());
    active.updated_at = Set(Utc::now());
    Ok(active.update(db).await?)
}

/// An avatar URL we are willing to show other users: one of our uploads, or a plain http(s) URL.
/// Anything else is replaced by the default avatar.
pub fn safe_avatar(url: Option<&str>) -> String {
    let url = url.unwrap_or_default().trim();
    let allowed_prefix = [
        "https://",
        "http://",
        "//",
        "/static/files/",
        "static/files/",
    ]
    .iter()
    .any(|p| url.starts_with(p));
    let clean = url.len() <= MAX_AVATAR_BYTES
        && !url
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "\"'<>\\`".contains(c));
    if allowed_prefix && clean && url.len() > 2 {
        url.to_owned()
    } else {
        DEFAULT_AVATAR.to_owned()
    }
}

async fn insert<C: ConnectionTrait>(
    db: &C,
    name: String,
    email: Option<String>,
    password_hash: String,
    avatar: Option<&str>,
) -> Result<user::Model, sea_orm::DbErr> {
    let now = Utc::now();
    user::ActiveModel {
        name: Set(name),
        email: Set(email),
        password_hash: Set(password_hash),
        avatar: Set(safe_avatar(avatar)),
        created_at: Set(now),
        updated_at: Set(now),
        ..Default::default()
    }
    .insert(db)
    .await
}

/// A valid display name, trimmed.
fn check_name(name: &str) -> Result<String, AppError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(AppError::invalid("用户名不能为空"));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(AppError::invalid("用户名过长"));
    }
    if !name.chars().all(name_char) {
        return Err(AppError::invalid(
            "用户名不能包含空格、控制字符或 < > & \" ' / \\ ` 等符号",
        ));
    }
    Ok(name.to_owned())
}

/// Names are shown in other users' pages and used as keys, so markup and invisible characters are out.
fn name_char(c: char) -> bool {
    !c.is_whitespace() && !c.is_control() && !"<>&\"'/\\`".contains(c) && !is_bidi_control(c)
}

fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

fn check_password(password: &str, max_chars: usize) -> Result<(), AppError> {
    let chars = password.chars().count();
    if chars == 0 {
        return Err(AppError::invalid("密码不能为空"));
    }
    if chars > max_chars || password.len() > crate::auth::password::MAX_PASSWORD_BYTES {
        return Err(AppError::invalid("密码过长"));
    }
    if chars < MIN_PASSWORD_CHARS {
        return Err(AppError::Invalid(format!(
            "密码至少 {MIN_PASSWORD_CHARS} 位"
        )));
    }
    Ok(())
}

fn check_email(email: &str) -> Result<String, AppError> {
    let email = email.trim().to_lowercase();
    let bad = || AppError::invalid("请输入有效的邮箱地址");
    if email.chars().count() > MAX_EMAIL_CHARS
        || email.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(bad());
    }
    let (local, domain) = email.split_once('@').ok_or_else(bad)?;
    let domain_ok = domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && domain
            .chars()
            .all(|c| c.is_alphanumeric() || c == '.' || c == '-');
    if local.is_empty() || !domain_ok || email.contains("<") || email.contains(">") {
        return Err(bad());
    }
    Ok(email)
}

fn name_from_email(email: &str) -> String {
    let local = email.split('@').next().unwrap_or_default();
    let name: String = local
        .chars()
        .filter(|c| name_char(*c))
        .take(MAX_NAME_CHARS)
        .collect();
    if name.is_empty() {
        "user".to_owned()
    } else {
        name
    }
}

/// `base` with `suffix`, shortened so the whole stays within the name limit.
fn suffixed(base: &str, suffix: &str) -> String {
    let keep = MAX_NAME_CHARS.saturating_sub(suffix.chars().count());
    base.chars().take(keep).chain(suffix.chars()).collect()
}

fn escape_like(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            if matches!(c, '%' | '_' | '\\') {
                vec!['\\', c]
            } else {
                vec![c]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_v3_limits_and_refuse_markup() {
        assert_eq!(check_name("  小明  ").unwrap(), "小明");
        assert!(check_name(&"字".repeat(15)).is_ok());
        assert!(check_name(&"字".repeat(16)).is_err());
        for bad in ["", "   ", "<b>", "a b", "a\u{202E}b", "x'y", "a/b"] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn avatars_are_our_uploads_or_http_urls() {
        assert_eq!(
            safe_avatar(Some("//s3.qiufengh.com/avatar/3.jpeg")),
            "//s3.qiufengh.com/avatar/3.jpeg"
        );
        assert_eq!(
            safe_avatar(Some("/static/files/a.png")),
            "/static/files/a.png"
        );
        for bad in [
            None,
            Some(""),
            Some("javascript:alert(1)"),
            Some("data:image/png;base64,xx"),
            Some("http://x/\"onerror="),
        ] {
            assert_eq!(safe_avatar(bad), DEFAULT_AVATAR, "{bad:?}");
        }
    }

    #[test]
    fn emails_give_unique_short_names() {
        assert_eq!(check_email(" Bob@Example.com ").unwrap(), "bob@example.com");
        assert!(check_email("bob").is_err());
        assert!(check_email("bob@localhost").is_err());
        assert_eq!(
            name_from_email("averyveryverylongname@x.io"),
            "averyveryverylo"
        );
        assert_eq!(suffixed("averyveryverylo", "2"), "averyveryveryl2");
        assert_eq!(name_from_email("<>@x.io"), "user");
    }

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(escape_like("50%_a\\"), "50\\%\\_a\\\\");
    }
}
