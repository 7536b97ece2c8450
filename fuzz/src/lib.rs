//! The checks behind chatroom's fuzz targets: each takes arbitrary bytes, feeds them to one of the
//! decoders chatroom owns, and panics if the decoder panics or breaks one of its invariants.
//!
//! This file is also compiled into the integration tests (`tests/hardening/fuzz_seeds.rs`), which
//! replay every seed under `fuzz/corpus/` on every test run, so findings kept as seeds stay fixed
//! without the fuzz toolchain. It may therefore use only crates chatroom itself depends on.

use chatroom::services::rooms::Rooms;
use chatroom::socket::compat;

/// The Engine.IO 3 polling re-framer and the query and handshake parsing in front of socketioxide.
pub fn eio3_polling(data: &[u8]) {
    let query = compat::EioQuery::parse(&String::from_utf8_lossy(data));
    if let Some(sid) = &query.sid {
        assert!(!sid.is_empty());
    }
    if let Some(sid) = compat::find_sid(data) {
        assert!(
            sid.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{sid:?}"
        );
    }
    if let Some(v2) = compat::v1_request_to_v2(data) {
        // What comes out is a well-formed 2.x payload with as many packets.
        let packets = compat::split_text_payload(&v2).expect("a 2.x payload");
        assert!(!packets.is_empty());
    }
    if let Some(packets) = compat::split_text_payload(data) {
        match compat::text_to_binary(data) {
            Some(binary) => assert_eq!(decode_binary(&binary), packets),
            None => panic!("a well-formed payload was not re-framed"),
        }
        if let Some(ascii) = compat::text_to_ascii(data) {
            assert!(ascii.is_ascii());
            let escaped = compat::split_text_payload(&ascii).expect("ASCII output re-splits");
            assert_eq!(escaped.len(), packets.len());
        }
    } else {
        assert_eq!(compat::text_to_binary(data), None);
        assert_eq!(compat::text_to_ascii(data), None);
    }
}

/// Packets of the EIO 3 binary payload framing (`0x00`, decimal digits as bytes, `0xFF`, packet).
pub fn decode_binary(mut bytes: &[u8]) -> Vec<&str> {
    let mut packets = Vec::new();
    while let Some((&kind, rest)) = bytes.split_first() {
        assert_eq!(kind, 0, "string packets only");
        let end = rest.iter().position(|&b| b == 0xFF).expect("length ends");
        let len = rest[..end]
            .iter()
            .fold(0usize, |n, d| n * 10 + usize::from(*d));
        let packet = &rest[end + 1..end + 1 + len];
        packets.push(std::str::from_utf8(packet).expect("UTF-8 packet"));
        bytes = &rest[end + 1 + len..];
    }
    packets
}

/// Token discovery in requests (headers, query, cookie) and the token check behind it.
pub fn token_extraction(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut fields = text.splitn(4, '\n');
    let (auth, query, cookie, raw) = (
        fields.next().unwrap_or_default(),
        fields.next().unwrap_or_default(),
        fields.next().unwrap_or_default(),
        fields.next().unwrap_or_default(),
    );
    let mut request = http::Request::builder();
    if let Ok(uri) = format!("/api/user?{query}").parse::<http::Uri>() {
        request = request.uri(uri);
    }
    for (name, value) in [("authorization", auth), ("cookie", cookie)] {
        if let Ok(value) = http::HeaderValue::from_str(value) {
            request = request.header(name, value);
        }
    }
    let Ok(request) = request.body(()) else {
        return;
    };
    let (parts, ()) = request.into_parts();
    let tokens = chatroom::auth::token::TokenService::new(
        b"fuzz-secret-fuzz-secret-fuzz-secret!",
        std::time::Duration::from_secs(60),
    );
    let found = chatroom::auth::request::token_from_parts(&parts);
    for token in found
        .iter()
        .chain(&chatroom::auth::request::header_token(&parts))
        .chain(&chatroom::auth::request::query_token(&parts))
        .chain(&chatroom::auth::request::cookie_token(&parts))
        .map(String::as_str)
        .chain([raw])
    {
        if token != raw {
            assert!(chatroom::auth::request::usable(token), "{token:?}");
        }
        // Nothing a fuzzer writes is signed with the secret.
        assert!(tokens.verify(token).is_err(), "accepted {token:?}");
    }
}

/// Upload sniffing: the format by magic bytes and the declared pixel size, without decoding.
pub fn upload_sniff(data: &[u8]) {
    use chatroom::services::uploads::{self, MAX_PIXELS, MAX_SIDE, UploadStore};
    let sniffed = uploads::sniff(data);
    match uploads::inspect(data) {
        Ok((kind, size)) => {
            assert_eq!(Some(kind), sniffed);
            assert!(size.width > 0 && size.height > 0);
            assert!(size.width <= MAX_SIDE && size.height <= MAX_SIDE);
            assert!(size.width * size.height <= MAX_PIXELS);
        }
        Err(e) => assert!(!e.is_internal()),
    }
    let text = String::from_utf8_lossy(data);
    if UploadStore::owns_url(&text) {
        assert!(
            !text
                .split(['?', '#'])
                .next()
                .unwrap_or_default()
                .contains("..")
        );
    }
    if let Some(owner) = uploads::owner_of(&text) {
        assert!(owner > 0);
    }
}

