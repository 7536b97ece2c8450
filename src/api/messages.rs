//! v3 message endpoints: `/api/message/*`.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::envelope::{ApiResult, V3};
use super::extract::{MaybeUser, Query};

use crate::error::AppError;
use crate::services::messages::{self, PAGE_SIZE};
use crate::services::rooms::{Room, parse_user_id, private_room};
use crate::services::{friends, history};
use crate::state::AppState;
use crate::wire::{HotUser, PublicUser, RoomView, V3Message};

/// How many users `getHot` lists.
const HOT_USERS: u64 = 10;

#[derive(Debug, Deserialize)]
pub struct ByUserQuery {
    #[serde(rename = "selfId", default)]
    self_id: String,
}

/// `GET /api/message/history/byUser?selfId=`: the last page of every room the client shows at load: the
/// group rooms, and the private room with each friend. Private rooms are only included when the
/// request's token belongs to `selfId`.
pub async fn by_user(
    State(state): State<AppState>,
    MaybeUser(viewer, _): MaybeUser,
    Query(query, _): Query<ByUserQuery, V3>,
) -> ApiResult<Json<Value>> {
    let self_id =
        parse_user_id(query.self_id.trim()).ok_or_else(|| AppError::invalid("缺少参数 selfId"))?;
    let mut rooms: Vec<Room> = state
        .rooms
        .groups()
        .iter()
        .cloned()
        .map(Room::Group)
        .collect();
    if viewer.as_ref().is_some_and(|v| v.id == self_id) {
        for (_, friend) in friends::list(&state.db, self_id).await? {
            rooms.push(private_room(self_id, friend.id));
        }
    }
    let mut data = Map::new();
    for room in rooms {
        let page = messages::recent(&state.db, &room, None, PAGE_SIZE).await?;
        let page: Vec<V3Message> = page.iter().map(V3Message::from).collect();
        data.insert(
            room.id(),
            serde_json::to_value(page).map_err(|e| AppError::Internal(e.into()))?,
        );
    }
    Ok(V3::data(data))
}

#[derive(Debug, Deserialize)]
pub struct HistoryQuery {
    #[serde(default)]
    roomid: String,
    #[serde(default)]
    msgid: Option<String>,
}

/// `GET /api/message/v2/history?roomid=&msgid=`: 20 messages older than `msgid` (the newest 20 without
/// it), oldest first. A private room is readable only by its two users.
pub async fn history(
    State(state): State<AppState>,
    MaybeUser(viewer, _): MaybeUser,
    Query(query, _): Query<HistoryQuery, V3>,
) -> ApiResult<Json<Value>> {
    if query.roomid.trim().is_empty() {
        return Err(AppError::invalid("缺少参数 roomid").into());
    }
    let room = state
        .rooms
        .parse(query.roomid.trim())
        .ok_or_else(|| AppError::invalid("房间不存在"))?;
    if !viewer.as_ref().is_some_and(|v| room.admits(v.id)) && matches!(room, Room::Private { .. }) {
        return Err(AppError::Forbidden("你暂无权限".into()).into());
    }
    let before = history::parse_cursor(query.msgid.as_deref())?;
    let page = messages::recent(&state.db, &room, before, PAGE_SIZE).await?;
    let page: Vec<V3Message> = page.iter().map(V3Message::from).collect();
    Ok(V3::data(json!({ "data": page })))
}

/// `GET /api/message/getHot`: the most active users of the group rooms.
pub async fn hot(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let ranked = messages::hot_senders(&state.db, &state.rooms.groups(), HOT_USERS).await?;
    let data: Vec<HotUser> = ranked
        .iter()
        .map(|(user, count)| HotUser {
            name: user.name.clone(),
            count: *count,
            user: PublicUser::from(user),
        })
        .collect();
    Ok(V3::data(data))
}

/// `GET /api/rooms`: every group room in order, archived ones marked (their history stays readable).
pub async fn rooms(State(state): State<AppState>) -> Json<Value> {
    V3::data(RoomView::list(&state.rooms.all()))
}
