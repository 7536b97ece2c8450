//! Write coalescing under load.
//!
//! A frame for an idle WebSocket is written at once, one system call per frame and recipient. That is
//! the cheapest path while the server has time to spare, and the most expensive one once it has not: in
//! a big room most of a saturated server's core goes to the kernel's send path, once per call (see
//! `bench/report/10-engine-saturation.md` and `12-write-coalescing.md` in chatroom). So while the
//! runtime's workers are busy more than [`EngineIoConfig::coalescing_load`] of the time and at least half
//! of the bursts of frames go to *hot* sockets (ones that get separate bursts often: [`HOT`] per
//! [`INTERVALS_PER_WINDOW`] intervals, counted by [`Rate`]), a frame for an idle hot socket waits in its
//! queue for up to [`EngineIoConfig::write_coalescing`], and whatever else the socket gets meanwhile goes
//! out with it in one vectored write. The socket is noted once in a list that one task walks when the
//! interval is up; per frame, all that is added is a read of the clock and a few counters. A quiet
//! socket's frames go straight out even then, so a small room's latency does not pay for a big room's
//! load. Below half of that load, or once fewer than a quarter of the bursts go to hot sockets, every
//! frame goes straight out again.
//!
//! [`EngineIoConfig::coalescing_load`]: crate::config::EngineIoConfig::coalescing_load
//! [`EngineIoConfig::write_coalescing`]: crate::config::EngineIoConfig::write_coalescing

