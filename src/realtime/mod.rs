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

pub mod cluster;
pub mod conn;
pub mod events;
pub mod presence;
pub mod pusher;
pub mod unread;

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use sea_orm::DatabaseConnection;
use socketioxide::extract::SocketRef;
use socketioxide::layer::SocketIoLayer;
use socketioxide::socket::Sid;
use socketioxide::{ParserConfig, ProtocolVersion, SocketIo};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

pub use self::conn::{Binding, Conn, Dialect, Drainer, Inbound, TokenInfo};
pub use self::pusher::{Pusher, Target};

use self::conn::Bucket;
use self::events::Outbound;
use self::presence::PresenceHub;
use self::unread::UnreadHub;
use crate::auth::UserId;
use crate::config::Settings;
use crate::error::AppError;
use crate::metrics::{
    Counter, Family, Gauge, Histogram, LATENCY_BUCKETS, Label, Metrics, Refusal, SIZE_BUCKETS,
};
use crate::services::messages::{NewMessage, StoredMessage};
use crate::services::rooms::{Room, Rooms};
use crate::services::unread as read_marks;
use crate::services::users::Author;
use crate::services::writer::{Batch, Committed, MessageWriter, Saved, WriterConfig};

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

/// The realtime series of `/metrics`, and the refusal counts summed up in the log.
pub struct RealtimeMetrics {
    /// Sockets connected now, by Engine.IO protocol version (`3`: socket.io 1.x/2.x; `4`: 3.x/4.x).
    pub sockets: [Gauge; 2],
    /// Client events received (before any refusal).
    pub events_in: Counter,
    /// Messages stored.
    pub stored: Counter,
    /// Messages between submission and delivery.
    pub queue_depth: Gauge,
    /// Messages per commit.
    pub batch_size: Histogram,
    /// Time to commit one batch.
    pub commit_seconds: Histogram,
    /// Refusals of messages and events, by reason (`chatroom_refusals_total`).
    pub message_rate: Counter,
    pub event_rate: Counter,
    pub inbox_full: Counter,
    pub queue_full: Counter,
    pub shutting_down: Counter,
    pub store_unavailable: Counter,
    logged: Mutex<[u64; 6]>,
}

impl RealtimeMetrics {
    fn new(metrics: &Metrics) -> Self {
        let sockets: Family<Label, Gauge> = metrics.register(
            "chatroom_socket_connections",
            "Sockets connected now, by Engine.IO protocol version.",
            Family::default(),
        );
        Self {
            sockets: ["3", "4"].map(|eio| sockets.get_or_create_owned(&[("eio", eio)])),
            events_in: metrics.register(
                "chatroom_socket_events_total",
                "Events received from sockets.",
                Counter::default(),
            ),
            stored: metrics.register(
                "chatroom_messages_stored_total",
                "Chat messages stored (resends of stored messages not counted).",
                Counter::default(),
            ),
            queue_depth: metrics.register(
                "chatroom_message_queue_depth",
                "Messages between submission and delivery.",
                Gauge::default(),
            ),
            batch_size: metrics.register(
                "chatroom_writer_batch_messages",
                "Messages per commit of the message writer.",
                Histogram::new(SIZE_BUCKETS),
            ),
            commit_seconds: metrics.register(
                "chatroom_writer_commit_seconds",
                "Time to commit one batch of messages.",
                Histogram::new(LATENCY_BUCKETS),
            ),
            message_rate: metrics.refusal_counter(Refusal::MessageRate),
            event_rate: metrics.refusal_counter(Refusal::EventRate),
            inbox_full: metrics.refusal_counter(Refusal::SocketInboxFull),
            queue_full: metrics.refusal_counter(Refusal::MessageQueueFull),
            shutting_down: metrics.refusal_counter(Refusal::ShuttingDown),
            store_unavailable: metrics.refusal_counter(Refusal::StoreUnavailable),
            logged: Mutex::new([0; 6]),
        }
    }

