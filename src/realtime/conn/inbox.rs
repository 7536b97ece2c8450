//! A socket's inbox: where its events are admitted, queued and handled, in the order they came.
//!
//! * **Admission** ([`Realtime::receive`]): an event over the socket's rate is refused `rate_limited`,
//!   one that finds the inbox full ([`INBOX`]) or the server stopping `unavailable`, each with an
//!   acknowledgement at once; a flood is also told as a `notice`, at most once per
//!   [`FLOOD_NOTICE_EVERY`], so the refusals themselves cannot flood.
//! * **The queue** holds the socket's events and its other news ([`Inbound`]: its connection, bindings
//!   made over HTTP, revoked tokens, its disconnect) in arrival order, behind one small mutex.
//! * **Draining**: a task that exists only while there is work handles the items one at a time. The
//!   core applies bindings and revocations itself; connects, events and disconnects go to the socket
//!   adapter's [`Handlers`] (the event table). A `message` does not hold the socket up: once it is
//!   handed to the writer the next event is handled, so a socket may have several messages in flight
//!   ([`MAX_IN_FLIGHT`]). Replies still leave in the order the events came: every acknowledgement
//!   waits for those of the events before it, and a message's is sent after its echo (the announcer
//!   echoes before it resolves the receipt).
//!
//! An idle socket costs a few hundred bytes here, not a task and a channel.

use std::collections::{BTreeMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesOrdered, StreamExt};
use serde_json::Value;
use socketioxide::extract::{AckSender, SocketRef};
use socketioxide::socket::Sid;

use super::Conn;
use crate::auth::UserId;
use crate::error::AppError;
use crate::realtime::bucket::Bucket;
use crate::realtime::events::{Ack, Outbound, Refusal, SyncedRoom};
use crate::realtime::{Binding, Pusher, Realtime, Receipt, Target};

/// Events one socket may have waiting; beyond it new events are refused (`unavailable`).
pub const INBOX: usize = 64;
/// Replies one socket may have outstanding; beyond it the inbox waits, and then fills.
pub const MAX_IN_FLIGHT: usize = 64;
/// How long refusals for flooding are spaced out, so the refusals themselves cannot flood.
pub const FLOOD_NOTICE_EVERY: Duration = Duration::from_secs(1);

/// An item waiting in a socket's inbox.
pub enum Inbound {
    /// The socket connected, bound to this user if its handshake carried a usable token.
    Connect(Option<Binding>),
    /// A client event: name, first argument, acknowledgement callback.
    Event {
        name: String,
        data: Value,
        ack: AckSender,
    },
    /// The browser holding this socket authenticated over HTTP as this user.
    Adopt { binding: Binding, replace: bool },
    /// The browser holding this socket signed this user out over HTTP, or the token was revoked.
    Release(UserId),
    /// The token with this id was revoked: a socket bound with it stops acting for its user.
    Revoke(String),
    /// The socket is gone.
    Disconnect(String),
}

/// How a handled event is acknowledged.
pub enum Reply {
    /// `{ok: true}`.
    Done,
    /// `{ok: true, rooms}`: what `sync` found.
    Synced(BTreeMap<String, SyncedRoom>),
    /// `{ok: true, id}` once the message is stored and delivered, or a refusal if that fails.
    Pending(Receipt),
}

/// A boxed future, as [`Handlers`] return them.
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// What the socket adapter does with the items only it understands: its event table. One value
/// serves every socket.
pub trait Handlers: Send + Sync {
    /// The core the sockets belong to.
    fn core(&self) -> &Realtime;
    /// The socket connected (bound as its handshake said).
    fn connect(
        &self,
        socket: SocketRef,
        conn: Arc<Conn>,
        binding: Option<Binding>,
    ) -> BoxFuture<()>;
    /// Runs the handler of event `name`.
    fn event(
        &self,
        socket: SocketRef,
        conn: Arc<Conn>,
        name: String,
        data: Value,
    ) -> BoxFuture<Result<Reply, AppError>>;
    /// The socket is gone.
    fn disconnect(&self, socket: SocketRef, conn: Arc<Conn>, reason: String) -> BoxFuture<()>;
}

/// One socket's inbox (held by its [`Conn`]).
pub struct Inbox {
    handlers: Arc<dyn Handlers>,
    queue: Mutex<Queue>,
    /// Held while an event is taken in, and while shutdown disconnects the socket; true once the
    /// socket was told it is disconnected.
    farewell: Mutex<bool>,
}

struct Queue {
    items: VecDeque<Inbound>,
    draining: bool,
    closed: bool,
    /// Shutting down: events are refused at once, no longer queued.
    stopping: bool,
    bucket: Bucket,
    flood_notice: Option<Instant>,
}

