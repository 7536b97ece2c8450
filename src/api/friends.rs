//! v3 friend endpoints: `/api/friend/*`.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::Value;

use super::envelope::{ApiResult, V3};
use super::extract::{AuthUser, Body, MaybeUser};
use crate::error::{AppError, LOGIN_REQUIRED};
use crate::realtime::Pusher;
use crate::realtime::events::Outbound;
use crate::services::friends;
use crate::services::rooms::parse_user_id;
use crate::state::AppState;
use crate::wire::FriendView;

#[derive(Debug, Deserialize)]
pub struct AddForm {
    #[serde(rename = "selfId", default)]
    self_id: Option<String>,
    #[serde(rename = "friendId", default)]
    friend_id: Option<String>,
}

/// `POST /api/friend/add`: befriends `friendId` on behalf of the token's user. A `selfId` naming
/// anyone else is refused rather than trusted.
pub async fn add(
    State(state): State<AppState>,
    AuthUser { user, .. }: AuthUser<V3>,
    Body(form, _): Body<AddForm, V3>,
) -> ApiResult<Json<Value>> {
    check_self(form.self_id.as_deref(), user.id)?;
    let friend = form
        .friend_id
        .as_deref()
        .map(str::trim)
        .filter(|f| !f.is_empty());
    let friend = friend.ok_or_else(|| AppError::invalid("缺少参数 friendId"))?;
    let friend = parse_user_id(friend).ok_or_else(|| AppError::NotFound("用户不存在".into()))?;
    friends::add(&state.db, user.id, friend).await?;
    push_friend_list(&state, friend).await;
    Ok(V3::data("添加成功"))
}

#[derive(Debug, Deserialize)]
pub struct ListForm {
    #[serde(rename = "selfId", default)]
    self_id: Option<String>,
}

/// `POST /api/friend/list`: the token user's friends. Friend lists are private, so a request without
/// a token, or for another `selfId`, is refused.
pub async fn list(
    State(state): State<AppState>,
    MaybeUser(viewer, _): MaybeUser,
    Body(form, _): Body<ListForm, V3>,
) -> ApiResult<Json<Value>> {
    let user = viewer.ok_or_else(|| AppError::Forbidden(LOGIN_REQUIRED.into()))?;
    check_self(form.self_id.as_deref(), user.id)?;
    let entries = friends::list(&state.db, user.id).await?;
    let data: Vec<FriendView> = entries.iter().map(FriendView::from).collect();
    Ok(V3::data(data))
}

/// Sends `user` their new friend list (`friend`), on every device: the v3 client replaces its list.
async fn push_friend_list(state: &AppState, user: i64) {
    match friends::list(&state.db, user).await {
        Ok(entries) => {
            let data: Vec<FriendView> = entries.iter().map(FriendView::from).collect();
            let event = Outbound::Friends(data);
            state
                .realtime
                .pusher()
                .push(&Pusher::to_user_id(&[user]), &event)
                .await;
        }
        Err(e) => tracing::warn!(error = %e, "could not push a friend list"),
    }
}

/// A body's `selfId`, when given, must be the caller.
fn check_self(self_id: Option<&str>, caller: i64) -> Result<(), AppError> {
    match self_id.map(str::trim).filter(|s| !s.is_empty()) {
        Some(id) if parse_user_id(id) != Some(caller) => {
            Err(AppError::Forbidden("不能以其他用户的身份操作".into()))
        }
        _ => Ok(()),
    }
}
