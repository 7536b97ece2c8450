//! Uploads shared by both clients: `POST /api/file/uploadimg` and `POST /api/file/avatar`.
//!
//! Both clients post `multipart/form-data` with the image in field `file`. They are told apart by the
//! `Authorization` header, which the v3 client always sends (`Bearer false` when signed out) and the
//! Laravel-era client never does; the latter puts `api_token` in the form instead.

use axum::Json;
use axum::extract::multipart::{MultipartError, MultipartRejection};
use axum::extract::{Multipart, State};
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::envelope::{ApiResult, Envelope, Legacy, V3};
use super::extract::{BearerToken, authenticate};
use crate::auth::request::usable;
use crate::error::AppError;
use crate::metrics::Refusal;
use crate::services::messages;
use crate::services::uploads::{StoredFile, UploadTicket};
use crate::services::users::{self, Author};
use crate::state::AppState;

/// Longest accepted text field in an upload form.
const MAX_TEXT_FIELD: usize = 4096;

/// `POST /api/file/uploadimg`: stores a chat picture. For the v3 client that is all: it then sends the
/// message over the socket with the returned URL. The Laravel-era client expects the upload itself to
/// post the picture to its room (`roomid`), so for it the message is stored here.
pub async fn upload_image(
    State(state): State<AppState>,
    headers: HeaderMap,
    BearerToken(token): BearerToken,
    multipart: Result<Multipart, MultipartRejection>,
) -> Response {
    if headers.contains_key(AUTHORIZATION) {
        v3_image(&state, token, multipart).await.into_response()
    } else {
        legacy_image(&state, token, multipart).await.into_response()
    }
}

async fn v3_image(
    state: &AppState,
    token: Option<String>,
    multipart: Result<Multipart, MultipartRejection>,
) -> ApiResult<Json<Value>, V3> {
    let (_, form, ticket) = receive(state, token, multipart).await?;
    let stored = store(state, ticket, &form.file.unwrap_or_default()).await?;
    Ok(V3::ok(json!({ "data": stored.url, "msg": "保存成功!" })))
}

async fn legacy_image(
    state: &AppState,
    token: Option<String>,
    multipart: Result<Multipart, MultipartRejection>,
) -> ApiResult<Json<Value>, Legacy> {
    let (user, form, ticket) = receive(state, token, multipart).await?;
    let room = form
        .roomid
        .as_deref()
        .and_then(|r| state.rooms.parse_legacy(r));
    let room = room
        .filter(|r| r.admits(user.id))
        .ok_or_else(|| AppError::invalid("无效的房间"))?;
    let stored = store(state, ticket, &form.file.unwrap_or_default()).await?;
    // Composed, stored and announced like a socket message: the room sees the picture at once.
    let max_chars = state.settings.realtime.message_max_chars;
    let posted = match messages::compose(user.id, room, "", &stored.url, None, max_chars) {
        Ok(new) => state.realtime.store(new, Author::from(&user), None).await,
        Err(e) => Err(e),
    };
    if let Err(e) = posted {
        state.uploads.discard(&stored).await;
        return Err(e.into());
    }
    Ok(Legacy::ok(
        json!({ "message": "保存成功", "data": { "url": stored.url } }),
    ))
}

/// `POST /api/file/avatar`: replaces the signed-in user's avatar. The `username` field the clients send
/// is ignored: nobody can change another user's avatar.
pub async fn avatar(
    State(state): State<AppState>,
    headers: HeaderMap,
    BearerToken(token): BearerToken,
    multipart: Result<Multipart, MultipartRejection>,
) -> Response {
    if headers.contains_key(AUTHORIZATION) {
        set_avatar::<V3>(&state, token, multipart)
            .await
            .into_response()
    } else {
        set_avatar::<Legacy>(&state, token, multipart)
            .await
            .into_response()
    }
}

