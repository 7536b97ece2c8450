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

use super::inbox::InboxRunner;
use super::router::EventRouter;
use crate::auth::request::{cookie_token, header_token, query_has, query_token, usable};
use crate::error::AppError;
use crate::realtime::{Binding, Conn, Dialect, Inbound, Inbox, identity};
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
        Some(token) => match identity::resolve(&state.db, &state.tokens, &token).await {
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
            Some(token) => identity::resolve(&state.db, &state.tokens, &token)
                .await
                .ok(),
            None => None,
        },
    };
    if let Some(b) = &binding {
        state
            .realtime
            .admit(b)
            .map_err(|e| ConnectRefused(e.public_message()))?;
    }
    prepare(state, runner, socket, dialect, binding);
    Ok(())
}

/// Sets up a socket's state and event handlers.
fn prepare(
    state: &AppState,
    runner: Arc<InboxRunner>,
    socket: &SocketRef,
    dialect: Dialect,
    binding: Option<Binding>,
) {
    let realtime = state.realtime.clone();
    let gauge = realtime.metrics().sockets_of(socket.protocol()).clone();
    let router = runner.router.clone();
    let inbox = Inbox::new(
        state.settings.realtime.socket_events_per_second,
        binding,
        runner,
    );
    let conn = Arc::new(Conn::new(
        socket.id,
        dialect,
        inbox,
        realtime.pusher().tally(dialect, gauge),
    ));
    socket.extensions.insert(conn.clone());
    let events = conn.clone();
    let core = realtime.clone();
    socket.on_fallback(
        move |socket: SocketRef,
              Event(event): Event,
              TryData(data): TryData<Value>,
              ack: AckSender| {
            let known = router.event_exists(&event);
            let data = data.unwrap_or(Value::Null);
            let notice = core.receive(&socket, &events, event, data, ack, known);
            async move {
                if let Some(notice) = notice {
                    notice.send().await;
                }
            }
        },
    );
    socket.on_disconnect(move |socket: SocketRef, reason: DisconnectReason| {
        conn.tally.release();
        if conn
            .post(Inbound::Disconnect(format!("{reason:?}")), &socket)
            .is_err()
        {
            tracing::debug!(sid = %socket.id, "a socket disconnected twice");
        }
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
