//! The suite: every scenario against the peer and chatroom in turns, on a 2-core machine.
//!
//! Each run starts a fresh server pinned to one core (`taskset -c <server cpu>`) on a fresh data
//! directory or database, and this program's own `load` pinned to the other. A sampler reads
//! `/proc` every 250 ms: the machine's busy time, the server's, the generator's, this process's and
//! the PostgreSQL backends serving the run's database. What is left over is *foreign*: CPU taken by
//! other processes. Every step's measurement window gets its own ledger; a step with more than
//! `--foreign-max` foreign cores is dirty, and a run with a dirty step is repeated (after waiting for
//! the machine to be quiet), up to `--attempts` times. A step where the generator used most of its
//! core, or sent late, measured the generator: it is marked and not repeated.
//!
//! Every attempt is appended to the results file as one JSON line, labelled with the chatroom commit
//! measured; `report` takes medians of the clean steps.

use std::io::{BufRead as _, Read as _, Write as _};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use crate::sys;

#[derive(Debug, Clone, clap::Args)]
pub struct SuiteArgs {
    /// The CI smoke run: small scenarios, each target once, no waiting for quiet, no repeats.
    #[arg(long)]
    pub quick: bool,
    /// Only these scenarios (S1..S8), comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
    /// Only these servers (peer, chatroom), comma-separated; both when empty.
    #[arg(long, value_delimiter = ',')]
    pub targets: Vec<String>,
    /// chatroom runs per scenario; the peer runs before, between and after them (A-B-A).
    #[arg(long, default_value_t = 1)]
    pub reps: usize,
    /// Attempts at a run whose measurement was disturbed by other processes.
    #[arg(long, default_value_t = 3)]
    pub attempts: usize,
    /// Most CPU (in cores) other processes may take during a measurement window.
    #[arg(long, default_value_t = 0.05)]
    pub foreign_max: f64,
    /// Seconds to wait for a quiet machine before each run (0: don't wait).
    #[arg(long, default_value_t = 900)]
    pub quiet_wait: u64,
    /// "Quiet" means at most this share of all CPUs busy over 2 s.
    #[arg(long, default_value_t = 0.08)]
    pub quiet_busy: f64,
    /// The chatroom binary.
    #[arg(long, default_value = "target/release/chatroom")]
    pub chatroom: PathBuf,
    /// The peer's server script.
    #[arg(long, default_value = "bench/peer/server.js")]
    pub peer: PathBuf,
    /// Where the peer's node_modules are (NODE_PATH).
    #[arg(long)]
    pub node_path: Option<String>,
    /// The results file (JSON lines, appended).
    #[arg(long)]
    pub out: PathBuf,
    /// Label of what is measured: the chatroom commit.
    #[arg(long, default_value = "unknown")]
    pub commit: String,
    /// PostgreSQL server for the PostgreSQL runs (a database is created and dropped per run);
    /// empty to skip them.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432")]
    pub postgres: String,
    #[arg(long, default_value = "0")]
    pub server_cpu: String,
    #[arg(long, default_value = "1")]
    pub gen_cpu: String,
    #[arg(long, default_value_t = 38917)]
    pub port: u16,
    /// Scheduling of the server and the generator: `rr` (real-time round-robin, priority 1: ahead of
    /// every ordinary process, so other processes only get the time they leave idle; needs root, falls
    /// back to `normal`) or `normal`.
    #[arg(long, default_value = "rr")]
    pub sched: String,
    /// Appended to every variant's name, in parentheses, to keep runs made differently apart in the
    /// report (for example `--sched normal --variant-note "ordinary scheduling"`).
    #[arg(long, default_value = "")]
    pub variant_note: String,
    /// A server above this resident size is stopped (a run must not take the machine down).
    #[arg(long, default_value_t = 4096)]
    pub rss_limit_mb: u64,
}

/// Which server a run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Peer,
    Chatroom,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Self::Peer => "peer",
            Self::Chatroom => "chatroom",
        }
    }
}

/// chatroom's storage for a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Db {
    /// A fresh SQLite file.
    Sqlite,
    /// A copy of a SQLite file holding 1M messages.
    SqliteSeeded,
    /// A fresh PostgreSQL database.
    Postgres,
}

impl Db {
    fn name(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::SqliteSeeded => "sqlite-1M",
            Self::Postgres => "postgres",
        }
    }
}

