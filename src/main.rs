//! The chatroom server binary: read the configuration, set up logging, run until SIGINT or SIGTERM.

use clap::Parser;

use chatroom::config::{Command, Config};

/// jemalloc hands memory back to the system after a burst of sockets; glibc's allocator keeps it. It
/// serves SQLite's allocations too (`unprefixed_malloc_on_supported_platforms`).
#[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // A missing .env file is fine: configuration may come from flags or the real environment.
    let _ = dotenvy::dotenv();
    let mut config = Config::parse();
    chatroom::telemetry::init(config.log_format);
    if let Some(Command::Admin { action }) = config.command.take() {
        let store = config.store.resolve()?;
        match chatroom::admin::run(&store, &action).await {
            Ok(line) => {
                println!("{line}");
                return Ok(());
            }
            Err(e) => {
                eprintln!("chatroom admin: {e}");
                std::process::exit(1);
            }
        }
    }
    let settings = config.resolve()?;
    tracing::debug!(?settings, "configuration");
    chatroom::app::run(settings, chatroom::app::shutdown_signal()).await
}
