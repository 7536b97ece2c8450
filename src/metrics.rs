//! Counters, gauges and histograms, kept and encoded by the Prometheus project's client crate
//! (`prometheus-client`) and served at `GET /metrics` in the Prometheus text format (version 0.0.4).
//!
//! # How to add a series
//!
//! Register once with [`Metrics::register`], keep the handle it gives back (a clone shares the
//! series), update it on the hot path, and add the series' lines to `SERIES` in
//! `tests/hardening/metrics.rs`, the list of what dashboards may rely on:
//!
//! ```
//! use chatroom::metrics::{Counter, Family, Gauge, Histogram, LATENCY_BUCKETS, Label, Metrics};
//!
//! let metrics = Metrics::new();
//! let stored = metrics.register(
//!     "chatroom_messages_stored_total",
//!     "Chat messages committed to the database.",
//!     Counter::default(),
//! );
//! let sockets = metrics.register(
//!     "chatroom_socket_connections",
//!     "Connected sockets by Engine.IO protocol version.",
//!     Family::<Label, Gauge>::default(),
//! );
//! let commit = metrics.register(
//!     "chatroom_writer_commit_seconds",
//!     "Time to commit one batch of messages.",
//!     Histogram::new(LATENCY_BUCKETS),
//! );
//! let v4 = sockets.get_or_create_owned(&[("eio", "4")]);
//! stored.inc_by(3);
//! v4.inc();
//! commit.observe(0.004);
//! assert!(metrics.render().contains("chatroom_socket_connections{eio=\"4\"} 1"));
//! ```
//!
//! * A name is registered once, where its handles are made; registering it again is a programming
//!   error (logged, and the second handle is detached). Series under one name that differ by a label
//!   are one [`Family`]; take each label set's handle with `get_or_create_owned` once and keep it.
//! * Names follow Prometheus conventions and are written in full, as dashboards see them:
//!   `chatroom_` prefix, `_total` for counters (the crate wants counters registered without it;
//!   [`Metrics::register`] strips it), base units (`_seconds`, `_bytes`). Help texts end with a
//!   period (the crate writes it). Keep the number of label values small and bounded (never a user
//!   id, room id or address).
//! * Cost on the hot path: a [`Counter`] or [`Gauge`] is an `Arc` of one atomic integer, so `inc`,
//!   `dec`, `set` are one relaxed atomic operation, as they were with our own types. A
//!   [`Histogram`] takes a short lock per observation; ours are observed once per writer batch,
//!   not per message. Keep histograms off per-message and per-event paths.
//! * Reasons for refusals go through [`Metrics::refused`] (a lookup in the family; hot paths keep
//!   a handle from [`Metrics::refusal_counter`]), one series per reason of
//!   `chatroom_refusals_total`; reasons in use are listed in [`Refusal`].
//! * [`HttpMetrics`] holds the HTTP side (requests by status class, open and accepted connections,
//!   panics, slow consumers), fed by the accept loop in [`crate::listener`].
//!
//! Everything is in-process and per node; scrape every node. Reading `/metrics` is allowed to direct
//! requests from the loopback interface and to holders of `--metrics-token`.

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _, prometheus_text};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Metric, Registry};

pub use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
pub use prometheus_client::metrics::family::Family;
pub use prometheus_client::metrics::histogram::Histogram;

/// A number that only goes up: an `Arc` of one `AtomicU64` (a clone shares it).
pub type Counter = prometheus_client::metrics::counter::Counter;
/// A number that goes up and down: an `Arc` of one `AtomicI64` (a clone shares it).
pub type Gauge = prometheus_client::metrics::gauge::Gauge;

/// The label set of chatroom's labelled series: one label, such as `[("eio", "4")]`.
pub type Label = [(&'static str, &'static str); 1];

/// Buckets for latencies in seconds, from 0.5 ms to 10 s.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Buckets for sizes counted in items (batch sizes), from 1 to 4096.
pub const SIZE_BUCKETS: [f64; 12] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 4096.0,
];

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
    /// Every reason; each is in `/metrics` from the start, at 0.
    pub const ALL: [Self; 14] = [
        Self::SigninAccount,
        Self::SigninIp,
        Self::UploadRate,
        Self::UploadStorage,
        Self::BodyTooLarge,
        Self::ConnectionCap,
        Self::ConnectionIpCap,
        Self::HeaderTimeout,
        Self::MessageRate,
        Self::EventRate,
        Self::SocketInboxFull,
        Self::MessageQueueFull,
        Self::ShuttingDown,
        Self::StoreUnavailable,
    ];

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

    fn label(self) -> Label {
        [("reason", self.as_str())]
    }
}