/// One scenario variant: what the generator does, against which servers.
#[derive(Debug, Clone)]
struct Scenario {
    id: &'static str,
    variant: String,
    sides: Vec<Side>,
    db: Db,
    /// chatroom's group rooms (`room0..`).
    rooms: usize,
    load: Vec<String>,
    /// chatroom flags on top of the benchmarking ones.
    server_args: Vec<String>,
    /// Make the accounts first on a server with bcrypt cost 4, then restart it with these flags
    /// and sign in (S6).
    accounts_then: Option<Vec<String>>,
    timeout_s: u64,
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn scenarios(quick: bool) -> Vec<Scenario> {
    let both = vec![Side::Peer, Side::Chatroom];
    let mut out = Vec::new();
    let base = |id: &'static str, variant: String, rooms: usize, load: Vec<String>| Scenario {
        id,
        variant,
        sides: both.clone(),
        db: Db::Sqlite,
        rooms,
        load,
        server_args: Vec::new(),
        accounts_then: None,
        timeout_s: 300,
    };
    if quick {
        out.push(base(
            "S1",
            "200 idle".into(),
            20,
            args(&[
                "--idle",
                "--clients",
                "200",
                "--rooms",
                "20",
                "--hold",
                "2",
                "--after-close",
                "2",
            ]),
        ));
        out.push(base(
            "S2",
            "one room of 100".into(),
            1,
            args(&[
                "--clients",
                "100",
                "--senders",
                "10",
                "--rate",
                "10,50",
                "--warmup",
                "1",
                "--duration",
                "3",
            ]),
        ));
        let mut s4 = base(
            "S4",
            "10 rooms of 5, login".into(),
            10,
            args(&[
                "--clients",
                "50",
                "--rooms",
                "10",
                "--senders",
                "20",
                "--rate",
                "200",
                "--warmup",
                "1",
                "--duration",
                "3",
                "--login",
            ]),
        );
        s4.timeout_s = 120;
        out.push(s4);
        let mut s5 = base(
            "S5",
            "sqlite".into(),
            10,
            args(&[
                "--clients",
                "20",
                "--rooms",
                "10",
                "--senders",
                "20",
                "--rate",
                "500",
                "--warmup",
                "1",
                "--duration",
                "3",
            ]),
        );
        s5.sides = vec![Side::Chatroom];
        out.push(s5);
        let mut s6 = base(
            "S6",
            "one room of 50, 2 sign-up/sign-in loops".into(),
            1,
            args(&[
                "--clients",
                "50",
                "--senders",
                "5",
                "--rate",
                "10",
                "--warmup",
                "1",
                "--duration",
                "4",
                "--auth",
                "signin",
                "--auth-load",
                "2",
            ]),
        );
        s6.sides = vec![Side::Chatroom];
        s6.accounts_then = Some(args(&["--bcrypt-cost", "10"]));
        out.push(s6);
        let mut s8 = base(
            "S8",
            "overload".into(),
            10,
            args(&[
                "--clients",
                "20",
                "--rooms",
                "10",
                "--senders",
                "20",
                "--rate",
                "3000",
                "--warmup",
                "1",
                "--duration",
                "3",
                "--drain",
                "3",
                "--eio",
                "3",
            ]),
        );
        s8.sides = vec![Side::Chatroom];
        out.push(s8);
        return out;
    }
    for n in ["1000", "5000", "10000"] {
        let mut s = base(
            "S1",
            format!("{n} idle"),
            200,
            args(&[
                "--idle",
                "--clients",
                n,
                "--rooms",
                "200",
                "--hold",
                "8",
                "--after-close",
                "10",
                "--pause-after-signup",
                "2",
                "--conn-timeout",
                "240",
            ]),
        );
        s.timeout_s = 600;
        out.push(s);
    }
    let mut s2 = base(
        "S2",
        "one room of 1000".into(),
        1,
        args(&[
            "--clients",
            "1000",
            "--senders",
            "10",
            "--rate",
            "10,25,50,100,150,200",
            "--warmup",
            "3",
            "--duration",
            "10",
            "--conn-timeout",
            "120",
        ]),
    );
    s2.timeout_s = 400;
    out.push(s2);
    for (variant, extra) in [
        ("50 rooms of 20", vec![]),
        ("50 rooms of 20, login", vec!["--login"]),
        (
            "50 rooms of 20, login, EIO 3",
            vec!["--login", "--eio", "3"],
        ),
    ] {
        let mut load = args(&[
            "--clients",
            "1000",
            "--rooms",
            "50",
            "--senders",
            "100",
            "--rate",
            "2000",
            "--warmup",
            "3",
            "--duration",
            "10",
            "--conn-timeout",
            "120",
        ]);
        load.extend(args(&extra));
        out.push(base("S4", variant.into(), 50, load));
    }
    for db in [Db::Sqlite, Db::SqliteSeeded, Db::Postgres] {
        let mut s5 = base(
            "S5",
            db.name().into(),
            50,
            args(&[
                "--clients",
                "100",
                "--rooms",
                "50",
                "--senders",
                "100",
                "--rate",
                "2000,5000,10000",
                "--warmup",
                "2",
                "--duration",
                "8",
                "--drain",
                "4",
            ]),
        );
        s5.sides = vec![Side::Chatroom];
        s5.db = db;
        out.push(s5);
    }
    let mut s6 = base(
        "S6",
        "one room of 1000 at 50 msg/s, 8 sign-up/sign-in loops".into(),
        1,
        args(&[
            "--clients",
            "1000",
            "--senders",
            "10",
            "--rate",
            "50",
            "--warmup",
            "3",
            "--duration",
            "20",
            "--auth",
            "signin",
            "--auth-load",
            "8",
            "--conn-timeout",
            "120",
        ]),
    );
    s6.sides = vec![Side::Chatroom];
    s6.accounts_then = Some(args(&["--bcrypt-cost", "10"]));
    out.push(s6);
    let mut s7 = base(
        "S7",
        "10000 at once".into(),
        200,
        args(&[
            "--idle",
            "--clients",
            "10000",
            "--rooms",
            "200",
            "--conn-conc",
            "10000",
            "--hold",
            "2",
            "--after-close",
            "2",
            "--conn-timeout",
            "240",
        ]),
    );
    s7.timeout_s = 600;
    out.push(s7);
    let s8 = base(
        "S8",
        "50 rooms of 2, all send, 30000 msg/s".into(),
        50,
        args(&[
            "--clients",
            "100",
            "--rooms",
            "50",
            "--senders",
            "100",
            "--rate",
            "30000",
            "--warmup",
            "2",
            "--duration",
            "8",
            "--drain",
            "6",
        ]),
    );
    out.push(s8);
    // Last: chatroom may not finish joining a room of 5,000 (issue 7), and the run is stopped when its
    // memory passes --rss-limit-mb.
    let mut s3 = base(
        "S3",
        "one room of 5000".into(),
        1,
        args(&[
            "--clients",
            "5000",
            "--senders",
            "10",
            "--rate",
            "10",
            "--warmup",
            "3",
            "--duration",
            "10",
            "--conn-timeout",
            "90",
        ]),
    );
    s3.timeout_s = 300;
    out.push(s3);
    out
}

