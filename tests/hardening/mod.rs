//! Hostile clients (issue 9): connection floods, slowloris, brute force, oversized bodies, upload
//! quotas, token claims, trusted proxies and metrics; malformed, oversized and abandoned Engine.IO and
//! Socket.IO traffic against the real binary. Every limit is checked through a real client,
//! and every refusal for what the client sees and for what did not change.

mod access;
mod bodies;
mod connections;
mod frames;
mod fuzz_seeds;
mod limits;
mod metrics;
mod paging;
mod properties;
mod rows;
mod signin;
mod uploads;

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A raw connection to `addr` from the loopback address `from` (any of 127.0.0.0/8 works on Linux),
/// so a test can play several client addresses.
pub async fn connect_from(from: [u8; 4], addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    socket.connect(addr).await.unwrap()
}

/// Everything the server sends until it closes the connection, or `None` if it is still open after
/// `wait`. A reset counts as closed.
pub async fn read_until_closed(stream: &mut TcpStream, wait: Duration) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let read = tokio::time::timeout(wait, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    read.ok().map(|()| got)
}

/// Sends `request` and returns the status line's code and the rest of the reply, read until the
/// server closes (the request should say `Connection: close`).
pub async fn raw_request(stream: &mut TcpStream, request: &[u8]) -> (u16, String) {
    stream.write_all(request).await.unwrap();
    let reply = read_until_closed(stream, Duration::from_secs(30))
        .await
        .expect("the server answers and closes");
    let text = String::from_utf8_lossy(&reply).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}
