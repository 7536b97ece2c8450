//! The Socket.IO engine's configuration: packet, frame and buffer limits chosen for chat traffic and
//! for hostile clients (see `docs/reliability.md`, "Hostile input").

use std::time::Duration;

use socketioxide::{ParserConfig, SocketIo};

use crate::config::Settings;
use crate::realtime::Engine;

/// Builds the engine for `settings`.
pub fn build(settings: &Settings) -> Engine {
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
    Engine {
        io,
        layer,
        max_packet,
    }
}
