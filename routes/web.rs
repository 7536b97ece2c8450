//! Pages and probes.

use axum::Router;
use axum::routing::get;

use crate::api::{health, metrics, web};
use crate::state::AppState;

/// The index page under the paths clients load it from, the default avatar, the probes and metrics.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(web::index))
        .route("/index.html", get(web::index))
        .route("/debug", get(web::index))
        .route("/avatar/default.svg", get(web::default_avatar))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::metrics))
}
