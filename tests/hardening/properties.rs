//! Property tests (F2) of the Engine.IO 3 polling re-framer in `src/socket/compat.rs`: payloads of
//! socket.io packets with arbitrary text keep their packets through every rewriting.

use chatroom::socket::compat;
use proptest::prelude::*;
use serde_json::{Value, json};

use super::fuzz_seeds::checks::decode_binary;

/// Socket.IO event packets (`42[…]`) carrying arbitrary text, as clients send them.
fn packets() -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(
        ("[a-z]{1,8}", "\\PC{0,24}").prop_map(|(event, text)| {
            format!("42{}", json!([event, {"msg": text, "roomid": "room1"}]))
        }),
        1..5,
    )
}

/// The 2.x payload framing: lengths in UTF-16 units.
fn v2(packets: &[String]) -> String {
    packets
        .iter()
        .map(|p| format!("{}:{p}", p.encode_utf16().count()))
        .collect()
}

/// What socket.io-client 1.x in a browser sends: byte lengths, each UTF-8 byte sent as a character.
fn v1(packets: &[String]) -> Vec<u8> {
    let mut body = String::new();
    for p in packets {
        body.push_str(&format!("{}:", p.len()));
        body.extend(p.bytes().map(char::from));
    }
    body.into_bytes()
}

fn json_of(packet: &str) -> Value {
    serde_json::from_str(packet.trim_start_matches(|c: char| c.is_ascii_digit())).unwrap()
}

/// Cases per property: 2000 in the test suite, more with `PROPTEST_CASES` (the long run uses 20000).
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(2000)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn payloads_split_back_into_their_packets(packets in packets()) {
        let body = v2(&packets);
        let split = compat::split_text_payload(body.as_bytes()).unwrap();
        prop_assert_eq!(split, packets.iter().map(String::as_str).collect::<Vec<_>>());
    }

    #[test]
    fn a_1x_body_is_read_as_the_same_packets(packets in packets()) {
        let fixed = compat::v1_request_to_v2(&v1(&packets));
        if packets.iter().all(|p| p.is_ascii()) {
            // Pure ASCII: both framings are the same bytes, and the body is left alone.
            prop_assert_eq!(fixed, None);
        } else {
            prop_assert_eq!(fixed, Some(v2(&packets).into_bytes()));
        }
    }

    // A 2.x payload with any character above U+00FF (Chinese, emoji: what the clients' users type)
    // cannot be a 1.x body and passes unchanged. Payloads whose characters all lie in U+0080–U+00FF
    // and happen to spell valid UTF-8 when read as bytes (`Ã©`) are read as 1.x: the known limit of
    // telling the two framings apart (docs/reliability.md).
    #[test]
    fn a_2x_payload_with_wide_characters_survives(packets in packets(), wide in "[\\u{100}-\\u{10FFFF}&&\\PC]") {
        let mut packets = packets;
        packets[0] = format!("42{}", json!(["message", {"msg": wide}]));
        prop_assert_eq!(compat::v1_request_to_v2(v2(&packets).as_bytes()), None);
    }

    #[test]
    fn binary_reframing_keeps_every_packet(packets in packets()) {
        let body = v2(&packets);
        let framed = compat::text_to_binary(body.as_bytes()).unwrap();
        prop_assert_eq!(decode_binary(&framed), packets.iter().map(String::as_str).collect::<Vec<_>>());
    }

    #[test]
    fn ascii_mode_is_ascii_and_decodes_to_the_same_packets(packets in packets()) {
        let body = v2(&packets);
        match compat::text_to_ascii(body.as_bytes()) {
            None => prop_assert!(packets.iter().all(|p| p.is_ascii())),
            Some(ascii) => {
                prop_assert!(ascii.is_ascii());
                let escaped = compat::split_text_payload(&ascii).unwrap();
                prop_assert_eq!(escaped.len(), packets.len());
                for (escaped, original) in escaped.iter().zip(&packets) {
                    prop_assert_eq!(json_of(escaped), json_of(original));
                }
            }
        }
    }
}

