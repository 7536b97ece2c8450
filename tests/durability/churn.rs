//! Churn (R13) and soak (R12), shortened for CI. `scripts/reliability` runs the long versions
//! (`CHATROOM_SOAK_SECONDS`, `CHATROOM_CHURN_ROUNDS`, `CHATROOM_CHURN_CLIENTS`).

use std::time::{Duration, Instant};

use super::{Eio, Raw, binary_metric, in_room, signup, text};
use crate::common::process::{Binary, start_binary, stop};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

/// Waits until the binary holds no socket and at most `fds` descriptors; panics after `wait`.
async fn settles(server: &Binary, http: &reqwest::Client, fds: usize, wait: Duration) {
    let start = Instant::now();
    loop {
        let sockets = binary_metric(http, &server.address, "chatroom_socket_connections").await;
        let open = open_fds(server.child.id());
        if sockets == 0.0 && open <= fds {
            return;
        }
        assert!(
            start.elapsed() < wait,
            "{sockets} sockets and {open} descriptors (baseline {fds}) after {wait:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn binary(data: &std::path::Path) -> Binary {
    start_binary(
        &[
            "--rooms",
            "room1",
            "--socket-events-per-second",
            "1000",
            "--signup-per-hour",
            "1000",
            "--max-connections-per-ip",
            "100000",
            // One user stands for every churning socket.
            "--max-sockets-per-user",
            "100000",
            // A small pool, so its growth under load stays well within the descriptor checks.
            "--db-pool",
            "2",
        ],
        data,
    )
}

#[tokio::test]
async fn sockets_that_come_and_go_leave_no_memory_or_descriptors_behind() {
    let rounds = env_or("CHATROOM_CHURN_ROUNDS", 3);
    let clients = env_or("CHATROOM_CHURN_CLIENTS", 100) as usize;
    let data = tempfile::tempdir().unwrap();
    let mut server = binary(data.path());
    let http = reqwest::Client::new();
    let token = signup(&http, &server.address, "churner").await;
    let pid = server.child.id();
    // Warm-up: one round, so allocator pools and caches exist before the baseline.
    let round = |n: u64| {
        let address = server.address.clone();
        let token = token.clone();
        async move {
            let mut sockets = Vec::new();
            for i in 0..clients {
                let eio = if i % 2 == 0 { Eio::V3 } else { Eio::V4 };
                let mut s = in_room(&address, eio, &token).await;
                if i % 10 == 0 {
                    let id = s.emit_acked("message", &text("room1", "hi", &format!("r{n}-{i}")));
                    assert_eq!(
                        s.ack(id, Duration::from_secs(10)).await.unwrap()["ok"],
                        true
                    );
                }
                sockets.push(s);
            }
            // Half leave properly, half just vanish.
            for (i, s) in sockets.into_iter().enumerate() {
                if i % 2 == 0 {
                    s.close();
                } else {
                    s.abort();
                }
            }
        }
    };
    let fds = open_fds(pid);
    round(0).await;
    settles(&server, &http, fds + 2, Duration::from_secs(15)).await;
    let (baseline_fds, baseline) = (open_fds(pid), rss_kib(pid));
    let mut peak = baseline;
    for n in 1..=rounds {
        round(n).await;
        peak = peak.max(rss_kib(pid));
        settles(&server, &http, baseline_fds + 2, Duration::from_secs(15)).await;
    }
    let after = rss_kib(pid);
    assert!(
        after <= baseline + 10 * 1024,
        "memory back near its baseline: {baseline} KiB before, {after} KiB after (peak {peak})"
    );
    eprintln!(
        "R13: {rounds} rounds of {clients} sockets; RSS {baseline} KiB at baseline, peak {peak}, {after} after; \
         descriptors {baseline_fds} at baseline, {} after",
        open_fds(pid)
    );
    stop(&mut server.child, "TERM");
}

#[tokio::test]
async fn a_soak_with_reconnects_answers_everything_and_stays_flat() {
    let seconds = env_or("CHATROOM_SOAK_SECONDS", 6);
    let data = tempfile::tempdir().unwrap();
    let mut server = binary(data.path());
    let pid = server.child.id();
    let fds = open_fds(pid);
    let http = reqwest::Client::new();
    let address = server.address.clone();
    const CLIENTS: usize = 40;
    let mut tokens = Vec::new();
    let mut sockets: Vec<Raw> = Vec::new();
    for k in 0..CLIENTS {
        let token = signup(&http, &address, &format!("soak{k}")).await;
        let eio = if k % 2 == 0 { Eio::V3 } else { Eio::V4 };
        sockets.push(in_room(&address, eio, &token).await);
        tokens.push((token, eio));
    }
    let start = Instant::now();
    let mut warm = None;
    let mut sent = 0u64;
    let mut pending: Vec<(usize, u64)> = Vec::new();
    let mut tick = 0u64;
    // 20 messages a second in all; every second a tenth of the clients reconnect.
    while start.elapsed() < Duration::from_secs(seconds) {
        for _ in 0..2 {
            let k = (sent as usize) % CLIENTS;
            let id = sockets[k].emit_acked("message", &text("room1", "soak", &format!("m{sent}")));
            pending.push((k, id));
            sent += 1;
        }
        tick += 1;
        if tick.is_multiple_of(10) {
            for (k, id) in pending.drain(..) {
                let ack = sockets[k]
                    .ack(id, Duration::from_secs(10))
                    .await
                    .expect("answered");
                assert_eq!(ack["ok"], true, "{ack}");
            }
            for j in 0..CLIENTS / 10 {
                let k = ((tick / 10) as usize * (CLIENTS / 10) + j) % CLIENTS;
                sockets[k].close();
                let (token, eio) = &tokens[k];
                sockets[k] = in_room(&address, *eio, token).await;
            }
            if warm.is_none() && start.elapsed() >= Duration::from_secs(2) {
                warm = Some(rss_kib(pid));
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for (k, id) in pending.drain(..) {
        let ack = sockets[k]
            .ack(id, Duration::from_secs(10))
            .await
            .expect("answered");
        assert_eq!(ack["ok"], true, "{ack}");
    }
    let warm = warm.unwrap_or_else(|| rss_kib(pid));
    let end = rss_kib(pid);
    assert!(
        end <= warm + warm / 20 + 2048,
        "memory flat after warm-up: {warm} KiB, then {end} KiB"
    );
    for s in &sockets {
        s.close();
    }
    drop(sockets);
    // The baseline was taken before the database pool grew under load (a SQLite connection holds
    // three files); a leak per reconnect would be far more.
    settles(&server, &http, fds + 8, Duration::from_secs(15)).await;
    eprintln!(
        "R12: {seconds} s, {CLIENTS} clients, {sent} messages all stored, {} reconnects; RSS {warm} KiB after warm-up, {end} KiB at the end",
        tick / 10 * (CLIENTS as u64 / 10)
    );
    stop(&mut server.child, "TERM");
}
