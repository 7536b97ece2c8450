//! What clients send with each event, as typed structs. Payloads are read once, at the router, and a
//! malformed one is refused there; handlers never look into raw JSON.
//!
//! Both web clients put identity fields in their payloads (`username`, `name`, `userid`, `id`, `from`)
//! and the Laravel-era client its `api_token`; they are read only to be compared with the socket's
//! user ([`Claims`]). Fields a client may send as a string, a number or `false` are [`Lenient`].

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use serde_json::Value;

use super::router::{FromPayload, Payload};
use crate::error::AppError;
use crate::realtime::Binding;

/// A field clients send as a string, a number, a boolean, `null` or not at all. `false` and `null`
/// mean "nothing" (the v3 client sends `from: false` in group rooms); numbers are read as their decimal
/// text. Arrays and objects are refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lenient(pub Option<String>);

impl Lenient {
    /// The text, trimmed; `None` when absent or blank.
    pub fn text(&self) -> Option<&str> {
        self.0.as_deref().map(str::trim).filter(|s| !s.is_empty())
    }

    /// The raw text, untrimmed; empty when absent.
    pub fn raw(&self) -> &str {
        self.0.as_deref().unwrap_or_default()
    }
}

impl<'de> Deserialize<'de> for Lenient {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LenientVisitor;
        impl<'d> Visitor<'d> for LenientVisitor {
            type Value = Lenient;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string, a number, a boolean or null")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Lenient, E> {
                Ok(Lenient(Some(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Lenient, E> {
                Ok(Lenient(Some(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Lenient, E> {
                Ok(Lenient(Some(v.to_string())))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Lenient, E> {
                Ok(Lenient(Some(v.to_string())))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Lenient, E> {
                Ok(Lenient(Some(v.to_string())))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Lenient, E> {
                Ok(Lenient(v.then(|| "true".to_owned())))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Lenient, E> {
                Ok(Lenient(None))
            }
            fn visit_none<E: de::Error>(self) -> Result<Lenient, E> {
                Ok(Lenient(None))
            }
            fn visit_some<D: Deserializer<'d>>(self, d: D) -> Result<Lenient, D::Error> {
                d.deserialize_any(self)
            }
        }
        deserializer.deserialize_any(LenientVisitor)
    }
}

/// The identity fields a payload may carry. They never decide who acts: the socket's user does.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Claims {
    pub username: Lenient,
    pub name: Lenient,
    pub userid: Lenient,
    pub id: Lenient,
    pub from: Lenient,
    /// The Laravel-era client's current token (it sends one with every event).
    pub api_token: Lenient,
}

/// `login`: v3 `{name, id, browser, os, ua}`, Laravel-era `{name, api_token}`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct LoginEvent {
    #[serde(flatten)]
    pub claims: Claims,
}

/// `room`: `{roomid}` (+ `name`, `src` from the v3 client).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RoomEvent {
    pub roomid: Lenient,
    #[serde(flatten)]
    pub claims: Claims,
}

/// `roomout`: nothing (v3), or `{roomid, name, api_token}` (Laravel-era).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RoomoutEvent {
    pub roomid: Lenient,
    #[serde(flatten)]
    pub claims: Claims,
}

/// `message`: `{msg, img, roomid, clientId}`; `roomType`, `type`, `time`, `to`, `src` are ignored.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct MessageEvent {
    pub msg: Lenient,
    pub img: Lenient,
    pub roomid: Lenient,
    #[serde(rename = "clientId")]
    pub client_id: Option<String>,
    #[serde(flatten)]
    pub claims: Claims,
}

/// `recall`: `{id}`, the author's own message to take back.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RecallEvent {
    /// The message's id (a number, or its decimal text as the v3 client's `_id`).
    pub id: Lenient,
    #[serde(flatten)]
    pub claims: Claims,
}

/// `sync`: `{rooms: {<room id>: <last message id held>}}`, sent after a reconnect.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SyncEvent {
    pub rooms: BTreeMap<String, Lenient>,
}

/// `connect`: the user the handshake's token named, if any.
#[derive(Debug, Clone)]
pub struct Connected(pub Option<Binding>);

/// `disconnect`: why the socket went away.
#[derive(Debug, Clone)]
pub struct Disconnected(pub String);

/// Reads an event's JSON payload: `null` (no payload) is the empty payload, an object is read field
/// by field, anything else is refused.
fn from_json<T: for<'de> Deserialize<'de> + Default>(payload: Payload) -> Result<T, AppError> {
    match payload {
        Payload::Json(Value::Null) => Ok(T::default()),
        Payload::Json(value @ Value::Object(_)) => {
            serde_json::from_value(value).map_err(|_| AppError::invalid("消息格式错误"))
        }
        Payload::Json(_) | Payload::Connected(_) | Payload::Disconnected(_) => {
            Err(AppError::invalid("消息格式错误"))
        }
    }
}

macro_rules! json_payloads {
    ($($t:ty),*) => {$(
        impl FromPayload for $t {
            fn from_payload(payload: Payload) -> Result<Self, AppError> {
                from_json(payload)
            }
        }
    )*};
}

json_payloads!(
    LoginEvent,
    RoomEvent,
    RoomoutEvent,
    MessageEvent,
    RecallEvent,
    SyncEvent
);

impl FromPayload for Connected {
    fn from_payload(payload: Payload) -> Result<Self, AppError> {
        match payload {
            Payload::Connected(binding) => Ok(Self(binding)),
            Payload::Json(_) | Payload::Disconnected(_) => Err(AppError::invalid("未知事件")),
        }
    }
}

impl FromPayload for Disconnected {
    fn from_payload(payload: Payload) -> Result<Self, AppError> {
        match payload {
            Payload::Disconnected(reason) => Ok(Self(reason)),
            Payload::Json(_) | Payload::Connected(_) => Err(AppError::invalid("未知事件")),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn message(v: Value) -> Result<MessageEvent, AppError> {
        MessageEvent::from_payload(Payload::Json(v))
    }

    #[test]
    fn lenient_fields_take_strings_numbers_and_false() {
        let m = message(
            json!({"msg": 5, "img": "", "roomid": 1, "from": false, "id": 42, "clientId": "c"}),
        )
        .unwrap();
        assert_eq!(m.msg.raw(), "5");
        assert_eq!(m.roomid.text(), Some("1"));
        assert_eq!(m.claims.from.text(), None);
        assert_eq!(m.claims.id.text(), Some("42"));
        assert_eq!(m.client_id.as_deref(), Some("c"));
        let m = message(json!({"msg": "  ", "roomid": null})).unwrap();
        assert_eq!(m.msg.text(), None);
        assert_eq!(m.roomid.text(), None);
    }

    #[test]
    fn malformed_payloads_are_refused() {
        for bad in [
            json!({"msg": {"nested": 1}}),
            json!({"msg": [1, 2]}),
            json!({"clientId": 7}),
            json!("text"),
            json!([1, 2]),
        ] {
            assert!(
                matches!(message(bad.clone()), Err(AppError::Invalid(_))),
                "{bad}"
            );
        }
        assert!(LoginEvent::from_payload(Payload::Json(Value::Null)).is_ok());
        assert!(Connected::from_payload(Payload::Json(json!({}))).is_err());
    }

    #[test]
    fn recall_reads_its_id_apart_from_identity_claims() {
        let r =
            RecallEvent::from_payload(Payload::Json(json!({"id": "17", "username": "a"}))).unwrap();
        assert_eq!(r.id.text(), Some("17"));
        assert_eq!(r.claims.id.text(), None);
        assert_eq!(r.claims.username.text(), Some("a"));
    }

    #[test]
    fn sync_reads_room_positions() {
        let s =
            SyncEvent::from_payload(Payload::Json(json!({"rooms": {"room1": 12, "9-10": "7"}})))
                .unwrap();
        assert_eq!(s.rooms["room1"].text(), Some("12"));
        assert_eq!(s.rooms["9-10"].text(), Some("7"));
    }
}
