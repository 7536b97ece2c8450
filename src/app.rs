//! Assembling and serving the application.
//!
//! [`build`] turns an [`AppState`] into the complete router (API, pages, uploads, static files and the
//! middleware stack); a socket layer is mounted in the same place. [`serve`] runs a router on a bound
//! listener until a shutdown future completes. [`run`] is what `main` calls.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::header::{self, HeaderName, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower::ServiceBuilder;
use tower_http::catch_panic::{CatchPanicLayer, ResponseForPanic};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::api::envelope;
use crate::auth::origin;
use crate::config::Settings;
use crate::metrics::{Counter, Metrics};
use crate::routes;
use crate::services::sessions;
use crate::socket::compat::CompatLayer;
use crate::state::AppState;

/// How long one HTTP request may take before it is answered with 408.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Connects to the database, runs migrations and builds the state.
///
/// # Errors
/// If the database is unreachable, a migration fails, or the upload directory cannot be created.
pub async fn state(settings: Settings) -> anyhow::Result<AppState> {
    let url = settings.store.database_url.expose();
    let store = crate::db::open(url, settings.store.pool, settings.store.wal_limit).await?;
    crate::db::checkpoints(&store, url, crate::db::CHECKPOINT_EVERY);
    let metrics = Arc::new(Metrics::new());
    if let Some(wal) = &store.wal {
        let file = crate::metrics::WalFile::new(wal.clone());
        metrics.register_collector(Box::new(file));
    }
    let engine = crate::socket::engine::build(&settings, &metrics);
    let groups = crate::services::rooms::seed(&store.pool, &settings.realtime.rooms).await?;
    let state = AppState::new(settings, store, engine, metrics, groups)?;
    crate::socket::mount(&state, routes::websocket::routes());
    Ok(state)
}

/// The whole HTTP application for `state`: the API, pages, uploads and static files, with Socket.IO
/// on `/socket.io/` in front of them.
pub fn build(state: AppState) -> Router {
    let settings = state.settings.clone();
    let socket_compat = CompatLayer::new(
        settings.http.cors_origins.clone(),
        state.realtime.max_packet(),
        settings.http.cookie_secure,
    )
    .with_client_script(client_script(&settings));
    let uploads = ServiceBuilder::new()
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; sandbox"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=31536000, immutable"),
        ))
        .layer(middleware::from_fn(servable_path))
        .map_response(|r: Response<_>| r.map(axum::body::Body::new))
        .service(ServeDir::new(state.uploads.dir()));
    let mut app = Router::new()
        .merge(routes::api::router(settings.uploads.max_bytes))
        .merge(routes::web::router())
        .nest_service("/static/files", uploads);
    app = match &settings.http.static_dir {
        Some(dir) => app.fallback_service(
            ServiceBuilder::new()
                .layer(middleware::from_fn(servable_path))
                .map_response(|r: Response<_>| r.map(axum::body::Body::new))
                .service(ServeDir::new(dir)),
        ),
        None => app.fallback(crate::api::web::own_asset),
    };
    let state_layer = state.realtime.layer();
    let frame_limits = state.realtime.frame_limits();
    let catch_panics = catch_panics(&state.metrics);
    app.layer(middleware::from_fn_with_state(
        state.clone(),
        crate::api::limits::announced_length,
    ))
    .layer(middleware::from_fn_with_state(state.clone(), check_origin))
    .with_state(state)
    .layer(
        ServiceBuilder::new()
            .layer(TraceLayer::new_for_http().make_span_with(|req: &Request| {
                // The path only: query strings can carry tokens (`?api_token=`).
                tracing::info_span!("http", method = %req.method(), path = %req.uri().path())
            }))
            .layer(catch_panics)
            .layer(SetResponseHeaderLayer::if_not_present(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ))
            .layer(SetResponseHeaderLayer::if_not_present(
                header::REFERRER_POLICY,
                HeaderValue::from_static("same-origin"),
            ))
            .layer(cors(&settings.http.cors_origins))
            // Sockets are outside the request timeout: a long-poll waits up to a ping interval.
            .layer(socket_compat)
            // Every Engine.IO session starts with these frame limits (see `socket::engine`).
            .layer(axum::Extension(frame_limits))
            .layer(state_layer)
            .layer(TimeoutLayer::with_status_code(
                StatusCode::REQUEST_TIMEOUT,
                REQUEST_TIMEOUT,
            )),
    )
}

/// Turns a panic anywhere below it (handlers, services, the socket layer's polling requests) into a
/// `500` in every client's envelope, counted as `chatroom_http_panics_total`, instead of a reset
/// connection. The panic itself is logged by the process's panic hook (`telemetry::init`), in the
/// configured log format.
pub fn catch_panics(metrics: &Metrics) -> CatchPanicLayer<PanicReply> {
    CatchPanicLayer::custom(PanicReply {
        panics: metrics.http.panics.clone(),
    })
}

