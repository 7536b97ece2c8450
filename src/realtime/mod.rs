//! The realtime core, shared by both transports: HTTP handlers and socket handlers call the same
//! [`Realtime`] to post messages, bind browsers' sockets and push events.
//!
//! * [`Realtime::post`] checks the sender's message rate, hands the message to the background
//!   [`MessageWriter`] and returns at once with a [`Receipt`]. An *announcer* task takes stored
//!   messages in commit order and delivers them ([`Realtime`]'s `announce`): to the room in each
//!   dialect, encoded once per dialect; to the sender's socket when the room does not reach it; into the
//!   unread counters. Only then is the receipt resolved, so an echo or an acknowledgement means
//!   "stored", and a room's messages reach everyone in the order they were stored.
//! * [`presence`] keeps who is online and in which room, and sends room lists in paced rounds.
//! * [`unread`] keeps unread counts in memory and pushes them in coalesced ticks.
//! * [`cluster`] carries events, presence, unread news and revocations between the nodes of a cluster
//!   over Redis (`--redis-url`); without it the node runs alone.
//! * [`pusher`] is the one way to emit; [`events`] the typed events and their encodings; [`conn`] what
//!   is known about one socket.
//!
//! Every message gets an answer: stored, or refused because of its content, the sender's rate
//! (`rate_limited`), a full queue or a shutdown (`unavailable`). Refusals are counted in `/metrics`
//! (`chatroom_refusals_total{reason}`) and summed up in the log every [`REFUSAL_LOG_EVERY`].

mod announce;
mod bucket;
pub mod channels;
pub mod cluster;
pub mod conn;
pub mod dialect;
pub mod events;
pub mod identity;
pub mod membership;
pub mod metrics;
pub mod moderation;
mod peak;
pub mod presence;
pub mod pusher;
mod ticks;
pub mod unread;

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use sea_orm::DatabaseConnection;
use socketioxide::SocketIo;
use socketioxide::extract::SocketRef;
use socketioxide::layer::SocketIoLayer;
use socketioxide::socket::Sid;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

pub use self::conn::Conn;
pub use self::conn::inbox;
pub use self::dialect::Dialect;
pub use self::identity::{Binding, TokenInfo};
pub use self::inbox::{Handlers, Inbound, Inbox, Reply};
pub use self::metrics::RealtimeMetrics;
pub use self::pusher::{Pusher, Target};

use self::bucket::Bucket;
use self::presence::PresenceHub;
use self::unread::UnreadHub;
use crate::auth::UserId;
use crate::config::Settings;
use crate::db::Store;
use crate::error::AppError;
use crate::metrics::Metrics;
use crate::services::messages::NewMessage;
use crate::services::rooms::Rooms;
use crate::services::users::Author;
use crate::services::writer::{MessageWriter, Saved, WriterConfig};

/// How long shutdown waits for stored messages to be delivered before closing sockets.
const ECHO_GRACE: Duration = Duration::from_secs(5);
/// How often refusals are summed up in the log (when there were any).
pub const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);
/// Stored batches waiting for the announcer at most; beyond it the writer waits, and its slots fill.
const ANNOUNCE_QUEUE: usize = 64;

/// Resolves when the message is stored and delivered, or refused.
pub type Receipt = oneshot::Receiver<Result<Saved, AppError>>;

/// The socket a message came from.
#[derive(Debug, Clone, Copy)]
pub struct Origin {
    pub socket: Sid,
    /// Whether the message's broadcast reaches this socket anyway (it is in the group room, or the
    /// room is private and so reaches every socket of the sender).
    pub reached_by_room: bool,
}

/// What travels with a message through the writer.
struct Ticket {
    origin: Option<Origin>,
    reply: oneshot::Sender<Result<Saved, AppError>>,
}

/// The Socket.IO engine the core emits through, as the socket adapter configured it.
pub struct Engine {
    /// The server handle.
    pub io: SocketIo,
    /// The tower layer serving `/socket.io/`.
    pub layer: SocketIoLayer,
    /// The largest Engine.IO payload taken, in bytes.
    pub max_packet: usize,
    /// The frame limits every session starts with (the server-wide budget for frames in progress,
    /// and the anonymous frame limit that signing in lifts); requests carry them to the engine.
    pub limits: engineioxide::budget::Limits,
}

