//! Event handlers: check who is asking, call the realtime core and services, reply. Identity always
//! comes from the socket's binding; identity fields in payloads are only compared against it.

use std::collections::BTreeMap;

use super::Ctx;
use super::auth::SocketAuthenticatable;
use super::payloads::{
    Claims, Connected, Disconnected, LoginEvent, MessageEvent, RecallEvent, RoomEvent,
    RoomoutEvent, SyncEvent,
};
use super::router::{HandlerResult, Reply};
use crate::auth::request::usable;
use crate::error::{AppError, LOGIN_REQUIRED};
use crate::realtime::events::{Outbound, Refusal, SyncedRoom};
use crate::realtime::moderation::TakeDown;
use crate::realtime::{Dialect, Origin, identity};
use crate::services::messages;
use crate::services::moderation::{Actor, RemovedBy};
use crate::services::rooms::Room;
use crate::services::users::Author;
use crate::wire::V3Message;

/// Most messages `sync` replays per room; with more missed, the client reloads the room's history.
pub const SYNC_LIMIT: u64 = 100;
/// Most rooms one `sync` may name.
const SYNC_ROOMS: usize = 64;

/// `connect`: bind the socket to the user its handshake's token named, if any.
pub async fn connect(ctx: Ctx, Connected(binding): Connected) -> HandlerResult {
    if let Some(binding) = binding {
        ctx.login_using(binding);
    }
    Ok(Reply::Done)
}

/// `disconnect`: leave every room and unbind.
pub async fn disconnect(ctx: Ctx, Disconnected(_): Disconnected) -> HandlerResult {
    ctx.logout();
    Ok(Reply::Done)
}

/// `login`: answered with the user's unread counts of the group rooms (`count`).
pub async fn login(ctx: Ctx, event: LoginEvent) -> HandlerResult {
    let author = signed_in(&ctx, &event.claims, "login").await?;
    let counts = ctx.realtime().unread_counts(&author).await?;
    ctx.tell(&Outbound::Unread(counts)).await;
    Ok(Reply::Done)
}

/// `room`: enter a group room; the socket gets the room's list.
pub async fn room(ctx: Ctx, event: RoomEvent) -> HandlerResult {
    let author = signed_in(&ctx, &event.claims, "room").await?;
    match ctx.room_of(&event.roomid) {
        Some(Room::Group(room)) => {
            ctx.realtime()
                .enter(&ctx.socket, &ctx.conn, &room, &author)
                .await;
            Ok(Reply::Done)
        }
        _ => Err(AppError::invalid("房间不存在")),
    }
}

/// `roomout`: the v3 client sends it, without a payload, when its user signs out: leave every room and
/// unbind. The Laravel-era client names the room it leaves.
pub async fn roomout(ctx: Ctx, event: RoomoutEvent) -> HandlerResult {
    match ctx.conn.dialect {
        Dialect::V3 => ctx.logout(),
        Dialect::Laravel => {
            signed_in(&ctx, &event.claims, "roomout").await?;
            match ctx.room_of(&event.roomid) {
                Some(room) => ctx.realtime().leave(&ctx.socket, &ctx.conn, &room.id()),
                None => {
                    for room in ctx.conn.rooms() {
                        ctx.realtime().leave(&ctx.socket, &ctx.conn, &room);
                    }
                }
            }
        }
    }
    Ok(Reply::Done)
}

