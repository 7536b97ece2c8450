//! Starting a session after a sign-in or sign-up: a new token, the cookie that keeps it, and the
//! browser's socket bound to the user.

use axum::http::header::SET_COOKIE;
use axum::response::AppendHeaders;
use entity::user;

use super::extract::EngineSession;
use crate::auth::request::auth_cookie;
use crate::error::AppError;
use crate::realtime::Binding;
use crate::services::sessions;
use crate::state::AppState;

/// A `Set-Cookie` header to send with a reply.
pub type SetCookie = AppendHeaders<[(axum::http::HeaderName, String); 1]>;

/// Starts a session for `user`: a new token, and the `Set-Cookie` header that also stores it in the
/// browser (so a reload can authenticate without the client's help). The browser's socket, if the
/// request names it, is bound to `user`, even if it acted for someone else before.
///
/// # Errors
/// [`AppError::Internal`] if signing fails.
pub fn start(
    state: &AppState,
    user: &user::Model,
    socket: &EngineSession,
) -> Result<(String, SetCookie), AppError> {
    let issued = sessions::issue(&state.tokens, user)?;
    if let Some(sid) = &socket.0 {
        state.realtime.adopt(
            sid,
            Binding::issued(user, &issued.claims, &issued.token),
            true,
        );
    }
    let cookie = auth_cookie(
        &issued.token,
        state.tokens.ttl().as_secs(),
        state.settings.http.cookie_secure,
    );
    Ok((issued.token, AppendHeaders([(SET_COOKIE, cookie)])))
}
