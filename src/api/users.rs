//! v3 account endpoints: `/api/user/*`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::header::SET_COOKIE;
use axum::response::{AppendHeaders, IntoResponse, Response};
use sea_orm::DatabaseConnection;
use serde::Deserialize;
use serde_json::json;

use super::envelope::{ApiResult, Envelope, V3};
use super::extract::{AuthUser, BearerToken, Body, ClientIp, EngineSession, Query, authenticate};
use super::session;
use crate::auth::request::{clear_auth_cookie, usable};
use crate::config::Settings;
use crate::error::AppError;
use crate::services::{sessions, users};
use crate::state::AppState;
use crate::wire::{PublicUser, UserInfo};

/// Most users a search returns.
const SEARCH_LIMIT: u64 = 50;

#[derive(Debug, Deserialize)]
pub struct SignupForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    src: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct SigninForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
}

/// `POST /api/user/signup`: registers and signs in (contract §1.3).
pub async fn signup(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    socket: EngineSession,
    Body(form, _): Body<SignupForm, V3>,
) -> ApiResult<Response> {
    allow_signup(&state, ip)?;
    let user = users::register(
        &state.db,
        &state.hasher,
        &form.name,
        &form.password,
        form.src.as_deref(),
    )
    .await?;
    signed_in(&state, &user, "注册成功", &socket)
}

/// `POST /api/user/signin`.
pub async fn signin(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    socket: EngineSession,
    Body(form, _): Body<SigninForm, V3>,
) -> ApiResult<Response> {
    let user = check_sign_in(&state, ip, &form.name, &form.password).await?;
    signed_in(&state, &user, "登录成功", &socket)
}

/// Checks a sign-in under the sign-in limits (per account and address pair, per client address,
/// slowed per account).
///
/// # Errors
/// [`AppError::RateLimited`] past a limit; the sign-in's own refusal otherwise.
pub async fn check_sign_in(
    state: &AppState,
    ip: std::net::IpAddr,
    name: &str,
    password: &str,
) -> Result<entity::user::Model, AppError> {
    users::sign_in_limited(
        &state.db,
        &state.hasher,
        &state.limits.signin,
        &state.metrics,
        state.settings.http.addr_key(ip),
        name,
        password,
    )
    .await
}

fn signed_in(
    state: &AppState,
    user: &entity::user::Model,
    message: &str,
    socket: &EngineSession,
) -> ApiResult<Response> {
    let (token, cookie) = session::start(state, user, socket)?;
    let body = V3::ok(json!({ "data": message, "userInfo": UserInfo::from(user), "token": token }));
    Ok((cookie, body).into_response())
}

/// Counts a sign-up from `ip` (its network for IPv6) against the hourly limit.
///
/// # Errors
/// [`AppError::RateLimited`] past the hourly limit.
pub fn allow_signup(state: &AppState, ip: std::net::IpAddr) -> Result<(), AppError> {
    users::allow_sign_up(&state.limits.signup, state.settings.http.addr_key(ip))
}

/// `POST /api/user/logout` (and the Laravel-era `POST /api/logout`): revokes the token the request
/// carries, in a header, query, cookie or `api_token` body field, and clears the cookie.
pub async fn logout<E: Envelope>(
    State(state): State<AppState>,
    BearerToken(token): BearerToken,
    socket: EngineSession,
    Body(form, _): Body<LogoutForm, E>,
) -> ApiResult<Response, E> {
    let token = token.or(form.api_token.filter(|t| usable(t)));
    let (user, claims) = authenticate(&state, token.as_deref()).await?;
    sessions::revoke(&state.db, &claims).await?;
    // Sockets bound with this token stop acting for the user, and so does the same browser's socket.
    state.realtime.revoke(user.id, &claims.jti);
    if let Some(sid) = socket.0 {
        state.realtime.release(&sid, user.id);
    }
    let cookie = clear_auth_cookie(state.settings.http.cookie_secure);
    let body = E::ok(json!({ "data": "已退出登录", "message": "已退出登录" }));
    Ok((AppendHeaders([(SET_COOKIE, cookie)]), body).into_response())
}

#[derive(Debug, Default, Deserialize)]
pub struct LogoutForm {
    #[serde(default)]
    api_token: Option<String>,
}

/// `GET /api/user/vipuser`: the configured VIP users.
pub async fn vip(
    State(db): State<DatabaseConnection>,
    State(settings): State<Arc<Settings>>,
) -> ApiResult<Json<serde_json::Value>> {
    let users = users::by_names(&db, &settings.realtime.vip_users).await?;
    let data: Vec<PublicUser> = users.iter().map(PublicUser::from).collect();
    Ok(V3::data(data))
}

#[derive(Debug, Deserialize)]
pub struct SearchQuery {
    #[serde(default)]
    name: String,
}

/// `GET /api/user/search?name=`: users whose name contains the text.
pub async fn search(
    State(state): State<AppState>,
    Query(query, _): Query<SearchQuery, V3>,
) -> ApiResult<Json<serde_json::Value>> {
    let found = users::search(&state.db, &query.name, SEARCH_LIMIT).await?;
    let data: Vec<PublicUser> = found.iter().map(PublicUser::from).collect();
    Ok(V3::data(data))
}

#[derive(Debug, Deserialize)]
pub struct InfoQuery {
    #[serde(default)]
    id: String,
}

/// `GET /api/user/getInfo?id=<username>`: a profile by name (the client passes names, not ids).
pub async fn info(
    State(state): State<AppState>,
    Query(query, _): Query<InfoQuery, V3>,
) -> ApiResult<Json<serde_json::Value>> {
    if query.id.trim().is_empty() {
        return Err(AppError::invalid("缺少参数 id").into());
    }
    let name = query.id.trim();
    let mut user = users::find_by_name(&state.db, name).await?;
    if user.is_none() && name.contains('%') {
        // The v3 client takes a name from its page URL without decoding it, so a Chinese name
        // arrives percent-encoded twice: `%E6%B5%8B…` after the query is decoded once.
        let decoded = percent_encoding::percent_decode_str(name).decode_utf8();
        if let Ok(decoded) = decoded
            && decoded != name
        {
            user = users::find_by_name(&state.db, &decoded).await?;
        }
    }
    let user = user.ok_or_else(|| AppError::NotFound("用户不存在".into()))?;
    Ok(V3::data(UserInfo::from(&user)))
}

/// `GET /api/user/me`: the signed-in user (for clients that keep only the cookie), with `admin` and
/// `recallWindow` (seconds) for chatroom's own web client.
pub async fn me(
    State(settings): State<Arc<Settings>>,
    AuthUser { user, .. }: AuthUser<V3>,
) -> Json<serde_json::Value> {
    let mut info = serde_json::to_value(UserInfo::from(&user)).unwrap_or_default();
    // Only the signed-in user learns their own role (chatroom's web client shows admin tools) and
    // how long they may recall a message.
    info["admin"] = serde_json::Value::Bool(crate::services::moderation::is_admin(&user));
    info["recallWindow"] = serde_json::json!(settings.realtime.recall_window.as_secs());
    V3::data(info)
}