/// Runs the suite.
pub fn run(a: &SuiteArgs) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let work = std::env::temp_dir().join(format!("chatroom-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    if let Some(dir) = a.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let suite_id = format!("{}-{}", a.commit, sys::unix_now() as u64);
    let machine = machine();
    let wanted =
        |s: &Scenario| a.only.is_empty() || a.only.iter().any(|o| o.eq_ignore_ascii_case(s.id));
    let mut list: Vec<Scenario> = scenarios(a.quick).into_iter().filter(wanted).collect();
    if !a.variant_note.is_empty() {
        for sc in &mut list {
            sc.variant = format!("{} ({})", sc.variant, a.variant_note);
        }
    }
    eprintln!(
        "chatroom-bench suite {suite_id}: {} scenario variants, chatroom {}, results to {}",
        list.len(),
        a.commit,
        a.out.display()
    );
    let mut seeded: Option<PathBuf> = None;
    let mut n = 0usize;
    let mut broken = Vec::new();
    for sc in &list {
        if sc.db == Db::Postgres && a.postgres.is_empty() {
            eprintln!("{} {}: skipped (no PostgreSQL given)", sc.id, sc.variant);
            continue;
        }
        if sc.id == "S6" && !a.quick {
            // The bcrypt ceiling, measured on the generator's core (the same kind as the server's).
            if a.quiet_wait > 0 {
                wait_quiet(a.quiet_wait, a.quiet_busy);
            }
            let out = Command::new("taskset")
                .arg("-c")
                .arg(&a.gen_cpu)
                .arg(&exe)
                .args(["bcrypt", "--cost", "10", "--rounds", "20"])
                .output()?;
            let bcrypt: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
            let line = json!({
                "v": 1, "suite": suite_id, "commit": a.commit, "mode": "full", "date": sys::unix_now(),
                "machine": machine, "scenario": "S6", "variant": "bcrypt ceiling", "target": "machine",
                "attempt": 1, "run": { "bcrypt": bcrypt }, "verdict": { "dirty": false },
            });
            append(&a.out, &line)?;
            eprintln!("-- S6 bcrypt ceiling: {bcrypt}");
        }
        if sc.db == Db::SqliteSeeded && seeded.is_none() {
            match seed_sqlite(a, &work, sc.rooms) {
                Ok(db) => seeded = Some(db),
                Err(e) => {
                    eprintln!(
                        "{} {}: skipped, the database could not be seeded: {e:#}",
                        sc.id, sc.variant
                    );
                    broken.push(format!("{} {} (seeding)", sc.id, sc.variant));
                    continue;
                }
            }
        }
        let sides: Vec<Side> = sc
            .sides
            .iter()
            .copied()
            .filter(|s| a.targets.is_empty() || a.targets.iter().any(|t| t == s.name()))
            .collect();
        let order = order(&sides, if a.quick { 1 } else { a.reps.max(1) }, a.quick);
        for side in order {
            let attempts = if a.quick { 1 } else { a.attempts.max(1) };
            for attempt in 1..=attempts {
                n += 1;
                if !a.quick && a.quiet_wait > 0 {
                    wait_quiet(a.quiet_wait, a.quiet_busy);
                }
                eprintln!(
                    "-- {} {} / {} (attempt {attempt})",
                    sc.id,
                    sc.variant,
                    side.name()
                );
                let ctx = RunCtx {
                    a,
                    exe: &exe,
                    work: &work,
                    n,
                    seeded: seeded.as_deref(),
                };
                let mut record = match run_one(&ctx, sc, side) {
                    Ok(r) => r,
                    Err(e) => json!({ "error": format!("{e:#}") }),
                };
                let verdict = judge(&mut record, a.foreign_max, realtime(a));
                let line = json!({
                    "v": 1, "suite": suite_id, "commit": a.commit, "mode": if a.quick { "quick" } else { "full" },
                    "date": sys::unix_now(), "machine": machine, "scenario": sc.id, "variant": sc.variant,
                    "target": side.name(), "db": if side == Side::Chatroom { json!(sc.db.name()) } else { Value::Null },
                    "peer_server": a.peer.display().to_string(),
                    "attempt": attempt, "load_args": sc.load, "run": record, "verdict": verdict,
                });
                append(&a.out, &line)?;
                eprintln!("   {}", brief(&line));
                let ready = line["run"]["gen"]["connect"]["ready"].as_u64().unwrap_or(0);
                if line["run"].get("error").is_some()
                    || line["run"]["gen"].get("aborted").is_some()
                    || ready == 0
                {
                    broken.push(format!("{} {} / {}", sc.id, sc.variant, side.name()));
                }
                let dirty = verdict
                    .get("dirty")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                if !dirty {
                    break;
                }
            }
        }
    }
    let _ = std::fs::remove_dir_all(&work);
    if a.quick && !broken.is_empty() {
        // The smoke run has no thresholds, but a run that could not be measured at all is a failure.
        bail!("runs that failed: {}", broken.join(", "));
    }
    if !broken.is_empty() {
        eprintln!("runs that failed or were stopped: {}", broken.join(", "));
    }
    Ok(())
}

/// A-B-A: the peer before, between and after chatroom's runs.
fn order(sides: &[Side], reps: usize, quick: bool) -> Vec<Side> {
    let has_peer = sides.contains(&Side::Peer);
    let has_cr = sides.contains(&Side::Chatroom);
    let mut out = Vec::new();
    if quick {
        out.extend_from_slice(sides);
        return out;
    }
    for _ in 0..reps {
        if has_peer {
            out.push(Side::Peer);
        }
        if has_cr {
            out.push(Side::Chatroom);
        }
    }
    if has_peer && has_cr {
        out.push(Side::Peer);
    }
    out
}

fn append(path: &Path, line: &Value) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    writeln!(f, "{line}")?;
    Ok(())
}

/// One line for the console about a finished run.
fn brief(line: &Value) -> String {
    let run = &line["run"];
    if let Some(e) = run.get("error") {
        return format!("error: {e}");
    }
    let g = &run["gen"];
    let mut parts = vec![format!("verdict {}", line["verdict"])];
    if let Some(c) = g.get("connect") {
        parts.push(format!(
            "connect {} ready in {} s",
            c["ready"], c["seconds"]
        ));
    }
    if let Some(steps) = g.get("steps").and_then(Value::as_array) {
        for s in steps {
            parts.push(format!(
                "[{}/s: {}% p50 {} p99 {} ms, unanswered {}]",
                s["rate"],
                s["delivered_pct"],
                s["latency_ms"]["p50"],
                s["latency_ms"]["p99"],
                s["unanswered"]
            ));
        }
    }
    if let Some(m) = run.get("memory") {
        parts.push(format!("memory {m}"));
    }
    parts.join(" ")
}

