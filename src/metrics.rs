//! Counters, gauges and histograms, rendered in the Prometheus text format at `GET /metrics`.
//!
//! # How to add a series
//!
//! Register once, keep the handle, and update it on the hot path with one atomic operation:
//!
//! ```
//! use chatroom::metrics::{Metrics, LATENCY_BUCKETS};
//!
//! let metrics = Metrics::new();
//! let stored = metrics.registry.counter(
//!     "chatroom_messages_stored_total",
//!     "Chat messages committed to the database.",
//!     &[],
//! );
//! let v4 = metrics.registry.gauge(
//!     "chatroom_socket_connections",
//!     "Connected sockets by Engine.IO protocol version.",
//!     &[("eio", "4")],
//! );
//! let commit = metrics.registry.histogram(
//!     "chatroom_writer_commit_seconds",
//!     "Time to commit one batch of messages.",
//!     &[],
//!     LATENCY_BUCKETS,
//! );
//! stored.add(3);
//! v4.inc();
//! commit.observe(0.004);
//! assert!(metrics.render().contains("chatroom_socket_connections{eio=\"4\"} 1"));
//! ```
//!
//! * [`Registry::counter`], [`Registry::gauge`] and [`Registry::histogram`] return the existing
//!   series when the same name and labels were registered before, so two parts of the code may ask
//!   for the same series. Asking for an existing name with another kind returns a detached handle
//!   (updates go nowhere) and logs an error: the name is a programming error to fix.
//! * Names follow Prometheus conventions: `chatroom_` prefix, `_total` for counters, base units
//!   (`_seconds`, `_bytes`). Label values are escaped; keep their number small and bounded (never a
//!   user id, room id or address).
//! * Reasons for refusals go through [`Metrics::refused`], one series per reason of
//!   `chatroom_refusals_total`; reasons in use are listed in [`Refusal`].
//! * [`HttpMetrics`] holds the HTTP side (requests by status class, open connections, connection-cap
//!   refusals, header timeouts), fed by the accept loop in [`crate::listener`].
//!
//! Everything is in-process and per node; scrape every node. Reading `/metrics` is allowed to direct
//! requests from the loopback interface and to holders of `--metrics-token`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// Buckets for latencies in seconds, from 0.5 ms to 10 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Buckets for sizes counted in items (batch sizes), from 1 to 4096.
pub const SIZE_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0,
];

/// A number that only goes up.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A number that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }

    /// Subtracts one.
    pub fn dec(&self) {
        self.add(-1);
    }

    /// Adds `n` (which may be negative).
    pub fn add(&self, n: i64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// Sets the value.
    pub fn set(&self, n: i64) {
        self.0.store(n, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Observations counted into fixed buckets, with their sum and count.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// One per bound plus `+Inf`; not cumulative (rendering adds them up).
    buckets: Box<[AtomicU64]>,
    /// The sum of observations, as `f64` bits.
    sum: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            buckets: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0f64.to_bits()),
            count: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn observe(&self, value: f64) {
        let i = self
            .bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(self.bounds.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        let _ = self
            .sum
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + value).to_bits())
            });
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// How many observations were recorded.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Clone)]
enum Series {
    Counter(Arc<Counter>),
    Gauge(Arc<Gauge>),
    Histogram(Arc<Histogram>),
}

impl Series {
    fn kind(&self) -> &'static str {
        match self {
            Self::Counter(_) => "counter",
            Self::Gauge(_) => "gauge",
            Self::Histogram(_) => "histogram",
        }
    }
}

#[derive(Debug)]
struct Family {
    name: &'static str,
    help: &'static str,
    kind: &'static str,
    /// Rendered label sets (`{a="b"}` or empty) and their series, in registration order.
    series: Vec<(String, Series)>,
}

/// The set of registered series.
#[derive(Debug, Default)]
pub struct Registry {
    families: RwLock<Vec<Family>>,
}

impl Registry {
    /// The counter `name{labels}`, registered on first use.
    pub fn counter(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
    ) -> Arc<Counter> {
        match self.series(name, help, labels, || Series::Counter(Arc::default())) {
            Series::Counter(c) => c,
            _ => Arc::default(),
        }
    }

    /// The gauge `name{labels}`, registered on first use.
    pub fn gauge(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
    ) -> Arc<Gauge> {
        match self.series(name, help, labels, || Series::Gauge(Arc::default())) {
            Series::Gauge(g) => g,
            _ => Arc::default(),
        }
    }

    /// The histogram `name{labels}` with bucket upper bounds `bounds` (ascending), registered on
    /// first use.
    pub fn histogram(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
        bounds: &'static [f64],
    ) -> Arc<Histogram> {
        match self.series(name, help, labels, || {
            Series::Histogram(Arc::new(Histogram::new(bounds)))
        }) {
            Series::Histogram(h) => h,
            _ => Arc::new(Histogram::new(bounds)),
        }
    }