/// The realtime server. Cheap to clone.
#[derive(Clone)]
pub struct Realtime {
    inner: Arc<Inner>,
}

struct Inner {
    io: SocketIo,
    layer: SocketIoLayer,
    max_packet: usize,
    limits: engineioxide::budget::Limits,
    pusher: Pusher,
    rooms: Arc<Rooms>,
    db: DatabaseConnection,
    presence: Arc<PresenceHub>,
    unread: Arc<UnreadHub>,
    writer: MessageWriter<Ticket>,
    announcer: Mutex<Option<JoinHandle<()>>>,
    accepting: AtomicBool,
    /// Set once shutdown has closed every transport.
    transports_closed: watch::Sender<bool>,
    messages_per_second: u32,
    max_sockets_per_user: usize,
    queue_capacity: usize,
    senders: Mutex<HashMap<UserId, Bucket>>,
    metrics: RealtimeMetrics,
    /// The cluster bus, when this node is one of several.
    bus: Option<cluster::Bus>,
}

impl Realtime {
    /// Takes the Socket.IO engine (configured by the socket adapter: `socket::engine`) and starts the
    /// writer, the announcer, presence rounds and unread ticks. Event handlers are added by the socket
    /// adapter (`socket::mount`).
    pub fn new(
        settings: &Settings,
        engine: Engine,
        store: Store,
        rooms: Arc<Rooms>,
        metrics: &Metrics,
    ) -> Self {
        let Store {
            pool: db,
            writer,
            writer_is_own,
            wal,
        } = store;
        let Engine {
            io,
            layer,
            max_packet,
            limits,
        } = engine;
        let (committed_tx, committed_rx) = mpsc::channel(ANNOUNCE_QUEUE);
        let writer = MessageWriter::spawn(
            writer,
            WriterConfig {
                capacity: settings.realtime.message_queue,
                own_connection: writer_is_own,
                wal_limit: wal,
                ..WriterConfig::default()
            },
            committed_tx,
        );
        let cluster = settings.cluster.redis_url.as_ref().and_then(|url| {
            cluster::start(url.expose(), &settings.cluster.redis_prefix, metrics)
                .inspect_err(|e| tracing::error!(error = %e, "cannot use the Redis URL"))
                .ok()
        });
        let bus = cluster.as_ref().map(|(bus, _)| bus.clone());
        let publish = bus
            .clone()
            .map(|bus| Arc::new(bus) as Arc<dyn pusher::Publish>);
        let pusher = Pusher::new(io.clone(), rooms.clone(), publish);
        let presence = Arc::new(PresenceHub::new(settings.realtime.presence_max_members));
        let unread = Arc::new(UnreadHub::default());
        if let Some((bus, starter)) = cluster {
            presence.observe(Box::new(move |change| bus.presence(change)));
            starter.run(cluster::Local {
                pusher: pusher.clone(),
                presence: presence.clone(),
                unread: unread.clone(),
            });
        }
        let inner = Arc::new(Inner {
            io,
            layer,
            max_packet,
            limits,
            pusher: pusher.clone(),
            rooms,
            db,
            presence: presence.clone(),
            unread,
            writer,
            announcer: Mutex::new(None),
            accepting: AtomicBool::new(true),
            transports_closed: watch::channel(false).0,
            messages_per_second: settings.realtime.socket_events_per_second,
            max_sockets_per_user: settings.realtime.max_sockets_per_user,
            queue_capacity: settings.realtime.message_queue,
            senders: Mutex::new(HashMap::new()),
            metrics: RealtimeMetrics::new(metrics),
            bus,
        });
        let announcer = tokio::spawn(announce::announce_all(inner.clone(), committed_rx));
        *inner
            .announcer
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(announcer);
        tokio::spawn(presence::run_rounds(presence, pusher));
        tokio::spawn(ticks::tick_unread(Arc::downgrade(&inner)));
        tokio::spawn(ticks::release_after_peak(Arc::downgrade(&inner)));
        tokio::spawn(ticks::load_latest_ids(inner.clone()));
        Self { inner }
    }

