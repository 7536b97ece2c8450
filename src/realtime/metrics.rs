//! The realtime series of `/metrics` (sockets, events, the message queue and writer, refusals), and
//! the refusals summed up in the log every [`super::REFUSAL_LOG_EVERY`].

use std::sync::{Arc, Mutex, PoisonError};

use socketioxide::ProtocolVersion;

use crate::metrics::{Counter, Gauge, Histogram, LATENCY_BUCKETS, Metrics, Refusal, SIZE_BUCKETS};

/// The realtime series of `/metrics`, and the refusal counts summed up in the log.
pub struct RealtimeMetrics {
    /// Sockets connected now, by Engine.IO protocol version (`3`: socket.io 1.x/2.x; `4`: 3.x/4.x).
    pub sockets: [Arc<Gauge>; 2],
    /// Client events received (before any refusal).
    pub events_in: Arc<Counter>,
    /// Messages stored.
    pub stored: Arc<Counter>,
    /// Messages between submission and delivery.
    pub queue_depth: Arc<Gauge>,
    /// Messages per commit.
    pub batch_size: Arc<Histogram>,
    /// Time to commit one batch.
    pub commit_seconds: Arc<Histogram>,
    /// Refusals of messages and events, by reason (`chatroom_refusals_total`).
    pub message_rate: Arc<Counter>,
    pub event_rate: Arc<Counter>,
    pub inbox_full: Arc<Counter>,
    pub queue_full: Arc<Counter>,
    pub shutting_down: Arc<Counter>,
    pub store_unavailable: Arc<Counter>,
    logged: Mutex<[u64; 6]>,
}

impl RealtimeMetrics {
    pub(super) fn new(metrics: &Metrics) -> Self {
        let r = &metrics.registry;
        let sockets = |eio: &str| {
            r.gauge(
                "chatroom_socket_connections",
                "Sockets connected now, by Engine.IO protocol version.",
                &[("eio", eio)],
            )
        };
        Self {
            sockets: [sockets("3"), sockets("4")],
            events_in: r.counter(
                "chatroom_socket_events_total",
                "Events received from sockets.",
                &[],
            ),
            stored: r.counter(
                "chatroom_messages_stored_total",
                "Chat messages stored (resends of stored messages not counted).",
                &[],
            ),
            queue_depth: r.gauge(
                "chatroom_message_queue_depth",
                "Messages between submission and delivery.",
                &[],
            ),
            batch_size: r.histogram(
                "chatroom_writer_batch_messages",
                "Messages per commit of the message writer.",
                &[],
                SIZE_BUCKETS,
            ),
            commit_seconds: r.histogram(
                "chatroom_writer_commit_seconds",
                "Time to commit one batch of messages.",
                &[],
                LATENCY_BUCKETS,
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
    pub fn sockets_of(&self, protocol: ProtocolVersion) -> &Arc<Gauge> {
        match protocol {
            ProtocolVersion::V4 => &self.sockets[0],
            ProtocolVersion::V5 => &self.sockets[1],
        }
    }

    /// Logs the refusals since the last call, if there were any.
    pub(super) fn log_refusals(&self) {
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
