//! The database restarts or stops answering under load (R5–R7), on PostgreSQL behind a TCP proxy the
//! test controls: `Down` drops every connection and refuses new ones (a restart), `Blackhole` keeps
//! connections open and forwards nothing (a stopped server, a dropped network path). The server
//! stays up, every message is answered within a bound (stored, or refused with `unavailable`),
//! `/readyz` reports the outage within seconds, writes resume by themselves, and memory stays bounded.
//! These run in the PostgreSQL run of the suite (`TEST_DATABASE_URL`); SQLite has no server to lose.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::{Eio, Raw, TestDatabase, binary_metric, in_room, signup, text};
use crate::common::process::{Binary, start_binary, stop};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Pass,
    Down,
    Blackhole,
}

/// A TCP proxy in front of PostgreSQL.
struct Proxy {
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (mode, watching) = watch::channel(Mode::Pass);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(connection(client, upstream, watching.clone()));
            }
        });
        Self { addr, mode }
    }

    fn set(&self, mode: Mode) {
        self.mode.send_replace(mode);
    }
}

async fn connection(client: TcpStream, upstream: SocketAddr, mut mode: watch::Receiver<Mode>) {
    match mode.wait_for(|m| *m != Mode::Blackhole).await.map(|m| *m) {
        Ok(Mode::Pass) => {}
        _ => return,
    }
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    tokio::select! {
        () = forward(client_read, server_write, mode.clone()) => {}
        () = forward(server_read, client_write, mode) => {}
    }
}

