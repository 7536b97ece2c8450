//! The socket adapter's side of each socket's inbox (`realtime/inbox.rs`, which admits, queues and
//! drains): a socket's connect, events and disconnect run through the event table of
//! `routes/websocket.rs`, with a [`Ctx`] for the handler.

use std::sync::Arc;

use serde_json::Value;
use socketioxide::extract::SocketRef;

use super::Ctx;
use super::router::{EventRouter, Payload};
use crate::error::AppError;
use crate::realtime::inbox::BoxFuture;
use crate::realtime::{Binding, Conn, Handlers, Realtime, Reply};
use crate::state::AppState;

/// Runs sockets' inbox items through the event table. One value serves every socket.
pub struct InboxRunner {
    pub router: Arc<EventRouter>,
    pub state: AppState,
}

impl InboxRunner {
    fn ctx(&self, socket: SocketRef, conn: Arc<Conn>) -> Ctx {
        Ctx {
            socket,
            conn,
            state: self.state.clone(),
        }
    }

    fn run(
        &self,
        event: &'static str,
        ctx: Ctx,
        payload: Payload,
    ) -> BoxFuture<Result<Reply, AppError>> {
        let router = self.router.clone();
        Box::pin(async move { router.call(event, ctx, payload).await })
    }
}

impl Handlers for InboxRunner {
    fn core(&self) -> &Realtime {
        &self.state.realtime
    }

    fn connect(
        &self,
        socket: SocketRef,
        conn: Arc<Conn>,
        binding: Option<Binding>,
    ) -> BoxFuture<()> {
        let call = self.run(
            "connect",
            self.ctx(socket, conn),
            Payload::Connected(binding),
        );
        Box::pin(async move {
            if let Err(e) = call.await {
                tracing::error!(error = %e, "a socket's connect handler failed");
            }
        })
    }

    fn event(
        &self,
        socket: SocketRef,
        conn: Arc<Conn>,
        name: String,
        data: Value,
    ) -> BoxFuture<Result<Reply, AppError>> {
        let router = self.router.clone();
        let ctx = self.ctx(socket, conn);
        Box::pin(async move { router.call(&name, ctx, Payload::Json(data)).await })
    }

    fn disconnect(&self, socket: SocketRef, conn: Arc<Conn>, reason: String) -> BoxFuture<()> {
        let call = self.run(
            "disconnect",
            self.ctx(socket, conn),
            Payload::Disconnected(reason),
        );
        Box::pin(async move {
            if let Err(e) = call.await {
                tracing::error!(error = %e, "a socket's disconnect handler failed");
            }
        })
    }
}
