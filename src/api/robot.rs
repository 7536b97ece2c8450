//! The robot endpoints of both clients: v3 `GET /api/message/robotapi` and Laravel-era `GET /api/robot`.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};

use super::envelope::{ApiResult, Envelope, RobotReply};
use super::extract::{AuthUser, Query};
use crate::error::AppError;
use crate::state::AppState;

#[derive(Debug, Deserialize)]
pub struct AskQuery {
    #[serde(default)]
    info: String,
}

/// Answers one question for the signed-in user (the `id` the clients send is not trusted). The reply is
/// the JSON *string* the clients parse: `{data: "{\"code\":100000,\"text\":…}"}`.
pub async fn ask(
    State(state): State<AppState>,
    AuthUser { user, .. }: AuthUser<RobotReply>,
    Query(query, _): Query<AskQuery, RobotReply>,
) -> ApiResult<Json<Value>, RobotReply> {
    if !state.limits.robot.hit(&user.id.to_string()) {
        return Err(AppError::RateLimited.into());
    }
    let reply = state.robot.reply(&user.name, &query.info).await;
    Ok(RobotReply::ok(json!({ "data": reply.to_json() })))
}