async fn forward(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut mode: watch::Receiver<Mode>,
) {
    let mut buf = vec![0; 16 * 1024];
    loop {
        let n = tokio::select! {
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            _ = mode.wait_for(|m| *m == Mode::Down) => return,
        };
        match mode.wait_for(|m| *m != Mode::Blackhole).await.map(|m| *m) {
            Ok(Mode::Pass) => {}
            _ => return,
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// A binary whose database is a fresh PostgreSQL database reached through a proxy, or `None` (with a
/// note) in the SQLite run.
async fn behind_proxy(data: &std::path::Path) -> Option<(Binary, Proxy, TestDatabase)> {
    let admin = match std::env::var("TEST_DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => url,
        _ => {
            eprintln!("skipped: the database fault tests need TEST_DATABASE_URL (PostgreSQL)");
            return None;
        }
    };
    let database = TestDatabase::postgres(&admin).await;
    let upstream: SocketAddr = "127.0.0.1:5432".parse().unwrap();
    let proxy = Proxy::start(upstream).await;
    let name = database.url.rsplit('/').next().unwrap();
    let url = format!("postgres://postgres@{}/{name}", proxy.addr);
    // The proxy runs on this thread's runtime: wait for the binary elsewhere.
    let data = data.to_owned();
    let server = tokio::task::spawn_blocking(move || {
        start_binary(
            &[
                "--rooms",
                "room1",
                "--socket-events-per-second",
                "2000",
                "--database-url",
                &url,
            ],
            &data,
        )
    })
    .await
    .unwrap();
    Some((server, proxy, database))
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

async fn status(http: &reqwest::Client, address: &str, path: &str) -> u16 {
    match http
        .get(format!("http://{address}{path}"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
    {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

/// Waits until `path` answers `want`; returns how long that took, or panics after `wait`.
async fn until_status(
    http: &reqwest::Client,
    address: &str,
    path: &str,
    want: u16,
    wait: Duration,
) -> Duration {
    let start = Instant::now();
    while status(http, address, path).await != want {
        assert!(
            start.elapsed() < wait,
            "{path} did not answer {want} within {wait:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    start.elapsed()
}

/// Messages one client sent and what it was told about each, with the longest wait for an answer.
struct Sent {
    tag: String,
    answers: Vec<Option<Value>>,
    longest: Duration,
}

/// Sends a message every 10 ms for `during`, at most 16 unanswered, then waits up to `grace` for the
/// last answers.
async fn send_for(mut socket: Raw, tag: String, during: Duration, grace: Duration) -> (Raw, Sent) {
    let start = Instant::now();
    let mut sent_at: Vec<Instant> = Vec::new();
    let mut answered_at: BTreeMap<u64, Instant> = BTreeMap::new();
    let note = |socket: &Raw, answered_at: &mut BTreeMap<u64, Instant>| {
        for id in socket.seen.lock().unwrap().acks.keys() {
            answered_at.entry(*id).or_insert_with(Instant::now);
        }
    };
    while start.elapsed() < during {
        note(&socket, &mut answered_at);
        if sent_at.len() - answered_at.len() < 16 {
            let n = sent_at.len();
            socket.emit_acked("message", &text("room1", "load", &format!("{tag}-{n}")));
            sent_at.push(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let end = Instant::now() + grace;
    while answered_at.len() < sent_at.len() && Instant::now() < end {
        note(&socket, &mut answered_at);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let seen = socket.seen.lock().unwrap();
    let answers = (0..sent_at.len() as u64)
        .map(|n| seen.acks.get(&n).cloned())
        .collect();
    let longest = answered_at
        .iter()
        .map(|(n, at)| at.duration_since(sent_at[*n as usize]))
        .max()
        .unwrap_or_default();
    drop(seen);
    (
        socket,
        Sent {
            tag,
            answers,
            longest,
        },
    )
}

/// Four sockets send while the proxy is in `mode` for `down_for`; then the guarantees are checked.
async fn outage(mode: Mode, down_for: Duration) {
    let data = tempfile::tempdir().unwrap();
    let Some((mut server, proxy, database)) = behind_proxy(data.path()).await else {
        return;
    };
    let address = server.address.clone();
    let http = reqwest::Client::new();
    let mut load = Vec::new();
    let mut tokens = Vec::new();
    for k in 0..4 {
        let token = signup(&http, &address, &format!("db{k}")).await;
        let eio = if k % 2 == 0 { Eio::V3 } else { Eio::V4 };
        let socket = in_room(&address, eio, &token).await;
        tokens.push((token, eio));
        load.push(tokio::spawn(send_for(
            socket,
            format!("u{k}"),
            down_for + Duration::from_secs(4),
            Duration::from_secs(20),
        )));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let baseline = rss_kib(server.child.id());
    proxy.set(mode);
    let not_ready = until_status(&http, &address, "/readyz", 503, Duration::from_secs(5)).await;
    assert_eq!(
        status(&http, &address, "/healthz").await,
        200,
        "still alive"
    );
    tokio::time::sleep(down_for.saturating_sub(not_ready)).await;
    let peak = rss_kib(server.child.id());
    proxy.set(Mode::Pass);
    let ready_again = until_status(&http, &address, "/readyz", 200, Duration::from_secs(15)).await;

    let mut acked: BTreeMap<String, i64> = BTreeMap::new();
    let mut refused = 0;
    let mut longest = Duration::ZERO;
    let mut sockets = Vec::new();
    let mut resend: Vec<String> = Vec::new();
    for client in load {
        let (socket, sent) = client.await.unwrap();
        longest = longest.max(sent.longest);
        for (n, answer) in sent.answers.iter().enumerate() {
            let client_id = format!("{}-{n}", sent.tag);
            let answer = answer
                .as_ref()
                .unwrap_or_else(|| panic!("{client_id} got no answer"));
            if answer["ok"] == true {
                acked.insert(client_id, answer["id"].as_i64().unwrap());
            } else {
                assert_eq!(answer["code"], "unavailable", "{answer}");
                refused += 1;
                resend.push(client_id);
            }
        }
        sockets.push(socket);
    }
    // A batch is retried for at most 10 s, then refused; while the database stays down each later
    // batch gets one attempt of at most 5 s.
    assert!(
        longest < Duration::from_secs(20),
        "every message was answered within 20 s (longest {longest:?})"
    );
    if down_for > Duration::from_secs(12) || mode == Mode::Down {
        assert!(
            refused > 0,
            "an outage longer than the retries refuses messages"
        );
    }
    // Each refusal the clients saw is counted by its reason, where an operator looks.
    assert_eq!(
        binary_metric(
            &http,
            &address,
            r#"chatroom_refusals_total{reason="store_unavailable"}"#
        )
        .await,
        f64::from(refused),
        "refusals while the database was away are counted"
    );
    // Writes resume by themselves: resending what was refused stores each once.
    for client_id in &resend {
        let k: usize = client_id[1..client_id.find('-').unwrap()].parse().unwrap();
        let socket = &mut sockets[k];
        let id = socket.emit_acked("message", &text("room1", "load", client_id));
        let ack = socket
            .ack(id, Duration::from_secs(15))
            .await
            .expect("answered");
        assert_eq!(ack["ok"], true, "after the outage {client_id}: {ack}");
        acked.insert(client_id.clone(), ack["id"].as_i64().unwrap());
    }
    let stored = database.stored().await;
    let by_client: BTreeMap<String, i64> = stored.iter().cloned().collect();
    assert_eq!(stored.len(), by_client.len(), "no message is stored twice");
    assert_eq!(
        by_client, acked,
        "every acknowledged message is stored, once"
    );
    let after = rss_kib(server.child.id());
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "the process stayed up"
    );
    assert!(
        peak.saturating_sub(baseline) < 64 * 1024,
        "memory stays bounded: {baseline} KiB before, {peak} KiB during the outage"
    );
    eprintln!(
        "{mode:?} for {down_for:?}: /readyz 503 after {not_ready:?}, 200 {ready_again:?} after the database came back; \
         {} stored, {refused} refused then stored on resend; longest wait for an answer {longest:?}; \
         RSS {baseline} KiB before, {peak} KiB during, {after} KiB after",
        acked.len()
    );
    let status = tokio::task::spawn_blocking(move || stop(&mut server.child, "TERM"))
        .await
        .unwrap();
    assert!(status.success(), "a clean exit afterwards: {status:?}");
}

#[tokio::test]
async fn a_database_restart_under_load_loses_nothing_and_writes_resume() {
    outage(Mode::Down, Duration::from_secs(4)).await;
}

#[tokio::test]
async fn a_database_that_stops_answering_gets_messages_refused_not_hung() {
    outage(Mode::Blackhole, Duration::from_secs(14)).await;
}
