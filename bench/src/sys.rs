//! The clock messages carry, and readings of `/proc`: CPU time of processes and of the machine,
//! resident memory.

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Clock ticks per second of `/proc` CPU times (`getconf CLK_TCK` on Linux).
pub const HZ: f64 = 100.0;

/// Added to every clock reading so that send times are always 16 digits: frames keep one size and
/// no number starts with a zero.
pub const CLOCK_BASE_US: u64 = 1_000_000_000_000_000;

struct Origin {
    instant: Instant,
    unix: f64,
}

fn origin() -> &'static Origin {
    static ORIGIN: OnceLock<Origin> = OnceLock::new();
    ORIGIN.get_or_init(|| Origin {
        instant: Instant::now(),
        unix: unix_now(),
    })
}

/// The generator's monotonic clock, in microseconds (from [`CLOCK_BASE_US`]).
pub fn now_us() -> u64 {
    let elapsed = origin().instant.elapsed().as_micros();
    CLOCK_BASE_US + u64::try_from(elapsed).unwrap_or(u64::MAX / 2)
}

/// Wall-clock time, in seconds since the Unix epoch.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The wall-clock time of a reading of [`now_us`].
pub fn unix_of(us: u64) -> f64 {
    origin().unix + us.saturating_sub(CLOCK_BASE_US) as f64 / 1e6
}

/// User plus system CPU time of a process (all its threads), in clock ticks.
pub fn proc_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let user: u64 = fields.get(11)?.parse().ok()?;
    let system: u64 = fields.get(12)?.parse().ok()?;
    Some(user + system)
}

/// This process's CPU time, in clock ticks.
pub fn own_ticks() -> u64 {
    proc_ticks(std::process::id()).unwrap_or(0)
}

/// Time the threads of a process spent runnable but waiting for a CPU (scheduler run delay), in
/// nanoseconds: how much other processes held it up.
pub fn proc_wait_ns(pid: u32) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0u64;
    for task in tasks.filter_map(Result::ok) {
        let Ok(text) = std::fs::read_to_string(task.path().join("schedstat")) else {
            continue;
        };
        total += text
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Some(total)
}

/// Resident memory of a process, in KiB.
pub fn proc_rss_kb(pid: u32) -> Option<u64> {
    proc_status_kb(pid, "VmRSS:")
}

/// Resident file-backed memory of a process, in KiB (`RssFile`): the binary's code and read-only data and
/// the shared libraries', as far as they have run. It grows as code runs for the first time and stays.
pub fn proc_rss_file_kb(pid: u32) -> Option<u64> {
    proc_status_kb(pid, "RssFile:")
}

/// One KiB figure of `/proc/<pid>/status`, by its label (with the colon).
fn proc_status_kb(pid: u32, label: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(label))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

/// Busy clock ticks of the whole machine (all CPUs): user, nice, system, irq and softirq.
pub fn machine_busy_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    Some(f.first()? + f.get(1)? + f.get(2)? + f.get(5)? + f.get(6)?)
}

/// Busy and total clock ticks of the whole machine, for the "is it quiet" check.
pub fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    let total: u64 = f.iter().take(8).sum();
    Some((machine_busy_ticks()?, total))
}