use std::{
    sync::{
        Mutex, MutexGuard, PoisonError,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use engineioxide_core::Sid;
use tokio::sync::Notify;

use crate::config::EngineIoConfig;

/// The shortest window the load is measured over.
const WINDOW: Duration = Duration::from_millis(100);

/// Frames for a socket less than this apart (microseconds) are one burst: emitted together, as a
/// message and the counts that go with it are.
const BURST_US: u32 = 1_000;
/// A socket's bursts are counted in windows of this many coalescing intervals...
const INTERVALS_PER_WINDOW: u128 = 4;
/// ...and its frames are worth coalescing once it gets this many in one (with the default 10 ms, 75
/// bursts a second): a frame that waits will then likely have company. A socket that gets a message
/// now and then (a small room) has it sent at once even under load.
const HOT: u8 = 3;

/// One engine's coalescing state: whether it is on, and the sessions whose frames wait for the flush.
pub(crate) struct Pacer {
    pub(crate) interval: Duration,
    /// The clock sessions count their frames by.
    epoch: Instant,
    /// The window they count bursts in ([`INTERVALS_PER_WINDOW`] intervals), in microseconds.
    window_us: u64,
    on_above: f64,
    on: AtomicBool,
    /// Bursts of emits since the last sample, and those of them to sockets worth coalescing.
    emits: AtomicU64,
    hot: AtomicU64,
    due: Mutex<Vec<Sid>>,
    wake: Notify,
    meter: Mutex<Meter>,
}

/// The runtime's busy time at the start of the current window.
struct Meter {
    at: Instant,
    busy: Duration,
}

impl Pacer {
    pub(crate) fn new(config: &EngineIoConfig) -> Self {
        let load = f64::from(config.coalescing_load);
        let interval = config.write_coalescing;
        Self {
            interval,
            epoch: Instant::now(),
            window_us: u64::try_from(interval.as_micros() * INTERVALS_PER_WINDOW)
                .unwrap_or(u64::MAX)
                .max(1),
            on_above: load,
            // A load of zero or below: always on (tests and benchmarks of the coalesced path).
            on: AtomicBool::new(!interval.is_zero() && load <= 0.0),
            emits: AtomicU64::new(0),
            hot: AtomicU64::new(0),
            due: Mutex::new(Vec::new()),
            wake: Notify::new(),
            meter: Mutex::new(Meter {
                at: Instant::now(),
                busy: busy_total().0,
            }),
        }
    }

    /// Whether frames for idle sockets wait for the flush now.
    pub(crate) fn active(&self) -> bool {
        self.on.load(Ordering::Relaxed)
    }

    /// Counts a burst of emits to one socket, and whether that socket is worth coalescing.
    fn count(&self, hot: bool) {
        self.emits.fetch_add(1, Ordering::Relaxed);
        if hot {
            self.hot.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Microseconds since the pacer started, and the current window (both wrapping).
    fn clock(&self) -> (u32, u32) {
        let since = self.epoch.elapsed();
        let now = since.as_secs() * 1_000_000 + u64::from(since.subsec_micros());
        (now as u32, (now / self.window_us) as u32)
    }

    fn due(&self) -> MutexGuard<'_, Vec<Sid>> {
        self.due.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Notes that session `sid` has frames waiting for the flush (once per flush: the session keeps a
    /// flag).
    pub(crate) fn add(&self, sid: Sid) {
        let mut due = self.due();
        let first = due.is_empty();
        due.push(sid);
        drop(due);
        if first {
            self.wake.notify_one();
        }
    }

    /// Waits until some session has frames waiting.
    pub(crate) async fn wait_due(&self) {
        loop {
            let woken = self.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if !self.due().is_empty() {
                return;
            }
            woken.await;
        }
    }

    /// The sessions to flush now. The list starts again with room for as many (none once the load
    /// has passed).
    pub(crate) fn take(&self) -> Vec<Sid> {
        let mut due = self.due();
        let room = due.len();
        std::mem::replace(&mut *due, Vec::with_capacity(room))
    }

    /// Measures the runtime's load since the last call (at most once per [`WINDOW`]) and turns
    /// coalescing on above `on_above` when at least half the emits went to hot sockets, off below half
    /// that load or when under a quarter did.
    pub(crate) fn sample(&self) {
        if self.interval.is_zero() || self.on_above <= 0.0 {
            return;
        }
        let now = Instant::now();
        let mut meter = self.meter.lock().unwrap_or_else(PoisonError::into_inner);
        let elapsed = now.duration_since(meter.at);
        if elapsed < WINDOW {
            return;
        }
        let (busy, workers) = busy_total();
        let load = busy.saturating_sub(meter.busy).as_secs_f64()
            / (elapsed.as_secs_f64() * workers as f64);
        *meter = Meter { at: now, busy };
        drop(meter);
        // Coalescing pays when most of what is written goes to sockets that get frames often (a big
        // room), not when a few busy sockets stand among many quiet ones (many small rooms). Counted in
        // bursts, so a message's several frames to one socket count once.
        let emits = self.emits.swap(0, Ordering::Relaxed);
        let hot = self.hot.swap(0, Ordering::Relaxed) as f64 / emits.max(1) as f64;
        let on = self.active();
        if !on && load >= self.on_above && hot >= 0.5 {
            self.on.store(true, Ordering::Relaxed);
            #[cfg(feature = "tracing")]
            tracing::debug!(load, "write coalescing on");
        } else if on && (load < self.on_above / 2.0 || hot < 0.25) {
            self.on.store(false, Ordering::Relaxed);
            #[cfg(feature = "tracing")]
            tracing::debug!(load, "write coalescing off");
        }
    }
}

/// The time every worker of the current runtime has spent running tasks, added up, and how many
/// workers there are (at least one).
fn busy_total() -> (Duration, usize) {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return (Duration::ZERO, 1);
    };
    let metrics = handle.metrics();
    let workers = metrics.num_workers();
    let busy = (0..workers)
        .map(|w| metrics.worker_total_busy_duration(w))
        .sum();
    (busy, workers.max(1))
}

/// How often one socket gets bursts of frames: kept per session, updated under its lock.
#[derive(Default)]
pub(crate) struct Rate {
    /// When the socket last got a frame (the pacer's clock, microseconds).
    last: u32,
    /// The window that frame fell in.
    window: u32,
    /// The bursts it got in the window before that one and in that one.
    bursts: [u8; 2],
}

impl Rate {
    /// Notes a frame for the socket now, counts a new burst with the pacer, and says whether the
    /// socket is hot: [`HOT`] bursts or more in its current or its previous window.
    pub(crate) fn note(&mut self, pacer: &Pacer) -> bool {
        let (now, window) = pacer.clock();
        if now.wrapping_sub(self.last) >= BURST_US {
            match window.wrapping_sub(self.window) {
                0 => self.bursts[1] = self.bursts[1].saturating_add(1),
                1 => self.bursts = [self.bursts[1], 1],
                _ => self.bursts = [0, 1],
            }
            self.window = window;
            pacer.count(self.is_hot());
        }
        self.last = now;
        self.is_hot()
    }

    fn is_hot(&self) -> bool {
        self.bursts[0].max(self.bursts[1]) >= HOT
    }
}
