//! What a request to the layer asks for (its query string), and how a request the layer refuses
//! is answered.

use std::{fmt, str::FromStr};

use engineioxide_core::{ProtocolVersion, Sid, TransportType};
use http::{Request, Response, StatusCode, header};

use crate::body::ResponseBody;
use crate::config::EngineIoConfig;

/// A request the layer refuses, with the code and message Node's engine.io gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestError {
    /// `transport` is missing, unknown or not allowed.
    UnknownTransport,
    /// `sid` names no open session (or one on another transport).
    UnknownSid,
    /// A method the transport does not take.
    BadHandshakeMethod,
    /// Anything else malformed.
    BadRequest,
    /// `EIO` is missing or not a version this server speaks.
    UnsupportedProtocolVersion,
}

impl RequestError {
    fn code(self) -> u8 {
        match self {
            RequestError::UnknownTransport => 0,
            RequestError::UnknownSid => 1,
            RequestError::BadHandshakeMethod => 2,
            RequestError::BadRequest => 3,
            RequestError::UnsupportedProtocolVersion => 5,
        }
    }
    fn message(self) -> &'static str {
        match self {
            RequestError::UnknownTransport => "Transport unknown",
            RequestError::UnknownSid => "Session ID unknown",
            RequestError::BadHandshakeMethod => "Bad handshake method",
            RequestError::BadRequest => "Bad request",
            RequestError::UnsupportedProtocolVersion => "Unsupported protocol version",
        }
    }
    pub(crate) fn response<B>(self) -> Response<ResponseBody<B>> {
        let body = format!(
            r#"{{"code":{},"message":"{}"}}"#,
            self.code(),
            self.message()
        );
        let mut res = Response::new(ResponseBody::own(body));
        *res.status_mut() = StatusCode::BAD_REQUEST;
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        res
    }
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for RequestError {}

/// What the query string of an Engine.IO request says.
pub(crate) struct Query {
    pub(crate) protocol: ProtocolVersion,
    pub(crate) transport: TransportType,
    pub(crate) sid: Option<Sid>,
    /// Engine.IO 3: the client wants binary packets as base64 in text payloads.
    pub(crate) b64: bool,
}

impl Query {
    pub(crate) fn parse<B>(
        req: &Request<B>,
        config: &EngineIoConfig,
    ) -> Result<Self, RequestError> {
        let mut protocol = None;
        let mut transport = None;
        let mut sid = None;
        let mut b64 = false;
        for pair in req.uri().query().unwrap_or("").split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "EIO" => protocol = Some(v),
                "transport" => transport = Some(v),
                "sid" => sid = Some(v),
                "b64" => b64 = !v.is_empty() && v != "0" && v != "false",
                _ => {}
            }
        }
        let protocol = protocol
            .and_then(|v| ProtocolVersion::from_str(v).ok())
            .ok_or(RequestError::UnsupportedProtocolVersion)?;
        let transport = transport
            .and_then(|v| TransportType::from_str(v).ok())
            .filter(|t| config.allowed_transport(*t))
            .ok_or(RequestError::UnknownTransport)?;
        let sid = match sid {
            Some(s) => Some(Sid::from_str(s).map_err(|_| RequestError::UnknownSid)?),
            None => None,
        };
        Ok(Self {
            protocol,
            transport,
            sid,
            b64,
        })
    }
}
