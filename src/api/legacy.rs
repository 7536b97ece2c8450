//! Endpoints of the Laravel-era client (the LaravelS tutorial's `routes/api.php`).
//!
//! Its envelope is `{errno, user, message}`, always with HTTP 200: that client ignores every other
//! status. Its token travels as an `api_token` query or form field.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::envelope::{ApiResult, Envelope, Legacy, LegacyHistory};
use super::extract::{AuthUser, Body, ClientIp, EngineSession, MaybeUser, Query};
use super::session;
use crate::error::AppError;
use crate::services::history::{self, LegacyWindow};
use crate::services::messages::{self, PAGE_SIZE};
use crate::services::rooms::Room;
use crate::services::users;
use crate::state::AppState;
use crate::wire::{LegacyMessage, LegacyUser};

#[derive(Debug, Deserialize)]
pub struct RegisterForm {
    /// The e-mail address (the client labels it 账号).
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    src: Option<String>,
}

/// `POST /api/register`: registers with an e-mail address and signs in.
pub async fn register(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    socket: EngineSession,
    Body(form, _): Body<RegisterForm, Legacy>,
) -> ApiResult<Response, Legacy> {
    super::users::allow_signup(&state, ip)?;
    let user = users::register_with_email(
        &state.db,
        &state.hasher,
        &form.name,
        &form.password,
        form.src.as_deref(),
    )
    .await?;
    signed_in(&state, &user, "用户注册成功", &socket)
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
}

/// `POST /api/login`: signs in by e-mail address (or user name).
pub async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    socket: EngineSession,
    Body(form, _): Body<LoginForm, Legacy>,
) -> ApiResult<Response, Legacy> {
    let user = super::users::check_sign_in(&state, ip, &form.name, &form.password).await?;
    signed_in(&state, &user, "用户登录成功", &socket)
}

fn signed_in(
    state: &AppState,
    user: &entity::user::Model,
    message: &str,
    socket: &EngineSession,
) -> ApiResult<Response, Legacy> {
    let (token, cookie) = session::start(state, user, socket)?;
    let body =
        Legacy::ok(json!({ "user": LegacyUser::new(user, Some(token)), "message": message }));
    Ok((cookie, body).into_response())
}

/// `GET /api/user`: the signed-in account.
pub async fn user(AuthUser { user, .. }: AuthUser<Legacy>) -> Json<LegacyUser> {
    Json(LegacyUser::new(&user, None))
}

#[derive(Debug, Deserialize)]
pub struct HistoryQuery {
    #[serde(default)]
    roomid: String,
    #[serde(default)]
    current: String,
    #[serde(default)]
    total: String,
}

/// `GET /api/history/message?roomid=&current=&total=`: page `current` (from 1) counted back from the
/// newest message, oldest first within the page. `total` is the room's message count the client saw
/// at page 1; messages posted since then shift the window so pages neither repeat nor skip. Group
/// rooms are public, so no token is needed for them (the client reloads history without one after a
/// reconnect).
pub async fn history(
    State(state): State<AppState>,
    MaybeUser(viewer, _): MaybeUser<LegacyHistory>,
    Query(query, _): Query<HistoryQuery, LegacyHistory>,
) -> ApiResult<Json<Value>, LegacyHistory> {
    let roomid = query.roomid.trim();
    let room = state.rooms.parse_legacy(roomid);
    let room = room.ok_or_else(|| AppError::invalid("无效的房间"))?;
    if matches!(room, Room::Private { .. }) && !viewer.as_ref().is_some_and(|v| room.admits(v.id)) {
        return Err(AppError::Forbidden("你暂无权限".into()).into());
    }
    let current = history::parse_page(&query.current)?;
    let count = messages::count(&state.db, &room.id()).await?;
    let LegacyWindow { offset, total } = history::legacy_window(current, &query.total, count);
    let page = messages::page_from_newest(&state.db, &room, offset, PAGE_SIZE).await?;
    let data: Vec<LegacyMessage> = page
        .iter()
        .map(|m| LegacyMessage::new(m, &state.rooms))
        .collect();
    Ok(LegacyHistory::ok(
        json!({ "data": data, "total": total, "current": current }),
    ))
}
