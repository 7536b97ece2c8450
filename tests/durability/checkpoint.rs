//! SQLite's WAL is copied back into the database file in the background (`db.rs` `checkpoints`), on
//! a thread of its own that runs at the lowest ordinary priority: commits never wait for a checkpoint,
//! and a checkpoint never holds the event loop up.

use std::time::{Duration, Instant};

use super::signup;
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