async fn set_avatar<E: Envelope>(
    state: &AppState,
    token: Option<String>,
    multipart: Result<Multipart, MultipartRejection>,
) -> ApiResult<Json<Value>, E> {
    let (user, form, ticket) = receive(state, token, multipart).await?;
    let stored = store(state, ticket, &form.file.unwrap_or_default()).await?;
    users::set_avatar(&state.db, user.id, &stored.url).await?;
    Ok(E::ok(
        json!({ "data": { "url": stored.url }, "msg": "保存成功", "message": "保存成功" }),
    ))
}

/// The fields of an upload form chatroom reads.
#[derive(Debug, Default)]
struct UploadForm {
    file: Option<Vec<u8>>,
    api_token: Option<String>,
    roomid: Option<String>,
}

/// Stores an upload under its ticket's quota.
async fn store(
    state: &AppState,
    ticket: UploadTicket,
    bytes: &[u8],
) -> Result<StoredFile, AppError> {
    state
        .uploads
        .store_for(ticket, bytes)
        .await
        .map_err(|e| counted(state, e))
}

/// Counts a quota refusal in the metrics.
fn counted(state: &AppState, err: AppError) -> AppError {
    if let AppError::OverQuota { storage, .. } = &err {
        state.metrics.refused(if *storage {
            Refusal::UploadStorage
        } else {
            Refusal::UploadRate
        });
    }
    err
}

/// Authenticates and reads an upload form, holding one of the upload permits so that only a bounded
/// number of files sit in memory at once. A token in the headers, query or cookie is checked, and the
/// user's hourly upload allowance taken, before the body is read; the Laravel-era client's
/// `api_token` form field is checked after.
async fn receive(
    state: &AppState,
    token: Option<String>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<(entity::user::Model, UploadForm, UploadTicket), AppError> {
    let early = match token.as_deref() {
        Some(t) => Some(authenticate(state, Some(t)).await?.0),
        None => None,
    };
    let early_ticket = match &early {
        Some(user) => Some(
            state
                .uploads
                .ticket(user.id)
                .map_err(|e| counted(state, e))?,
        ),
        None => None,
    };
    let mut multipart =
        multipart.map_err(|_| AppError::invalid("请以 multipart/form-data 上传图片"))?;
    let _permit = state.uploads.permit().await?;
    let mut form = UploadForm::default();
    while let Some(mut field) = multipart
        .next_field()
        .await
        .map_err(|e| multipart_error(state, &e))?
    {
        let name = field.name().unwrap_or_default().to_owned();
        let limit = if name == "file" {
            state.uploads.max_bytes()
        } else {
            MAX_TEXT_FIELD
        };
        let mut bytes = Vec::new();
        while let Some(chunk) = field
            .chunk()
            .await
            .map_err(|e| multipart_error(state, &e))?
        {
            if bytes.len() + chunk.len() > limit {
                return Err(if name == "file" {
                    state.uploads.too_large()
                } else {
                    AppError::invalid("表单字段过长")
                });
            }
            bytes.extend_from_slice(&chunk);
        }
        let text = || String::from_utf8_lossy(&bytes).trim().to_owned();
        match name.as_str() {
            "file" if form.file.is_none() => form.file = Some(bytes),
            "api_token" | "token" => form.api_token = Some(text()).filter(|t| usable(t)),
            "roomid" => form.roomid = Some(text()),
            _ => {}
        }
    }
    let user = match early {
        Some(user) => user,
        None => authenticate(state, form.api_token.as_deref()).await?.0,
    };
    if form.file.as_ref().is_none_or(Vec::is_empty) {
        return Err(AppError::invalid("请选择要上传的图片"));
    }
    let ticket = match early_ticket {
        Some(ticket) => ticket,
        None => state
            .uploads
            .ticket(user.id)
            .map_err(|e| counted(state, e))?,
    };
    Ok((user, form, ticket))
}

fn multipart_error(state: &AppState, err: &MultipartError) -> AppError {
    if err.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        state.uploads.too_large()
    } else {
        AppError::invalid("上传格式错误")
    }
}
