//! The realtime series of `/metrics` (sockets, events, the message queue and writer, refusals), and
//! the refusals summed up in the log every [`super::REFUSAL_LOG_EVERY`].

use std::sync::{Mutex, PoisonError};

use socketioxide::ProtocolVersion;

use crate::metrics::{
    Counter, Family, Gauge, Histogram, LATENCY_BUCKETS, Label, Metrics, Refusal, SIZE_BUCKETS,
};

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
    pub(super) fn new(metrics: &Metrics) -> Self {
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
