//! The Socket.IO engine's configuration: packet, frame and buffer limits chosen for chat traffic and
//! for hostile clients (see `docs/reliability.md`, "Hostile input").

use std::time::Duration;

use engineioxide::budget::{FrameBudget, Limits};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use socketioxide::{ParserConfig, SocketIo};

use crate::config::Settings;
use crate::metrics::Metrics;
use crate::realtime::Engine;

/// Builds the engine for `settings`, its frame budget reported in `metrics`.
pub fn build(settings: &Settings, metrics: &Metrics) -> Engine {
    // The Laravel-era client sends pictures as base64 data URLs over the socket (which chatroom
    // ignores: the upload already stored them), so a packet must fit an upload in base64.
    let max_packet = (settings.uploads.max_bytes / 3 * 4 + 64 * 1024).max(1 << 20);
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
    // Frames still arriving are held in memory: all of them together get a budget (the oldest are
    // dropped past it), and a socket that has not signed in may send only small ones (signing in
    // lifts the limit: `realtime::membership`).
    let budget = FrameBudget::new(settings.realtime.frame_budget_bytes);
    metrics.register_collector(Box::new(BudgetSeries(budget.clone())));
    let limits = Limits::new()
        .budget(budget)
        .first_frame_limit(settings.realtime.anonymous_frame_bytes);
    Engine {
        io,
        layer,
        max_packet,
        limits,
    }
}

/// `chatroom_frames_in_progress_bytes` and `chatroom_frame_budget_evictions_total`, read at each
/// scrape.
#[derive(Debug)]
struct BudgetSeries(FrameBudget);

impl Collector for BudgetSeries {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let held = ConstGauge::new(i64::try_from(self.0.used()).unwrap_or(i64::MAX));
        held.encode(encoder.encode_descriptor(
            "chatroom_frames_in_progress_bytes",
            "Bytes held by WebSocket frames and polling bodies still arriving, all sockets together.",
            None,
            held.metric_type(),
        )?)?;
        let refused = ConstCounter::new(self.0.refused());
        refused.encode(encoder.encode_descriptor(
            "chatroom_frame_budget_evictions",
            "Frames in progress dropped (their sockets closed) to keep within the frame budget.",
            None,
            refused.metric_type(),
        )?)?;
        Ok(())
    }
}
