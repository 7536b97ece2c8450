//! The Engine.IO echo server the engine.io-protocol test suite expects: `/engine.io/`, ping interval
//! 300 ms, ping timeout 200 ms, max payload 1,000,000, every message sent back.
//!
//! `cargo run --release -p engineioxide --example echo -- --port 3000`; `--ping-interval`, `--ping-timeout`
//! (ms) and `--read-buffer` (bytes) change those settings for measurements.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use engineioxide::{
    DisconnectReason, Socket, Str, config::EngineIoConfig, handler::EngineIoHandler,
    service::EngineIoService,
};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

#[derive(Debug)]
struct Echo;

impl EngineIoHandler for Echo {
    type Data = ();
    fn on_connect(self: Arc<Self>, _socket: Arc<Socket<()>>) {}
    fn on_disconnect(&self, _socket: Arc<Socket<()>>, _reason: DisconnectReason) {}
    fn on_message(self: &Arc<Self>, msg: Str, socket: Arc<Socket<()>>) {
        socket.emit(msg).ok();
    }
    fn on_binary(self: &Arc<Self>, data: Bytes, socket: Arc<Socket<()>>) {
        socket.emit_binary(data).ok();
    }
}

/// `--name value` from the command line.
fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.windows(2)
        .find(|w| w[0] == name)
        .and_then(|w| w[1].parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let config = EngineIoConfig::builder()
        .ping_interval(Duration::from_millis(arg("--ping-interval", 300)))
        .ping_timeout(Duration::from_millis(arg("--ping-timeout", 200)))
        .ws_read_buffer_size(arg("--read-buffer", 4096) as usize)
        .max_payload(1_000_000)
        .build();
    let svc = EngineIoService::with_config(Arc::new(Echo), config);
    let listener = TcpListener::bind(("127.0.0.1", arg("--port", 3000) as u16)).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let svc = svc.clone();
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades()
                .await;
        });
    }
}