/// History queries of both clients: room ids, cursors, pages and page windows.
pub fn history_query(data: &[u8]) {
    use chatroom::services::history;
    let text = String::from_utf8_lossy(data);
    let Ok(pairs) = serde_urlencoded::from_str::<Vec<(String, String)>>(&text) else {
        return;
    };
    let field = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let rooms = Rooms::new(vec!["room1".into(), "room2".into()]);
    for parse in [Rooms::parse, Rooms::parse_legacy] {
        if let Some(room) = parse(&rooms, field("roomid").unwrap_or_default().trim()) {
            // A room's id reads back as the same room.
            assert_eq!(rooms.parse(&room.id()), Some(room));
        }
    }
    let _ = history::parse_cursor(field("msgid"));
    if let Ok(current) = history::parse_page(field("current").unwrap_or_default()) {
        assert!(current >= 1);
        let count = field("count")
            .and_then(|c| c.parse::<u64>().ok())
            .unwrap_or(data.len() as u64);
        let window = history::legacy_window(current, field("total").unwrap_or_default(), count);
        assert!(window.total <= count);
        // Offsets stop at the room's end, so they always fit SQL's signed 64-bit offsets.
        assert!(window.offset <= count);
        if current == 1 {
            assert_eq!(window.offset, count - window.total);
        }
    }
}

/// Event payloads: the typed inbound payloads of `src/socket/payloads.rs` (what every socket event is
/// read as before its handler runs), and for `message` the composition rules behind it (room, length,
/// picture URL, client id, HTML escaping). The input is a JSON document, or any text taken as a string.
pub fn event_payload(data: &[u8]) {
    use chatroom::services::messages;
    use chatroom::socket::payloads::{
        Lenient, LoginEvent, MessageEvent, RecallEvent, RoomEvent, RoomoutEvent, SyncEvent,
    };
    use chatroom::socket::router::{FromPayload, Payload};
    use serde_json::Value;

    let value = serde_json::from_slice::<Value>(data)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(data).into_owned()));
    let readable = matches!(value, Value::Null | Value::Object(_));
    let lenient_ok = |l: &Lenient| {
        if let Some(t) = l.text() {
            assert!(!t.is_empty() && t.trim() == t, "{t:?}");
            assert!(l.raw().contains(t));
        }
    };
    // Only `null` and objects are read; everything else is refused, never half-read.
    let login = LoginEvent::from_payload(Payload::Json(value.clone()));
    let room = RoomEvent::from_payload(Payload::Json(value.clone()));
    let roomout = RoomoutEvent::from_payload(Payload::Json(value.clone()));
    let sync = SyncEvent::from_payload(Payload::Json(value.clone()));
    let message = MessageEvent::from_payload(Payload::Json(value.clone()));
    let recall = RecallEvent::from_payload(Payload::Json(value.clone()));
    for ok in [
        login.is_ok(),
        room.is_ok(),
        roomout.is_ok(),
        sync.is_ok(),
        message.is_ok(),
        recall.is_ok(),
    ] {
        assert!(readable || !ok, "read a non-object payload {value}");
    }
    for e in [
        login.as_ref().err(),
        room.as_ref().err(),
        message.as_ref().err(),
    ]
    .into_iter()
    .flatten()
    {
        assert!(!e.is_internal(), "{e:?}");
    }
    if let Ok(r) = &room {
        lenient_ok(&r.roomid);
        lenient_ok(&r.claims.username);
    }
    if let Ok(s) = &sync {
        s.rooms.values().for_each(lenient_ok);
    }
    if let Ok(r) = &recall {
        // The message id is read apart from the identity claims (`id` is the message's here).
        lenient_ok(&r.id);
        assert_eq!(r.claims.id.text(), None);
    }
    let Ok(m) = message else { return };
    // A string field reads back as the same text.
    if let Some(Value::String(msg)) = value.get("msg") {
        assert_eq!(m.msg.raw(), msg);
    }
    for field in [
        &m.msg,
        &m.img,
        &m.roomid,
        &m.claims.from,
        &m.claims.api_token,
    ] {
        lenient_ok(field);
    }
    let rooms = Rooms::new(vec!["room1".into(), "room2".into()]);
    let Some(target) = rooms.parse(m.roomid.text().unwrap_or_default()) else {
        return;
    };
    let sender = 7;
    match messages::compose(
        sender,
        target.clone(),
        m.msg.raw(),
        m.img.raw(),
        m.client_id.clone(),
        200,
    ) {
        Ok(new) => {
            assert!(target.admits(sender));
            assert!(
                !new.body.contains(['<', '>', '"', '\'']),
                "unescaped {:?}",
                new.body
            );
            assert!(m.msg.raw().chars().count() <= 200);
            assert!(!new.body.trim().is_empty() || !new.image.is_empty());
            assert!(
                !new.image.contains(['"', '\'', '<', '>', '`', '\\', ' ']),
                "{:?}",
                new.image
            );
            if let Some(c) = &new.client_id {
                assert!(!c.is_empty() && c.len() <= 64 && c.bytes().all(|b| b.is_ascii_graphic()));
            }
        }
        Err(e) => assert!(!e.is_internal(), "{e:?}"),
    }
}