    /// The socket gauge for a protocol version.
    pub fn sockets_of(&self, protocol: ProtocolVersion) -> &Gauge {
        match protocol {
            ProtocolVersion::V4 => &self.sockets[0],
            ProtocolVersion::V5 => &self.sockets[1],
        }
    }

    /// Logs the refusals since the last call, if there were any.
    fn log_refusals(&self) {
        let now = [
            self.message_rate.get(),
            self.event_rate.get(),
            self.inbox_full.get(),
            self.queue_full.get(),
            self.shutting_down.get(),
            self.store_unavailable.get(),
        ];
        let mut logged = self.logged.lock().unwrap_or_else(PoisonError::into_inner);
        let delta: Vec<u64> = now.iter().zip(logged.iter()).map(|(n, l)| n - l).collect();
        *logged = now;
        if delta.iter().any(|n| *n > 0) {
            tracing::warn!(
                message_rate = delta[0],
                event_rate = delta[1],
                socket_inbox_full = delta[2],
                message_queue_full = delta[3],
                shutting_down = delta[4],
                store_unavailable = delta[5],
                "refused messages and events"
            );
        }
    }
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
    queue_capacity: usize,
    senders: Mutex<HashMap<UserId, Bucket>>,
    metrics: RealtimeMetrics,
    /// The cluster bus, when this node is one of several.
    bus: Option<cluster::Bus>,
}

