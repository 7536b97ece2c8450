//! Logging setup. Log lines never carry tokens or message bodies: request spans record the path only,
//! handlers log ids and outcomes, not payloads, and libraries that print raw packets or SQL values at
//! debug level are held at `info` (`warn` for sqlx).

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Crates whose debug lines print raw packets or statements with their values (message bodies,
/// handshake URLs with tokens). They log at `info` at most, whatever `RUST_LOG` says.
const PAYLOAD_LOGGERS: &[&str] = &[
    "engineioxide",
    "engineioxide_core",
    "socketioxide",
    "socketioxide_core",
    "socketioxide_parser_common",
    "tungstenite",
    "tokio_tungstenite",
    "sea_orm",
];

/// Installs the global subscriber. `RUST_LOG` overrides the default level (`info`).
pub fn init(format: LogFormat) {
    let mut filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let caps = PAYLOAD_LOGGERS
        .iter()
        .map(|target| format!("{target}=info"))
        .chain(["sqlx=warn".to_owned()]);
    for cap in caps {
        if let Ok(directive) = cap.parse() {
            filter = filter.add_directive(directive);
        }
    }
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
    std::panic::set_hook(Box::new(log_panic));
}

/// The process's panic hook: one log line in the configured format (not the standard hook's free
/// text on stderr), with the panic's message and place; the backtrace only when `RUST_BACKTRACE`
/// asks for it. A panic in a request is then answered `500` by `app::catch_panics`.
fn log_panic(info: &std::panic::PanicHookInfo<'_>) {
    let payload = info.payload();
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    let location = info
        .location()
        .map(|l| format!("{}:{}", l.file(), l.line()))
        .unwrap_or_default();
    let backtrace = std::backtrace::Backtrace::capture();
    if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
        tracing::error!(panic = message, location, %backtrace, "panicked");
    } else {
        tracing::error!(panic = message, location, "panicked");
    }
}
