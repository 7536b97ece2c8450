//! The sessions of one server and the one timer that keeps all their heartbeats.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex, PoisonError, RwLock, Weak,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use engineioxide_core::{OpenPacket, Packet, ProtocolVersion, Sid, TransportType};
use http::{HeaderMap, HeaderValue, Uri, request::Parts};

use crate::{
    budget::{FrameLimit, Limits},
    config::EngineIoConfig,
    handle::{Session, SessionHandle},
    handler::EngineIoHandler,
    pace::Pacer,
    socket::{Closer, Conn, DisconnectReason, HB_AWAITING, HB_SEEN, SessionEnd, Socket},
};

pub(crate) struct Engine<H: EngineIoHandler> {
    pub(crate) handler: Arc<H>,
    pub(crate) config: EngineIoConfig,
    sessions: RwLock<HashMap<Sid, Arc<Socket<H::Data>>>>,
    wheel: Wheel,
    pub(crate) pacer: Arc<Pacer>,
    timer_started: AtomicBool,
}

/// Heartbeat deadlines for every session, bucketed by tick. One task walks it: a session costs one
/// entry (its id) here and two flag bits, instead of a task and a channel of its own.
struct Wheel {
    start: Instant,
    tick: Duration,
    slots: Mutex<BTreeMap<u64, Vec<Sid>>>,
}

impl Wheel {
    fn new(config: &EngineIoConfig) -> Self {
        // Fine enough that a deadline is met within a few percent of the shorter of the two periods.
        let shortest = config.ping_interval.min(config.ping_timeout);
        let tick = (shortest / 40).clamp(Duration::from_millis(2), Duration::from_millis(250));
        Self {
            start: Instant::now(),
            tick,
            slots: Mutex::new(BTreeMap::new()),
        }
    }
    fn ticks(&self, d: Duration) -> u64 {
        (d.as_nanos() / self.tick.as_nanos().max(1)) as u64
    }
    fn now(&self) -> u64 {
        self.ticks(self.start.elapsed())
    }
    fn schedule(&self, at: u64, sid: Sid) {
        self.slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(at)
            .or_default()
            .push(sid);
    }
    fn due(&self, now: u64) -> Vec<(u64, Vec<Sid>)> {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let later = slots.split_off(&(now + 1));
        std::mem::replace(&mut *slots, later).into_iter().collect()
    }
}

impl<H: EngineIoHandler> Engine<H> {
    pub(crate) fn new(handler: Arc<H>, config: EngineIoConfig) -> Self {
        Self {
            handler,
            wheel: Wheel::new(&config),
            pacer: Arc::new(Pacer::new(&config)),
            config,
            sessions: RwLock::new(HashMap::new()),
            timer_started: AtomicBool::new(false),
        }
    }

    pub(crate) fn get(&self, sid: &Sid) -> Option<Arc<Socket<H::Data>>> {
        self.sessions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(sid)
            .cloned()
    }

    /// Registers a new session and starts its heartbeat.
    pub(crate) fn insert(self: &Arc<Self>, socket: Arc<Socket<H::Data>>) {
        let sid = socket.id;
        let protocol = socket.protocol;
        self.sessions
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(sid, socket);
        if !self.timer_started.swap(true, Ordering::AcqRel) {
            tokio::spawn(run_timer(Arc::downgrade(self)));
            if !self.pacer.interval.is_zero() {
                tokio::spawn(run_flusher(Arc::downgrade(self), self.pacer.clone()));
            }
        }
        let now = self.wheel.now();
        let first = match protocol {
            ProtocolVersion::V4 => self.wheel.ticks(self.config.ping_interval),
            ProtocolVersion::V3 => self
                .wheel
                .ticks(self.config.ping_interval + self.config.ping_timeout),
        };
        self.wheel.schedule(now + first.max(1), sid);
    }