    fn series(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
        make: impl FnOnce() -> Series,
    ) -> Series {
        let labels = render_labels(labels);
        let mut families = self
            .families
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let fresh = make();
        let family = match families.iter_mut().position(|f| f.name == name) {
            Some(i) => &mut families[i],
            None => {
                families.push(Family {
                    name,
                    help,
                    kind: fresh.kind(),
                    series: Vec::new(),
                });
                families.last_mut().unwrap_or_else(|| unreachable!())
            }
        };
        if family.kind != fresh.kind() {
            tracing::error!(
                metric = name,
                "metric registered again with another kind; updates are dropped"
            );
            return fresh;
        }
        if let Some((_, existing)) = family.series.iter().find(|(l, _)| *l == labels) {
            return existing.clone();
        }
        family.series.push((labels, fresh.clone()));
        fresh
    }

    /// Every series in the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let families = self
            .families
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out = String::with_capacity(4096);
        for family in families.iter() {
            let _ = writeln!(out, "# HELP {} {}", family.name, escape_help(family.help));
            let _ = writeln!(out, "# TYPE {} {}", family.name, family.kind);
            for (labels, series) in &family.series {
                match series {
                    Series::Counter(c) => {
                        let _ = writeln!(out, "{}{labels} {}", family.name, c.get());
                    }
                    Series::Gauge(g) => {
                        let _ = writeln!(out, "{}{labels} {}", family.name, g.get());
                    }
                    Series::Histogram(h) => render_histogram(&mut out, family.name, labels, h),
                }
            }
        }
        out
    }
}

fn render_histogram(out: &mut String, name: &str, labels: &str, h: &Histogram) {
    // `{a="b"}` → `a="b",` to prepend to `le`.
    let inner = labels
        .strip_prefix('{')
        .and_then(|l| l.strip_suffix('}'))
        .map(|l| format!("{l},"))
        .unwrap_or_default();
    let mut cumulative = 0;
    for (i, bucket) in h.buckets.iter().enumerate() {
        cumulative += bucket.load(Ordering::Relaxed);
        let le = h
            .bounds
            .get(i)
            .map_or_else(|| "+Inf".to_owned(), |b| format!("{b}"));
        let _ = writeln!(out, "{name}_bucket{{{inner}le=\"{le}\"}} {cumulative}");
    }
    let sum = f64::from_bits(h.sum.load(Ordering::Relaxed));
    let _ = writeln!(out, "{name}_sum{labels} {sum}");
    let _ = writeln!(out, "{name}_count{labels} {cumulative}");
}

fn render_labels(labels: &[(&str, &str)]) -> String {
    if labels.is_empty() {
        return String::new();
    }
    let pairs: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape_label(v)))
        .collect();
    format!("{{{}}}", pairs.join(","))
}