impl Realtime {
    /// Builds the socket.io server and starts the writer, the announcer, presence rounds and unread
    /// ticks. Event handlers are added by the socket adapter (`socket::mount`).
    pub fn new(
        settings: &Settings,
        db: DatabaseConnection,
        rooms: Arc<Rooms>,
        metrics: &Metrics,
    ) -> Self {
        // The Laravel-era client sends pictures as base64 data URLs over the socket (which chatroom
        // ignores: the upload already stored them), so a packet must fit an upload in base64.
        let max_packet = (settings.upload_max_bytes / 3 * 4 + 64 * 1024).max(1 << 20);
        // chatroom has no binary events: a packet announcing attachments is refused outright, so a
        // client cannot park megabytes in half-finished packets.
        let parser = ParserConfig::common()
            .max_incoming_binaries(0)
            .max_incoming_binary_buf_size(64 * 1024)
            .packet_completion_timeout(Duration::from_secs(5));
        let (layer, io) = SocketIo::builder()
            .with_parser(parser)
            .max_payload(max_packet as u64)
            .ws_max_message_size(max_packet)
            .ws_max_frame_size(max_packet)
            .max_buffer_size(1024)
            // Chat frames are small; a larger one makes the buffer grow for it. The default (4 KiB)
            // would cost 4 KiB per idle socket.
            .ws_read_buffer_size(1024)
            .build_layer();
        let (committed_tx, committed_rx) = mpsc::channel(ANNOUNCE_QUEUE);
        let writer = MessageWriter::spawn(
            db.clone(),
            WriterConfig {
                capacity: settings.message_queue,
                ..WriterConfig::default()
            },
            committed_tx,
        );
        let cluster = settings.redis_url.as_deref().and_then(|url| {
            cluster::start(url, &settings.redis_prefix, metrics)
                .inspect_err(|e| tracing::error!(error = %e, "cannot use the Redis URL"))
                .ok()
        });
        let bus = cluster.as_ref().map(|(bus, _)| bus.clone());
        let pusher = Pusher::new(io.clone(), rooms.clone(), bus.clone());
        let presence = Arc::new(PresenceHub::new(settings.presence_max_members));
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
            pusher: pusher.clone(),
            rooms,
            db,
            presence: presence.clone(),
            unread,
            writer,
            announcer: Mutex::new(None),
            accepting: AtomicBool::new(true),
            transports_closed: watch::channel(false).0,
            messages_per_second: settings.socket_events_per_second,
            queue_capacity: settings.message_queue,
            senders: Mutex::new(HashMap::new()),
            metrics: RealtimeMetrics::new(metrics),
            bus,
        });
        let announcer = tokio::spawn(announce_all(inner.clone(), committed_rx));
        *inner
            .announcer
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(announcer);
        tokio::spawn(presence::run_rounds(presence, pusher));
        tokio::spawn(tick_unread(Arc::downgrade(&inner)));
        tokio::spawn(load_latest_ids(inner.clone()));
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

    /// The socket.io server handle.
    pub fn io(&self) -> &SocketIo {
        &self.inner.io
    }

    /// The one way to emit.
    pub fn pusher(&self) -> &Pusher {
        &self.inner.pusher
    }

    /// Node-local presence.
    pub fn presence(&self) -> &PresenceHub {
        &self.inner.presence
    }

    /// Node-local unread counters.
    pub fn unread(&self) -> &UnreadHub {
        &self.inner.unread
    }

    /// The configured group rooms.
    pub fn rooms(&self) -> &Rooms {
        &self.inner.rooms
    }

    /// The realtime series of `/metrics` (refusals are also summed up in the log).
    pub fn metrics(&self) -> &RealtimeMetrics {
        &self.inner.metrics
    }

    /// Whether new messages are taken (false while shutting down).
    pub fn is_accepting(&self) -> bool {
        self.inner.accepting.load(Ordering::SeqCst)
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

    /// Whether `user` already has `limit` or more sockets bound on this node (work grows with that
    /// user's sockets only).
    pub fn user_has_sockets(&self, user: UserId, limit: usize) -> bool {
        self.inner.pusher.user_sockets(user).len() >= limit
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
        self.inner.accepting.store(false, Ordering::SeqCst);
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
        flush_marks(&self.inner).await;
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

/// Delivers stored messages in commit order, then resolves their receipts.
async fn announce_all(inner: Arc<Inner>, mut batches: mpsc::Receiver<Batch<Ticket>>) {
    while let Some(Batch { committed, took }) = batches.recv().await {
        let metrics = &inner.metrics;
        metrics.batch_size.observe(committed.len() as f64);
        metrics.commit_seconds.observe(took.as_secs_f64());
        metrics
            .queue_depth
            .set(inner.writer.in_flight(inner.queue_capacity) as i64);
        for Committed { ticket, result, .. } in committed {
            match &result {
                Ok(Saved::New(m)) => {
                    metrics.stored.inc();
                    inner.announce(m, ticket.origin).await;
                }
                Ok(Saved::Existing(m)) => {
                    // Stored before: only the sender hears of it again, to mark it sent.
                    if let Some(origin) = ticket.origin {
                        let event = Outbound::Message(Arc::new(m.clone()));
                        inner
                            .pusher
                            .push(&Target::Socket(origin.socket), &event)
                            .await;
                    }
                }
                // The database did not answer (a reused client id is the sender's mistake, not a
                // refusal).
                Err(AppError::Unavailable) => {
                    metrics.store_unavailable.inc();
                }
                Err(_) => {}
            }
            let _ = ticket.reply.send(result);
        }
        // This batch's places were given back as its items were dropped: idle means 0.
        metrics
            .queue_depth
            .set(inner.writer.in_flight(inner.queue_capacity) as i64);
    }
    tracing::debug!("announcer drained");
}

impl Inner {
    fn is_user_id_online(&self, user: UserId) -> bool {
        self.presence.is_online(user)
    }

    /// Delivers a newly stored message: to its room (group) or to both users' sockets (private), to
    /// the sender's socket as well when the room does not reach it, and into the unread counters.
    async fn announce(&self, message: &StoredMessage, origin: Option<Origin>) {
        let event = Outbound::Message(Arc::new(message.clone()));
        let encoded = self.pusher.encode(&event);
        match &message.room {
            Room::Group(room) => {
                self.pusher
                    .send(&Target::Room(room.clone()), &encoded)
                    .await;
            }
            Room::Private { high, low } => {
                let online: Vec<UserId> = [*high, *low]
                    .into_iter()
                    .filter(|u| self.is_user_id_online(*u))
                    .collect();
                if !online.is_empty() {
                    self.pusher
                        .send(&Pusher::to_user_id(&online), &encoded)
                        .await;
                }
            }
        }
        if let Some(origin) = origin.filter(|o| !o.reached_by_room) {
            self.pusher
                .send(&Target::Socket(origin.socket), &encoded)
                .await;
        }
        self.unread
            .note_message(&message.room, message.author.id, message.message.id);
        if let Some(bus) = &self.bus {
            bus.posted(&message.room, message.author.id, message.message.id);
        }
    }
}

/// Users told their counts by a tick before it lets other tasks run.
const TOLD_BETWEEN_YIELDS: usize = 16;

/// Pushes unread counts in ticks, one slice of users every [`unread::TICK`] ÷ [`unread::SLICES`] (so
/// each user at most once per `TICK`), writes read marks every `TICK`, forgets idle rate budgets and
/// sums up refusals. Sleeps while nothing is pending.
async fn tick_unread(inner: std::sync::Weak<Inner>) {
    let step = unread::TICK / unread::SLICES as u32;
    let mut slice = 0;
    let mut last_marks = Instant::now();
    let mut last_summary = Instant::now();
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let unread = strong.unread.clone();
        drop(strong);
        if !unread.any_pending() {
            tokio::select! {
                () = unread.wait_for_messages() => {}
                () = tokio::time::sleep(unread::TICK) => {}
            }
        }
        let Some(inner) = inner.upgrade() else {
            return;
        };
        if inner.pusher.is_closed() {
            return;
        }
        // Who is in each changed room, read once: the tick then takes no lock per user.
        let rooms: Vec<String> = unread
            .pending_rooms(slice)
            .iter()
            .map(ToString::to_string)
            .collect();
        if !rooms.is_empty() {
            let present = inner.presence.member_ids(&rooms);
            let told = unread.tick(slice, |room, user| {
                present.get(room).is_some_and(|ids| ids.contains(&user))
            });
            for (n, (user, counts)) in told.into_iter().enumerate() {
                let event = Outbound::Unread(counts);
                // Every node tells its own sockets from its own counters.
                inner
                    .pusher
                    .push_here(&Target::Users(vec![user]), &event)
                    .await;
                // A slice can be hundreds of users: let messages through between every few of
                // them, so a tick never holds the runtime for long.
                if n % TOLD_BETWEEN_YIELDS == TOLD_BETWEEN_YIELDS - 1 {
                    tokio::task::yield_now().await;
                }
            }
        }
        slice = (slice + 1) % unread::SLICES;
        if last_marks.elapsed() >= unread::TICK {
            last_marks = Instant::now();
            flush_marks(&inner).await;
        }
        if last_summary.elapsed() >= REFUSAL_LOG_EVERY {
            last_summary = Instant::now();
            inner.metrics.log_refusals();
            let now = Instant::now();
            inner
                .senders
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .retain(|_, bucket| !bucket.is_full(now));
        }
        drop(inner);
        tokio::time::sleep(step).await;
    }
}

/// Writes the read marks gathered since the last flush, in one transaction.
async fn flush_marks(inner: &Inner) {
    if !inner.unread.has_marks() {
        return;
    }
    let marks = inner.unread.take_marks();
    if let Err(e) = read_marks::mark_read_many(&inner.db, &marks).await {
        tracing::warn!(error = %e, count = marks.len(), "could not record read positions");
    }
}

/// Reads the newest message id of each group room, so read marks need no query of their own.
async fn load_latest_ids(inner: Arc<Inner>) {
    for room in inner.rooms.groups() {
        match read_marks::latest_id(&inner.db, room).await {
            Ok(id) => inner.unread.know_latest(room, id),
            Err(e) => tracing::warn!(error = %e, "could not read a room's newest message"),
        }
    }
}
