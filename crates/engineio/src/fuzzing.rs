//! Entry points for chatroom's fuzz targets (`fuzz/`, target `engine_frames`): this layer's own
//! decoders and encoders, driven from plain bytes. Not part of the API socketioxide calls.

use bytes::Bytes;
use engineioxide_core::{Packet, ProtocolVersion};

use crate::config::EngineIoConfig;
use crate::ws::{FrameReader, WsMsg};

/// What the WebSocket frame reader made of a byte stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Read {
    /// Complete messages and control frames, in order: (`1` text, `2` binary, `9` ping, `8` close;
    /// the payload).
    pub messages: Vec<(u8, Vec<u8>)>,
    /// How the reading ended: `None` when every byte was taken, or the error or stop that ended it.
    pub ended: Option<&'static str>,
}

/// Feeds `data` to a fresh frame reader in pieces of the sizes `pieces` gives (cycled; the rest in
/// one piece when it is empty), with these message limits. Reading stops at a close frame, as a
/// session does.
pub fn ws_read(data: &[u8], pieces: &[usize], max_frame: usize, max_message: usize) -> Read {
    let config = EngineIoConfig {
        ws_max_frame_size: max_frame,
        ws_max_message_size: max_message,
        ..EngineIoConfig::default()
    };
    let mut reader = FrameReader::new(&config);
    let mut messages = Vec::new();
    let mut on = |m: WsMsg| {
        let (op, payload, more) = match m {
            WsMsg::Text(t) => (1, t, true),
            WsMsg::Binary(b) => (2, b, true),
            WsMsg::Ping(p) => (9, p, true),
            WsMsg::Close => (8, Vec::new(), false),
        };
        messages.push((op, payload));
        more
    };
    let mut rest = data;
    let mut sizes = pieces.iter().copied().filter(|n| *n > 0).cycle();
    let mut ended = None;
    while !rest.is_empty() {
        let n = sizes.next().unwrap_or(rest.len()).min(rest.len());
        let (piece, tail) = rest.split_at(n);
        rest = tail;
        match reader.feed(piece, usize::MAX, &|| None, &mut on) {
            Ok(true) => {}
            Ok(false) => {
                ended = Some("closed");
                break;
            }
            Err(e) => {
                ended = Some(e.name());
                break;
            }
        }
    }
    Read { messages, ended }
}

/// An Engine.IO polling payload of `texts` and `binaries` (interleaved, texts first), as this layer
/// writes it for `protocol` (`3` or `4`) and a client that does or does not take binary payloads;
/// and whether it came out in the binary form.
pub fn encode_payload(
    texts: &[String],
    binaries: &[Vec<u8>],
    protocol: u8,
    supports_binary: bool,
) -> (Bytes, bool) {
    let mut packets = Vec::new();
    for i in 0..texts.len().max(binaries.len()) {
        if let Some(t) = texts.get(i) {
            packets.push(Packet::Message(t.clone().into()));
        }
        if let Some(b) = binaries.get(i) {
            packets.push(Packet::Binary(Bytes::from(b.clone())));
        }
    }
    let protocol = if protocol == 3 {
        ProtocolVersion::V3
    } else {
        ProtocolVersion::V4
    };
    crate::polling::encode_payload(packets, protocol, supports_binary)
}