/// `message`: validate, then hand to the writer; the acknowledgement follows once it is stored and
/// delivered (the socket meanwhile goes on with its next events).
pub async fn message(ctx: Ctx, event: MessageEvent) -> HandlerResult {
    let author = signed_in(&ctx, &event.claims, "message").await?;
    let room = ctx
        .room_of(&event.roomid)
        .ok_or_else(|| AppError::invalid("房间不存在"))?;
    let image = event.img.raw();
    if ctx.conn.dialect == Dialect::Laravel && image.starts_with("data:") {
        // The Laravel-era client shows a picture by sending it twice: the upload (which chatroom
        // stores and announces) and then this base64 copy, which is not stored or relayed again.
        return Ok(Reply::Done);
    }
    let mut text = event.msg.raw().to_owned();
    if ctx.conn.dialect == Dialect::V3 {
        // The v3 client escapes `<` itself before sending; undo that so the text is escaped once.
        text = text.replace("&lt;", "<");
    }
    let new = messages::compose(
        author.id,
        room.clone(),
        &text,
        image,
        event.client_id,
        ctx.state.settings.realtime.message_max_chars,
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
    let receipt = ctx.realtime().post(new, author, Some(origin))?;
    Ok(Reply::Pending(receipt))
}

/// `recall`: the author takes a message back within `--recall-window` of sending it; everyone in
/// its room hears `messageRemoved`. Someone else's message is `forbidden`, a late one `too_late`.
pub async fn recall(ctx: Ctx, event: RecallEvent) -> HandlerResult {
    let author = signed_in(&ctx, &event.claims, "recall").await?;
    let id = event
        .id
        .text()
        .and_then(|t| t.parse::<i64>().ok())
        .filter(|id| *id > 0)
        .ok_or_else(|| AppError::invalid("消息 id 无效"))?;
    let actor = Actor::User {
        id: author.id,
        name: author.name,
    };
    let request = TakeDown {
        actor: &actor,
        by: RemovedBy::Author,
        id,
        reason: "",
        window: ctx.state.settings.realtime.recall_window,
    };
    ctx.realtime()
        .take_down(&ctx.state.uploads, request)
        .await?;
    Ok(Reply::Done)
}

/// `sync`: after a reconnect, the messages of each named room newer than the id the client holds, or
/// `resync: true` when there are too many (the client then reloads the room's history). Group rooms
/// are readable by anyone, private rooms by their two users only.
pub async fn sync(ctx: Ctx, event: SyncEvent) -> HandlerResult {
    if event.rooms.len() > SYNC_ROOMS {
        return Err(AppError::Invalid(format!("最多同步{SYNC_ROOMS}个房间")));
    }
    let reader = ctx.conn.user_id();
    let mut rooms = BTreeMap::new();
    for (roomid, last) in &event.rooms {
        let entry = match sync_room(&ctx, reader, roomid, last.text()).await {
            Ok(entry) => entry,
            Err(e) if e.is_internal() => return Err(e),
            Err(e) => {
                let refusal = Refusal::from(&e);
                SyncedRoom::Refused {
                    error: refusal.message,
                    code: refusal.code,
                }
            }
        };
        rooms.insert(roomid.clone(), entry);
    }
    Ok(Reply::Synced(rooms))
}

async fn sync_room(
    ctx: &Ctx,
    reader: Option<crate::auth::UserId>,
    roomid: &str,
    last: Option<&str>,
) -> Result<SyncedRoom, AppError> {
    let room = ctx
        .state
        .rooms
        .parse(roomid)
        .ok_or_else(|| AppError::invalid("房间不存在"))?;
    if matches!(room, Room::Private { .. }) && !reader.is_some_and(|r| room.admits(r)) {
        return Err(AppError::Forbidden("你暂无权限".into()));
    }
    let after: i64 = match last {
        None => 0,
        Some(text) => text
            .parse()
            .ok()
            .filter(|id| *id >= 0)
            .ok_or_else(|| AppError::invalid("消息 id 无效"))?,
    };
    let missed = messages::since(&ctx.state.db, &room, after, SYNC_LIMIT).await?;
    Ok(SyncedRoom::Missed {
        resync: missed.is_none(),
        messages: missed
            .unwrap_or_default()
            .iter()
            .map(V3Message::from)
            .collect(),
    })
}

/// The bound user, after checking the payload does not claim to be someone else and the socket's token
/// is still valid.
///
/// A valid token in the payload (the Laravel-era client sends its `api_token` with every event,
/// including after a sign-in that its socket did not see) binds an unbound socket; it never re-binds a
/// socket bound to someone else. Repeating the token the socket is bound with costs nothing.
async fn signed_in(ctx: &Ctx, claims: &Claims, event: &str) -> Result<Author, AppError> {
    if let Some(token) = claims.api_token.text().filter(|t| usable(t))
        && !ctx.conn.binding().is_some_and(|b| b.holds(token))
        && let Ok(binding) = identity::resolve(&ctx.state.db, &ctx.state.tokens, token).await
    {
        match ctx.conn.user_id() {
            Some(bound) if bound != binding.author.id => {
                return Err(AppError::Forbidden("身份与当前登录用户不符".into()));
            }
            Some(_) => ctx.login_using(binding),
            None => {
                ctx.realtime().admit(&binding)?;
                ctx.login_using(binding);
            }
        }
    }
    let binding = ctx
        .conn
        .binding()
        .ok_or(AppError::Unauthenticated(LOGIN_REQUIRED))?;
    if binding
        .token
        .as_ref()
        .is_some_and(|t| t.expires_at < chrono::Utc::now().timestamp())
    {
        ctx.logout();
        return Err(AppError::Unauthenticated("登录已过期，请重新登录"));
    }
    check_claims(claims, &binding.author, ctx.conn.dialect, event)?;
    Ok(binding.author)
}

/// Refuses a payload whose identity fields name someone other than `user`. Absent, empty and `false`
/// fields (the v3 client sends `from: false` in group rooms) claim nothing.
fn check_claims(
    claims: &Claims,
    user: &Author,
    dialect: Dialect,
    event: &str,
) -> Result<(), AppError> {
    let id = user.id.to_string();
    // The Laravel-era client's `login` carries the e-mail address typed at sign-in as `name`; its other
    // events carry the handle chatroom gave it (the user name) as `name` and `username`.
    let names_other = [&claims.username, &claims.userid]
        .into_iter()
        .chain((dialect == Dialect::V3 || event != "login").then_some(&claims.name))
        .filter_map(|c| c.text())
        .any(|n| n != user.name);
    let ids_other = [&claims.id, &claims.from]
        .into_iter()
        .filter_map(|c| c.text())
        .any(|i| i != id);
    if names_other || ids_other {
        return Err(AppError::Forbidden("不能以其他用户的身份发送".into()));
    }
    Ok(())
}