    /// The tower layer serving `/socket.io/`.
    pub fn layer(&self) -> SocketIoLayer {
        self.inner.layer.clone()
    }

    /// The largest Engine.IO payload taken, in bytes.
    pub fn max_packet(&self) -> usize {
        self.inner.max_packet
    }

    /// The frame limits every Engine.IO session starts with (requests carry them to the engine).
    pub fn frame_limits(&self) -> engineioxide::budget::Limits {
        self.inner.limits.clone()
    }

    /// The socket.io server handle.
    pub fn io(&self) -> &SocketIo {
        &self.inner.io
    }

    /// The one way to emit.
    pub fn pusher(&self) -> &Pusher {
        &self.inner.pusher
    }

    /// The realtime series of `/metrics` (refusals are also summed up in the log).
    pub fn metrics(&self) -> &RealtimeMetrics {
        &self.inner.metrics
    }

    /// Whether new messages are taken (false while shutting down). This is the node's one shutdown
    /// phase: readiness (`/readyz`) reads it too.
    pub fn is_accepting(&self) -> bool {
        self.inner.accepting.load(Ordering::SeqCst)
    }

    /// Enters the shutdown phase: new messages are refused with `unavailable` and readiness fails.
    /// [`shutdown`](Self::shutdown) starts with it.
    pub fn stop_accepting(&self) {
        self.inner.accepting.store(false, Ordering::SeqCst);
    }

    /// Whether this node is one of several, and if so whether it reaches the others: `Some(false)`
    /// while Redis is away (the node serves its own sockets only: degraded).
    pub fn cluster_connected(&self) -> Option<bool> {
        self.inner.bus.as_ref().map(cluster::Bus::is_connected)
    }

    /// laravel-swoole's `isUserIdOnline`: whether `user` has a bound socket on this node or, in a
    /// cluster, on another.
    pub fn is_user_id_online(&self, user: UserId) -> bool {
        self.inner.is_user_id_online(user)
    }

    /// Hands `new`, sent by `author` (from the socket `origin`, if any), to the writer. Returns at once;
    /// the receipt resolves once the message is stored and delivered.
    ///
    /// # Errors
    /// [`AppError::RateLimited`] past the sender's message rate (over all their sockets and uploads);
    /// [`AppError::Unavailable`] when the queue is full or the server is stopping.
    pub fn post(
        &self,
        new: NewMessage,
        author: Author,
        origin: Option<Origin>,
    ) -> Result<Receipt, AppError> {
        let metrics = &self.inner.metrics;
        if !self.is_accepting() {
            metrics.shutting_down.inc();
            return Err(AppError::Unavailable);
        }
        if !self.allow_message(author.id) {
            metrics.message_rate.inc();
            return Err(AppError::RateLimited);
        }
        if !self.inner.rooms.is_open(&new.room) {
            return Err(AppError::Forbidden("这个房间已归档，不能再发送消息".into()));
        }
        let (reply, receipt) = oneshot::channel();
        self.inner
            .writer
            .submit(new, author, Ticket { origin, reply })
            .inspect_err(|_| {
                metrics.queue_full.inc();
            })?;
        Ok(receipt)
    }

    /// [`post`](Self::post), then waits for the outcome.
    ///
    /// # Errors
    /// As `post`; also the writer's refusal (a reused client id) or failure.
    pub async fn store(
        &self,
        new: NewMessage,
        author: Author,
        origin: Option<Origin>,
    ) -> Result<Saved, AppError> {
        let receipt = self.post(new, author, origin)?;
        receipt.await.map_err(|_| AppError::Unavailable)?
    }

    /// Takes one message from `user`'s budget, shared by all their sockets and uploads.
    fn allow_message(&self, user: UserId) -> bool {
        let mut senders = self
            .inner
            .senders
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        senders
            .entry(user)
            .or_insert_with(|| Bucket::new(self.inner.messages_per_second))
            .take(Instant::now())
    }