    /// A new session for the request `parts` (not yet registered).
    pub(crate) fn new_socket(
        self: &Arc<Self>,
        protocol: ProtocolVersion,
        transport: TransportType,
        supports_binary: bool,
        mut parts: Parts,
    ) -> Arc<Socket<H::Data>> {
        detach(&mut parts);
        // Taken out, not copied: the session's request keeps its extensions for its whole life, and one
        // entry fewer keeps their table at 8 buckets instead of 16 (about 270 bytes per session).
        let limits = parts
            .extensions
            .remove::<Limits>()
            .or_else(|| self.config.limits.clone())
            .unwrap_or_default();
        let mut conn = Conn::new(
            protocol,
            transport,
            supports_binary,
            self.config.max_buffer_size,
        );
        conn.budget = limits.budget;
        if let Some(first) = limits.first_frame_limit {
            let limit = FrameLimit::new(first);
            parts.extensions.insert(limit.clone());
            conn.frame_limit = Some(limit);
        }
        let sid = Sid::new();
        if !self.pacer.interval.is_zero() {
            conn.pace = Some((self.pacer.clone(), sid));
        }
        let handle = SessionHandle::new();
        parts.extensions.insert(handle.clone());
        let weak: Weak<dyn SessionEnd> = Arc::downgrade(self) as Weak<dyn SessionEnd>;
        let socket = Arc::new(Socket::new(
            sid,
            conn,
            H::Data::default(),
            parts,
            Closer::Engine(weak),
        ));
        let session: Weak<dyn Session> = Arc::downgrade(&socket) as Weak<dyn Session>;
        handle.bind(session);
        socket
    }

    /// The open packet of a session.
    pub(crate) fn open_packet(&self, sid: Sid, upgrades: bool) -> Packet {
        let mut open = OpenPacket {
            sid,
            ping_interval: self.config.ping_interval,
            ping_timeout: self.config.ping_timeout,
            max_payload: self.config.max_payload,
            ..OpenPacket::default()
        };
        if !upgrades || !self.config.allowed_transport(TransportType::Websocket) {
            open.upgrades.clear();
        }
        Packet::Open(open)
    }

    /// Forgets a session that has already ended.
    pub(crate) fn remove(&self, sid: &Sid) {
        take(
            &mut self
                .sessions
                .write()
                .unwrap_or_else(PoisonError::into_inner),
            sid,
        );
    }

    pub(crate) fn len(&self) -> usize {
        self.sessions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Acts on one packet from the client (either transport). `Err`: the packet has no place here.
    pub(crate) fn dispatch(&self, socket: &Arc<Socket<H::Data>>, packet: Packet) -> Result<(), ()> {
        match packet {
            Packet::Message(msg) => self.handler.on_message(msg, socket.clone()),
            Packet::Binary(bin) | Packet::BinaryV3(bin) => {
                self.handler.on_binary(bin, socket.clone())
            }
            Packet::Pong if socket.protocol == ProtocolVersion::V4 => {
                socket.conn.hb.fetch_or(HB_SEEN, Ordering::AcqRel);
            }
            Packet::Ping if socket.protocol == ProtocolVersion::V3 => {
                socket.conn.hb.fetch_or(HB_SEEN, Ordering::AcqRel);
                socket.conn.push_control(Packet::Pong);
            }
            Packet::Close => {
                // A polling client's waiting `GET` ends with a noop; a WebSocket just closes.
                let last =
                    (socket.transport_type() == TransportType::Polling).then_some(Packet::Noop);
                socket.close_with(DisconnectReason::TransportClose, last);
            }
            Packet::Noop => {}
            _ => return Err(()),
        }
        Ok(())
    }

    /// One heartbeat step for a session whose deadline came (`slot` is the deadline's tick).
    fn beat(&self, slot: u64, sid: Sid) {
        let Some(socket) = self.get(&sid) else { return };
        if socket.conn.is_closing() {
            self.remove(&sid);
            return;
        }
        let hb = &socket.conn.hb;
        match socket.protocol {
            ProtocolVersion::V4 => {
                let flags = hb.load(Ordering::Acquire);
                if flags & HB_AWAITING != 0 && flags & HB_SEEN == 0 {
                    socket.close(DisconnectReason::HeartbeatTimeout);
                    return;
                }
                if flags & HB_AWAITING != 0 {
                    // The pong came in time: the next ping is due one interval after the last one.
                    hb.store(0, Ordering::Release);
                    let interval = self.wheel.ticks(self.config.ping_interval);
                    let timeout = self.wheel.ticks(self.config.ping_timeout);
                    let next = (slot + interval).saturating_sub(timeout).max(slot + 1);
                    self.wheel.schedule(next, sid);
                } else {
                    hb.store(HB_AWAITING, Ordering::Release);
                    socket.conn.push_control(Packet::Ping);
                    let timeout = self.wheel.ticks(self.config.ping_timeout);
                    self.wheel.schedule(slot + timeout.max(1), sid);
                }
            }
            ProtocolVersion::V3 => {
                if hb.swap(0, Ordering::AcqRel) & HB_SEEN == 0 {
                    socket.close(DisconnectReason::HeartbeatTimeout);
                    return;
                }
                let wait = self
                    .wheel
                    .ticks(self.config.ping_interval + self.config.ping_timeout);
                self.wheel.schedule(self.wheel.now() + wait.max(1), sid);
            }
        }
    }

    /// Closes every session (server shutdown).
    pub(crate) fn close_all(&self) {
        let all: Vec<_> = self
            .sessions
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect();
        for s in all {
            s.close(DisconnectReason::ClosingServer);
        }
    }
}

/// Gives the request's URI and header values allocations of their own. hyper parses them as slices of
/// the connection's read buffer (8 KiB or more), so a session keeping them as they are keeps that whole
/// buffer alive for its life.
fn detach(parts: &mut Parts) {
    let mut headers = HeaderMap::with_capacity(parts.headers.len());
    for (name, value) in &parts.headers {
        let mut copy = HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone());
        copy.set_sensitive(value.is_sensitive());
        headers.append(name.clone(), copy);
    }
    parts.headers = headers;
    if let Ok(uri) = Uri::try_from(parts.uri.to_string()) {
        parts.uri = uri;
    }
}

