//! The chatroom server binary: read the configuration, set up logging, run until SIGINT or SIGTERM.

use clap::Parser;

use chatroom::config::Config;

/// jemalloc hands memory back to the system after a burst of sockets; glibc's allocator keeps it. It
/// serves SQLite's allocations too (`unprefixed_malloc_on_supported_platforms`).
#[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // A missing .env file is fine: configuration may come from flags or the real environment.
    let _ = dotenvy::dotenv();
    let config = Config::parse();
    chatroom::telemetry::init(config.log_format);
    let settings = config.resolve()?;
    tracing::debug!(?settings, "configuration");
    chatroom::app::run(settings, chatroom::app::shutdown_signal()).await
}
