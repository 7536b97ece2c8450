//! What operators and authors may take back: roles, removal of messages, and the audit trail.
//!
//! * Roles live in `users.role` (`member` or `admin`) and are read from the database on every
//!   request, so a grant or a revocation holds from the user's next request.
//! * A removed message keeps its row with `removed` set (`admin` or `author`) and loses its text and
//!   picture: every history query leaves it out, and a client resending it (same client id) is told it
//!   was taken down instead of posting it again.
//! * A ban (`users.banned_until`, `ban_reason`) refuses sign-in until it ends or is lifted, and
//!   revokes every token the user holds (`users.tokens_after`): sessions issued before it are refused.
//!   Admins cannot be banned (revoke the role first), so no admin can ban themselves.
//! * Every admin action and every recall is written to `audit_entries`, refused attempts by admins
//!   included, with who, when, what and why.

use chrono::{DateTime, Utc};
use entity::{audit_entry, message, user};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, Set, sea_query::Expr,
};

use crate::auth::UserId;
use crate::error::AppError;

/// The role that may use `/api/admin/`.
pub const ADMIN: &str = "admin";
/// Everyone else's role.
pub const MEMBER: &str = "member";
/// Audit entries per page at most.
pub const MAX_AUDIT_PAGE: u64 = 100;
/// The longest reason kept (characters).
pub const MAX_REASON_CHARS: usize = 500;

/// Whether `user` is an admin.
pub fn is_admin(user: &user::Model) -> bool {
    user.role == ADMIN
}

/// The longest ban, in minutes (ten years); a ban without `minutes` is permanent.
pub const MAX_BAN_MINUTES: i64 = 10 * 366 * 24 * 60;

/// When a permanent ban ends: never, in practice (and within every database's date range).
pub fn forever() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("9999-12-31T23:59:59Z").map_or_else(|_| Utc::now(), |t| t.to_utc())
}

/// The ban `user` is under at `now`, if any: until when, and why.
pub fn ban_of(user: &user::Model, now: DateTime<Utc>) -> Option<(DateTime<Utc>, &str)> {
    user.banned_until
        .filter(|until| *until > now)
        .map(|until| (until, user.ban_reason.as_deref().unwrap_or_default()))
}

/// Refuses a banned user, saying until when and why.
///
/// # Errors
/// [`AppError::Forbidden`] while a ban is in force.
pub fn refuse_if_banned(user: &user::Model, now: DateTime<Utc>) -> Result<(), AppError> {
    match ban_of(user, now) {
        None => Ok(()),
        Some((until, reason)) => Err(AppError::Forbidden(ban_message(until, reason))),
    }
}

/// What a banned user is told.
pub fn ban_message(until: DateTime<Utc>, reason: &str) -> String {
    let why = if reason.is_empty() {
        String::new()
    } else {
        format!("，原因：{reason}")
    };
    if until >= forever() {
        format!("该账号已被封禁{why}")
    } else {
        format!(
            "该账号已被封禁，至 {} 解封{why}",
            until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )
    }
}

/// Whether a token issued at `iat` (Unix seconds) was revoked by a ban of `user`.
pub fn token_revoked(user: &user::Model, iat: i64) -> bool {
    user.tokens_after
        .is_some_and(|after| iat <= after.timestamp())
}

/// Bans `name` for `minutes` (for good without), revoking every token it holds.
///
/// # Errors
/// [`AppError::NotFound`] for an unknown name, [`AppError::Forbidden`] for an admin,
/// [`AppError::Invalid`] for a length of 0 or over [`MAX_BAN_MINUTES`]; database failures.
pub async fn ban<C: ConnectionTrait>(
    db: &C,
    name: &str,
    minutes: Option<i64>,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<user::Model, AppError> {
    let until = match minutes {
        None => forever(),
        Some(m) if (1..=MAX_BAN_MINUTES).contains(&m) => now + chrono::Duration::minutes(m),
        Some(_) => {
            return Err(AppError::Invalid(format!(
                "minutes 应在 1 到 {MAX_BAN_MINUTES} 之间"
            )));
        }
    };
    let user = find_user(db, name).await?;
    if is_admin(&user) {
        return Err(AppError::Forbidden(
            "不能封禁管理员（请先撤销其管理员身份）".into(),
        ));
    }
    let mut row: user::ActiveModel = user.into();
    row.banned_until = Set(Some(until));
    row.ban_reason = Set(Some(clip(reason, 255)));
    row.tokens_after = Set(Some(now));
    row.updated_at = Set(now);
    Ok(row.update(db).await?)
}

/// Lifts the ban of `name` (harmless when there is none). Tokens revoked by the ban stay revoked.
///
/// # Errors
/// [`AppError::NotFound`] for an unknown name; database failures.
pub async fn lift_ban<C: ConnectionTrait>(db: &C, name: &str) -> Result<user::Model, AppError> {
    let user = find_user(db, name).await?;
    if user.banned_until.is_none() {
        return Ok(user);
    }
    let mut row: user::ActiveModel = user.into();
    row.banned_until = Set(None);
    row.ban_reason = Set(None);
    row.updated_at = Set(Utc::now());
    Ok(row.update(db).await?)
}

async fn find_user<C: ConnectionTrait>(db: &C, name: &str) -> Result<user::Model, AppError> {
    user::Entity::find()
        .filter(user::Column::Name.eq(name))
        .one(db)
        .await?
        .ok_or_else(|| AppError::NotFound(format!("没有名为 {name} 的用户")))
}

/// Who took a message down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemovedBy {
    Admin,
    Author,
}

