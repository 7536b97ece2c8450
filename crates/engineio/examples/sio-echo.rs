//! socketioxide on this layer, answering as the socket.io-protocol test suite expects: `/socket.io/`,
//! the main and `/custom` namespaces, an `auth` event echoing the handshake payload, `message` echoed as
//! `message-back` and `message-with-ack` acknowledged with its arguments (plain or binary).
//!
//! `cargo run --release -p engineioxide --example sio-echo -- --port 3000`

use std::time::Duration;

use bytes::Bytes;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use socketioxide::{
    SocketIo,
    extract::{AckSender, Data, SocketRef, TryData},
};
use tokio::net::TcpListener;

/// A namespace's connect handler: the handshake payload comes back as `auth`, then the echo events.
async fn on_connect(socket: SocketRef, Data(auth): Data<Value>) {
    socket.emit("auth", &auth).ok();
    socket.on(
        "message",
        // The binary form is tried first: a failed plain attempt would have taken the attachments.
        async |socket: SocketRef,
               bin: TryData<(Bytes, Bytes)>,
               plain: TryData<[Value; 3]>,
               one: TryData<Value>| {
            if let TryData(Ok(args)) = bin {
                socket.emit("message-back", &args).ok();
            } else if let TryData(Ok(args)) = plain {
                socket.emit("message-back", &args).ok();
            } else if let TryData(Ok(arg)) = one {
                socket.emit("message-back", &arg).ok();
            }
        },
    );
    socket.on(
        "message-with-ack",
        async |ack: AckSender, bin: TryData<(Bytes, Bytes)>, plain: TryData<[Value; 3]>| {
            if let TryData(Ok(args)) = bin {
                ack.send(&args).ok();
            } else if let TryData(Ok(args)) = plain {
                ack.send(&args).ok();
            }
        },
    );
}

fn port() -> u16 {
    let args: Vec<String> = std::env::args().collect();
    args.windows(2)
        .find(|w| w[0] == "--port")
        .and_then(|w| w[1].parse().ok())
        .unwrap_or(3000)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let (svc, io) = SocketIo::builder()
        .ping_interval(Duration::from_millis(300))
        .ping_timeout(Duration::from_millis(200))
        .max_payload(1_000_000)
        .connect_timeout(Duration::from_millis(1000))
        .build_svc();
    io.ns("/", on_connect);
    io.ns("/custom", on_connect);
    let listener = TcpListener::bind(("127.0.0.1", port())).await?;
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
