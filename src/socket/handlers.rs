//! Event handlers: read the payload, check who is asking, call services, push. Identity always comes
//! from the socket's binding; identity fields in payloads are only compared against it.

use entity::user;
use serde_json::Value;

use super::auth::SocketAuthenticatable;
use super::conn::Dialect;
use super::events::Outbound;
use super::pusher::Target;
use super::router::{HandlerResult, Reply};
use super::{Ctx, Origin};
use crate::api::extract::{authenticate, usable};
use crate::error::{AppError, LOGIN_REQUIRED};
use crate::services::rooms::Room;
use crate::services::{messages, unread};

/// `connect`: bind the socket to the user its token named, if any.
pub async fn connect(ctx: Ctx, data: Value) -> HandlerResult {
    if let Some(id) = data.get("user_id").and_then(Value::as_i64) {
        ctx.login_using_id(id).await?;
    }
    Ok(Reply::Done)
}

/// `disconnect`: leave every room and unbind.
pub async fn disconnect(ctx: Ctx, _reason: Value) -> HandlerResult {
    ctx.logout().await;
    Ok(Reply::Done)
}

/// `login`: answered with the user's unread counts of the group rooms (`count`).
pub async fn login(ctx: Ctx, data: Value) -> HandlerResult {
    let user = signed_in(&ctx, &data, "login").await?;
    let groups = ctx.state.rooms.groups().to_vec();
    // Another socket of the user may have loaded the counters already; they are kept current since.
    let cached = ctx.state.realtime.presence().unread(user.id);
    let counts = match cached {
        Some(counts) => counts,
        None => {
            let loaded = unread::counts(&ctx.state.db, &user, &groups).await?;
            ctx.state.realtime.presence().load_unread(user.id, loaded)
        }
    };
    let counts: Vec<(String, u64)> = groups
        .into_iter()
        .map(|room| {
            let n = counts.get(&room).copied().unwrap_or(0);
            (room, n)
        })
        .collect();
    ctx.state
        .realtime
        .pusher()
        .push(&Target::Socket(ctx.socket.id), &Outbound::Unread(counts))
        .await;
    Ok(Reply::Done)
}

/// `room`: enter a group room; the room is told who is there.
pub async fn room(ctx: Ctx, data: Value) -> HandlerResult {
    let user = signed_in(&ctx, &data, "room").await?;
    match ctx.room_of(&data) {
        Some(Room::Group(room)) => {
            ctx.enter(&room, &user).await;
            Ok(Reply::Done)
        }
        _ => Err(AppError::invalid("房间不存在")),
    }
}

/// `roomout`: the v3 client sends it, without a payload, when its user signs out: leave every room and
/// unbind. The Laravel-era client names the room it leaves.
pub async fn roomout(ctx: Ctx, data: Value) -> HandlerResult {
    match ctx.conn.dialect {
        Dialect::V3 => ctx.logout().await,
        Dialect::Laravel => {
            signed_in(&ctx, &data, "roomout").await?;
            match ctx.room_of(&data) {
                Some(room) => ctx.leave(&room.id()).await,
                None => {
                    for room in ctx.conn.rooms() {
                        ctx.leave(&room).await;
                    }
                }
            }
        }
    }
    Ok(Reply::Done)
}

/// `message`: validate, store (through the writer), then echo and broadcast the stored message.
pub async fn message(ctx: Ctx, data: Value) -> HandlerResult {
    let user = signed_in(&ctx, &data, "message").await?;
    if !data.is_object() {
        return Err(AppError::invalid("消息格式错误"));
    }
    let room = ctx
        .room_of(&data)
        .ok_or_else(|| AppError::invalid("房间不存在"))?;
    let image = text_field(&data, "img")?;
    if ctx.conn.dialect == Dialect::Laravel && image.starts_with("data:") {
        // The Laravel-era client shows a picture by sending it twice: the upload (which chatroom
        // stores and announces) and then this base64 copy, which is not stored or relayed again.
        return Ok(Reply::Done);
    }
    let mut text = text_field(&data, "msg")?;
    if ctx.conn.dialect == Dialect::V3 {
        // The v3 client escapes `<` itself before sending; undo that so the text is escaped once.
        text = text.replace("&lt;", "<");
    }
    let client_id = match data.get("clientId") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(AppError::invalid("clientId 无效")),
    };
    let new = messages::compose(
        user.id,
        room.clone(),
        &text,
        &image,
        client_id,
        ctx.state.settings.message_max_chars,
    )?;
    // A sender whose socket is not in the group room would not hear its own echo: it is sent to it
    // directly. Private messages go to every socket of both users anyway.
    let origin = Origin {
        socket: ctx.socket.id,
        reached_by_room: match &room {
            Room::Group(id) => ctx.conn.is_in(id),
            Room::Private { .. } => true,
        },
    };
    let saved = ctx.state.realtime.store(new, user, Some(origin)).await?;
    Ok(Reply::Stored(saved.message().message.id))
}

/// The bound user, after checking the payload does not claim to be someone else.
///
/// A valid token in the payload (the Laravel-era client sends its `api_token` with every event,
/// including after a sign-in that its socket did not see) binds an unbound socket; it never re-binds
/// a socket bound to someone else.
async fn signed_in(ctx: &Ctx, data: &Value, event: &str) -> Result<user::Model, AppError> {
    if let Some(token) = data
        .get("api_token")
        .and_then(Value::as_str)
        .filter(|t| usable(t))
        && let Ok((user, _)) = authenticate(&ctx.state, Some(token)).await
    {
        match ctx.user_id() {
            None => ctx.login_using(user).await,
            Some(bound) if bound != user.id => {
                return Err(AppError::Forbidden("身份与当前登录用户不符".into()));
            }
            Some(_) => {}
        }
    }
    let user = ctx
        .conn
        .user()
        .ok_or(AppError::Unauthenticated(LOGIN_REQUIRED))?;
    check_claims(data, &user, ctx.conn.dialect, event)?;
    Ok(user)
}

/// Refuses a payload whose identity fields name someone other than `user`. Absent, empty and
/// `false` fields (the v3 client sends `from: false` in group rooms) claim nothing.
fn check_claims(
    data: &Value,
    user: &user::Model,
    dialect: Dialect,
    event: &str,
) -> Result<(), AppError> {
    let claim = |key: &str| match data.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let id = user.id.to_string();
    // The Laravel-era client's `login` carries the e-mail address typed at sign-in as `name`; its
    // other events carry the handle chatroom gave it (the user name) as `name` and `username`.
    let name_keys: &[&str] = if dialect == Dialect::Laravel && event == "login" {
        &["username", "userid"]
    } else {
        &["username", "name", "userid"]
    };
    let names_other = name_keys
        .iter()
        .filter_map(|k| claim(k))
        .any(|n| n != user.name);
    let ids_other = ["id", "from"]
        .iter()
        .filter_map(|k| claim(k))
        .any(|i| i != id);
    if names_other || ids_other {
        return Err(AppError::Forbidden("不能以其他用户的身份发送".into()));
    }
    Ok(())
}

/// A text field that may be absent (empty), a string, or a number.
fn text_field(data: &Value, key: &str) -> Result<String, AppError> {
    match data.get(key) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(_) => Err(AppError::Invalid(format!("{key} 格式错误"))),
    }
}