struct RunCtx<'a> {
    a: &'a SuiteArgs,
    exe: &'a Path,
    work: &'a Path,
    n: usize,
    seeded: Option<&'a Path>,
}

/// One sample of the sampler.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    t: f64,
    busy: f64,
    srv: f64,
    gen_: f64,
    own: f64,
    db: f64,
    rss_kb: f64,
    /// Of which file-backed (code), KiB.
    file_kb: f64,
    /// Run-queue waits of the server and the generator, in seconds (monotonic per process).
    srv_wait: f64,
    gen_wait: f64,
    /// Size of the SQLite WAL file, bytes (0 without one).
    wal_bytes: f64,
}

/// Reads `/proc` every 250 ms until stopped.
struct Sampler {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    gen_pid: Arc<AtomicU32>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    fn start(srv_pid: u32, pg_db: Option<String>, wal: Option<PathBuf>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let gen_pid = Arc::new(AtomicU32::new(0));
        let handle = {
            let (stop, samples, gen_pid) = (stop.clone(), samples.clone(), gen_pid.clone());
            std::thread::spawn(move || {
                let mut db_seen: std::collections::HashMap<u32, u64> = Default::default();
                let mut db_total = 0u64;
                let mut gen_last = 0u64;
                let mut gen_wait_last = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    if let Some(db) = &pg_db {
                        for pid in pg_backends(db) {
                            if let Some(t) = sys::proc_ticks(pid) {
                                let before = db_seen.insert(pid, t).unwrap_or(0);
                                db_total += t.saturating_sub(before);
                            }
                        }
                    }
                    let gp = gen_pid.load(Ordering::Relaxed);
                    if gp != 0
                        && let Some(t) = sys::proc_ticks(gp)
                    {
                        gen_last = t;
                        gen_wait_last = sys::proc_wait_ns(gp).unwrap_or(gen_wait_last);
                    }
                    let s = Sample {
                        t: sys::unix_now(),
                        busy: sys::machine_busy_ticks().unwrap_or(0) as f64,
                        srv: sys::proc_ticks(srv_pid).unwrap_or(0) as f64,
                        gen_: gen_last as f64,
                        own: sys::own_ticks() as f64,
                        db: db_total as f64,
                        rss_kb: sys::proc_rss_kb(srv_pid).unwrap_or(0) as f64,
                        file_kb: sys::proc_rss_file_kb(srv_pid).unwrap_or(0) as f64,
                        srv_wait: sys::proc_wait_ns(srv_pid).unwrap_or(0) as f64 / 1e9,
                        gen_wait: gen_wait_last as f64 / 1e9,
                        wal_bytes: wal
                            .as_ref()
                            .and_then(|w| std::fs::metadata(w).ok())
                            .map_or(0.0, |m| m.len() as f64),
                    };
                    samples
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(s);
                    std::thread::sleep(Duration::from_millis(250));
                }
            })
        };
        Self {
            stop,
            samples,
            gen_pid,
            handle: Some(handle),
        }
    }

    fn snapshot(&self) -> Vec<Sample> {
        self.samples
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn finish(mut self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        self.snapshot()
    }
}

/// PostgreSQL backends serving database `db` (their process titles name it).
fn pg_backends(db: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let text = String::from_utf8_lossy(&c);
                text.starts_with("postgres: ") && text.split(' ').any(|w| w == db)
            })
        })
        .collect()
}

/// A counter's value at time `t`, interpolated between samples.
fn at(samples: &[Sample], t: f64, f: impl Fn(&Sample) -> f64) -> Option<f64> {
    let i = samples.iter().position(|s| s.t >= t)?;
    if i == 0 {
        return Some(f(&samples[0]));
    }
    let (a, b) = (&samples[i - 1], &samples[i]);
    let w = if b.t > a.t {
        (t - a.t) / (b.t - a.t)
    } else {
        1.0
    };
    Some(f(a) + (f(b) - f(a)) * w)
}

/// CPU ledger of a window: cores used by the server, the generator, PostgreSQL, this process, and
/// everything else (foreign).
fn ledger(samples: &[Sample], from: f64, to: f64) -> Value {
    let d = |f: fn(&Sample) -> f64| -> Option<f64> {
        Some((at(samples, to, f)? - at(samples, from, f)?) / sys::HZ / (to - from).max(1e-6))
    };
    let (Some(busy), Some(srv), Some(gen_), Some(own), Some(db)) = (
        d(|s| s.busy),
        d(|s| s.srv),
        d(|s| s.gen_),
        d(|s| s.own),
        d(|s| s.db),
    ) else {
        return Value::Null;
    };
    let r3 = |x: f64| (x * 1000.0).round() / 1000.0;
    let share = |f: fn(&Sample) -> f64| -> f64 {
        match (at(samples, to, f), at(samples, from, f)) {
            (Some(b), Some(a)) => ((b - a) / (to - from).max(1e-6)).max(0.0),
            _ => 1.0,
        }
    };
    json!({
        "seconds": r3(to - from), "server_cores": r3(srv), "gen_cores": r3(gen_), "db_cores": r3(db),
        "suite_cores": r3(own), "foreign_cores": r3(busy - srv - gen_ - own - db),
        "server_cpu_s": r3(srv * (to - from)),
        "server_wait": r3(share(|s| s.srv_wait)), "gen_wait": r3(share(|s| s.gen_wait)),
    })
}

fn rss_mb_at(samples: &[Sample], t: f64) -> Value {
    at(samples, t, |s| s.rss_kb)
        .map_or(Value::Null, |kb| json!((kb / 1024.0 * 10.0).round() / 10.0))
}

/// Starts the measured server.
struct Server {
    child: Child,
    side: Side,
    data: Option<PathBuf>,
    pg_db: Option<String>,
    log: PathBuf,
}