impl<H: EngineIoHandler> SessionEnd for Engine<H> {
    fn end(&self, sid: Sid, reason: DisconnectReason) {
        let mut sessions = self
            .sessions
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        // A polling client that closes with no `GET` waiting gets its noop on the next `GET` (as Node's
        // engine.io answers it), so the session stays findable until then; the heartbeat timer removes
        // it if that `GET` never comes.
        let linger = reason == DisconnectReason::TransportClose
            && sessions.get(&sid).is_some_and(|s| {
                s.transport_type() == TransportType::Polling && !s.conn.lock().polling
            });
        let removed = if linger {
            sessions.get(&sid).cloned()
        } else {
            take(&mut sessions, &sid)
        };
        drop(sessions);
        if let Some(socket) = removed {
            #[cfg(feature = "tracing")]
            tracing::debug!(%sid, ?reason, "session closed");
            self.handler.on_disconnect(socket, reason);
        }
    }
}

/// The one heartbeat task of an engine; it ends when the engine is dropped.
async fn run_timer<H: EngineIoHandler>(engine: Weak<Engine<H>>) {
    let (start, tick) = match engine.upgrade() {
        Some(e) => (e.wheel.start, e.wheel.tick),
        None => return,
    };
    // Wake on the wheel's own tick boundaries: a deadline's slot is walked as soon as its time comes,
    // not up to a tick later (a session placed at `now + n` ticks, `now` rounded down, is then never
    // served after its period has passed: the ping timeout closes on time, as Node's timers do).
    let mut interval = tokio::time::interval_at(tokio::time::Instant::from_std(start) + tick, tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        interval.tick().await;
        let Some(engine) = engine.upgrade() else {
            return;
        };
        engine.pacer.sample();
        let now = engine.wheel.now();
        for (slot, sids) in engine.wheel.due(now) {
            for sid in sids {
                engine.beat(slot, sid);
            }
        }
    }
}

/// The one task that writes coalesced frames: once some session has frames waiting, it waits out the
/// coalescing interval (what else arrives meanwhile joins them) and writes each such session's queue in
/// one vectored call. It ends when the engine is dropped.
async fn run_flusher<H: EngineIoHandler>(engine: Weak<Engine<H>>, pacer: Arc<Pacer>) {
    loop {
        if tokio::time::timeout(Duration::from_secs(1), pacer.wait_due())
            .await
            .is_err()
        {
            if engine.strong_count() == 0 {
                return;
            }
            continue;
        }
        tokio::time::sleep(pacer.interval).await;
        let Some(engine) = engine.upgrade() else {
            return;
        };
        for sid in pacer.take() {
            if let Some(socket) = engine.get(&sid) {
                socket.conn.flush_due();
            }
        }
    }
}

/// Removes session `sid` from the map, and shrinks the map once it holds under a quarter of what it
/// has room for, keeping room for twice what it holds: after a peak of connections the empty table
/// does not stay in memory, and a removal still costs O(1) amortized (each shrink rehashes at most a
/// quarter of the peak).
fn take<V>(sessions: &mut HashMap<Sid, V>, sid: &Sid) -> Option<V> {
    const KEEP: usize = 64;
    let removed = sessions.remove(sid);
    if sessions.capacity() > KEEP && sessions.len() < sessions.capacity() / 4 {
        sessions.shrink_to((sessions.len() * 2).max(KEEP));
    }
    removed
}