impl Inbox {
    /// An inbox taking `events_per_second` (bursts of twice that), starting with
    /// `Connect(binding)`, which is handled before any event.
    pub fn new(
        events_per_second: u32,
        binding: Option<Binding>,
        handlers: Arc<dyn Handlers>,
    ) -> Self {
        let mut items = VecDeque::new();
        items.push_back(Inbound::Connect(binding));
        Self {
            handlers,
            queue: Mutex::new(Queue {
                items,
                draining: false,
                closed: false,
                stopping: false,
                bucket: Bucket::new(events_per_second),
                flood_notice: None,
            }),
            farewell: Mutex::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes one event's worth from the rate budget; false when the socket is over its rate.
    fn allow_event(&self) -> bool {
        self.lock().bucket.take(Instant::now())
    }

    /// Whether a flood refusal should also be told as a `notice` now.
    fn flood_notice_due(&self) -> bool {
        let now = Instant::now();
        let mut queue = self.lock();
        if queue
            .flood_notice
            .is_some_and(|t| now.duration_since(t) < FLOOD_NOTICE_EVERY)
        {
            return false;
        }
        queue.flood_notice = Some(now);
        true
    }

    /// The next item to handle. `None` tells the draining task to stop: the inbox is empty (and, when
    /// `idle`, the task has nothing else in flight, so it may end; a later post starts a new one).
    fn next(&self, idle: bool) -> Option<Inbound> {
        let mut queue = self.lock();
        match queue.items.pop_front() {
            Some(item) => Some(item),
            None => {
                if idle {
                    queue.draining = false;
                    // An idle socket keeps no queue (its room for 4 items is 448 bytes): the next
                    // event allocates one again.
                    queue.items = VecDeque::new();
                }
                None
            }
        }
    }
}

impl Conn {
    /// Queues `item` and makes sure a task drains the inbox. Events are refused (handed back) when the
    /// inbox is full or the server is stopping; other items (bindings, the disconnect) are always
    /// queued, so presence is always cleaned up. Nothing is queued once the socket is gone.
    ///
    /// # Errors
    /// The item itself, when it was not queued.
    pub fn post(self: &Arc<Self>, item: Inbound, socket: &SocketRef) -> Result<(), Inbound> {
        let start = {
            let mut queue = self.inbox.lock();
            if queue.closed {
                return Err(item);
            }
            if matches!(item, Inbound::Event { .. })
                && (queue.stopping || queue.items.len() >= INBOX)
            {
                return Err(item);
            }
            if matches!(item, Inbound::Disconnect(_)) {
                queue.closed = true;
            }
            queue.items.push_back(item);
            !std::mem::replace(&mut queue.draining, true)
        };
        if start {
            tokio::spawn(drain(socket.clone(), self.clone()));
        }
        Ok(())
    }

    /// Starts draining what is queued (the `Connect` item), if no task does yet.
    pub fn start_draining(self: &Arc<Self>, socket: &SocketRef) {
        let start = {
            let mut queue = self.inbox.lock();
            !queue.items.is_empty() && !std::mem::replace(&mut queue.draining, true)
        };
        if start {
            tokio::spawn(drain(socket.clone(), self.clone()));
        }
    }

    /// Shutdown: from now on events are refused at once (handed back by [`post`](Self::post)) instead
    /// of queued, so every event the socket sends until it is disconnected is answered.
    pub fn stop(&self) {
        self.inbox.lock().stopping = true;
    }

    /// The gate between taking in events and saying goodbye: holds `true` once the socket was told
    /// it is disconnected.
    pub fn gate(&self) -> MutexGuard<'_, bool> {
        self.inbox
            .farewell
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether the inbox is empty and no task is handling its events or waiting to send their
    /// replies.
    pub fn is_idle(&self) -> bool {
        let queue = self.inbox.lock();
        queue.items.is_empty() && !queue.draining
    }
}

/// A refusal to tell the socket as a `notice` too (see [`Realtime::receive`]).
pub struct Notice {
    pusher: Pusher,
    sid: Sid,
    event: String,
    error: AppError,
}

impl Notice {
    /// Tells it.
    pub async fn send(self) {
        refuse(&self.pusher, self.sid, &self.event, &self.error).await;
    }
}

impl Realtime {
    /// Takes in event `name` that `socket` sent: queued in order, or refused at once with an
    /// acknowledgement the client sees (an event the socket adapter's table does not `know`, one over
    /// the socket's rate, one that finds the inbox full or the server stopping). Returns a refusal to
    /// tell as a `notice` as well (floods, at most once a second; shutdown). Once the socket was told
    /// it is disconnected, nothing is taken in.
    pub fn receive(
        &self,
        socket: &SocketRef,
        conn: &Arc<Conn>,
        name: String,
        data: Value,
        ack: AckSender,
        known: bool,
    ) -> Option<Notice> {
        // Shutdown disconnects the socket under this gate: an event is either answered before the
        // DISCONNECT packet, or not at all (the client was told it is gone).
        let gate = conn.gate();
        if *gate {
            return None;
        }
        let metrics = &self.inner.metrics;
        metrics.events_in.inc();
        if !known {
            // The name is client-chosen: log a bounded prefix, never the payload.
            let event: String = name.chars().take(40).collect();
            tracing::debug!(sid = %socket.id, event, "refused an unknown event");
            let error = AppError::invalid("未知事件");
            send_ack(socket.id, ack, &Ack::refused(&Refusal::from(&error)));
            return None;
        }
        let notice = |event: String, error: AppError| Notice {
            pusher: self.inner.pusher.clone(),
            sid: socket.id,
            event,
            error,
        };
        if !conn.inbox.allow_event() {
            metrics.event_rate.inc();
            let error = AppError::RateLimited;
            send_ack(socket.id, ack, &Ack::refused(&Refusal::from(&error)));
            if conn.inbox.flood_notice_due() {
                tracing::warn!(sid = %socket.id, "socket over its event rate");
                return Some(notice(name, error));
            }
            return None;
        }
        let Err(Inbound::Event { ack, name, .. }) =
            conn.post(Inbound::Event { name, data, ack }, socket)
        else {
            return None;
        };
        let error = AppError::Unavailable;
        send_ack(socket.id, ack, &Ack::refused(&Refusal::from(&error)));
        if conn.inbox.lock().stopping {
            // Shutdown: answered here, since the inbox takes nothing more; told as a notice too.
            metrics.shutting_down.inc();
            return Some(notice(name, error));
        }
        metrics.inbox_full.inc();
        drop(gate);
        None
    }
}

type PendingReply = Pin<Box<dyn Future<Output = (AckSender, Ack)> + Send>>;

/// Handles `conn`'s inbox until it is empty and every reply is sent.
async fn drain(socket: SocketRef, conn: Arc<Conn>) {
    let handlers = conn.inbox.handlers.clone();
    let mut pending: FuturesOrdered<PendingReply> = FuturesOrdered::new();
    loop {
        if pending.len() < MAX_IN_FLIGHT
            && let Some(item) = conn.inbox.next(pending.is_empty())
        {
            handle(&*handlers, &socket, &conn, item, &mut pending).await;
            continue;
        }
        match pending.next().await {
            Some((ack, reply)) => send_ack(socket.id, ack, &reply),
            None => return,
        }
    }
}

async fn handle(
    handlers: &dyn Handlers,
    socket: &SocketRef,
    conn: &Arc<Conn>,
    item: Inbound,
    pending: &mut FuturesOrdered<PendingReply>,
) {
    let core = handlers.core();
    match item {
        Inbound::Connect(binding) => {
            handlers
                .connect(socket.clone(), conn.clone(), binding)
                .await;
        }
        Inbound::Event { name, data, ack } => {
            let result = handlers
                .event(socket.clone(), conn.clone(), name.clone(), data)
                .await;
            let pusher = core.pusher().clone();
            let sid = socket.id;
            let reply: PendingReply = match result {
                Ok(Reply::Done) => Box::pin(async move { (ack, Ack::done(None)) }),
                Ok(Reply::Synced(rooms)) => Box::pin(async move { (ack, Ack::synced(rooms)) }),
                Ok(Reply::Pending(receipt)) => Box::pin(async move {
                    let outcome = receipt.await.unwrap_or(Err(AppError::Unavailable));
                    let reply = match outcome {
                        Ok(saved) => Ack::done(Some(saved.message().message.id)),
                        Err(error) => refuse(&pusher, sid, &name, &error).await,
                    };
                    (ack, reply)
                }),
                Err(error) => {
                    let reply = refuse(&pusher, sid, &name, &error).await;
                    Box::pin(async move { (ack, reply) })
                }
            };
            pending.push_back(reply);
        }
        Inbound::Adopt { binding, replace } => {
            if replace || conn.user_id().is_none() {
                core.bind(socket, conn, binding);
            }
        }
        Inbound::Release(user) => {
            if conn.user_id() == Some(user) {
                core.unbind(socket, conn);
            }
        }
        Inbound::Revoke(jti) => {
            let bound_with = conn.binding().and_then(|b| b.token).map(|t| t.jti);
            if bound_with.as_deref() == Some(jti.as_str()) {
                core.unbind(socket, conn);
            }
        }
        Inbound::Disconnect(reason) => {
            handlers
                .disconnect(socket.clone(), conn.clone(), reason)
                .await;
            // Whatever the disconnect handler did, a socket that is gone is in no room and acts for
            // nobody (a second unbind finds nothing to undo).
            core.unbind(socket, conn);
        }
    }
}

/// Sends an acknowledgement; one that cannot be sent (the socket is gone or its buffer is full) is
/// logged, since the client will not hear the outcome.
pub fn send_ack(sid: Sid, ack: AckSender, reply: &Ack) {
    if let Err(e) = ack.send(reply) {
        tracing::debug!(%sid, error = %e, "an acknowledgement could not be sent");
    }
}

/// Tells the socket `sid` that its `event` was refused (`notice`), and returns the refusing
/// acknowledgement.
pub async fn refuse(pusher: &Pusher, sid: Sid, event: &str, error: &AppError) -> Ack {
    if error.is_internal() {
        tracing::error!(%sid, event, %error, "event failed");
    } else {
        tracing::debug!(%sid, event, %error, "event refused");
    }
    let refusal = Refusal::from(error);
    let reply = Ack::refused(&refusal);
    let notice = Outbound::Notice {
        event: event.to_owned(),
        error: refusal,
    };
    pusher.push(&Target::Socket(sid), &notice).await;
    reply
}