fn start_server(
    ctx: &RunCtx<'_>,
    sc: &Scenario,
    side: Side,
    extra: &[String],
    fresh: bool,
) -> anyhow::Result<Server> {
    let a = ctx.a;
    let log = ctx.work.join(format!("server-{}.log", ctx.n));
    let logf = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)?;
    let mut cmd = Command::new("taskset");
    cmd.arg("-c").arg(&a.server_cpu);
    if realtime(a) {
        cmd.args(["chrt", "-r", "1"]);
    }
    let mut data = None;
    let mut pg_db = None;
    match side {
        Side::Peer => {
            cmd.arg("node").arg(&a.peer).env("PORT", a.port.to_string());
            if let Some(p) = &a.node_path {
                cmd.env("NODE_PATH", p);
            }
        }
        Side::Chatroom => {
            let dir = ctx.work.join(format!("data-{}", ctx.n));
            if fresh {
                let _ = std::fs::remove_dir_all(&dir);
                std::fs::create_dir_all(&dir)?;
                if sc.db == Db::SqliteSeeded
                    && let Some(seed) = ctx.seeded
                {
                    std::fs::copy(seed, dir.join("chatroom.db"))?;
                }
            }
            let rooms: Vec<String> = (0..sc.rooms).map(|i| format!("room{i}")).collect();
            cmd.arg(&a.chatroom)
                .args(["--host", "127.0.0.1", "--port", &a.port.to_string()])
                .arg("--data-dir")
                .arg(&dir)
                .args(["--signup-per-hour", "1000000"])
                // The generator is one address standing in for thousands of clients: the per-address
                // connection cap (a defence against one hostile host) would refuse a connect storm.
                .args(["--max-connections-per-ip", "1000000"])
                .args([
                    "--socket-events-per-second",
                    "100000",
                    "--log-format",
                    "json",
                ])
                .args(["--rooms", &rooms.join(",")])
                .env("RUST_LOG", "warn");
            // chatroom refuses a flag given twice: the scenario's own cost replaces the default 4.
            if !extra
                .iter()
                .chain(&sc.server_args)
                .any(|x| x == "--bcrypt-cost")
            {
                cmd.args(["--bcrypt-cost", "4"]);
            }
            if sc.db == Db::Postgres {
                let name = format!("chatroom_bench_{}_{}", std::process::id(), ctx.n);
                if fresh {
                    psql(&a.postgres, "postgres", &format!("CREATE DATABASE {name}"))?;
                }
                cmd.arg("--database-url")
                    .arg(format!("{}/{name}", a.postgres));
                pg_db = Some(name);
            }
            cmd.args(&sc.server_args).args(extra);
            data = Some(dir);
        }
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(logf.try_clone()?)
        .stderr(logf)
        .spawn()
        .context("starting the server (taskset, node, chatroom)")?;
    let mut server = Server {
        child,
        side,
        data,
        pg_db,
        log,
    };
    let health = if side == Side::Peer {
        "/health"
    } else {
        "/healthz"
    };
    let t0 = Instant::now();
    while !http_ok(a.port, health) {
        if t0.elapsed() > Duration::from_secs(60) || server.child.try_wait()?.is_some() {
            let _ = stop_server(&mut server);
            bail!("the server did not come up (log: {})", server.log.display());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(server)
}

fn http_ok(port: u16, path: &str) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[9..12] == b"200"
}

/// SIGTERM, then SIGKILL after 15 s; returns the exit code.
fn stop_server(server: &mut Server) -> Option<i32> {
    let pid = server.child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let t0 = Instant::now();
    loop {
        if let Ok(Some(st)) = server.child.try_wait() {
            return st.code();
        }
        if t0.elapsed() > Duration::from_secs(15) {
            let _ = server.child.kill();
            return server.child.wait().ok().and_then(|s| s.code());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn psql(base: &str, db: &str, sql: &str) -> anyhow::Result<String> {
    let out = Command::new("psql")
        .arg(format!("{base}/{db}"))
        .args(["-qAt", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .context("running psql")?;
    if !out.status.success() {
        bail!("psql: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Whether the server and the generator run with real-time priority (asked for, and allowed here).
fn realtime(a: &SuiteArgs) -> bool {
    static ALLOWED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    a.sched == "rr"
        && *ALLOWED.get_or_init(|| {
            Command::new("chrt")
                .args(["-r", "1", "true"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
}

/// Runs the generator pinned to its core; returns its phase lines and summary.
fn generate(
    ctx: &RunCtx<'_>,
    extra: &[String],
    timeout_s: u64,
    sampler: Option<&Sampler>,
    srv_pid: u32,
) -> anyhow::Result<(Vec<Value>, Value)> {
    let a = ctx.a;
    let errlog = ctx.work.join(format!("gen-{}.err", ctx.n));
    let mut gen_cmd = Command::new("taskset");
    gen_cmd.arg("-c").arg(&a.gen_cpu);
    if realtime(a) {
        gen_cmd.args(["chrt", "-r", "1"]);
    }
    let mut child = gen_cmd
        .arg(ctx.exe)
        .arg("load")
        .arg("--url")
        .arg(format!("http://127.0.0.1:{}", a.port))
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&errlog)?)
        .spawn()
        .context("starting the generator")?;
    if let Some(s) = sampler {
        s.gen_pid.store(child.id(), Ordering::Relaxed);
    }
    let stdout = child.stdout.take().context("generator stdout")?;
    let reader = std::thread::spawn(move || {
        std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| serde_json::from_str::<Value>(&l).ok())
            .collect::<Vec<Value>>()
    });
    let t0 = Instant::now();
    let mut aborted = None;
    loop {
        if child.try_wait()?.is_some() {
            break;
        }
        if t0.elapsed() > Duration::from_secs(timeout_s) {
            aborted = Some(format!("generator still running after {timeout_s} s"));
        }
        let rss_mb = sys::proc_rss_kb(srv_pid).unwrap_or(0) / 1024;
        if rss_mb > a.rss_limit_mb {
            aborted = Some(format!(
                "server resident memory passed {} MB",
                a.rss_limit_mb
            ));
        }
        if aborted.is_some() {
            let _ = child.kill();
            let _ = child.wait();
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let lines = reader.join().unwrap_or_default();
    let summary = lines
        .iter()
        .find_map(|l| l.get("summary").cloned())
        .unwrap_or(Value::Null);
    let phases: Vec<Value> = lines
        .into_iter()
        .filter(|l| l.get("phase").is_some())
        .collect();
    if let Some(why) = aborted {
        return Ok((phases, json!({ "aborted": why, "partial": summary })));
    }
    if summary.is_null() {
        let err = std::fs::read_to_string(&errlog).unwrap_or_default();
        bail!(
            "the generator printed no summary: {}",
            err.lines().last().unwrap_or("")
        );
    }
    Ok((phases, summary))
}

fn phase_at(phases: &[Value], name: &str) -> Option<f64> {
    phases
        .iter()
        .find(|p| p["phase"] == name)
        .and_then(|p| p["at"].as_f64())
}

fn run_one(ctx: &RunCtx<'_>, sc: &Scenario, side: Side) -> anyhow::Result<Value> {
    let mut load = sc.load.clone();
    load.extend(["--target".to_owned(), side.name().to_owned()]);
    let mut accounts = Value::Null;
    if side == Side::Chatroom && sc.accounts_then.is_some() {
        // Accounts first, cheaply (bcrypt cost 4); the measured server then has `then` flags.
        let mut server = start_server(ctx, sc, side, &[], true)?;
        // The same clients, signing up (the measured run signs them in).
        let mut fixed = Vec::new();
        let mut it = load.iter();
        while let Some(x) = it.next() {
            if x == "--auth" {
                it.next();
            } else {
                fixed.push(x.clone());
            }
        }
        fixed.push("--accounts-only".to_owned());
        let pid = server.child.id();
        let result = generate(ctx, &fixed, sc.timeout_s, None, pid);
        stop_server(&mut server);
        accounts = result?.1;
    }
    let fresh = sc.accounts_then.is_none() || side == Side::Peer;
    let extra = if side == Side::Chatroom {
        sc.accounts_then.clone().unwrap_or_default()
    } else {
        Vec::new()
    };
    let mut server = start_server(ctx, sc, side, &extra, fresh)?;
    let pid = server.child.id();
    let wal = server.data.as_ref().map(|d| d.join("chatroom.db-wal"));
    let sampler = Sampler::start(pid, server.pg_db.clone(), wal);
    std::thread::sleep(Duration::from_millis(600));
    let rss0 = sys::proc_rss_kb(pid).unwrap_or(0) as f64 / 1024.0;
    let file0 = sys::proc_rss_file_kb(pid).unwrap_or(0) as f64 / 1024.0;
    let gen_started = sys::unix_now();
    let generated = generate(ctx, &load, sc.timeout_s, Some(&sampler), pid);
    let gen_ended = sys::unix_now();
    // The server finishes what the clients left (disconnects, presence): wait until it is idle.
    let settle_t0 = Instant::now();
    let mut last = sys::proc_ticks(pid).unwrap_or(0);
    let mut over_limit = false;
    while settle_t0.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(500));
        if sys::proc_rss_kb(pid).unwrap_or(0) / 1024 > ctx.a.rss_limit_mb {
            // Still growing after its clients left (queued frames): stop it before it takes the machine.
            over_limit = true;
            let _ = server.child.kill();
            break;
        }
        let now = sys::proc_ticks(pid).unwrap_or(0);
        if now.saturating_sub(last) <= 2 {
            break;
        }
        last = now;
    }
    let settle_s = settle_t0.elapsed().as_secs_f64();
    let rss_settled = sys::proc_rss_kb(pid).unwrap_or(0) as f64 / 1024.0;
    let samples = sampler.finish();
    let exit = stop_server(&mut server);
    let mut store = Value::Null;
    let mut logs = Value::Null;
    if side == Side::Chatroom {
        store = count_rows(ctx.a, &server);
        logs = scan_log(&server.log);
    }
    cleanup(ctx.a, &server);
    let (phases, mut gen_) = generated?;
    let rss_max = samples.iter().map(|s| s.rss_kb).fold(0.0, f64::max) / 1024.0;
    // Ledgers: each step's window, and the whole generator run.
    if let Some(steps) = gen_.get_mut("steps").and_then(Value::as_array_mut) {
        for step in steps {
            let w = step["window"].clone();
            if let (Some(from), Some(to)) = (w[0].as_f64(), w[1].as_f64()) {
                let l = ledger(&samples, from, to);
                if let (Some(cpu_s), Some(n)) =
                    (l["server_cpu_s"].as_f64(), step["delivered"].as_f64())
                    && n > 0.0
                {
                    step["server_us_per_delivery"] =
                        json!((cpu_s * 1e6 / n * 100.0).round() / 100.0);
                }
                step["ledger"] = l;
                step["server_rss_mb"] = rss_mb_at(&samples, to);
            }
        }
    }
    let whole = ledger(&samples, gen_started, gen_ended);
    let mut memory = json!({
        "killed_over_limit_mb": if over_limit { json!(ctx.a.rss_limit_mb) } else { Value::Null },
        "rss0_mb": (rss0 * 10.0).round() / 10.0, "rss_max_mb": (rss_max * 10.0).round() / 10.0,
        "rss_settled_mb": (rss_settled * 10.0).round() / 10.0, "settle_s": (settle_s * 10.0).round() / 10.0,
    });
    if server.data.is_some() && server.pg_db.is_none() {
        // The largest the SQLite WAL file grew (it is cut back to `--wal-limit-bytes` under load).
        let wal_max = samples.iter().map(|s| s.wal_bytes).fold(0.0, f64::max) / 1e6;
        memory["wal_max_mb"] = json!((wal_max * 10.0).round() / 10.0);
    }
    if let (Some(conn), Some(closing), Some(closed)) = (
        phase_at(&phases, "connecting"),
        phase_at(&phases, "closing"),
        phase_at(&phases, "closed"),
    ) {
        // Idle runs: before the first connection, at the end of the hold, and after the close.
        let clients = gen_["connect"]["ready"].as_f64().unwrap_or(0.0);
        let before = at(&samples, conn - 0.3, |s| s.rss_kb).unwrap_or(0.0);
        let held = at(&samples, closing - 0.3, |s| s.rss_kb).unwrap_or(0.0);
        let last = samples.last().copied().unwrap_or_default();
        let after = last.rss_kb;
        memory["before_connect_mb"] = json!((before / 102.4).round() / 10.0);
        memory["connected_mb"] = json!((held / 102.4).round() / 10.0);
        memory["after_close_mb"] = json!((after / 102.4).round() / 10.0);
        // The target's "code pages aside": code that first ran after the start (sign-ups, joins) stays
        // mapped, and is not memory the server failed to give back.
        let code_aside = after / 1024.0 - (last.file_kb / 1024.0 - file0).max(0.0);
        memory["after_close_code_aside_mb"] = json!((code_aside * 10.0).round() / 10.0);
        if rss0 > 0.0 {
            memory["after_close_code_aside_vs_start"] =
                json!((code_aside / rss0 * 100.0).round() / 100.0);
        }
        memory["after_close_s"] = json!(((gen_ended - closed) * 10.0).round() / 10.0);
        if clients > 0.0 {
            memory["kb_per_connection"] = json!(((held - before) / clients * 10.0).round() / 10.0);
        }
        let conn_window = ledger(&samples, conn, closing);
        memory["connect_ledger"] = conn_window;
    }
    Ok(json!({
        "gen": gen_, "phases": phases, "ledger": whole, "memory": memory, "exit": exit,
        "store": store, "logs": logs, "accounts": accounts,
    }))
}

fn count_rows(a: &SuiteArgs, server: &Server) -> Value {
    let sql_rows = "select count(*) from messages";
    let sql_dups = "select count(*) from (select sender_id, client_id from messages where client_id is not null group by 1, 2 having count(*) > 1) d";
    if let Some(db) = &server.pg_db {
        let rows = psql(&a.postgres, db, sql_rows).ok();
        let dups = psql(&a.postgres, db, sql_dups).ok();
        return json!({ "rows": rows.and_then(|r| r.parse::<u64>().ok()), "dup_client_ids": dups.and_then(|r| r.parse::<u64>().ok()) });
    }
    let Some(dir) = &server.data else {
        return Value::Null;
    };
    let script = format!(
        "import sqlite3,sys\nc=sqlite3.connect(sys.argv[1])\nprint(c.execute('{sql_rows}').fetchone()[0], c.execute('{sql_dups}').fetchone()[0])"
    );
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(dir.join("chatroom.db"))
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let text = String::from_utf8_lossy(&o.stdout);
            let v: Vec<u64> = text
                .split_whitespace()
                .filter_map(|x| x.parse().ok())
                .collect();
            json!({ "rows": v.first(), "dup_client_ids": v.get(1) })
        }
        _ => Value::Null,
    }
}

/// Counts the server log's lines by level, and panics (never reads message bodies: chatroom does
/// not log them).
fn scan_log(path: &Path) -> Value {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Value::Null;
    };
    let mut levels: std::collections::BTreeMap<String, u64> = Default::default();
    let mut messages: std::collections::BTreeMap<String, u64> = Default::default();
    let mut panics = 0u64;
    for line in text.lines() {
        if line.contains("panicked") {
            panics += 1;
        }
        if let Ok(v) = serde_json::from_str::<Value>(line) {
            let level = v["level"].as_str().unwrap_or("?").to_owned();
            let msg: String = v["message"]
                .as_str()
                .or_else(|| v["fields"]["message"].as_str())
                .unwrap_or("")
                .chars()
                .take(80)
                .collect();
            *messages.entry(format!("{level} {msg}")).or_default() += 1;
            *levels.entry(level).or_default() += 1;
        }
    }
    let mut top: Vec<(String, u64)> = messages.into_iter().collect();
    top.sort_by_key(|x| std::cmp::Reverse(x.1));
    top.truncate(6);
    json!({ "levels": levels, "panics": panics, "top": top })
}

fn cleanup(a: &SuiteArgs, server: &Server) {
    if server.side == Side::Chatroom
        && let Some(dir) = &server.data
    {
        let _ = std::fs::remove_dir_all(dir);
    }
    if let Some(db) = &server.pg_db {
        let _ = psql(
            &a.postgres,
            "postgres",
            &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
        );
    }
    let _ = std::fs::remove_file(&server.log);
}

/// A SQLite database holding 1M messages (and the schema chatroom migrates to), made once.
fn seed_sqlite(a: &SuiteArgs, work: &Path, rooms: usize) -> anyhow::Result<PathBuf> {
    eprintln!("seeding a SQLite database with 1,000,000 messages");
    let ctx = RunCtx {
        a,
        exe: Path::new(""),
        work,
        n: 0,
        seeded: None,
    };
    let sc = Scenario {
        id: "seed",
        variant: String::new(),
        sides: vec![Side::Chatroom],
        db: Db::Sqlite,
        rooms,
        load: Vec::new(),
        server_args: Vec::new(),
        accounts_then: None,
        timeout_s: 0,
    };
    // chatroom creates the schema at start.
    let mut server = start_server(&ctx, &sc, Side::Chatroom, &[], true)?;
    stop_server(&mut server);
    // The schema may still be in the write-ahead log: seed the database where it is, fold the log
    // into it, then keep the one file.
    let dir = work.join("data-0");
    let db = work.join("seeded.db");
    let script = format!(
        r#"import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
ts = "2026-01-01T00:00:00.000000000+00:00"
c.execute("BEGIN")
c.execute("INSERT INTO users (name, email, password_hash, avatar, created_at, updated_at) VALUES ('seed', NULL, '!', '/avatar/default.svg', ?, ?)", (ts, ts))
uid = c.execute("SELECT id FROM users WHERE name = 'seed'").fetchone()[0]
c.execute("""WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000)
INSERT INTO messages (sender_id, room_id, room_type, kind, body, image, client_id, created_at)
SELECT ?, 'room' || (i % {rooms}), 'group', 'text', 'seeded message number ' || i, '', 'seed_' || i, ? FROM n""", (uid, ts))
c.execute("COMMIT")
print(c.execute("SELECT count(*) FROM messages").fetchone()[0])
c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
c.close()
"#
    );
    let t0 = Instant::now();
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(dir.join("chatroom.db"))
        .output()?;
    if !out.status.success() {
        bail!("seeding failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    std::fs::rename(dir.join("chatroom.db"), &db)?;
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!(
        "seeded {} rows in {:.1} s",
        String::from_utf8_lossy(&out.stdout).trim(),
        t0.elapsed().as_secs_f64()
    );
    Ok(db)
}

/// Waits until at most `busy_max` of all CPUs were busy over 2 s, or `max_s` passed; says so.
fn wait_quiet(max_s: u64, busy_max: f64) {
    let t0 = Instant::now();
    let mut last_said = 0u64;
    loop {
        let Some((b1, t1)) = sys::machine_ticks() else {
            return;
        };
        std::thread::sleep(Duration::from_secs(2));
        let Some((b2, t2)) = sys::machine_ticks() else {
            return;
        };
        let busy = (b2 - b1) as f64 / (t2 - t1).max(1) as f64;
        let waited = t0.elapsed().as_secs();
        if busy <= busy_max {
            if waited > 2 {
                eprintln!("   quiet (busy {busy:.2}) after waiting {waited} s");
            }
            return;
        }
        if waited >= max_s {
            eprintln!(
                "   NOT quiet (busy {busy:.2}) after {waited} s: running anyway; the run will likely be repeated"
            );
            return;
        }
        if waited >= last_said + 30 {
            eprintln!(
                "   waiting for a quiet machine: {:.0} % of the CPUs busy ({waited} s so far)",
                busy * 100.0
            );
            last_said = waited;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Marks steps dirty (other processes took CPU) or generator-bound, and decides whether the run is
/// repeated.
fn judge(record: &mut Value, foreign_max: f64, rt: bool) -> Value {
    if record.get("error").is_some() {
        return json!({ "dirty": false, "error": true });
    }
    let gen_ = &mut record["gen"];
    if gen_.get("aborted").is_some() {
        return json!({ "dirty": false, "aborted": true });
    }
    // Clean: other processes took at most `foreign_max` cores. Shielded: they took more, but the
    // server and the generator had real-time priority, so the others only had the CPU time they left.
    let class = |ledger: &Value| -> (bool, bool) {
        let foreign = ledger["foreign_cores"].as_f64().unwrap_or(1.0);
        let clean = foreign <= foreign_max;
        (clean, !clean && rt)
    };
    let mut dirty = false;
    let mut shielded_any = false;
    let mut gen_bound = false;
    if let Some(steps) = gen_.get_mut("steps").and_then(Value::as_array_mut) {
        for step in steps {
            let (clean, shielded) = class(&step["ledger"]);
            let gen_cores = step["ledger"]["gen_cores"].as_f64().unwrap_or(0.0);
            let lag = step["send_lag_ms"]["p99"].as_f64().unwrap_or(0.0);
            let g = gen_cores > 0.9 || lag > 20.0;
            step["clean"] = json!(clean);
            step["shielded"] = json!(shielded);
            step["gen_bound"] = json!(g);
            dirty |= !clean && !shielded;
            shielded_any |= shielded;
            gen_bound |= g;
        }
    }
    let whole_foreign = record["ledger"]["foreign_cores"].as_f64().unwrap_or(1.0);
    let idle = record["gen"]["steps"].as_array().is_none_or(Vec::is_empty);
    let mut whole_shielded = false;
    if idle {
        // Idle and connect runs are judged over the whole generator run.
        let (clean, shielded) = class(&record["ledger"]);
        dirty = !clean && !shielded;
        shielded_any = shielded;
        whole_shielded = shielded;
    }
    json!({
        "dirty": dirty, "shielded": shielded_any, "whole_shielded": whole_shielded, "gen_bound": gen_bound,
        "foreign_cores": whole_foreign, "realtime": rt,
        "server_wait": record["ledger"]["server_wait"], "gen_wait": record["ledger"]["gen_wait"],
    })
}

/// What the results say about the machine.
fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_default();
    let mem_kb: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cmd = |c: &str, a: &[&str]| {
        Command::new(c)
            .args(a)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu_model": model, "mem_gb": (mem_kb as f64 / 1048576.0).round(),
        "kernel": kernel.trim(), "node": cmd("node", &["--version"]),
        "rustc": cmd("rustc", &["--version"]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_runs_surround_chatroom_runs() {
        let both = [Side::Peer, Side::Chatroom];
        let names = |v: Vec<Side>| v.into_iter().map(Side::name).collect::<Vec<_>>().join(" ");
        assert_eq!(names(order(&both, 1, false)), "peer chatroom peer");
        assert_eq!(
            names(order(&both, 2, false)),
            "peer chatroom peer chatroom peer"
        );
        assert_eq!(
            names(order(&[Side::Chatroom], 2, false)),
            "chatroom chatroom"
        );
        assert_eq!(names(order(&both, 3, true)), "peer chatroom");
    }

    #[test]
    fn the_ledger_leaves_other_processes_as_foreign() {
        let s = |t: f64, busy: f64, srv: f64, gen_: f64| Sample {
            t,
            busy,
            srv,
            gen_,
            own: 0.0,
            db: 0.0,
            rss_kb: 1024.0,
            file_kb: 512.0,
            srv_wait: t * 0.01,
            gen_wait: 0.0,
            wal_bytes: 0.0,
        };
        // Over 10 s: 1000 busy ticks, the server 600, the generator 300: 0.1 core foreign.
        let samples = [s(0.0, 0.0, 0.0, 0.0), s(10.0, 1000.0, 600.0, 300.0)];
        let l = ledger(&samples, 0.0, 10.0);
        assert_eq!(l["server_cores"], json!(0.6));
        assert_eq!(l["gen_cores"], json!(0.3));
        assert_eq!(l["foreign_cores"], json!(0.1));
        assert_eq!(l["server_wait"], json!(0.01));
        // Interpolated inside the samples.
        let half = ledger(&samples, 0.0, 5.0);
        assert_eq!(half["server_cores"], json!(0.6));
    }

    #[test]
    fn every_full_scenario_is_there() {
        let ids: std::collections::BTreeSet<&str> = scenarios(false).iter().map(|s| s.id).collect();
        assert_eq!(
            ids.into_iter().collect::<Vec<_>>(),
            ["S1", "S2", "S3", "S4", "S5", "S6", "S7", "S8"]
        );
    }
}
