//! SQLite's WAL is copied back into the database file in the background (`db.rs` `checkpoints`), on
//! a thread of its own that runs at the lowest ordinary priority: commits never wait for a checkpoint,
//! and a checkpoint never holds the event loop up. Under a load that never pauses, the WAL is started
//! over past `--wal-limit-bytes` and cut back to it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, DbBackend, Statement};

use super::{Eio, in_room, signup, text};
use crate::common::process::{start_binary, stop};

/// The checkpoint thread's name as `/proc` shows it (15 bytes at most).
const THREAD: &str = "chatroom-wal-ck";

#[tokio::test]
async fn the_wal_is_copied_back_by_a_thread_below_the_event_loop() {
    let data = tempfile::tempdir().unwrap();
    let file = data.path().join("chatroom.db");
    let url = format!("sqlite://{}?mode=rwc", file.display());
    let args = [
        "--rooms",
        "room1",
        "--signup-per-hour",
        "100000",
        "--database-url",
        url.as_str(),
    ];
    let mut server = start_binary(&args, data.path());

    // The thread: ordinary scheduling (policy 0), nice 19; the event loop's threads keep nice 0. The
    // server opens the checkpoint connection after it starts listening: wait for its thread.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut listed = threads(server.child.id());
    while !listed.iter().any(|(name, ..)| name == THREAD) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
        listed = threads(server.child.id());
    }
    let (nice, policy) = listed
        .iter()
        .find(|(name, ..)| name == THREAD)
        .map(|(_, nice, policy)| (*nice, *policy))
        .unwrap_or_else(|| panic!("a {THREAD} thread among {listed:?}"));
    assert_eq!((nice, policy), (19, 0), "the checkpoint thread runs last");
    let workers: Vec<_> = listed
        .iter()
        .filter(|(name, ..)| name.starts_with("tokio-"))
        .collect();
    assert!(!workers.is_empty(), "{listed:?}");
    assert!(workers.iter().all(|(_, nice, _)| *nice == 0), "{workers:?}");

    // Its work: what is committed reaches the database file itself (the pool's connections never
    // checkpoint, so without it the file would not grow).
    let before = std::fs::metadata(&file).unwrap().len();
    let http = reqwest::Client::new();
    for k in 0..150 {
        signup(&http, &server.address, &format!("ckpt{k:03}")).await;
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut size = before;
    while size <= before && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        size = std::fs::metadata(&file).unwrap().len();
    }
    assert!(size > before, "the database file grew from {before} bytes");
    assert!(stop(&mut server.child, "TERM").success());
}

/// Messages sent back to back by a few sockets: while they keep coming, the WAL starts over again and
/// again near `--wal-limit-bytes` instead of growing, and every acknowledged message is in the
/// database.
#[tokio::test]
async fn under_a_steady_load_the_wal_starts_over_near_its_limit() {
    const LIMIT: u64 = 1 << 20;
    let data = tempfile::tempdir().unwrap();
    let file = data.path().join("chatroom.db");
    let wal = data.path().join("chatroom.db-wal");
    let url = format!("sqlite://{}?mode=rwc", file.display());
    let limit = LIMIT.to_string();
    let args = [
        "--rooms",
        "room1",
        "--socket-events-per-second",
        "100000",
        "--database-url",
        url.as_str(),
        "--wal-limit-bytes",
        limit.as_str(),
    ];
    let mut server = start_binary(&args, data.path());
    let http = reqwest::Client::new();
    let token = signup(&http, &server.address, "steady").await;

    let done = Arc::new(AtomicBool::new(false));
    let mut senders = Vec::new();
    for n in 0..4 {
        let (address, token, done) = (server.address.clone(), token.clone(), done.clone());
        senders.push(tokio::spawn(async move {
            let mut socket = in_room(&address, Eio::V4, &token).await;
            let mut acknowledged = 0;
            while !done.load(Ordering::Relaxed) {
                // Sixteen at a time, the next sixteen as soon as they are answered.
                let sent: Vec<u64> = (0..16)
                    .map(|k| {
                        let client_id = format!("s{n}-{}", acknowledged + k);
                        socket.emit_acked("message", &text("room1", "steady", &client_id))
                    })
                    .collect();
                for id in sent {
                    let ack = socket.ack(id, Duration::from_secs(30)).await;
                    assert_eq!(
                        ack.as_ref().map(|a| &a["ok"]),
                        Some(&true.into()),
                        "{ack:?}"
                    );
                    acknowledged += 1;
                }
            }
            acknowledged
        }));
    }
    let (mut restarts, mut largest) = ((wal_restarts(&wal), 0), 0);
    let deadline = Instant::now() + Duration::from_secs(60);
    while restarts.1 < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let now = wal_restarts(&wal);
        if now != restarts.0 {
            restarts = (now, restarts.1 + 1);
        }
        largest = largest.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
    }
    done.store(true, Ordering::Relaxed);
    let mut acknowledged = 0;
    for sender in senders {
        acknowledged += sender.await.unwrap();
    }
    assert!(
        restarts.1 >= 3,
        "the WAL started over {} times ({acknowledged} messages)",
        restarts.1
    );
    assert!(largest < 8 * LIMIT, "the WAL reached {largest} bytes");
    assert!(stop(&mut server.child, "TERM").success());

    let db = sea_orm::Database::connect(&url).await.unwrap();
    let stored = db
        .query_one_raw(Statement::from_string(
            DbBackend::Sqlite,
            "SELECT count(*) AS n FROM messages",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<i64>("", "n")
        .unwrap();
    assert_eq!(stored, acknowledged as i64);
}

/// A limit below 1 MiB is refused at start, naming the flag and the smallest value.
#[test]
fn the_binary_refuses_a_wal_limit_below_one_mebibyte() {
    let data = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_chatroom"))
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--wal-limit-bytes",
            "4096",
        ])
        .arg("--data-dir")
        .arg(data.path())
        .env_remove("DATABASE_URL")
        .env_remove("CHATROOM_WAL_LIMIT_BYTES")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "started with a 4 KiB WAL limit");
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("--wal-limit-bytes") && text.contains("1048576"),
        "{text}"
    );
}

/// The checkpoint sequence number in a WAL file's header, which SQLite counts up each time it starts
/// the WAL over (bytes 12 to 15, big-endian).
fn wal_restarts(wal: &std::path::Path) -> Option<u32> {
    use std::io::Read;
    let mut header = [0; 16];
    std::fs::File::open(wal)
        .ok()?
        .read_exact(&mut header)
        .ok()?;
    Some(u32::from_be_bytes([
        header[12], header[13], header[14], header[15],
    ]))
}

/// Each thread of process `pid`: its name, nice value and scheduling policy (`/proc/<pid>/task`).
fn threads(pid: u32) -> Vec<(String, i64, i64)> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|task| {
            let stat = std::fs::read_to_string(task.ok()?.path().join("stat")).ok()?;
            let name = stat[stat.find('(')? + 1..stat.rfind(')')?].to_owned();
            // Fields after the name, from the state (field 3): nice is field 19, policy field 41.
            let rest: Vec<&str> = stat[stat.rfind(')')? + 2..].split(' ').collect();
            Some((
                name,
                rest.get(16)?.parse().ok()?,
                rest.get(38)?.parse().ok()?,
            ))
        })
        .collect()
}