    /// Binds the socket whose Engine.IO session id is `sid` to `binding`'s user: the browser holding
    /// that session just authenticated over HTTP. With `replace`, a socket bound to someone else is
    /// re-bound (a sign-in in that tab); otherwise only an unbound socket is.
    pub fn adopt(&self, sid: &str, binding: Binding, replace: bool) {
        self.post_to_session(sid, Inbound::Adopt { binding, replace });
    }

    /// Unbinds the socket whose Engine.IO session id is `sid` if it acts for `user`: the browser
    /// holding it signed out.
    pub fn release(&self, sid: &str, user: UserId) {
        self.post_to_session(sid, Inbound::Release(user));
    }

    /// The token `jti` of `user` was revoked: the sockets bound with it, on every node, stop acting
    /// for the user at once (the next event from them is refused as unauthenticated).
    pub fn revoke(&self, user: UserId, jti: &str) {
        revoke_here(&self.inner.pusher, user, jti);
        if let Some(bus) = &self.inner.bus {
            bus.revoke(user, jti);
        }
    }

    /// Queues `item` for the socket of this node whose Engine.IO session id is `sid`, if there is one.
    fn post_to_session(&self, sid: &str, item: Inbound) {
        let Ok(sid) = Sid::from_str(sid) else {
            return;
        };
        let Some(socket) = self.inner.pusher.socket(sid) else {
            return;
        };
        if let Some(conn) = socket.extensions.get::<Arc<Conn>>() {
            let _ = conn.post(item, &socket);
        }
    }

    /// Stops taking messages (refusing new ones with `unavailable`), stores and delivers every queued
    /// one, writes the read marks, sends every socket the replies it is owed and a Socket.IO
    /// DISCONNECT, then closes every transport.
    pub async fn shutdown(&self) {
        self.stop_accepting();
        self.inner.writer.close().await;
        let announcer = self
            .inner
            .announcer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(announcer) = announcer
            && tokio::time::timeout(ECHO_GRACE, announcer).await.is_err()
        {
            tracing::warn!("some stored messages were not delivered before shutdown");
        }
        ticks::flush_marks(&self.inner).await;
        self.disconnect_all().await;
        self.inner.metrics.log_refusals();
        self.inner.io.close().await;
        if let Some(bus) = &self.inner.bus {
            bus.goodbye().await;
        }
        self.inner.transports_closed.send_replace(true);
    }

    /// Says goodbye to every socket in its own protocol: each one stops queueing events (refusing
    /// them at once with `unavailable`), sends the replies it still owes, and then gets a Socket.IO
    /// DISCONNECT packet, so clients see "io server disconnect" rather than a dropped transport.
    async fn disconnect_all(&self) {
        let Some(ns) = self.inner.io.of("/") else {
            return;
        };
        let sockets = ns.local().sockets();
        let conns: Vec<(SocketRef, Option<Arc<Conn>>)> = sockets
            .into_iter()
            .map(|s| {
                let conn = s.extensions.get::<Arc<Conn>>();
                if let Some(conn) = &conn {
                    conn.stop();
                }
                (s, conn)
            })
            .collect();
        let deadline = tokio::time::Instant::now() + ECHO_GRACE;
        while conns
            .iter()
            .any(|(_, c)| c.as_ref().is_some_and(|c| !c.is_idle()))
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        for (socket, conn) in conns {
            let mut farewell = conn.as_ref().map(|c| c.gate());
            if let Some(said) = farewell.as_deref_mut() {
                *said = true;
            }
            if let Err(e) = socket.disconnect() {
                tracing::debug!(error = %e, "a socket could not be told it is disconnected");
            }
            drop(farewell);
        }
    }

    /// Waits (at most 5 s) until shutdown has closed every transport.
    pub async fn until_transports_closed(&self) {
        let mut closed = self.inner.transports_closed.subscribe();
        let _ = tokio::time::timeout(ECHO_GRACE, closed.wait_for(|c| *c)).await;
    }
}
/// The sockets of this node bound with token `jti` of `user` stop acting for the user.
fn revoke_here(pusher: &Pusher, user: UserId, jti: &str) {
    for socket in pusher.user_sockets(user) {
        if let Some(conn) = socket.extensions.get::<Arc<Conn>>() {
            let _ = conn.post(Inbound::Revoke(jti.to_owned()), &socket);
        }
    }
}