impl RemovedBy {
    /// As clients and the database name it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Author => "author",
        }
    }
}

/// Who did something: a user, or the `chatroom admin` command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    User { id: UserId, name: String },
    Console,
}

impl Actor {
    /// `user`, acting.
    pub fn user(user: &user::Model) -> Self {
        Self::User {
            id: user.id,
            name: user.name.clone(),
        }
    }
}

/// A message taken down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    pub id: i64,
    pub room_id: String,
    /// The picture it carried (to delete, when it is one of ours); empty for text.
    pub image: String,
    /// `false` when it had been taken down before: nothing changed now.
    pub now: bool,
}

/// Makes `name` an admin (`admin: true`) or a member again.
///
/// # Errors
/// [`AppError::NotFound`] for an unknown name; database failures.
pub async fn set_role<C: ConnectionTrait>(
    db: &C,
    name: &str,
    admin: bool,
) -> Result<user::Model, AppError> {
    let user = find_user(db, name).await?;
    let mut row: user::ActiveModel = user.into();
    row.role = Set(if admin { ADMIN } else { MEMBER }.to_owned());
    row.updated_at = Set(Utc::now());
    Ok(row.update(db).await?)
}

/// Takes message `id` down by an admin: its text and picture leave every history. Taking down a
/// message already removed changes nothing (`now: false`).
///
/// # Errors
/// [`AppError::NotFound`] for an unknown id; database failures.
pub async fn remove<C: ConnectionTrait>(db: &C, id: i64) -> Result<Removal, AppError> {
    let row = find_message(db, id).await?;
    take_down(db, row, RemovedBy::Admin).await
}

/// Takes message `id` down at its author's request, within `window` of its sending.
///
/// # Errors
/// [`AppError::NotFound`] for an unknown id, [`AppError::Forbidden`] for someone else's message,
/// [`AppError::TooLate`] after the window; database failures.
pub async fn recall<C: ConnectionTrait>(
    db: &C,
    author: UserId,
    id: i64,
    window: std::time::Duration,
    now: DateTime<Utc>,
) -> Result<Removal, AppError> {
    let row = find_message(db, id).await?;
    if row.sender_id != author {
        return Err(AppError::Forbidden("只能撤回自己的消息".into()));
    }
    if row.removed.is_none() && !within(row.created_at, window, now) {
        return Err(AppError::TooLate(format!(
            "消息发出已超过{}，不能撤回",
            span(window)
        )));
    }
    take_down(db, row, RemovedBy::Author).await
}

/// A recall window as people say it: whole minutes, or seconds when it is not a whole number of minutes.
fn span(window: std::time::Duration) -> String {
    let secs = window.as_secs();
    if secs >= 60 && secs.is_multiple_of(60) {
        format!(" {} 分钟", secs / 60)
    } else {
        format!(" {secs} 秒")
    }
}

/// Whether `sent` is at most `window` before `now`.
pub fn within(sent: DateTime<Utc>, window: std::time::Duration, now: DateTime<Utc>) -> bool {
    // A window too long for chrono's range never closes.
    chrono::Duration::from_std(window).map_or(true, |w| now.signed_duration_since(sent) <= w)
}

async fn find_message<C: ConnectionTrait>(db: &C, id: i64) -> Result<message::Model, AppError> {
    message::Entity::find_by_id(id)
        .one(db)
        .await?
        .ok_or_else(|| AppError::NotFound("消息不存在".into()))
}

