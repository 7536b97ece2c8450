//! The ordered inbox: each socket's events are handled one at a time, in arrival order, by a task that
//! exists only while the socket has work.
//!
//! A `message` does not hold up the socket: once it is handed to the writer the next event is
//! handled, so a socket may have several messages in flight ([`MAX_IN_FLIGHT`]). Replies still leave
//! in the order the events came: every event's acknowledgement waits for those of the events before
//! it, and a message's is sent after its echo (the announcer echoes before it resolves the receipt).

use std::pin::Pin;
use std::sync::Arc;

use futures_util::stream::{FuturesOrdered, StreamExt};
use serde_json::Value;
use socketioxide::extract::{AckSender, SocketRef};

use super::Ctx;
use super::auth::SocketAuthenticatable;
use super::router::{EventRouter, Payload, Reply};
use crate::error::AppError;
use crate::realtime::events::{Outbound, Refusal, ack_ok, ack_refused};
use crate::realtime::{Conn, Drainer, Inbound, Pusher, Target};
use crate::state::AppState;

/// Replies one socket may have outstanding; beyond it the inbox waits, and then fills.
pub const MAX_IN_FLIGHT: usize = 64;

type PendingReply = Pin<Box<dyn Future<Output = (AckSender, Value)> + Send>>;

/// Drains sockets' inboxes through the event table. One value serves every socket.
pub struct InboxRunner {
    pub router: Arc<EventRouter>,
    pub state: AppState,
}

impl Drainer for InboxRunner {
    fn start(&self, conn: Arc<Conn>, socket: SocketRef) {
        let ctx = Ctx {
            socket,
            conn,
            state: self.state.clone(),
        };
        tokio::spawn(drain(ctx, self.router.clone()));
    }
}

async fn drain(ctx: Ctx, router: Arc<EventRouter>) {
    let mut pending: FuturesOrdered<PendingReply> = FuturesOrdered::new();
    loop {
        if pending.len() < MAX_IN_FLIGHT
            && let Some(item) = ctx.conn.next(pending.is_empty())
        {
            handle(&ctx, &router, item, &mut pending).await;
            continue;
        }
        match pending.next().await {
            Some((ack, reply)) => {
                let _ = ack.send(&reply);
            }
            None => return,
        }
    }
}

async fn handle(
    ctx: &Ctx,
    router: &EventRouter,
    item: Inbound,
    pending: &mut FuturesOrdered<PendingReply>,
) {
    match item {
        Inbound::Connect(binding) => {
            let _ = router
                .call("connect", ctx.clone(), Payload::Connected(binding))
                .await;
        }
        Inbound::Event { name, data, ack } => {
            let result = router.call(&name, ctx.clone(), Payload::Json(data)).await;
            let reply: PendingReply = match result {
                Ok(Reply::Done) => Box::pin(async move { (ack, ack_ok(None)) }),
                Ok(Reply::With(mut fields)) => {
                    fields.insert("ok".into(), Value::Bool(true));
                    Box::pin(async move { (ack, Value::Object(fields)) })
                }
                Ok(Reply::Pending(receipt)) => {
                    let pusher = ctx.realtime().pusher().clone();
                    let sid = ctx.socket.id;
                    Box::pin(async move {
                        let outcome = receipt.await.unwrap_or(Err(AppError::Unavailable));
                        let reply = match outcome {
                            Ok(saved) => ack_ok(Some(saved.message().message.id)),
                            Err(error) => refuse(&pusher, sid, &name, &error).await,
                        };
                        (ack, reply)
                    })
                }
                Err(error) => {
                    let pusher = ctx.realtime().pusher();
                    let reply = refuse(pusher, ctx.socket.id, &name, &error).await;
                    Box::pin(async move { (ack, reply) })
                }
            };
            pending.push_back(reply);
        }
        Inbound::Adopt { binding, replace } => {
            if replace || ctx.user_id().is_none() {
                ctx.login_using(binding);
            }
        }
        Inbound::Release(user) => {
            if ctx.user_id() == Some(user) {
                ctx.logout();
            }
        }
        Inbound::Revoke(jti) => {
            let bound_with = ctx.conn.binding().and_then(|b| b.token).map(|t| t.jti);
            if bound_with.as_deref() == Some(jti.as_str()) {
                ctx.logout();
            }
        }
        Inbound::Disconnect(reason) => {
            let _ = router
                .call("disconnect", ctx.clone(), Payload::Disconnected(reason))
                .await;
        }
    }
}

/// Tells the socket `sid` that its `event` was refused (`notice`), and returns the refusing
/// acknowledgement.
pub async fn refuse(
    pusher: &Pusher,
    sid: socketioxide::socket::Sid,
    event: &str,
    error: &AppError,
) -> Value {
    if error.is_internal() {
        tracing::error!(%sid, event, %error, "event failed");
    } else {
        tracing::debug!(%sid, event, %error, "event refused");
    }
    let refusal = Refusal::from(error);
    let reply = ack_refused(&refusal);
    let notice = Outbound::Notice {
        event: event.to_owned(),
        error: refusal,
    };
    pusher.push(&Target::Socket(sid), &notice).await;
    reply
}