/// Unescapes what `escape_html` writes (a test-side inverse).
fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

// Event payloads (`src/socket/payloads.rs`) and the escaping of stored text.
proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// Every text field of a `message` payload reads back as sent, strings and numbers alike, and the
    /// identity fields are kept apart from the message's own.
    #[test]
    fn message_payloads_read_back_their_fields(
        msg in "\\PC{0,40}", room in "\\PC{0,12}", client in "[!-~]{0,70}", n in any::<i64>(),
    ) {
        use chatroom::socket::payloads::MessageEvent;
        use chatroom::socket::router::{FromPayload, Payload};
        let value = json!({"msg": msg, "roomid": room, "clientId": client, "id": n, "from": false,
                           "img": null, "extra": {"ignored": [1, 2]}});
        let read = MessageEvent::from_payload(Payload::Json(value)).unwrap();
        prop_assert_eq!(read.msg.raw(), msg.as_str());
        prop_assert_eq!(read.roomid.raw(), room.as_str());
        prop_assert_eq!(read.roomid.text(), Some(room.trim()).filter(|r| !r.is_empty()));
        prop_assert_eq!(read.client_id.as_deref(), Some(client.as_str()));
        let id = n.to_string();
        prop_assert_eq!(read.claims.id.text(), Some(id.as_str()));
        prop_assert_eq!(read.claims.from.text(), None);
        prop_assert_eq!(read.img.text(), None);
    }

    /// A payload that is neither an object nor absent is refused, whatever it holds.
    #[test]
    fn payloads_that_are_not_objects_are_refused(text in "\\PC{0,20}", n in -1e300f64..1e300) {
        use chatroom::socket::payloads::{MessageEvent, RoomEvent, SyncEvent};
        use chatroom::socket::router::{FromPayload, Payload};
        for value in [json!(text), json!(n), json!([text]), json!(true)] {
            prop_assert!(MessageEvent::from_payload(Payload::Json(value.clone())).is_err());
            prop_assert!(RoomEvent::from_payload(Payload::Json(value.clone())).is_err());
            prop_assert!(SyncEvent::from_payload(Payload::Json(value)).is_err());
        }
    }

    /// Escaped text holds no markup character and unescapes to the text itself.
    #[test]
    fn escaped_text_has_no_markup_and_unescapes_to_itself(text in "\\PC{0,60}") {
        let escaped = chatroom::text::escape_html(&text);
        prop_assert!(!escaped.contains(['<', '>', '"', '\'']));
        prop_assert_eq!(unescape(&escaped), text);
    }
}

/// Issue 20 item 1: the Laravel-era history's paging. Whatever page number and `total` a client
/// sends, the window stays inside the room (so the offset that reaches SQL fits its signed 64-bit
/// offsets), and consecutive pages follow each other without a gap or a repeat until the room ends.
mod legacy_paging {
    use chatroom::services::history::legacy_window;
    use chatroom::services::messages::PAGE_SIZE;
    use proptest::prelude::*;

    fn totals() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<u64>().prop_map(|t| t.to_string()),
            (0u64..200).prop_map(|t| t.to_string()),
            "\\PC{0,6}",
            Just("-1".to_owned()),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(super::cases()))]

        #[test]
        fn pages_stay_inside_the_room_and_follow_each_other(
            current in prop_oneof![1u64..50, any::<u64>().prop_map(|c| c.max(1))],
            total in totals(),
            count in prop_oneof![0u64..200, 0u64..=i64::MAX as u64],
        ) {
            let window = legacy_window(current, &total, count);
            prop_assert!(window.total <= count);
            prop_assert!(window.offset <= count);
            prop_assert!(i64::try_from(window.offset).is_ok());
            if let Some(next) = current.checked_add(1) {
                let following = legacy_window(next, &total, count);
                prop_assert_eq!(following.total, window.total);
                prop_assert_eq!(following.offset, window.offset.saturating_add(PAGE_SIZE).min(count));
            }
        }
    }
}
