//! `/api/admin/`: what operators do over HTTP. Every path under it, known or not, answers `403` to
//! anyone who is not an admin (signed in or not) before anything else happens; refusals use the
//! [`AdminApi`] envelope (`{errno, code, data, msg}` and a status per kind).

use axum::Json;
use axum::extract::{FromRef, FromRequestParts, Path, State};
use axum::http::request::Parts;
use chrono::{SecondsFormat, Utc};
use entity::user;
use serde::Deserialize;
use serde_json::{Value, json};

use super::envelope::{AdminApi, ApiResult, Envelope, Reject};
use super::extract::{Body, Query, authenticate};
use crate::auth::request::token_from_parts;
use crate::error::AppError;
use crate::realtime::moderation::TakeDown;
use crate::services::moderation::{self, Actor, RemovedBy};
use crate::services::rooms;
use crate::state::AppState;
use crate::wire::RoomView;

/// Shown to anyone who is not an admin.
const ADMINS_ONLY: &str = "仅管理员可以访问";

/// A signed-in admin. The role is read from the database with the user, so a grant or a revocation
/// holds from the next request.
pub struct Admin(pub user::Model);

impl<S> FromRequestParts<S> for Admin
where
    S: Send + Sync,
    AppState: FromRef<S>,
{
    type Rejection = Reject<AdminApi>;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        match authenticate(&state, token_from_parts(parts).as_deref()).await {
            Ok((user, _)) if moderation::is_admin(&user) => Ok(Self(user)),
            Ok(_) | Err(AppError::Unauthenticated(_)) => {
                Err(Reject::new(AppError::Forbidden(ADMINS_ONLY.into())))
            }
            Err(e) => Err(Reject::new(e)),
        }
    }
}

/// Why an admin acts (optional).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Reason {
    reason: String,
}

/// `DELETE /api/admin/messages/{id}` `{reason?}`: takes a message down. Its room hears
/// `messageRemoved` on every node; a second removal answers the same and changes nothing.
pub async fn remove_message(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(id): Path<String>,
    Body(body, _): Body<Reason, AdminApi>,
) -> ApiResult<Json<Value>, AdminApi> {
    let actor = Actor::user(&admin);
    let Some(id) = id.trim().parse::<i64>().ok().filter(|id| *id > 0) else {
        let error = AppError::NotFound("消息不存在".into());
        audit_outcome(&state, &actor, "remove", &id, &body.reason, Some(&error)).await?;
        return Err(Reject::new(error));
    };
    let request = TakeDown {
        actor: &actor,
        by: RemovedBy::Admin,
        id,
        reason: body.reason.trim(),
        window: state.settings.realtime.recall_window,
    };
    let removal = state.realtime.take_down(&state.uploads, request).await?;
    Ok(AdminApi::ok(json!({
        "data": { "id": removal.id, "roomid": removal.room_id, "removed": true, "already": !removal.now }
    })))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct AuditQuery {
    page: Option<String>,
    size: Option<String>,
}

/// `GET /api/admin/audit?page=&size=`: the audit trail, newest first (`size` at most 100, default 20).
pub async fn audit(
    State(state): State<AppState>,
    Admin(_): Admin,
    Query(query, _): Query<AuditQuery, AdminApi>,
) -> ApiResult<Json<Value>, AdminApi> {
    let page = number(query.page.as_deref(), 1, "page")?;
    let size = number(query.size.as_deref(), 20, "size")?.min(moderation::MAX_AUDIT_PAGE);
    let (rows, total) = moderation::audit_page(&state.db, page, size).await?;
    let entries: Vec<Value> = rows
        .into_iter()
        .map(|e| {
            json!({
                "id": e.id,
                "at": e.at.to_rfc3339_opts(SecondsFormat::Millis, true),
                "actor": e.actor,
                "action": e.action,
                "target": e.target,
                "reason": e.reason,
                "refused": e.refused,
            })
        })
        .collect();
    Ok(AdminApi::ok(json!({
        "data": { "entries": entries, "page": page, "size": size, "total": total }
    })))
}

/// Any other path under `/api/admin/`: `403` for non-admins, `404` for admins.
pub async fn unknown(Admin(_): Admin) -> Reject<AdminApi> {
    Reject::new(AppError::NotFound("没有这个接口".into()))
}

/// A positive page number or size; `default` when absent.
fn number(text: Option<&str>, default: u64, name: &str) -> Result<u64, AppError> {
    match text.map(str::trim).filter(|t| !t.is_empty()) {
        None => Ok(default),
        Some(t) => t
            .parse::<u64>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| AppError::Invalid(format!("参数 {name} 无效"))),
    }
}