/// The HTTP side: connections and requests.
#[derive(Debug)]
pub struct HttpMetrics {
    /// Requests answered, by status class (`1xx` … `5xx`).
    requests: [Counter; 5],
    /// Connections open now.
    pub open_connections: Gauge,
    /// Connections accepted since start.
    pub accepted_connections: Counter,
    /// Requests whose handling panicked (each answered `500`).
    pub panics: Counter,
    /// Connections closed because their peer stopped reading.
    pub slow_consumers: Counter,
    /// Connections closed, while they waited for a request's headers, to make room for new ones
    /// under the global cap.
    pub evicted: Counter,
    /// Sign-in attempts that waited because their account was past its ceiling.
    pub signin_delayed: Counter,
}

impl HttpMetrics {
    fn new(series: &mut Series) -> Self {
        let requests: Family<Label, Counter> = series.register(
            "chatroom_http_requests_total",
            "HTTP requests answered, by status class.",
            Family::default(),
        );
        Self {
            requests: ["1xx", "2xx", "3xx", "4xx", "5xx"]
                .map(|class| requests.get_or_create_owned(&[("class", class)])),
            open_connections: series.register(
                "chatroom_http_connections_open",
                "TCP connections open now (HTTP, long-polling and WebSocket).",
                Gauge::default(),
            ),
            accepted_connections: series.register(
                "chatroom_http_connections_accepted_total",
                "TCP connections accepted and served.",
                Counter::default(),
            ),
            panics: series.register(
                "chatroom_http_panics_total",
                "Requests whose handling panicked; each was answered 500 and logged.",
                Counter::default(),
            ),
            slow_consumers: series.register(
                "chatroom_slow_consumer_disconnects_total",
                "Connections closed because the client stopped reading for the write timeout.",
                Counter::default(),
            ),
            evicted: series.register(
                "chatroom_connections_evicted_total",
                "Connections waiting for a request's headers (new, or idle between requests) closed to \
                 make room for new ones while the connection cap was full.",
                Counter::default(),
            ),
            signin_delayed: series.register(
                "chatroom_signin_delayed_total",
                "Sign-in attempts slowed down because their account had too many failures from all \
                 addresses.",
                Counter::default(),
            ),
        }
    }

    /// Counts a response with `status`.
    pub fn answered(&self, status: u16) {
        let i = usize::from(status / 100).clamp(1, 5) - 1;
        self.requests[i].inc();
    }
}

/// The registry and the names registered in it.
#[derive(Debug, Default)]
struct Series {
    registry: Registry,
    names: HashSet<&'static str>,
}

impl Series {
    fn register<M: Metric + Clone>(&mut self, name: &'static str, help: &str, metric: M) -> M {
        let fresh = self.names.insert(name);
        debug_assert!(fresh, "metric {name} registered twice");
        if !fresh {
            tracing::error!(
                metric = name,
                "metric registered twice; updates are dropped"
            );
            return metric;
        }
        // The crate writes a counter's `_total` and the help's final period itself.
        let family = if metric.metric_type() == MetricType::Counter {
            debug_assert!(
                name.ends_with("_total"),
                "counter {name} must end in _total"
            );
            name.strip_suffix("_total").unwrap_or(name)
        } else {
            name
        };
        let help = help.strip_suffix('.').unwrap_or(help);
        self.registry.register(family, help, metric.clone());
        metric
    }
}

/// `process_open_fds` and `process_max_fds`, read at each scrape.
#[derive(Debug)]
struct ProcessFds;

impl Collector for ProcessFds {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let open = crate::sys::open_fds().and_then(|n| u64::try_from(n).ok());
        let limit = Some(crate::sys::open_file_limit());
        for (name, help, value) in [
            ("process_open_fds", "Open file descriptors.", open),
            ("process_max_fds", "The open-file limit.", limit),
        ] {
            if let Some(value) = value {
                let gauge = ConstGauge::new(value);
                gauge.encode(encoder.encode_descriptor(
                    name,
                    help,
                    None,
                    gauge.metric_type(),
                )?)?;
            }
        }
        Ok(())
    }
}

/// `chatroom_sqlite_wal_bytes` and `chatroom_sqlite_wal_limit_bytes`, read at each scrape: the size of
/// a SQLite file's write-ahead log, and the size near which the message writer starts it over.
#[derive(Debug)]
pub struct WalFile(crate::db::WalLimit);

impl WalFile {
    /// The series of the WAL file `wal` names, and of its limit.
    pub fn new(wal: crate::db::WalLimit) -> Self {
        Self(wal)
    }
}

