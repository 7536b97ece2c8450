//! How replies look to each client. This is the one place error JSON is written, and where each
//! client's success marker (`errno: 0`) is put on a reply ([`Envelope::ok`]).
//!
//! | envelope | refusal | auth failure | our failure |
//! |---|---|---|---|
//! | [`V3`] | 200 `{errno:1, data:msg, msg}`; 413 for bodies over the limit, 429/507 past an upload quota | 401 `{msg}` (the contract's status) | 500 `{errno:1, data:"服务器异常"}` |
//! | [`Legacy`] | 200 `{errno:1, message}` | same | same (the client ignores any other status) |
//! | [`LegacyHistory`] | 200 `{data:{errno:1, message}}` | same | same |
//! | [`AdminApi`] | `{errno:1, code, data:msg, msg}` with the status saying what failed: 400, 403 (also for anyone not an admin, signed in or not), 404, 409 | 403 | 500 |
//! | [`RobotReply`] | 200 `{data:"{\"code\":100000,\"text\":msg}"}` | same | same |

use std::marker::PhantomData;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::error::AppError;
use crate::services::robot::RobotReply as Reply;

/// A client's way of showing errors and successes.
pub trait Envelope: Send + Sync + 'static {
    /// Renders `err` for this client.
    fn reject(err: &AppError) -> Response;

    /// A success reply carrying `fields` (a JSON object), marked as a success the way this client
    /// reads it.
    fn ok(fields: Value) -> Json<Value> {
        Json(with_errno_zero(fields))
    }
}

fn with_errno_zero(fields: Value) -> Value {
    let mut reply = serde_json::Map::new();
    reply.insert("errno".into(), json!(0));
    if let Value::Object(fields) = fields {
        reply.extend(fields);
    }
    Value::Object(reply)
}

impl V3 {
    /// `{errno: 0, data}`, the v3 client's usual success.
    pub fn data(data: impl serde::Serialize) -> Json<Value> {
        Self::ok(json!({ "data": data }))
    }
}

/// The v3 client's `{errno, data}` envelope.
pub struct V3;
/// The Laravel-era client's `{errno, message}` envelope.
pub struct Legacy;
/// The Laravel-era history endpoint, which nests everything under `data`.
pub struct LegacyHistory;
/// The robot endpoints of both clients, which only ever parse a reply.
pub struct RobotReply;
/// `/api/admin/`: the v3 envelope with a machine-readable `code` and a status for each refusal.
pub struct AdminApi;

impl Envelope for V3 {
    fn reject(err: &AppError) -> Response {
        let message = err.public_message();
        let status = match err {
            AppError::Unauthenticated(_) => {
                return (StatusCode::UNAUTHORIZED, Json(json!({ "msg": message }))).into_response();
            }
            AppError::Db(_) | AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            AppError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            AppError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::OverQuota { storage: false, .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::OverQuota { storage: true, .. } => StatusCode::INSUFFICIENT_STORAGE,
            _ => StatusCode::OK,
        };
        (
            status,
            Json(json!({ "errno": 1, "data": message, "msg": message })),
        )
            .into_response()
    }
}

impl Envelope for AdminApi {
    fn reject(err: &AppError) -> Response {
        let message = err.public_message();
        let code = err.code();
        let status = match err {
            AppError::Unauthenticated(_) | AppError::Forbidden(_) => StatusCode::FORBIDDEN,
            AppError::NotFound(_) => StatusCode::NOT_FOUND,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::Invalid(_) | AppError::TooLate(_) => StatusCode::BAD_REQUEST,
            AppError::RateLimited | AppError::OverQuota { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            AppError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            AppError::Db(_) | AppError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let body = json!({ "errno": 1, "code": code, "data": message, "msg": message });
        (status, Json(body)).into_response()
    }
}

impl Envelope for Legacy {
    fn reject(err: &AppError) -> Response {
        Json(json!({ "errno": 1, "message": err.public_message() })).into_response()
    }
}

impl Envelope for LegacyHistory {
    fn reject(err: &AppError) -> Response {
        Json(json!({ "data": { "errno": 1, "message": err.public_message() } })).into_response()
    }

    fn ok(fields: Value) -> Json<Value> {
        Json(json!({ "data": with_errno_zero(fields) }))
    }
}

impl Envelope for RobotReply {
    fn reject(err: &AppError) -> Response {
        Json(json!({ "errno": 1, "data": Reply::text(err.public_message()).to_json() }))
            .into_response()
    }
}

/// The refusal of a cross-site request (see `app::check_origin`), before it is known which client sent
/// it: `403` with the fields both envelopes read.
pub fn cross_site_refusal() -> Response {
    for_every_client(StatusCode::FORBIDDEN, "来源不被允许")
}

/// The reply to a request whose handling panicked (see `app::catch_panics`): `500` with the fields
/// every envelope reads as a failure, and nothing of the panic itself.
pub fn panic_reply() -> Response {
    for_every_client(StatusCode::INTERNAL_SERVER_ERROR, "服务器异常")
}

/// A refusal that every client reads, for when it is not known which client sent the request.
fn for_every_client(status: StatusCode, message: &str) -> Response {
    let body = json!({ "errno": 1, "data": message, "msg": message, "message": message });
    (status, Json(body)).into_response()
}

/// An [`AppError`] on its way to a client that speaks envelope `E`.
pub struct Reject<E>(pub AppError, PhantomData<E>);

impl<E> Reject<E> {
    /// Wraps `err`.
    pub fn new(err: AppError) -> Self {
        Self(err, PhantomData)
    }
}

impl<E> std::fmt::Debug for Reject<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<E, T: Into<AppError>> From<T> for Reject<E> {
    fn from(err: T) -> Self {
        Self::new(err.into())
    }
}

impl<E: Envelope> IntoResponse for Reject<E> {
    fn into_response(self) -> Response {
        if self.0.is_internal() {
            tracing::error!(error = %self.0, "request failed");
        } else {
            tracing::debug!(error = %self.0, "request refused");
        }
        E::reject(&self.0)
    }
}

/// A handler result rendered in envelope `E` (the v3 one unless named).
pub type ApiResult<T, E = V3> = Result<T, Reject<E>>;