async fn take_down<C: ConnectionTrait>(
    db: &C,
    row: message::Model,
    by: RemovedBy,
) -> Result<Removal, AppError> {
    if row.removed.is_some() {
        return Ok(Removal {
            id: row.id,
            room_id: row.room_id,
            image: String::new(),
            now: false,
        });
    }
    // Only a message still standing is taken down: two removals racing each other change it once.
    let done = message::Entity::update_many()
        .col_expr(message::Column::Body, Expr::value(""))
        .col_expr(message::Column::Image, Expr::value(""))
        .col_expr(message::Column::Removed, Expr::value(by.as_str()))
        .filter(message::Column::Id.eq(row.id))
        .filter(message::Column::Removed.is_null())
        .exec(db)
        .await?;
    Ok(Removal {
        id: row.id,
        room_id: row.room_id,
        now: done.rows_affected > 0,
        image: if done.rows_affected > 0 {
            row.image
        } else {
            String::new()
        },
    })
}

/// Whether a message still standing shows `image` (a picture posted twice must stay for the other).
///
/// # Errors
/// Database failures.
pub async fn image_in_use<C: ConnectionTrait>(db: &C, image: &str) -> Result<bool, AppError> {
    Ok(message::Entity::find()
        .filter(message::Column::Image.eq(image))
        .filter(message::Column::Removed.is_null())
        .limit(1)
        .count(db)
        .await?
        > 0)
}

/// What an audit entry records.
#[derive(Debug, Clone)]
pub struct Audit<'a> {
    pub actor: &'a Actor,
    /// `grant`, `revoke`, `remove`, `recall`, …
    pub action: &'a str,
    /// The message id, room id or user name touched.
    pub target: &'a str,
    pub reason: &'a str,
    /// Why it was refused; `None` when done.
    pub refused: Option<&'a AppError>,
}

/// Writes one audit entry.
///
/// # Errors
/// Database failures.
pub async fn record<C: ConnectionTrait>(db: &C, entry: Audit<'_>) -> Result<(), AppError> {
    let (actor_id, actor) = match entry.actor {
        Actor::User { id, name } => (Some(*id), name.clone()),
        Actor::Console => (None, "console".to_owned()),
    };
    audit_entry::ActiveModel {
        at: Set(Utc::now()),
        actor_id: Set(actor_id),
        actor: Set(actor),
        action: Set(entry.action.to_owned()),
        target: Set(clip(entry.target, 128)),
        reason: Set(clip(entry.reason, MAX_REASON_CHARS)),
        refused: Set(entry.refused.map(|e| clip(&e.public_message(), 255))),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(())
}

/// Audit entries newest first: page `page` (from 1) of `size`, and how many there are.
///
/// # Errors
/// Database failures.
pub async fn audit_page<C: ConnectionTrait>(
    db: &C,
    page: u64,
    size: u64,
) -> Result<(Vec<audit_entry::Model>, u64), AppError> {
    let size = size.clamp(1, MAX_AUDIT_PAGE);
    let total = audit_entry::Entity::find().count(db).await?;
    // Past the last page nothing is read: the offset stays within the table (SQL offsets are i64).
    let offset = page.saturating_sub(1).saturating_mul(size).min(total);
    let rows = audit_entry::Entity::find()
        .order_by_desc(audit_entry::Column::Id)
        .offset(offset)
        .limit(size)
        .all(db)
        .await?;
    Ok((rows, total))
}

/// The first `max` characters of `text`.
fn clip(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recall_window_includes_its_last_second() {
        let sent = Utc::now();
        let window = std::time::Duration::from_secs(120);
        assert!(within(sent, window, sent + chrono::Duration::seconds(120)));
        assert!(!within(sent, window, sent + chrono::Duration::seconds(121)));
        assert!(within(
            sent,
            std::time::Duration::MAX,
            sent + chrono::Duration::days(1)
        ));
    }

    #[test]
    fn bans_say_until_when_and_why() {
        let now = Utc::now();
        let until = now + chrono::Duration::minutes(5);
        assert!(
            ban_message(until, "spam").contains("解封")
                && ban_message(until, "spam").contains("spam")
        );
        assert_eq!(ban_message(forever(), ""), "该账号已被封禁");
        assert!(forever() > now);
    }

    #[test]
    fn recall_windows_read_as_people_say_them() {
        assert_eq!(span(std::time::Duration::from_secs(120)), " 2 分钟");
        assert_eq!(span(std::time::Duration::from_secs(90)), " 90 秒");
        assert_eq!(span(std::time::Duration::from_secs(1)), " 1 秒");
    }

    #[test]
    fn clip_counts_characters() {
        assert_eq!(clip("撤回消息", 2), "撤回");
        assert_eq!(clip("ab", 5), "ab");
    }
}