impl Collector for WalFile {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        // No file yet (nothing written since the last connection closed): an empty WAL.
        let size = self.0.size();
        for (name, help, value) in [
            (
                "chatroom_sqlite_wal_bytes",
                "Size of the SQLite write-ahead log file.",
                size,
            ),
            (
                "chatroom_sqlite_wal_limit_bytes",
                "Size near which the message writer starts the write-ahead log over (--wal-limit-bytes).",
                self.0.bytes,
            ),
        ] {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}

/// chatroom's metrics: the registry, the HTTP series and the refusals by reason.
#[derive(Debug)]
pub struct Metrics {
    series: Mutex<Series>,
    /// The HTTP side.
    pub http: HttpMetrics,
    refusals: Family<Label, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with the HTTP series, every refusal reason (at 0) and the process's file
    /// descriptors registered.
    pub fn new() -> Self {
        let mut series = Series::default();
        let http = HttpMetrics::new(&mut series);
        let refusals: Family<Label, Counter> = series.register(
            "chatroom_refusals_total",
            "Requests and connections refused by a limit, by reason.",
            Family::default(),
        );
        for reason in Refusal::ALL {
            drop(refusals.get_or_create(&reason.label()));
        }
        series.registry.register_collector(Box::new(ProcessFds));
        Self {
            series: Mutex::new(series),
            http,
            refusals,
        }
    }

    /// Registers series that are read when `/metrics` is scraped (for values another part keeps, such
    /// as the engine's frame budget). Each series it writes is named in full, with its `# HELP`.
    pub fn register_collector(&self, collector: Box<dyn Collector>) {
        self.series
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .registry
            .register_collector(collector);
    }

    /// Registers `metric` (a [`Counter`], [`Gauge`], [`Histogram`] or a [`Family`] of them) as
    /// `name`, exactly as it appears in `/metrics`, and gives it back to keep.
    pub fn register<M: Metric + Clone>(&self, name: &'static str, help: &str, metric: M) -> M {
        self.series
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .register(name, help, metric)
    }

    /// The counter of refusals for `reason`, to keep and update on a hot path.
    pub fn refusal_counter(&self, reason: Refusal) -> Counter {
        self.refusals.get_or_create_owned(&reason.label())
    }

    /// Counts a refusal for `reason`.
    pub fn refused(&self, reason: Refusal) {
        self.refusals.get_or_create(&reason.label()).inc();
    }

    /// The refusal count for `reason` so far.
    pub fn refusals(&self, reason: Refusal) -> u64 {
        self.refusals.get_or_create(&reason.label()).get()
    }

    /// Every series in the Prometheus text format (version 0.0.4; see [`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let series = self.series.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out = String::with_capacity(8192);
        if let Err(e) = prometheus_text::encode(&mut out, &series.registry) {
            tracing::error!(error = %e, "encoding /metrics failed; the text is cut short");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let metrics = Metrics::new();
        let x: Family<[(&str, &str); 1], Counter> =
            metrics.register("x_total", "An x.", Family::default());
        let a = x.get_or_create_owned(&[("k", "a\"b")]);
        a.inc_by(2);
        x.get_or_create(&[("k", "a\"b")]).inc();
        metrics.register("g", "A g.", Gauge::default()).set(-3);
        let h = metrics.register("h_seconds", "An h.", Histogram::new([0.1, 1.0]));
        h.observe(0.05);
        h.observe(0.5);
        h.observe(7.0);
        let text = metrics.render();
        assert!(
            text.contains("# HELP x_total An x.\n# TYPE x_total counter\n"),
            "{text}"
        );
        assert!(text.contains("x_total{k=\"a\\\"b\"} 3\n"), "{text}");
        assert!(text.contains("\ng -3\n"), "{text}");
        assert!(text.contains("h_seconds_bucket{le=\"0.1\"} 1\n"), "{text}");
        assert!(text.contains("h_seconds_bucket{le=\"1\"} 2\n"), "{text}");
        assert!(text.contains("h_seconds_bucket{le=\"+Inf\"} 3\n"), "{text}");
        assert!(text.contains("h_seconds_count 3\n"), "{text}");
        assert!(text.contains("h_seconds_sum 7.55\n"), "{text}");
        assert_eq!(text.matches("# HELP x_total").count(), 1);
        assert!(!text.contains("# EOF"), "{text}");
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "registered twice")]
    fn a_name_is_registered_once() {
        // In release builds the second handle is detached and the error logged.
        let metrics = Metrics::new();
        metrics.register("chatroom_http_panics_total", "Again.", Counter::default());
    }

    #[test]
    fn statuses_fall_into_classes() {
        let metrics = Metrics::new();
        metrics.http.answered(101);
        metrics.http.answered(404);
        metrics.http.answered(999);
        metrics.refused(Refusal::UploadRate);
        metrics.refusal_counter(Refusal::UploadRate).inc();
        let text = metrics.render();
        assert!(text.contains("chatroom_http_requests_total{class=\"1xx\"} 1"));
        assert!(text.contains("chatroom_http_requests_total{class=\"4xx\"} 1"));
        assert!(text.contains("chatroom_http_requests_total{class=\"5xx\"} 1"));
        assert!(text.contains("chatroom_refusals_total{reason=\"upload_rate\"} 2"));
        assert_eq!(metrics.refusals(Refusal::UploadRate), 2);
    }
}
