//! Liveness and readiness probes.

use axum::extract::State;
use axum::http::StatusCode;

use crate::state::AppState;

/// `GET /healthz`: the process is up and serving.
pub async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: the database answers and the node is not shutting down. A node of a cluster that
/// has lost Redis is still ready (it serves its own sockets) but says it is degraded.
pub async fn readyz(State(state): State<AppState>) -> (StatusCode, &'static str) {
    if state.is_draining() {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining");
    }
    match state.db.ping().await {
        Ok(()) => match state.realtime.cluster_connected() {
            Some(false) => (StatusCode::OK, "degraded: Redis unreachable"),
            _ => (StatusCode::OK, "ready"),
        },
        Err(e) => {
            tracing::warn!(error = %e, "readiness check: database unreachable");
            (StatusCode::SERVICE_UNAVAILABLE, "database unreachable")
        }
    }
}
