//! The event router: a table from event names to handlers, like laravel-swoole's `Websocket::on`.
//!
//! Every event a socket sends, and its `connect` and `disconnect`, goes through [`EventRouter::call`].
//! Each handler takes a typed payload: [`EventRouter::on`] reads the payload once (see
//! [`super::payloads`]), so a malformed one is refused in one place. The socket's inbox asks
//! [`EventRouter::event_exists`] before queueing an event, so an unknown event is refused at once.
//! What the client then hears (acknowledgement, `notice`) is the inbox's business.

use std::collections::HashMap;
use std::pin::Pin;

use serde_json::Value;

use super::Ctx;
use crate::error::AppError;
use crate::realtime::Binding;
pub use crate::realtime::Reply;

/// A payload on its way to a handler.
pub enum Payload {
    /// A client event's first argument (`null` without one).
    Json(Value),
    /// `connect`: the user the handshake's token named.
    Connected(Option<Binding>),
    /// `disconnect`: the reason.
    Disconnected(String),
}

/// A payload type a handler takes.
pub trait FromPayload: Sized {
    /// Reads `payload`.
    ///
    /// # Errors
    /// [`AppError::Invalid`] when it does not fit.
    fn from_payload(payload: Payload) -> Result<Self, AppError>;
}

/// What a handler returns.
pub type HandlerResult = Result<Reply, AppError>;

type BoxFuture = Pin<Box<dyn Future<Output = HandlerResult> + Send>>;
type Handler = Box<dyn Fn(Ctx, Payload) -> BoxFuture + Send + Sync>;

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

    /// Routes `event` to `handler`, which takes the payload as `T` (replacing an earlier handler of the
    /// same event).
    #[must_use]
    pub fn on<T, F, Fut>(mut self, event: &'static str, handler: F) -> Self
    where
        T: FromPayload + Send + 'static,
        F: Fn(Ctx, T) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        let handler = std::sync::Arc::new(handler);
        self.handlers.insert(
            event,
            Box::new(move |ctx, payload| {
                let handler = handler.clone();
                Box::pin(async move {
                    let data = T::from_payload(payload)?;
                    handler(ctx, data).await
                })
            }),
        );
        self
    }

    /// Whether `event` has a handler.
    pub fn event_exists(&self, event: &str) -> bool {
        self.handlers.contains_key(event)
    }

    /// Runs `event`'s handler for the socket of `ctx`.
    ///
    /// # Errors
    /// The handler's refusal; [`AppError::Invalid`] for an unknown event or a malformed payload.
    pub async fn call(&self, event: &str, ctx: Ctx, payload: Payload) -> HandlerResult {
        match self.handlers.get(event) {
            Some(handler) => handler(ctx, payload).await,
            None => Err(AppError::invalid("未知事件")),
        }
    }
}
