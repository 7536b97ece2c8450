//! The few Engine.IO and Socket.IO frames the generator writes and reads, as text.
//!
//! Engine.IO packets start with their type (`0` open, `1` close, `2` ping, `3` pong, `4` message);
//! a message carries a Socket.IO packet (`0` connect, `2` event, `3` ack, `4` connect error),
//! then an optional ack id, then JSON. Only the fields a measurement needs are read, by position,
//! so that receiving a frame costs no JSON parse.

/// What a received frame is.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// Engine.IO open, with its JSON (EIO 3 clients read `pingInterval` from it).
    Open(&'a str),
    /// Engine.IO close.
    Close,
    /// A ping (EIO 4: from the server, answered with a pong).
    Ping,
    /// A pong (EIO 3: the server's answer to the client's ping).
    Pong,
    /// The namespace accepted the socket.
    Connected,
    /// The namespace refused the socket.
    ConnectError,
    /// An event: its name and the JSON array's text after the name.
    Event { name: &'a str, rest: &'a str },
    /// An acknowledgement: its id and JSON array.
    Ack { id: u64, body: &'a str },
    /// Anything else.
    Other,
}

/// Reads a text frame.
pub fn parse(text: &str) -> Frame<'_> {
    let b = text.as_bytes();
    match (b.first(), b.get(1)) {
        (Some(b'0'), _) => Frame::Open(&text[1..]),
        (Some(b'1'), _) => Frame::Close,
        (Some(b'2'), _) => Frame::Ping,
        (Some(b'3'), _) => Frame::Pong,
        (Some(b'4'), Some(b'0')) => Frame::Connected,
        (Some(b'4'), Some(b'4')) => Frame::ConnectError,
        (Some(b'4'), Some(b'2')) => event(&text[2..]),
        (Some(b'4'), Some(b'3')) => {
            let rest = &text[2..];
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            match rest[..digits].parse() {
                Ok(id) => Frame::Ack {
                    id,
                    body: &rest[digits..],
                },
                Err(_) => Frame::Other,
            }
        }
        _ => Frame::Other,
    }
}

fn event(text: &str) -> Frame<'_> {
    // An event the server sends has no ack id: `["name",…]`.
    let Some(rest) = text.strip_prefix("[\"") else {
        return Frame::Other;
    };
    match rest.find('"') {
        Some(end) => Frame::Event {
            name: &rest[..end],
            rest: &rest[end + 1..],
        },
        None => Frame::Other,
    }
}

/// The unsigned integer right after `key` (which includes its quotes and colon, and for a string
/// value its opening quote) in `text`.
pub fn number_after(text: &str, key: &str) -> Option<u64> {
    let at = text.find(key)? + key.len();
    let digits = text[at..].bytes().take_while(u8::is_ascii_digit).count();
    text[at..at + digits].parse().ok()
}

/// The string value of `key` (given as `"key":"`) in `text`, escapes left as they are.
pub fn string_after<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let at = text.find(key)? + key.len();
    let end = text[at..].find('"')?;
    Some(&text[at..at + end])
}

/// The Engine.IO 3 ping interval the open packet announces, in milliseconds.
pub fn ping_interval_ms(open: &str) -> u64 {
    number_after(open, "\"pingInterval\":").unwrap_or(25_000)
}

/// Whether an acknowledgement says `ok: true`.
pub fn ack_ok(body: &str) -> bool {
    body.contains("\"ok\":true")
}

/// The refusal code of an acknowledgement or notice (`?` when it has none).
pub fn code(body: &str) -> String {
    string_after(body, "\"code\":\"").unwrap_or("?").to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_frames_a_run_sees() {
        assert_eq!(
            parse("0{\"sid\":\"a\",\"pingInterval\":25000}"),
            Frame::Open("{\"sid\":\"a\",\"pingInterval\":25000}")
        );
        assert_eq!(
            ping_interval_ms("{\"sid\":\"a\",\"pingInterval\":300}"),
            300
        );
        assert_eq!(parse("2"), Frame::Ping);
        assert_eq!(parse("3"), Frame::Pong);
        assert_eq!(parse("40{\"sid\":\"x\"}"), Frame::Connected);
        assert_eq!(parse("44{\"message\":\"no\"}"), Frame::ConnectError);
        assert_eq!(
            parse("42[\"chat\",{\"t\":1000000000000123}]"),
            Frame::Event {
                name: "chat",
                rest: ",{\"t\":1000000000000123}]"
            }
        );
        assert_eq!(
            parse("4312[{\"ok\":true,\"id\":7}]"),
            Frame::Ack {
                id: 12,
                body: "[{\"ok\":true,\"id\":7}]"
            }
        );
        assert_eq!(parse("6"), Frame::Other);
    }

    #[test]
    fn reads_fields_by_position() {
        let m = r#",{"_id":3,"username":"u_1","msg":"1000000000000042 xxx","clientId":"1_9"}]"#;
        assert_eq!(number_after(m, "\"msg\":\""), Some(1_000_000_000_000_042));
        assert_eq!(string_after(m, "\"clientId\":\""), Some("1_9"));
        assert_eq!(number_after(m, "\"nope\":"), None);
        assert!(ack_ok("[{\"ok\":true}]"));
        assert!(!ack_ok("[{\"ok\":false,\"code\":\"unavailable\"}]"));
        assert_eq!(
            code("[{\"ok\":false,\"code\":\"unavailable\"}]"),
            "unavailable"
        );
        assert_eq!(code("[{\"ok\":false}]"), "?");
    }
}
