//! The realtime side: Socket.IO for both web clients, served by socketioxide on the HTTP port.
//!
//! * [`Realtime`] owns the socket.io server handle, the [`Pusher`], node-local presence and the
//!   background [`MessageWriter`]; it lives in [`AppState`] so HTTP handlers can push too.
//! * `routes/websocket.rs` is the event table; [`router::EventRouter`] dispatches every event through
//!   it, in arrival order per socket: each socket has an inbox drained by one task of its own.
//! * [`auth::SocketAuthenticatable`] binds sockets to users (Laravel-swoole's `Authenticatable`).
//! * [`events`] holds the typed outbound events and their encoding per client [`Dialect`].
//! * [`compat`] is the tower layer in front of socketioxide that makes old clients work (Engine.IO 3
//!   polling framing, the `io` session cookie, origin checks).

pub mod auth;
pub mod compat;
pub mod conn;
pub mod events;
pub mod handlers;
pub mod pusher;
pub mod router;

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::http::request::Parts;
use entity::user;
use sea_orm::DatabaseConnection;
use serde_json::Value;
use socketioxide::SocketIo;
use socketioxide::extract::{AckSender, Event, SocketRef, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::layer::SocketIoLayer;
use socketioxide::socket::{DisconnectReason, Sid};
use tokio_util::task::TaskTracker;

pub use conn::{Conn, Dialect};
pub use pusher::{Pusher, Target};

use self::auth::SocketAuthenticatable;
use self::conn::{FLOOD_NOTICE_EVERY, Inbound};
use self::events::{Outbound, Refusal, ack_refused};
use self::pusher::room_channel;
use self::router::EventRouter;
use crate::api::extract::{authenticate, cookie_token, header_token, query_token, usable};
use crate::config::Settings;
use crate::error::AppError;
use crate::services::messages::{NewMessage, StoredMessage};
use crate::services::presence::Presence;
use crate::services::rooms::{Room, Rooms};
use crate::services::unread;
use crate::services::writer::{MessageWriter, Saved, WriterConfig};
use crate::state::AppState;

/// How long shutdown waits for stored messages to be echoed before closing sockets.
const ECHO_GRACE: Duration = Duration::from_secs(5);

/// The realtime server. Cheap to clone.
#[derive(Clone)]
pub struct Realtime {
    inner: Arc<Inner>,
}

struct Inner {
    io: SocketIo,
    max_packet: usize,
    layer: SocketIoLayer,
    pusher: Pusher,
    rooms: Arc<Rooms>,
    presence: Mutex<Presence>,
    writer: MessageWriter,
    /// Messages between their hand-over to the writer and their echo.
    in_flight: TaskTracker,
    accepting: AtomicBool,
}

impl Realtime {
    /// Builds the socket.io server and starts the message writer. Event handlers are added by
    /// [`mount`] once the application state exists.
    pub fn new(settings: &Settings, db: DatabaseConnection, rooms: Arc<Rooms>) -> Self {
        // The Laravel-era client sends pictures as base64 data URLs over the socket (which chatroom
        // ignores: the upload already stored them), so a packet must fit an upload in base64.
        let max_packet = (settings.upload_max_bytes / 3 * 4 + 64 * 1024).max(1 << 20);
        let (layer, io) = SocketIo::builder()
            .max_payload(max_packet as u64)
            .ws_max_message_size(max_packet)
            .ws_max_frame_size(max_packet)
            .max_buffer_size(1024)
            .build_layer();
        let writer = MessageWriter::spawn(
            db,
            WriterConfig {
                capacity: settings.message_queue,
                ..WriterConfig::default()
            },
        );
        Self {
            inner: Arc::new(Inner {
                pusher: Pusher::new(io.clone(), rooms.clone()),
                io,
                max_packet,
                layer,
                rooms,
                presence: Mutex::new(Presence::default()),
                writer,
                in_flight: TaskTracker::new(),
                accepting: AtomicBool::new(true),
            }),
        }
    }

    /// The tower layer serving `/socket.io/`.
    pub fn layer(&self) -> SocketIoLayer {
        self.inner.layer.clone()
    }

    /// The largest Engine.IO payload taken, in bytes.
    pub fn max_packet(&self) -> usize {
        self.inner.max_packet
    }

    /// The socket.io server handle.
    pub fn io(&self) -> &SocketIo {
        &self.inner.io
    }

    /// The one way to emit.
    pub fn pusher(&self) -> &Pusher {
        &self.inner.pusher
    }

    /// Node-local presence. Never hold the guard across an `.await`.
    pub fn presence(&self) -> MutexGuard<'_, Presence> {
        self.inner
            .presence
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The background message writer.
    pub fn writer(&self) -> &MessageWriter {
        &self.inner.writer
    }

    /// Whether new messages are taken (false while shutting down).
    pub fn is_accepting(&self) -> bool {
        self.inner.accepting.load(Ordering::SeqCst)
    }

    /// Stores `new` through the writer and announces it; the sending socket, if any, always hears of
    /// it (a repeat is echoed to it alone).
    ///
    /// # Errors
    /// [`AppError::Unavailable`] when the queue is full, the server is stopping or storing failed.
    pub async fn store(
        &self,
        new: NewMessage,
        sender: user::Model,
        from: Option<Origin>,
    ) -> Result<Saved, AppError> {
        if !self.is_accepting() {
            return Err(AppError::Unavailable);
        }
        let receipt = self.writer().submit(new, sender)?;
        let this = self.clone();
        self.track(async move {
            let saved = receipt.await.map_err(|_| AppError::Unavailable)??;
            match &saved {
                Saved::New(m) => {
                    let echo_to = from.filter(|f| !f.reached_by_room).map(|f| f.socket);
                    this.announce(m, echo_to).await;
                }
                Saved::Existing(m) => {
                    // Stored before: only the sender hears of it again, to mark it sent.
                    if let Some(Origin { socket: sid, .. }) = from {
                        let event = Outbound::Message(Box::new(m.clone()));
                        this.pusher().push(&Target::Socket(sid), &event).await;
                    }
                }
            }
            Ok(saved)
        })
        .await
    }

    /// Runs `work` as part of what shutdown waits for before closing sockets.
    pub(crate) fn track<F: Future>(
        &self,
        work: F,
    ) -> tokio_util::task::task_tracker::TrackedFuture<F> {
        self.inner.in_flight.track_future(work)
    }

    /// Delivers a newly stored message: to its room (group) or to both users' sockets (private), to
    /// `echo_to` as well when given (a sender that is not in the room still gets its echo), and the
    /// new unread counts to the online users who are not in the room.
    pub async fn announce(&self, message: &StoredMessage, echo_to: Option<Sid>) {
        let room_id = message.message.room_id.clone();
        let Some(room) = self.inner.rooms.parse(&room_id) else {
            tracing::warn!(room = room_id, "a stored message names an unknown room");
            return;
        };
        let event = Outbound::Message(Box::new(message.clone()));
        let (target, readers) = match &room {
            Room::Group(_) => (
                Target::Room(room_id.clone()),
                self.presence().online_users().collect::<Vec<_>>(),
            ),
            Room::Private { high, low } => (Target::Users(vec![*high, *low]), vec![*high, *low]),
        };
        self.pusher().push(&target, &event).await;
        if let Some(sid) = echo_to {
            self.pusher().push(&Target::Socket(sid), &event).await;
        }
        let bumped = self
            .presence()
            .bump_unread(&room_id, message.sender.id, readers);
        for (user, n) in bumped {
            let count = Outbound::Unread(vec![(room_id.clone(), n)]);
            self.pusher().push(&Target::Users(vec![user]), &count).await;
        }
    }

    /// Binds the socket whose Engine.IO session id is `sid` to `user`: the browser holding that
    /// session just authenticated over HTTP. With `replace`, a socket bound to someone else is
    /// re-bound (a sign-in in that tab); otherwise only an unbound socket is.
    pub fn adopt(&self, sid: &str, user: &user::Model, replace: bool) {
        self.post_to_session(
            sid,
            Inbound::Adopt {
                user: Box::new(user.clone()),
                replace,
            },
        );
    }

    /// Unbinds the socket whose Engine.IO session id is `sid` if it acts for `user`: the browser
    /// holding it signed out.
    pub fn release(&self, sid: &str, user: crate::auth::UserId) {
        self.post_to_session(sid, Inbound::Release(user));
    }

    /// Queues `item` for the socket of this node whose Engine.IO session id is `sid`, if there is one.
    fn post_to_session(&self, sid: &str, item: Inbound) {
        let conn = Sid::from_str(sid)
            .ok()
            .and_then(|sid| self.io().get_socket(sid))
            .and_then(|socket| socket.extensions.get::<Arc<Conn>>());
        if let Some(conn) = conn {
            conn.post(item);
        }
    }

    /// Stops taking messages, stores and echoes every queued one, then disconnects all sockets.
    pub async fn shutdown(&self) {
        self.inner.accepting.store(false, Ordering::SeqCst);
        self.inner.writer.close().await;
        self.inner.in_flight.close();
        if tokio::time::timeout(ECHO_GRACE, self.inner.in_flight.wait())
            .await
            .is_err()
        {
            tracing::warn!("some stored messages were not echoed before shutdown");
        }
        self.inner.io.close().await;
    }
}

/// The socket a message came from.
#[derive(Debug, Clone, Copy)]
pub struct Origin {
    pub socket: Sid,
    /// Whether the message's broadcast reaches this socket anyway (it is in the group room, or the
    /// room is private and so reaches every socket of the sender).
    pub reached_by_room: bool,
}

/// A handler's view of one socket.
#[derive(Clone)]
pub struct Ctx {
    pub socket: SocketRef,
    pub conn: Arc<Conn>,
    pub state: AppState,
}

impl Ctx {
    /// The group or private room a payload's `roomid` names, read the way this socket's client
    /// writes room ids.
    pub fn room_of(&self, data: &Value) -> Option<Room> {
        let text = match data.get("roomid")? {
            Value::String(s) => s.trim().to_owned(),
            Value::Number(n) => n.to_string(),
            _ => return None,
        };
        let rooms = &self.state.rooms;
        match self.conn.dialect {
            Dialect::Laravel => rooms.parse_legacy(&text),
            Dialect::V3 => rooms.parse(&text),
        }
    }

    /// Puts this socket in group room `room` and tells the room who is there now; the user's unread
    /// count for it is reset.
    pub async fn enter(&self, room: &str, user: &user::Model) {
        let fresh = self.conn.enter(room);
        if fresh {
            self.socket.join(room_channel(room));
        }
        let members = {
            let mut presence = self.state.realtime.presence();
            if fresh {
                presence.enter(room, user.id);
            }
            presence.clear_unread(user.id, room);
            presence.members(room)
        };
        let pusher = self.state.realtime.pusher();
        let listing = Outbound::Presence {
            room: room.to_owned(),
            entered: true,
            members,
        };
        pusher.push(&Target::Room(room.to_owned()), &listing).await;
        let count = Outbound::Unread(vec![(room.to_owned(), 0)]);
        pusher.push(&Target::Socket(self.socket.id), &count).await;
        self.mark_read_later(user.id, room);
    }

    /// Takes this socket out of `room`; if that was the user's last socket there, the room hears
    /// the new list.
    pub async fn leave(&self, room: &str) {
        if !self.conn.leave(room) {
            return;
        }
        self.socket.leave(room_channel(room));
        let Some(user) = self.conn.user_id() else {
            return;
        };
        let (gone, members) = {
            let mut presence = self.state.realtime.presence();
            let gone = presence.leave(room, user);
            (gone, presence.members(room))
        };
        if gone {
            let listing = Outbound::Presence {
                room: room.to_owned(),
                entered: false,
                members,
            };
            self.state
                .realtime
                .pusher()
                .push(&Target::Room(room.to_owned()), &listing)
                .await;
        }
        self.mark_read_later(user, room);
    }

    /// Records, off the socket path, that `user` has read `room` up to its newest message.
    fn mark_read_later(&self, user: crate::auth::UserId, room: &str) {
        let db = self.state.db.clone();
        let room = room.to_owned();
        tokio::spawn(async move {
            let result = async {
                let latest = unread::latest_id(&db, &room).await?;
                unread::mark_read(&db, user, &room, latest).await
            }
            .await;
            if let Err(e) = result {
                tracing::warn!(error = %e, "could not record a read position");
            }
        });
    }
}

/// Who a connecting socket is, settled by the connect middleware.
#[derive(Clone)]
struct Identity {
    dialect: Dialect,
    user: Option<user::Model>,
}

/// Why a connection is refused (shown to the client as `connect_error` / `error`).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct ConnectRefused(String);

/// Registers the default namespace with the event table of `routes/websocket.rs`.
pub fn mount(state: &AppState) {
    let router = Arc::new(crate::routes::websocket::routes());
    let on_connect = {
        let state = state.clone();
        move |socket: SocketRef| {
            let state = state.clone();
            let router = router.clone();
            async move { connected(state, router, socket) }
        }
    };
    let identify = {
        let state = state.clone();
        move |socket: SocketRef, TryData(auth): TryData<Value>| {
            let state = state.clone();
            async move { identify(&state, &socket, auth.ok()).await }
        }
    };
    state.realtime.io().ns("/", on_connect.with(identify));
}

/// Connect middleware: picks the dialect and resolves the token, if any.
///
/// An explicit token (the `auth` payload, a `token`/`api_token` query field, an `Authorization`
/// header) that is not valid refuses the connection, except for the Laravel-era client, which keeps
/// sending the token it read at page load; its socket connects unbound and can be bound later. The
/// auth cookie is a best effort: when it is stale the socket connects unbound.
async fn identify(
    state: &AppState,
    socket: &SocketRef,
    auth: Option<Value>,
) -> Result<(), ConnectRefused> {
    if !state.realtime.is_accepting() {
        return Err(ConnectRefused("服务器正在重启，请稍后重试".into()));
    }
    let parts = socket.req_parts();
    let dialect = if query_has(parts, "api_token") {
        Dialect::Laravel
    } else {
        Dialect::V3
    };
    let from_auth = auth.as_ref().and_then(|a| {
        ["token", "api_token"]
            .iter()
            .find_map(|k| a.get(*k).and_then(Value::as_str).map(str::to_owned))
    });
    let explicit = from_auth
        .into_iter()
        .chain(query_token(parts))
        .chain(header_token(parts))
        .find(|t| usable(t));
    let user = match explicit {
        Some(token) => match authenticate(state, Some(&token)).await {
            Ok((user, _)) => Some(user),
            Err(AppError::Unauthenticated(_)) if dialect == Dialect::Laravel => None,
            Err(AppError::Unauthenticated(_)) => {
                return Err(ConnectRefused("token 无效或已过期，请重新登录".into()));
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot check a socket's token");
                return Err(ConnectRefused(e.public_message()));
            }
        },
        None => match cookie_token(parts) {
            Some(token) => authenticate(state, Some(&token)).await.ok().map(|(u, _)| u),
            None => None,
        },
    };
    let identity = Identity { dialect, user };
    prepare(state, socket, &identity);
    socket.extensions.insert(identity);
    Ok(())
}

fn query_has(parts: &Parts, key: &str) -> bool {
    parts
        .uri
        .query()
        .is_some_and(|q| q.split('&').any(|pair| pair.split('=').next() == Some(key)))
}

/// The receiving end of a socket's inbox, from the middleware to the connect handler.
#[derive(Clone)]
struct PendingInbox(Arc<Mutex<Option<tokio::sync::mpsc::Receiver<Inbound>>>>);

/// Sets up a socket's state and event handlers. This runs in the connect middleware, before the
/// client is told it is connected: events it sends right after `connect` must find their handler
/// (socketioxide drops events that arrive before one is registered).
fn prepare(state: &AppState, socket: &SocketRef, identity: &Identity) {
    let (conn, inbox) = Conn::new(identity.dialect, state.settings.socket_events_per_second);
    let conn = Arc::new(conn);
    socket.extensions.insert(conn.clone());
    socket
        .extensions
        .insert(PendingInbox(Arc::new(Mutex::new(Some(inbox)))));
    socket.join([socket.id.to_string(), identity.dialect.room().to_owned()]);
    let poster = conn.clone();
    socket.on_fallback(
        move |Event(event): Event, TryData(data): TryData<Value>, ack: AckSender| {
            // Runs in arrival order; the inbox keeps that order for the handlers.
            if !poster.post(Inbound::Event(
                event,
                data.unwrap_or(Value::Null),
                Some(ack),
            )) {
                tracing::debug!("socket inbox full: dropped an event");
            }
            async {}
        },
    );
    socket.on_disconnect(move |reason: DisconnectReason| {
        conn.close(format!("{reason:?}"));
        async {}
    });
}

/// A socket joined: start the task that handles its events (those sent already are waiting).
fn connected(state: AppState, router: Arc<EventRouter>, socket: SocketRef) {
    let (Some(identity), Some(conn), Some(PendingInbox(inbox))) = (
        socket.extensions.get::<Identity>(),
        socket.extensions.get::<Arc<Conn>>(),
        socket.extensions.get::<PendingInbox>(),
    ) else {
        tracing::error!(sid = %socket.id, "a socket connected without being prepared");
        return;
    };
    let Some(inbox) = inbox.lock().unwrap_or_else(PoisonError::into_inner).take() else {
        return;
    };
    socket.extensions.remove::<PendingInbox>();
    let ctx = Ctx {
        socket,
        conn,
        state,
    };
    tokio::spawn(drain_inbox(ctx, router, inbox, identity.user));
}

/// Handles one socket's events, one at a time, in the order they arrived.
async fn drain_inbox(
    ctx: Ctx,
    router: Arc<EventRouter>,
    mut inbox: tokio::sync::mpsc::Receiver<Inbound>,
    user: Option<user::Model>,
) {
    let connect = match user {
        Some(user) => serde_json::json!({ "user_id": user.id }),
        None => Value::Null,
    };
    router.call("connect", ctx.clone(), connect, None).await;
    let mut last_flood_notice: Option<tokio::time::Instant> = None;
    while let Some(item) = inbox.recv().await {
        match item {
            Inbound::Event(event, data, ack) => {
                if ctx.conn.allow_event() {
                    // Tracked, so shutdown waits for the acknowledgement of a stored message.
                    let call = router.call(&event, ctx.clone(), data, ack);
                    ctx.state.realtime.track(call).await;
                    continue;
                }
                let refusal = Refusal::from(&AppError::RateLimited);
                if let Some(ack) = ack {
                    let _ = ack.send(&ack_refused(&refusal));
                }
                let now = tokio::time::Instant::now();
                if last_flood_notice.is_none_or(|t| now.duration_since(t) >= FLOOD_NOTICE_EVERY) {
                    last_flood_notice = Some(now);
                    tracing::warn!(sid = %ctx.socket.id, "socket over its event rate");
                    let notice = Outbound::Notice {
                        event,
                        error: refusal,
                    };
                    ctx.state
                        .realtime
                        .pusher()
                        .push(&Target::Socket(ctx.socket.id), &notice)
                        .await;
                }
            }
            Inbound::Adopt { user, replace } => {
                if replace || ctx.user_id().is_none() {
                    ctx.login_using(*user).await;
                }
            }
            Inbound::Release(user) => {
                if ctx.user_id() == Some(user) {
                    ctx.logout().await;
                }
            }
            Inbound::Disconnect(reason) => {
                router
                    .call("disconnect", ctx.clone(), Value::String(reason), None)
                    .await;
                break;
            }
        }
    }
}
