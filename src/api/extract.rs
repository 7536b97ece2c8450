//! Extractors that speak a client's envelope when they refuse: request bodies, query strings, tokens
//! and the signed-in user.
//!
//! Where tokens are found is decided in [`crate::auth::request`], for both transports. Handlers that
//! take forms also accept `api_token` from the form itself.

use std::marker::PhantomData;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRef, FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use entity::user;
use serde::de::DeserializeOwned;

use super::envelope::{Envelope, Reject};
use crate::auth::request::{engine_session, token_from_parts};
use crate::auth::token::Claims;
use crate::error::{AppError, LOGIN_REQUIRED};
use crate::services::sessions;
use crate::state::AppState;

/// A JSON or form body (by `Content-Type`), refused in envelope `E` when malformed.
pub struct Body<T, E>(pub T, pub PhantomData<E>);

impl<S, T, E> FromRequest<S> for Body<T, E>
where
    S: Send + Sync,
    T: DeserializeOwned,
    E: Envelope,
{
    type Rejection = Reject<E>;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_form = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| {
                if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    AppError::TooLarge("请求内容过大".into())
                } else {
                    AppError::invalid("请求格式错误")
                }
            })?;
        let parsed = if bytes.iter().all(u8::is_ascii_whitespace) {
            // An empty body is an empty object: fields are then reported missing, not "malformed".
            serde_json::from_str("{}").map_err(|_| ())
        } else if is_form {
            serde_urlencoded::from_bytes(&bytes).map_err(|_| ())
        } else {
            // Only an object: serde would otherwise also fill a struct from a JSON array.
            serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .filter(serde_json::Value::is_object)
                .and_then(|v| serde_json::from_value(v).ok())
                .ok_or(())
        };
        parsed
            .map(|t| Self(t, PhantomData))
            .map_err(|()| Reject::new(AppError::invalid("请求格式错误")))
    }
}

/// A query string, refused in envelope `E` when malformed.
pub struct Query<T, E>(pub T, pub PhantomData<E>);

impl<S, T, E> FromRequestParts<S> for Query<T, E>
where
    S: Send + Sync,
    T: DeserializeOwned,
    E: Envelope,
{
    type Rejection = Reject<E>;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        serde_urlencoded::from_str(parts.uri.query().unwrap_or_default())
            .map(|t| Self(t, PhantomData))
            .map_err(|_| Reject::new(AppError::invalid("请求参数错误")))
    }
}

/// The token a request carries in its headers, query or cookie, if any.
#[derive(Debug, Clone, Default)]
pub struct BearerToken(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for BearerToken {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(token_from_parts(parts)))
    }
}

/// The signed-in user; refuses in envelope `E` without a usable token.
pub struct AuthUser<E> {
    pub user: user::Model,
    pub claims: Claims,
    _envelope: PhantomData<E>,
}

impl<S, E> FromRequestParts<S> for AuthUser<E>
where
    S: Send + Sync,
    AppState: FromRef<S>,
    E: Envelope,
{
    type Rejection = Reject<E>;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        let (user, claims) = authenticate(&state, token_from_parts(parts).as_deref()).await?;
        Ok(Self {
            user,
            claims,
            _envelope: PhantomData,
        })
    }
}

/// The signed-in user if the request carries a usable token; `None` otherwise (a bad or expired token
/// on an endpoint that works without one is treated like no token). Database failures are refused in
/// envelope `E`.
pub struct MaybeUser<E = super::envelope::V3>(pub Option<user::Model>, pub PhantomData<E>);

impl<S, E> FromRequestParts<S> for MaybeUser<E>
where
    S: Send + Sync,
    AppState: FromRef<S>,
    E: Envelope,
{
    type Rejection = Reject<E>;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let state = AppState::from_ref(state);
        match authenticate(&state, token_from_parts(parts).as_deref()).await {
            Ok((user, _)) => Ok(Self(Some(user), PhantomData)),
            Err(AppError::Unauthenticated(_)) => Ok(Self(None, PhantomData)),
            Err(e) => Err(e.into()),
        }
    }
}

/// Resolves a token to its user.
///
/// # Errors
/// [`AppError::Unauthenticated`] with no token or an unusable one.
pub async fn authenticate(
    state: &AppState,
    token: Option<&str>,
) -> Result<(user::Model, Claims), AppError> {
    let token = token.ok_or(AppError::Unauthenticated(LOGIN_REQUIRED))?;
    sessions::resolve(&state.db, &state.tokens, token).await
}

/// The client's address: the peer's, or behind a trusted proxy the one it forwards (see
/// [`crate::proxy`]).
pub struct ClientIp(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let ip = parts
            .extensions
            .get::<crate::proxy::ClientAddr>()
            .map(|addr| addr.0)
            .or_else(|| {
                parts
                    .extensions
                    .get::<ConnectInfo<SocketAddr>>()
                    .map(|ConnectInfo(addr)| addr.ip())
            })
            .unwrap_or(IpAddr::from([127, 0, 0, 1]));
        Ok(Self(ip))
    }
}

/// The browser's socket session (see [`engine_session`]), for handlers that sign users in.
#[derive(Debug, Clone, Default)]
pub struct EngineSession(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for EngineSession {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(engine_session(parts)))
    }
}