/// What [`catch_panics`] answers.
#[derive(Clone)]
pub struct PanicReply {
    panics: Counter,
}

impl ResponseForPanic for PanicReply {
    type ResponseBody = axum::body::Body;

    fn response_for_panic(&mut self, _: Box<dyn Any + Send + 'static>) -> Response {
        self.panics.inc();
        envelope::panic_reply()
    }
}

/// CORS for the configured origins only: each is echoed back with credentials allowed (the clients'
/// XHRs send cookies). With no origins configured, no CORS headers are sent and browsers keep other
/// sites out.
fn cors(origins: &[String]) -> CorsLayer {
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_credentials(true)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            HeaderName::from_static("x-requested-with"),
            HeaderName::from_static("x-csrf-token"),
        ])
        .max_age(Duration::from_secs(600))
}

/// Refuses state-changing requests sent by pages of other sites (see [`crate::auth::origin`]). This is
/// what keeps the auth cookie from being used by a forged cross-site form or script.
async fn check_origin(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS)
        || origin::allowed(req.headers(), &state.settings.http.cors_origins)
    {
        return next.run(req).await;
    }
    tracing::warn!(path = %req.uri().path(), "refused a cross-site request");
    origin::refusal()
}

/// Longest file name a file system takes (bytes); longer ones fail with `ENAMETOOLONG`.
const MAX_FILE_NAME: usize = 255;
/// Longest path looked up under a served directory (bytes).
const MAX_FILE_PATH: usize = 1024;

/// Answers `404` at once for paths no served directory can hold: a segment longer than a file name
/// can be, or a path longer than any chatroom serves. Looking them up would fail with an error the
/// file server reports as a `500` (and logs as an error), for what is only a client asking for
/// something that does not exist.
async fn servable_path(req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let decoded_len = |s: &str| percent_encoding::percent_decode_str(s).count();
    let odd = decoded_len(path) > MAX_FILE_PATH
        || path
            .split('/')
            .any(|segment| decoded_len(segment) > MAX_FILE_NAME || segment.contains("%00"));
    if odd {
        return StatusCode::NOT_FOUND.into_response();
    }
    next.run(req).await
}

/// The socket.io client script to serve at `/socket.io/socket.io.js`, if one is configured.
fn client_script(settings: &Settings) -> Option<bytes::Bytes> {
    let path = settings.http.socket_io_js.as_ref()?;
    match std::fs::read(path) {
        Ok(script) => Some(script.into()),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read the socket.io client script");
            None
        }
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then finishes in-flight requests. The
/// accept loop ([`crate::listener`]) caps connections, in all and per client address, closes
/// connections that are slow to send their headers, and tells handlers the client address.
///
/// # Errors
/// If accepting connections fails.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    options: crate::listener::ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    crate::listener::serve(listener, router, options, shutdown).await
}

/// Runs the server: binds, serves, and on `shutdown` stops taking new work and drains.
///
/// # Errors
/// If the database, the upload directory or the listening socket cannot be set up.
pub async fn run(
    settings: Settings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let database = settings.store.database_url.redacted();
    let listen = settings.http.listen;
    let state = state(settings).await?;
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!(address = %listener.local_addr()?, %database, "chatroom listening");
    tracing::info!(
        max_connections = state.settings.http.max_connections,
        per_ip = state.settings.http.max_connections_per_ip,
        open_file_limit = crate::sys::open_file_limit(),
        "connection caps"
    );
    spawn_maintenance(state.clone());
    let draining = state.clone();
    let options = crate::listener::ServeOptions::new(&state);
    let router = build(state);
    serve(listener, router, options, async move {
        shutdown.await;
        drain(&draining).await;
    })
    .await?;
    tracing::info!("stopped");
    Ok(())
}

/// The first half of a graceful shutdown: readiness fails, no new messages are taken, every queued
/// message is stored and echoed, and sockets are closed. Serving then finishes in-flight requests.
pub async fn drain(state: &AppState) {
    state.start_draining();
    tracing::info!("shutting down: storing queued messages and closing sockets");
    state.realtime.shutdown().await;
    tracing::info!("shutting down: finishing in-flight requests");
}

/// Periodic housekeeping: forget revocations of tokens that have expired anyway.
fn spawn_maintenance(state: AppState) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            match sessions::prune_revoked(&state.db).await {
                Ok(n) if n > 0 => tracing::info!(removed = n, "pruned expired token revocations"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "pruning token revocations failed"),
            }
        }
    });
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}
