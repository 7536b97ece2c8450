//! The event router: a table from event names to handlers, like laravel-swoole's `Websocket::on`.
//!
//! Every event a socket sends, and its `connect` and `disconnect`, goes through [`EventRouter::call`]:
//! unknown events are logged and ignored; a handler's refusal becomes a `notice` to the sender and,
//! when the client passed an acknowledgement callback, `{ok: false, error}`; success acknowledges
//! `{ok: true}` (with the stored id for messages).

use std::collections::HashMap;
use std::pin::Pin;

use serde_json::Value;
use socketioxide::extract::AckSender;

use super::Ctx;
use super::events::{Outbound, Refusal, ack_ok, ack_refused};
use super::pusher::Target;
use crate::error::AppError;

/// How a handled event is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// `{ok: true}`.
    Done,
    /// `{ok: true, id}`: the message is stored under `id`.
    Stored(i64),
}

/// What a handler returns.
pub type HandlerResult = Result<Reply, AppError>;

type BoxFuture = Pin<Box<dyn Future<Output = HandlerResult> + Send>>;
type Handler = Box<dyn Fn(Ctx, Value) -> BoxFuture + Send + Sync>;

/// The event table.
#[derive(Default)]
pub struct EventRouter {
    handlers: HashMap<&'static str, Handler>,
}

impl EventRouter {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Routes `event` to `handler` (replacing an earlier handler of the same event).
    #[must_use]
    pub fn on<F, Fut>(mut self, event: &'static str, handler: F) -> Self
    where
        F: Fn(Ctx, Value) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        self.handlers.insert(
            event,
            Box::new(move |ctx, data| Box::pin(handler(ctx, data))),
        );
        self
    }

    /// Whether `event` has a handler.
    pub fn event_exists(&self, event: &str) -> bool {
        self.handlers.contains_key(event)
    }

    /// Runs `event`'s handler for the socket of `ctx` and answers the client.
    pub async fn call(&self, event: &str, ctx: Ctx, data: Value, ack: Option<AckSender>) {
        let Some(handler) = self.handlers.get(event) else {
            // The name is client-chosen: log a bounded prefix, never the payload.
            let name: String = event.chars().take(40).collect();
            tracing::debug!(sid = %ctx.socket.id, event = name, "ignored an unknown event");
            return;
        };
        let sid = ctx.socket.id;
        let pusher = ctx.state.realtime.pusher().clone();
        match handler(ctx, data).await {
            Ok(reply) => {
                if let Some(ack) = ack {
                    let id = match reply {
                        Reply::Done => None,
                        Reply::Stored(id) => Some(id),
                    };
                    let _ = ack.send(&ack_ok(id));
                }
            }
            Err(error) => {
                if error.is_internal() {
                    tracing::error!(%sid, event, %error, "event failed");
                } else {
                    tracing::debug!(%sid, event, %error, "event refused");
                }
                let refusal = Refusal::from(&error);
                if let Some(ack) = ack {
                    let _ = ack.send(&ack_refused(&refusal));
                }
                let notice = Outbound::Notice {
                    event: event.to_owned(),
                    error: refusal,
                };
                pusher.push(&Target::Socket(sid), &notice).await;
            }
        }
    }
}
