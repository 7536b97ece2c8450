//! Liveness and readiness probes.

use axum::extract::State;
use axum::http::StatusCode;
use sea_orm::DatabaseConnection;

use crate::realtime::Realtime;

/// `GET /healthz`: the process is up and serving.
pub async fn healthz() -> &'static str {
    "ok"
}

/// `GET /readyz`: the database answers (within 2 s) and the node is not shutting down. A node of a
/// cluster that has lost Redis is still ready (it serves its own sockets) but says it is degraded.
pub async fn readyz(
    State(db): State<DatabaseConnection>,
    State(realtime): State<Realtime>,
) -> (StatusCode, &'static str) {
    if !realtime.is_accepting() {
        return (StatusCode::SERVICE_UNAVAILABLE, "draining");
    }
    // A database that stops answering must not hold the probe: not ready within the timeout.
    if !crate::services::writer::reachable(&db).await {
        tracing::warn!("readiness check: database unreachable");
        return (StatusCode::SERVICE_UNAVAILABLE, "database unreachable");
    }
    match realtime.cluster_connected() {
        Some(false) => (StatusCode::OK, "degraded: Redis unreachable"),
        _ => (StatusCode::OK, "ready"),
    }
}