/// chatroom's own Engine.IO layer (`crates/engineio`): its RFC 6455 frame reader, fed the same bytes
/// whole and in pieces (first byte: how many piece sizes follow, then the sizes), and its polling
/// payload encoder, read back with a reference decoder.
pub fn engine_frames(data: &[u8]) {
    use engineioxide::fuzzing::{encode_payload, ws_read};

    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let (sizes, stream) = rest.split_at(usize::from(n % 8).min(rest.len()));
    let pieces: Vec<usize> = sizes.iter().map(|b| usize::from(b % 32) + 1).collect();
    let (max_frame, max_message) = (4096, 8192);
    let whole = ws_read(stream, &[], max_frame, max_message);
    let split = ws_read(stream, &pieces, max_frame, max_message);
    assert_eq!(whole, split, "the reader depends on how the bytes arrive");
    let mut taken = 0;
    for (op, payload) in &whole.messages {
        assert!(matches!(op, 1 | 2 | 8 | 9), "opcode {op}");
        assert!(payload.len() <= if *op == 9 { 125 } else { max_message });
        taken += payload.len();
    }
    assert!(taken <= stream.len(), "more payload out than bytes in");
    if whole.messages.iter().any(|(op, _)| *op == 8) {
        assert_eq!(
            whole.ended,
            Some("closed"),
            "reading stops at a close frame"
        );
    }

    // Polling payloads: texts and binaries from the input, every version and form.
    let text = String::from_utf8_lossy(stream).replace('\u{1e}', "");
    let texts: Vec<String> = text.split('\n').map(str::to_owned).take(8).collect();
    let binaries: Vec<Vec<u8>> = stream.chunks(7).take(8).map(<[u8]>::to_vec).collect();
    let count = texts.len() + binaries.len();
    let (v4, binary) = encode_payload(&texts, &binaries, 4, true);
    assert!(!binary);
    assert_eq!(
        v4.iter().filter(|b| **b == 0x1e).count(),
        count.saturating_sub(1)
    );
    let (v3, binary) = encode_payload(&texts, &binaries, 3, false);
    assert!(!binary);
    assert_eq!(v3_text_records(&v3), Some(count), "v3 text payload");
    let (v3b, binary) = encode_payload(&texts, &binaries, 3, true);
    assert_eq!(binary, !binaries.is_empty());
    if binary {
        assert_eq!(v3_binary_records(&v3b), Some(count), "v3 binary payload");
    }
}

/// How many `<UTF-16 length>:<packet>` records a v3 text payload holds, if it is well formed.
fn v3_text_records(payload: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(payload).ok()?;
    let mut rest = text;
    let mut records = 0;
    while !rest.is_empty() {
        let (len, tail) = rest.split_once(':')?;
        let units: usize = len.parse().ok()?;
        let mut used = 0;
        let end = tail
            .char_indices()
            .find_map(|(i, c)| {
                if used == units {
                    return Some(i);
                }
                used += c.len_utf16();
                None
            })
            .unwrap_or(tail.len());
        if tail[..end].encode_utf16().count() != units {
            return None;
        }
        rest = &tail[end..];
        records += 1;
    }
    Some(records)
}

/// How many `<0|1><digits>\xff<data>` records a v3 binary payload holds, if it is well formed.
fn v3_binary_records(payload: &[u8]) -> Option<usize> {
    let mut rest = payload;
    let mut records = 0;
    while let Some((&kind, tail)) = rest.split_first() {
        if kind > 1 {
            return None;
        }
        let stop = tail.iter().position(|b| *b == 0xff)?;
        let mut len = 0usize;
        for d in &tail[..stop] {
            if *d > 9 {
                return None;
            }
            len = len.checked_mul(10)?.checked_add(usize::from(*d))?;
        }
        let body = tail.get(stop + 1..stop + 1 + len)?;
        if kind == 1 && body.first() != Some(&4) {
            return None;
        }
        rest = &tail[stop + 1 + len..];
        records += 1;
    }
    Some(records)
}