/// Records an admin's action in the audit trail, done (`refused: None`) or refused; our own
/// failures are logged, not audited.
async fn audit_outcome(
    state: &AppState,
    actor: &Actor,
    action: &str,
    target: &str,
    reason: &str,
    refused: Option<&AppError>,
) -> Result<(), AppError> {
    if refused.is_some_and(AppError::is_internal) {
        return Ok(());
    }
    moderation::record(
        &state.db,
        moderation::Audit {
            actor,
            action,
            target,
            reason,
            refused,
        },
    )
    .await
}

/// `POST /api/admin/users/{name}/ban`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct BanRequest {
    reason: String,
    /// How long; without it the ban holds until it is lifted.
    minutes: Option<i64>,
}

/// `POST /api/admin/users/{name}/ban` `{reason, minutes?}`: revokes every token of the user, closes
/// their sockets on every node, and refuses their sign-ins until the ban ends or is lifted. Admins
/// cannot be banned.
pub async fn ban(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(name): Path<String>,
    Body(body, _): Body<BanRequest, AdminApi>,
) -> ApiResult<Json<Value>, AdminApi> {
    let actor = Actor::user(&admin);
    let reason = body.reason.trim();
    let now = Utc::now();
    let outcome = moderation::ban(&state.db, &name, body.minutes, reason, now).await;
    audit_outcome(&state, &actor, "ban", &name, reason, outcome.as_ref().err()).await?;
    let user = outcome?;
    let until = user.banned_until.unwrap_or_else(moderation::forever);
    state
        .realtime
        .ban(user.id, &moderation::ban_message(until, reason))
        .await;
    let until =
        (until < moderation::forever()).then(|| until.to_rfc3339_opts(SecondsFormat::Secs, true));
    Ok(AdminApi::ok(json!({
        "data": { "name": user.name, "until": until, "reason": reason }
    })))
}

/// `DELETE /api/admin/users/{name}/ban`: lifts a ban (harmless when there is none). The tokens it
/// revoked stay revoked: the user signs in again.
pub async fn unban(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(name): Path<String>,
    Body(body, _): Body<Reason, AdminApi>,
) -> ApiResult<Json<Value>, AdminApi> {
    let actor = Actor::user(&admin);
    let reason = body.reason.trim();
    let outcome = moderation::lift_ban(&state.db, &name).await;
    audit_outcome(
        &state,
        &actor,
        "unban",
        &name,
        reason,
        outcome.as_ref().err(),
    )
    .await?;
    let user = outcome?;
    Ok(AdminApi::ok(
        json!({ "data": { "name": user.name, "banned": false } }),
    ))
}

/// `POST /api/admin/rooms`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct NewRoom {
    roomid: String,
    name: String,
    reason: String,
}

/// `POST /api/admin/rooms` `{roomid, name}`: creates a group room, listed last; every client's room
/// list follows at once (`rooms`), on every node.
pub async fn create_room(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Body(body, _): Body<NewRoom, AdminApi>,
) -> ApiResult<Json<Value>, AdminApi> {
    let actor = Actor::user(&admin);
    let outcome = rooms::create(&state.db, &body.roomid, &body.name).await;
    let target = body.roomid.trim();
    audit_outcome(
        &state,
        &actor,
        "create_room",
        target,
        body.reason.trim(),
        outcome.as_ref().err(),
    )
    .await?;
    let group = outcome?;
    state
        .realtime
        .rooms_changed(rooms::load(&state.db).await?)
        .await;
    Ok(AdminApi::ok(json!({ "data": RoomView::from(&group) })))
}

/// `DELETE /api/admin/rooms/{roomid}`: archives a group room: its history stays readable, new
/// messages are refused, and it leaves every client's list of open rooms.
pub async fn archive_room(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(roomid): Path<String>,
    Body(body, _): Body<Reason, AdminApi>,
) -> ApiResult<Json<Value>, AdminApi> {
    let actor = Actor::user(&admin);
    let outcome = rooms::archive(&state.db, &roomid).await;
    audit_outcome(
        &state,
        &actor,
        "archive_room",
        &roomid,
        body.reason.trim(),
        outcome.as_ref().err(),
    )
    .await?;
    let group = outcome?;
    state
        .realtime
        .rooms_changed(rooms::load(&state.db).await?)
        .await;
    Ok(AdminApi::ok(json!({ "data": RoomView::from(&group) })))
}
