//! Mounting the default namespace and identifying connecting sockets.
//!
//! The connect middleware picks the client's dialect, resolves the handshake's token, and sets up the
//! socket's state and event handlers *before* the client is told it is connected: events it sends right
//! after `connect` must find their handler (socketioxide drops events that arrive before one is
//! registered). Every event then goes through the fallback handler, which refuses what cannot be
//! queued (unknown events, floods, a full inbox) with an acknowledgement the client sees, and queues
//! the rest in the socket's inbox.

use std::sync::Arc;

use serde_json::Value;
use socketioxide::extract::{AckSender, Event, SocketRef, TryData};
use socketioxide::handler::ConnectHandler;
use socketioxide::socket::DisconnectReason;

use super::inbox::{InboxRunner, refuse};
use super::router::EventRouter;
use crate::auth::request::{cookie_token, header_token, query_has, query_token, usable};
use crate::error::{AppError, TOO_MANY_SOCKETS};
use crate::realtime::events::{Refusal, ack_refused};
use crate::realtime::{Binding, Conn, Dialect, Drainer, Inbound, TokenInfo};
use crate::services::sessions;
use crate::services::users::Author;
use crate::state::AppState;

/// Why a connection is refused (shown to the client as `connect_error` / `error`).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct ConnectRefused(String);

/// Registers the default namespace with `router`, the event table of `routes/websocket.rs`.
pub fn mount(state: &AppState, router: EventRouter) {
    let runner = Arc::new(InboxRunner {
        router: Arc::new(router),
        state: state.clone(),
    });
    let identify = {
        let state = state.clone();
        move |socket: SocketRef, TryData(auth): TryData<Value>| {
            let state = state.clone();
            let runner = runner.clone();
            async move { identify(&state, runner, &socket, auth.ok()).await }
        }
    };
    let on_connect = |socket: SocketRef| {
        if let Some(conn) = socket.extensions.get::<Arc<Conn>>() {
            conn.start_draining(&socket);
        }
        async {}
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
    runner: Arc<InboxRunner>,
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
        .filter(|t| usable(t))
        .or_else(|| query_token(parts))
        .or_else(|| header_token(parts));
    let binding = match explicit {
        Some(token) => match bind(state, &token).await {
            Ok(binding) => Some(binding),
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
            Some(token) => bind(state, &token).await.ok(),
            None => None,
        },
    };
    if let Some(b) = &binding
        && state
            .realtime
            .user_has_sockets(b.author.id, state.settings.max_sockets_per_user)
    {
        return Err(ConnectRefused(TOO_MANY_SOCKETS.into()));
    }
    prepare(state, runner, socket, dialect, binding);
    Ok(())
}

/// The binding a token stands for.
async fn bind(state: &AppState, token: &str) -> Result<Binding, AppError> {
    let (user, claims) = sessions::resolve(&state.db, &state.tokens, token).await?;
    Ok(Binding {
        author: Author::from(&user),
        token: Some(TokenInfo::from(&claims)),
        token_hash: None,
    })
}

/// Sets up a socket's state and event handlers.
fn prepare(
    state: &AppState,
    runner: Arc<InboxRunner>,
    socket: &SocketRef,
    dialect: Dialect,
    binding: Option<Binding>,
) {
    let drainer: Arc<dyn Drainer> = runner.clone();
    let realtime = state.realtime.clone();
    let gauge = realtime.metrics().sockets_of(socket.protocol()).clone();
    let conn = Arc::new(Conn::new(
        socket.id,
        dialect,
        state.settings.socket_events_per_second,
        binding,
        drainer,
        realtime.pusher().tally(dialect, gauge),
    ));
    socket.extensions.insert(conn.clone());
    let events = conn.clone();
    socket.on_fallback(
        move |socket: SocketRef,
              Event(event): Event,
              TryData(data): TryData<Value>,
              ack: AckSender| {
            // Shutdown disconnects the socket under this gate: an event is either answered
            // before the DISCONNECT packet, or not at all (the client was told it is gone).
            let gate = events.gate();
            let refused = if *gate {
                None
            } else {
                receive(
                    &runner,
                    &events,
                    &socket,
                    event,
                    data.unwrap_or(Value::Null),
                    ack,
                )
            };
            drop(gate);
            async move {
                if let Some((pusher, sid, event, error)) = refused {
                    refuse(&pusher, sid, &event, &error).await;
                }
            }
        },
    );
    socket.on_disconnect(move |socket: SocketRef, reason: DisconnectReason| {
        conn.tally.release();
        let _ = conn.post(Inbound::Disconnect(format!("{reason:?}")), &socket);
        let realtime = realtime.clone();
        async move {
            if reason == DisconnectReason::ServerNSDisconnect && !realtime.is_accepting() {
                // Shutdown said goodbye: socketioxide keeps the socket registered until this
                // handler ends, so closing the server closes this socket's transport too, after
                // its DISCONNECT packet.
                realtime.until_transports_closed().await;
            }
        }
    });
}

type Notice = (
    crate::realtime::Pusher,
    socketioxide::socket::Sid,
    String,
    AppError,
);

/// Queues an event, or refuses it at once: unknown events, events over the socket's rate, and events
/// that find the inbox full are answered here. Returns a refusal to tell as a `notice` as well.
fn receive(
    runner: &InboxRunner,
    conn: &Arc<Conn>,
    socket: &SocketRef,
    event: String,
    data: Value,
    ack: AckSender,
) -> Option<Notice> {
    let realtime = &runner.state.realtime;
    realtime.metrics().events_in.inc();
    if !runner.router.event_exists(&event) {
        // The name is client-chosen: log a bounded prefix, never the payload.
        let name: String = event.chars().take(40).collect();
        tracing::debug!(sid = %socket.id, event = name, "refused an unknown event");
        let _ = ack.send(&ack_refused(&Refusal::from(&AppError::invalid("未知事件"))));
        return None;
    }
    if !conn.allow_event() {
        realtime.metrics().event_rate.inc();
        let error = AppError::RateLimited;
        let _ = ack.send(&ack_refused(&Refusal::from(&error)));
        if conn.flood_notice_due() {
            tracing::warn!(sid = %socket.id, "socket over its event rate");
            return Some((realtime.pusher().clone(), socket.id, event, error));
        }
        return None;
    }
    if let Err(Inbound::Event { ack, name, .. }) = conn.post(
        Inbound::Event {
            name: event,
            data,
            ack,
        },
        socket,
    ) {
        let error = AppError::Unavailable;
        let _ = ack.send(&ack_refused(&Refusal::from(&error)));
        if conn.is_stopping() {
            // Shutdown: answered here, since the inbox takes nothing more; told as a notice too.
            realtime.metrics().shutting_down.inc();
            return Some((realtime.pusher().clone(), socket.id, name, error));
        }
        realtime.metrics().inbox_full.inc();
    }
    None
}