fn escape_label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Why a request or connection was refused by a limit, for `chatroom_refusals_total{reason}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Too many failed sign-ins at one account from one client address.
    SigninAccount,
    /// Too many sign-in attempts from one client address.
    SigninIp,
    /// Too many uploads by one user this hour.
    UploadRate,
    /// A user's uploads would exceed their disk quota.
    UploadStorage,
    /// A request announced a body over its route's limit.
    BodyTooLarge,
    /// The global connection cap was reached.
    ConnectionCap,
    /// One client address reached its connection cap.
    ConnectionIpCap,
    /// A connection did not send its request headers in time.
    HeaderTimeout,
    /// A user sent messages faster than their rate (over all their sockets and uploads).
    MessageRate,
    /// A socket sent events faster than its rate.
    EventRate,
    /// A socket's inbox was full (it sends faster than it is served).
    SocketInboxFull,
    /// The message writer's queue was full.
    MessageQueueFull,
    /// A message arrived while the server was shutting down.
    ShuttingDown,
    /// A message could not be stored: the database did not answer within the writer's retries.
    StoreUnavailable,
}

impl Refusal {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SigninAccount => "signin_account",
            Self::SigninIp => "signin_ip",
            Self::UploadRate => "upload_rate",
            Self::UploadStorage => "upload_storage",
            Self::BodyTooLarge => "body_too_large",
            Self::ConnectionCap => "connection_cap",
            Self::ConnectionIpCap => "connection_ip_cap",
            Self::HeaderTimeout => "header_timeout",
            Self::MessageRate => "message_rate",
            Self::EventRate => "event_rate",
            Self::SocketInboxFull => "socket_inbox_full",
            Self::MessageQueueFull => "message_queue_full",
            Self::ShuttingDown => "shutting_down",
            Self::StoreUnavailable => "store_unavailable",
        }
    }
}

/// The HTTP side: connections and requests.
#[derive(Debug)]
pub struct HttpMetrics {
    /// Requests answered, by status class (`1xx` … `5xx`).
    requests: [Arc<Counter>; 5],
    /// Connections open now.
    pub open_connections: Arc<Gauge>,
    /// Connections accepted since start.
    pub accepted_connections: Arc<Counter>,
}

impl HttpMetrics {
    fn new(registry: &Registry) -> Self {
        let class = |c: &str| {
            registry.counter(
                "chatroom_http_requests_total",
                "HTTP requests answered, by status class.",
                &[("class", c)],
            )
        };
        Self {
            requests: [
                class("1xx"),
                class("2xx"),
                class("3xx"),
                class("4xx"),
                class("5xx"),
            ],
            open_connections: registry.gauge(
                "chatroom_http_connections_open",
                "TCP connections open now (HTTP, long-polling and WebSocket).",
                &[],
            ),
            accepted_connections: registry.counter(
                "chatroom_http_connections_accepted_total",
                "TCP connections accepted and served.",
                &[],
            ),
        }
    }

    /// Counts a response with `status`.
    pub fn answered(&self, status: u16) {
        let i = usize::from(status / 100).clamp(1, 5) - 1;
        self.requests[i].inc();
    }
}

/// chatroom's metrics: the registry and the series the HTTP layer feeds.
#[derive(Debug)]
pub struct Metrics {
    /// Every series; register new ones here.
    pub registry: Registry,
    /// The HTTP side.
    pub http: HttpMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with the HTTP series registered.
    pub fn new() -> Self {
        let registry = Registry::default();
        let http = HttpMetrics::new(&registry);
        for reason in [
            Refusal::SigninAccount,
            Refusal::SigninIp,
            Refusal::UploadRate,
            Refusal::UploadStorage,
            Refusal::BodyTooLarge,
            Refusal::ConnectionCap,
            Refusal::ConnectionIpCap,
            Refusal::HeaderTimeout,
            Refusal::MessageRate,
            Refusal::EventRate,
            Refusal::SocketInboxFull,
            Refusal::MessageQueueFull,
            Refusal::ShuttingDown,
            Refusal::StoreUnavailable,
        ] {
            refusals(&registry, reason.as_str());
        }
        Self { registry, http }
    }

    /// The counter of refusals for `reason`, to keep and update on a hot path.
    pub fn refusal_counter(&self, reason: Refusal) -> Arc<Counter> {
        refusals(&self.registry, reason.as_str())
    }

    /// Counts a refusal for `reason`.
    pub fn refused(&self, reason: Refusal) {
        refusals(&self.registry, reason.as_str()).inc();
    }

    /// The refusal count for `reason` so far.
    pub fn refusals(&self, reason: Refusal) -> u64 {
        refusals(&self.registry, reason.as_str()).get()
    }

    /// The exposition text, with the process's open file descriptors appended (on Linux).
    pub fn render(&self) -> String {
        let mut out = self.registry.render();
        if let Some(open) = crate::sys::open_fds() {
            let _ = writeln!(
                out,
                "# HELP process_open_fds Open file descriptors.\n# TYPE process_open_fds gauge\nprocess_open_fds {open}"
            );
        }
        let limit = crate::sys::open_file_limit();
        let _ = writeln!(
            out,
            "# HELP process_max_fds The open-file limit.\n# TYPE process_max_fds gauge\nprocess_max_fds {limit}"
        );
        out
    }
}

fn refusals(registry: &Registry, reason: &str) -> Arc<Counter> {
    registry.counter(
        "chatroom_refusals_total",
        "Requests and connections refused by a limit, by reason.",
        &[("reason", reason)],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let registry = Registry::default();
        let a = registry.counter("x_total", "An x.", &[("k", "a\"b")]);
        a.add(2);
        registry.counter("x_total", "An x.", &[("k", "a\"b")]).inc();
        registry.gauge("g", "A g.", &[]).set(-3);
        let h = registry.histogram("h_seconds", "An h.", &[("p", "1")], &[0.1, 1.0]);
        h.observe(0.05);
        h.observe(0.5);
        h.observe(7.0);
        let text = registry.render();
        assert!(text.contains("# TYPE x_total counter\n"), "{text}");
        assert!(text.contains("x_total{k=\"a\\\"b\"} 3\n"), "{text}");
        assert!(text.contains("g -3\n"), "{text}");
        assert!(
            text.contains("h_seconds_bucket{p=\"1\",le=\"0.1\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("h_seconds_bucket{p=\"1\",le=\"1\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("h_seconds_bucket{p=\"1\",le=\"+Inf\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("h_seconds_count{p=\"1\"} 3\n"), "{text}");
        assert!(text.contains("h_seconds_sum{p=\"1\"} 7.55\n"), "{text}");
        assert_eq!(text.matches("# HELP x_total").count(), 1);
    }

    #[test]
    fn a_name_keeps_its_kind() {
        let registry = Registry::default();
        registry.counter("same", "c", &[]).inc();
        let detached = registry.gauge("same", "g", &[]);
        detached.set(5);
        assert!(registry.render().contains("same 1\n"));
    }

    #[test]
    fn statuses_fall_into_classes() {
        let metrics = Metrics::new();
        metrics.http.answered(101);
        metrics.http.answered(404);
        metrics.http.answered(999);
        metrics.refused(Refusal::UploadRate);
        let text = metrics.render();
        assert!(text.contains("chatroom_http_requests_total{class=\"1xx\"} 1"));
        assert!(text.contains("chatroom_http_requests_total{class=\"4xx\"} 1"));
        assert!(text.contains("chatroom_http_requests_total{class=\"5xx\"} 1"));
        assert!(text.contains("chatroom_refusals_total{reason=\"upload_rate\"} 1"));
        assert_eq!(metrics.refusals(Refusal::UploadRate), 1);
    }
}
