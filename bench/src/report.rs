//! `BENCHMARKS.md` and its charts, from the raw results only (`bench/results/*.jsonl`), so that the
//! report can be rewritten at any time, and a later suite on a newer commit shows up beside the
//! earlier ones ("before" and "after").
//!
//! Figures are medians over clean measurements: a step counts when other processes took at most
//! `--foreign-max` cores during its window and the generator was not the bottleneck; an idle or
//! connect run counts when its whole run was clean. Ratios are chatroom ÷ the peer measured in the
//! same suite.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde_json::Value;

use crate::svg::{Chart, PALETTE, Series, line_chart};

#[derive(Debug, Clone, clap::Args)]
pub struct ReportArgs {
    /// Results files, or folders of `*.jsonl` files.
    #[arg(long, default_value = "bench/results")]
    pub results: Vec<PathBuf>,
    /// The report to write.
    #[arg(long, default_value = "BENCHMARKS.md")]
    pub markdown: PathBuf,
    /// Where the charts go (linked from the report by a path relative to it).
    #[arg(long, default_value = "docs/bench")]
    pub charts: PathBuf,
    /// Hand-written sections included verbatim (`*.md`, in name order): validation, profile.
    #[arg(long, default_value = "bench/report")]
    pub notes: PathBuf,
    /// Print nothing when all went well.
    #[arg(long)]
    pub quiet: bool,
}

/// Runs the report.
pub fn run(a: &ReportArgs) -> anyhow::Result<()> {
    let mut records = Vec::new();
    for p in &a.results {
        load(p, &mut records)?;
    }
    // Full-suite results are reported; quick ones only when there is nothing else (smoke runs).
    let full: Vec<Value> = records
        .iter()
        .filter(|r| r["mode"] == "full")
        .cloned()
        .collect();
    let records = if full.is_empty() { records } else { full };
    std::fs::create_dir_all(&a.charts)?;
    let md = render(&records, a)?;
    if let Some(dir) = a.markdown.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&a.markdown, md)?;
    if !a.quiet {
        eprintln!(
            "wrote {} from {} runs, charts in {}",
            a.markdown.display(),
            records.len(),
            a.charts.display()
        );
    }
    Ok(())
}

fn load(path: &Path, out: &mut Vec<Value>) -> anyhow::Result<()> {
    if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
            .collect();
        files.sort();
        for f in files {
            load(&f, out)?;
        }
        return Ok(());
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    out.extend(
        text.lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok()),
    );
    Ok(())
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        f64::midpoint(v[n / 2 - 1], v[n / 2])
    })
}

/// A median, and whether it came from shielded measurements (no clean one was there).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Fig {
    v: Option<f64>,
    shielded: bool,
}

impl From<Option<f64>> for Fig {
    fn from(v: Option<f64>) -> Self {
        Self { v, shielded: false }
    }
}

/// Marks a figure taken from shielded measurements.
const SHIELDED: &str = " †";

fn num(f: impl Into<Fig>) -> String {
    let f = f.into();
    let text = match f.v {
        None => return "—".to_owned(),
        Some(x) if x.fract() == 0.0 => format!("{x:.0}"),
        Some(x) if x.abs() >= 100.0 => format!("{x:.0}"),
        Some(x) if x.abs() >= 10.0 => format!("{x:.1}"),
        Some(x) => format!("{x:.2}"),
    };
    if f.shielded {
        format!("{text}{SHIELDED}")
    } else {
        text
    }
}

fn ratio(cr: impl Into<Fig>, peer: impl Into<Fig>) -> String {
    let (cr, peer) = (cr.into(), peer.into());
    match (cr.v, peer.v) {
        (Some(c), Some(p)) if p > 0.0 => {
            let r = num(Some(c / p));
            if cr.shielded || peer.shielded {
                format!("×{r}{SHIELDED}")
            } else {
                format!("×{r}")
            }
        }
        _ => "—".to_owned(),
    }
}

/// Follows a path of keys (`"a.b.c"`) into a JSON value.
fn get<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(v, |v, k| &v[k])
}

/// The results of one commit's suites.
struct Commit<'a> {
    label: String,
    date: f64,
    recs: Vec<&'a Value>,
}

impl<'a> Commit<'a> {
    fn runs(
        &self,
        scenario: &str,
        variant: &str,
        target: &str,
    ) -> impl Iterator<Item = &'a Value> + '_ {
        let (s, v, t) = (scenario.to_owned(), variant.to_owned(), target.to_owned());
        self.recs.iter().copied().filter(move |r| {
            r["scenario"] == s.as_str() && r["variant"] == v.as_str() && r["target"] == t.as_str()
        })
    }

    /// A run-level figure: median over clean runs, or else over shielded ones.
    fn run_median(&self, scenario: &str, variant: &str, target: &str, path: &str) -> Fig {
        let pick = |shielded: bool| {
            median(
                self.runs(scenario, variant, target)
                    .filter(|r| run_usable(r) && run_shielded(r) == shielded)
                    .filter_map(|r| get(r, path).as_f64())
                    .collect(),
            )
        };
        match pick(false) {
            Some(v) => Fig {
                v: Some(v),
                shielded: false,
            },
            None => Fig {
                v: pick(true),
                shielded: true,
            },
        }
    }

    /// A step figure: median over clean steps at `rate`, or else over shielded ones.
    fn step_median(
        &self,
        scenario: &str,
        variant: &str,
        target: &str,
        rate: f64,
        path: &str,
    ) -> Fig {
        let pick = |shielded: bool| {
            median(
                self.runs(scenario, variant, target)
                    .filter(|r| r["run"].get("error").is_none())
                    .flat_map(|r| r["run"]["gen"]["steps"].as_array().into_iter().flatten())
                    .filter(|s| s["rate"].as_f64() == Some(rate) && step_usable(s, shielded))
                    .filter(|s| measured(s, path))
                    .filter_map(|s| get(s, path).as_f64())
                    .collect(),
            )
        };
        match pick(false) {
            Some(v) => Fig {
                v: Some(v),
                shielded: false,
            },
            None => Fig {
                v: pick(true),
                shielded: true,
            },
        }
    }

    fn variants(&self, scenario: &str) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in &self.recs {
            if r["scenario"] == scenario
                && let Some(v) = r["variant"].as_str()
                && !out.iter().any(|x| x == v)
            {
                out.push(v.to_owned());
            }
        }
        out
    }

    fn rates(&self, scenario: &str, variant: &str) -> Vec<f64> {
        let mut out: Vec<f64> = Vec::new();
        for r in self
            .recs
            .iter()
            .filter(|r| r["scenario"] == scenario && r["variant"] == variant)
        {
            for s in r["run"]["gen"]["steps"].as_array().into_iter().flatten() {
                if let Some(x) = s["rate"].as_f64()
                    && !out.contains(&x)
                {
                    out.push(x);
                }
            }
        }
        out.sort_by(f64::total_cmp);
        out
    }
}

/// Whether a histogram figure (`latency_ms.p99`, …) had anything to measure: a step where nothing
/// was delivered has no latency, not a latency of 0.
fn measured(step: &Value, path: &str) -> bool {
    match path.rsplit_once('.') {
        Some((parent, _)) => get(step, parent)["n"].as_u64() != Some(0),
        None => true,
    }
}

/// A run measured without disturbance (clean) or shielded from it, that ran to its end.
fn run_usable(r: &Value) -> bool {
    r["verdict"]["dirty"] == false
        && r["run"].get("error").is_none()
        && r["run"]["gen"].get("aborted").is_none()
}

/// Whether a usable run was only shielded, not clean.
fn run_shielded(r: &Value) -> bool {
    r["verdict"]["shielded"] == true
}

fn step_usable(s: &Value, shielded: bool) -> bool {
    let ok = if shielded {
        s["shielded"] == true
    } else {
        s["clean"] == true
    };
    ok && s["gen_bound"] != true
}

fn step_clean(s: &Value) -> bool {
    step_usable(s, false) || step_usable(s, true)
}

fn commits(records: &[Value]) -> Vec<Commit<'_>> {
    let mut by: BTreeMap<String, Commit<'_>> = BTreeMap::new();
    for r in records {
        let label = r["commit"].as_str().unwrap_or("?").to_owned();
        let date = r["date"].as_f64().unwrap_or(0.0);
        let c = by.entry(label.clone()).or_insert(Commit {
            label,
            date,
            recs: Vec::new(),
        });
        c.date = c.date.min(date);
        c.recs.push(r);
    }
    let mut out: Vec<Commit<'_>> = by.into_values().collect();
    out.sort_by(|a, b| a.date.total_cmp(&b.date));
    out
}

fn day(unix: f64) -> String {
    // Civil date from days since the epoch (proleptic Gregorian), without a date library.
    let days = (unix / 86_400.0).floor() as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

const METHOD: &str = r"## Method

- **One command.** `scripts/bench` builds chatroom and `chatroom-bench` (release), installs the peer's npm
  packages into `~/.cache/chatroom-bench/peer` if missing, runs `chatroom-bench suite`, and rewrites this file
  with `chatroom-bench report` from the raw results in [`bench/results/`](bench/results/) (one JSON line per run,
  labelled with the chatroom commit measured). `scripts/bench --report` rewrites it from those files alone;
  `scripts/bench --quick` is the CI smoke run (small scenarios, debug builds, no thresholds).
- **The peer** is [`bench/peer/server.js`](bench/peer/server.js): plain socket.io 4.8 on Node, joining the room
  named by `?room=` and sending every `chat` event on to the rest of that room. It is what one would deploy
  without chatroom; it stores nothing and checks nobody. `PEER_SERVER=…` measures another peer script.
- **The generator** is `chatroom-bench load`: one process, one thread (tokio's current-thread runtime), one task
  per connection, speaking Engine.IO 4 or 3 over tokio-tungstenite directly. It sends open-loop (message *n* of
  a step is due at *start + n / rate*, whatever the server answers); each message carries the time it was
  written to its socket, and a recipient's latency is its receive time minus that, recorded in an HDR
  histogram (1 µs to 10 min, 3 significant digits). Steps have a warm-up, then a measurement window;
  messages count in the window they were sent in, so late deliveries, echoes and acks still count.
- **chatroom's real path.** One account per client (`POST /api/user/signup`, or `signin` for accounts made
  before), the token in the Socket.IO CONNECT `auth` payload (in the query for Engine.IO 3), `room` with an ack
  (the client is ready when it is acknowledged), `login` where the scenario says so (the v3 web client sends
  it), then `message {msg, img, roomid, clientId}` with an ack, `msg` starting with the send time. The
  sender's own echo is counted apart from deliveries. A message that got neither an ack nor a refusal by the
  end of the drain is **unanswered**. Presence (`room`, `roomout`) and `count` frames are counted in bytes.
  Server flags: `--bcrypt-cost 4 --signup-per-hour 1000000 --socket-events-per-second 100000
  --max-connections-per-ip 1000000 --rooms room0,…` (the generator is one address standing in for thousands
  of clients, so the per-address limits meant for one hostile host are lifted), a fresh data directory per run (a fresh PostgreSQL database for PostgreSQL runs, dropped after).
- **Pinning and the CPU ledger.** The server runs on CPU 0, the generator on CPU 1 (`taskset`), both with
  real-time round-robin priority 1 (`chrt -r 1`), so that the other processes of this shared machine only get
  the CPU time they leave idle and a woken server or generator takes its CPU back at once. A sampler reads
  `/proc` every 250 ms: the machine's busy time, the server's, the generator's, the suite's own and that of the
  PostgreSQL backends serving the run's database (and, for information, the scheduler's run delay of their
  threads). The rest of the busy time is *foreign*: other processes. A measurement window is **clean** when
  foreign processes took at most 0.05 cores. When they took more, it is **shielded** (figures marked †): the
  measured processes had priority, but they shared caches and memory bandwidth with busy neighbours, so
  shielded figures are a little worse than clean ones would be. Before each run the suite waits for the
  machine to be quiet (at most 8 % of both CPUs busy over 2 s, up to a limit); clean windows are used when
  there are any, shielded ones otherwise. Without real-time priority (not root, or `--sched normal`) a
  disturbed window is dirty and its run is repeated. Real-time priority also changes how a server's own
  threads share its one core (in turns of up to 100 ms instead of a few ms): that matters when chatroom has
  heavy work off its event loop, as bcrypt in S6, whose runs are therefore also made with ordinary scheduling. A window where the generator used more than 0.9 of its core or sent more than
  20 ms late (p99) measured the generator: it is left out.
- **A-B-A.** Within a scenario, runs alternate peer, chatroom, peer (more rounds with `--reps`), so that both are
  measured under the same conditions. Figures are medians of the clean measurements; ratios are chatroom ÷ the
  peer of the same suite. Absolute times on a shared 2-core virtual machine move from hour to hour; ratios
  move much less.
- **Memory** is the server's resident set (`VmRSS`): before the first connection (after the sign-ups), after
  all connections have been held for 8 s, and 10 s after the last one closed.
";

/// Renders the whole report.
fn render(records: &[Value], a: &ReportArgs) -> anyhow::Result<String> {
    let commits = commits(records);
    let mut o = String::new();
    o.push_str("# Benchmarks\n\n");
    o.push_str(
        "chatroom measured by its own generator, side by side with a plain Node socket.io 4.8 server doing the \
         least a chat room needs (the *peer*), on the same 2-core machine, in the same runs. This file is \
         written by `scripts/bench` (`chatroom-bench report`) from the raw results in `bench/results/`; do not \
         edit it by hand: edit `bench/report/*.md` (included as they are) or the generator instead.\n\n",
    );
    let _ = writeln!(
        o,
        "Run it: `scripts/bench` (full suite, about 40 minutes on a quiet machine), `scripts/bench --only S2,S4`, \
         `scripts/bench --quick` (smoke run), `scripts/bench --report` (rewrite this file).\n"
    );
    if commits.is_empty() {
        o.push_str("No results yet.\n");
        return Ok(o);
    }
    let _ = writeln!(
        o,
        "Figures are medians of clean measurements; those marked{SHIELDED} come from *shielded* ones (other \
         processes were busy, but the measured processes had real-time priority over them): see Method. \
         Ratios are chatroom ÷ peer, so above 1 means chatroom needs more (time, memory) or, for rates, \
         achieves more.\n"
    );
    o.push_str("Measured:\n\n");
    for c in &commits {
        let clean = c
            .recs
            .iter()
            .filter(|r| r["verdict"]["dirty"] == false)
            .count();
        let _ = writeln!(
            o,
            "- chatroom `{}`, {} ({} runs, {} of them clean or used for their clean steps)",
            c.label,
            day(c.date),
            c.recs.len(),
            clean
        );
    }
    o.push('\n');
    // Hand-written sections: `0-*.md` right here (findings), the others after the figures.
    let mut notes: Vec<PathBuf> = std::fs::read_dir(&a.notes)
        .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    notes.retain(|p| p.extension().is_some_and(|e| e == "md"));
    // By the number each name starts with (`10-…` after `9-…`), then by name.
    notes.sort_by_key(|p| {
        let name = p
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let number: u32 = name
            .split('-')
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(u32::MAX);
        (number, name)
    });
    let (first, later): (Vec<PathBuf>, Vec<PathBuf>) = notes.into_iter().partition(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("0-"))
    });
    for p in first {
        let text = std::fs::read_to_string(&p)?;
        o.push_str(text.trim_end());
        o.push_str("\n\n");
    }
    let rel = relative_charts(&a.markdown, &a.charts);
    charts(&commits, &a.charts, &rel, &mut o)?;
    if commits.len() > 1 {
        before_after(&commits, &mut o);
    }
    for c in commits.iter().rev() {
        commit_section(c, &mut o);
    }
    for p in later {
        let text = std::fs::read_to_string(&p)?;
        o.push_str(text.trim_end());
        o.push_str("\n\n");
    }
    o.push_str(METHOD);
    o.push('\n');
    machine_section(records, &mut o);
    Ok(o)
}

fn relative_charts(md: &Path, charts: &Path) -> String {
    let base = md.parent().unwrap_or(Path::new(""));
    charts
        .strip_prefix(base)
        .unwrap_or(charts)
        .display()
        .to_string()
}

fn machine_section(records: &[Value], o: &mut String) {
    let Some(m) = records
        .iter()
        .rev()
        .map(|r| &r["machine"])
        .find(|m| m.is_object())
    else {
        return;
    };
    let _ = writeln!(
        o,
        "## Machine\n\n{} CPUs ({}), {} GB of memory, Linux {}, {}, Node {}. A shared virtual machine: other \
         sessions build and test on it, which is what the CPU ledger is for. `perf` has no hardware counters \
         here (`perf stat -e instructions` is not supported), so profiles are taken with valgrind's callgrind.\n",
        m["cpus"],
        m["cpu_model"].as_str().unwrap_or("?"),
        m["mem_gb"],
        m["kernel"].as_str().unwrap_or("?"),
        m["rustc"].as_str().unwrap_or("?"),
        m["node"].as_str().unwrap_or("?"),
    );
}

/// Lowest rate whose p99 passes 50 ms or whose deliveries fall below 99 %.
fn knee(c: &Commit<'_>, variant: &str, target: &str) -> String {
    let rates = c.rates("S2", variant);
    let mut last_ok = None;
    for r in &rates {
        let p99 = c.step_median("S2", variant, target, *r, "latency_ms.p99").v;
        let pct = c.step_median("S2", variant, target, *r, "delivered_pct").v;
        match (p99, pct) {
            (Some(p), Some(d)) if p > 50.0 || d < 99.0 => {
                return match last_ok {
                    Some(ok) => format!("between {ok} and {r} msg/s"),
                    None => format!("below {r} msg/s"),
                };
            }
            (Some(_), Some(_)) => last_ok = Some(*r),
            _ => {}
        }
    }
    match last_ok {
        Some(ok) => format!("above {ok} msg/s (not reached)"),
        None => "not measured cleanly".to_owned(),
    }
}

fn commit_section(c: &Commit<'_>, o: &mut String) {
    let _ = writeln!(o, "## chatroom `{}` ({})\n", c.label, day(c.date));
    s1(c, o);
    steps_table(c, "S2", "S2: one room of 1,000, 10 senders, rate rising", o);
    s2_extra(c, o);
    steps_table(c, "S3", "S3: one room of 5,000 at 10 msg/s", o);
    steps_table(c, "S4", "S4: 50 rooms of 20, 100 senders, 2,000 msg/s", o);
    s5(c, o);
    s6(c, o);
    s7(c, o);
    steps_table(c, "S8", "S8: overload", o);
    gaps(c, o);
}

fn s1(c: &Commit<'_>, o: &mut String) {
    let variants = c.variants("S1");
    if variants.is_empty() {
        return;
    }
    o.push_str("### S1: idle connections (chatroom: signed in, 200 rooms)\n\n");
    o.push_str(
        "| connections | figure | peer | chatroom | chatroom ÷ peer |\n|---|---|---|---|---|\n",
    );
    let rows = [
        ("KB per connection", "run.memory.kb_per_connection"),
        ("RSS, all connected (MB)", "run.memory.connected_mb"),
        (
            "RSS before the first connection (MB)",
            "run.memory.before_connect_mb",
        ),
        (
            "RSS 10 s after the last close (MB)",
            "run.memory.after_close_mb",
        ),
        ("RSS at start (MB)", "run.memory.rss0_mb"),
        (
            "RSS 10 s after the last close, code first run since the start set aside (MB)",
            "run.memory.after_close_code_aside_mb",
        ),
        (
            "the same ÷ RSS at start (target ≤ 1.2)",
            "run.memory.after_close_code_aside_vs_start",
        ),
        ("connects per second", "run.gen.connect.per_second"),
        (
            "server CPU while connecting (cores)",
            "run.memory.connect_ledger.server_cores",
        ),
    ];
    for v in &variants {
        for (name, path) in rows {
            let p = c.run_median("S1", v, "peer", path);
            let r = c.run_median("S1", v, "chatroom", path);
            let _ = writeln!(
                o,
                "| {v} | {name} | {} | {} | {} |",
                num(p),
                num(r),
                ratio(r, p)
            );
        }
    }
    o.push('\n');
}

fn steps_table(c: &Commit<'_>, scenario: &str, title: &str, o: &mut String) {
    let variants = c.variants(scenario);
    if variants.is_empty() {
        return;
    }
    let _ = writeln!(o, "### {title}\n");
    o.push_str(
        "| variant | msg/s | p50 ms peer | p50 ms chatroom | p99 ms peer | p99 ms chatroom | p99 ÷ peer | delivered % peer | delivered % chatroom | server µs per delivery peer | chatroom | server cores peer | chatroom | unanswered (chatroom) |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for v in &variants {
        for rate in c.rates(scenario, v) {
            let m = |t: &str, p: &str| c.step_median(scenario, v, t, rate, p);
            let (p50p, p50c) = (m("peer", "latency_ms.p50"), m("chatroom", "latency_ms.p50"));
            let (p99p, p99c) = (m("peer", "latency_ms.p99"), m("chatroom", "latency_ms.p99"));
            let _ = writeln!(
                o,
                "| {v} | {rate} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                num(p50p),
                num(p50c),
                num(p99p),
                num(p99c),
                ratio(p99c, p99p),
                num(m("peer", "delivered_pct")),
                num(m("chatroom", "delivered_pct")),
                num(m("peer", "server_us_per_delivery")),
                num(m("chatroom", "server_us_per_delivery")),
                num(m("peer", "ledger.server_cores")),
                num(m("chatroom", "ledger.server_cores")),
                num(m("chatroom", "unanswered")),
            );
        }
    }
    o.push('\n');
    if scenario == "S8" {
        let ceiling = c
            .rates("S5", "sqlite")
            .into_iter()
            .filter_map(|r| {
                c.step_median("S5", "sqlite", "chatroom", r, "ack_ok_per_s")
                    .v
            })
            .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));
        if let Some(ceiling) = ceiling {
            let _ = writeln!(
                o,
                "chatroom's sustainable rate in this shape (S5, fresh SQLite) was {} msg/s committed.\n",
                num(Some(ceiling))
            );
        }
        for v in &variants {
            let totals = |p: &str| c.run_median(scenario, v, "chatroom", p);
            let refusals: Vec<String> = c
                .runs(scenario, v, "chatroom")
                .filter(|r| run_usable(r) || r["run"]["gen"]["steps"].is_array())
                .filter_map(|r| r["run"]["gen"]["totals"]["ack_err"].as_object())
                .flat_map(|m| m.iter().map(|(k, n)| format!("{k}: {n}")))
                .collect();
            let _ = writeln!(
                o,
                "Whole run, {v} (chatroom, median of clean runs): sent {}, acknowledged {}, unanswered {}; refusals seen: {}.\n",
                num(totals("run.gen.totals.sent")),
                num(totals("run.gen.totals.ack_ok")),
                num(totals("run.gen.totals.unanswered")),
                if refusals.is_empty() {
                    "none".to_owned()
                } else {
                    refusals.join(", ")
                }
            );
        }
    }
}

fn s2_extra(c: &Commit<'_>, o: &mut String) {
    let variants = c.variants("S2");
    for v in &variants {
        let j = |t: &str, p: &str| {
            median(
                c.runs("S2", v, t)
                    .filter(|r| r["run"].get("error").is_none())
                    .filter_map(|r| get(r, p).as_f64())
                    .collect(),
            )
        };
        let (jp, jc) = (
            j("peer", "run.gen.connect.seconds"),
            j("chatroom", "run.gen.connect.seconds"),
        );
        let _ = writeln!(
            o,
            "Join of the 1,000 (connect, and for chatroom `room` acknowledged): peer {} s, chatroom {} s ({}); presence and \
             count frames received while joining: chatroom {} MB. Knee (p99 over 50 ms or under 99 % delivered): peer {}, \
             chatroom {}. (Join figures are medians of every run: the ledger judges the sending windows.)\n",
            num(jp),
            num(jc),
            ratio(jc, jp),
            num(j("chatroom", "run.gen.connect.presence_mb")),
            knee(c, v, "peer"),
            knee(c, v, "chatroom"),
        );
    }
}

fn s5(c: &Commit<'_>, o: &mut String) {
    let variants = c.variants("S5");
    if variants.is_empty() {
        return;
    }
    o.push_str("### S5: persistence (chatroom only: 50 rooms of 2, all 100 clients send)\n\n");
    o.push_str(
        "A stored message is acknowledged after its transaction commits, so acknowledgements per second are \
         messages committed per second. chatroom has no mode without persistence, so S4 cannot be compared \
         with one.\n\n",
    );
    o.push_str("| database | offered msg/s | committed msg/s | ack p50 ms | ack p99 ms | delivered % | unanswered | rows stored (whole run) |\n|---|---|---|---|---|---|---|---|\n");
    for v in &variants {
        let rows = c.run_median("S5", v, "chatroom", "run.store.rows");
        for rate in c.rates("S5", v) {
            let m = |p: &str| c.step_median("S5", v, "chatroom", rate, p);
            let _ = writeln!(
                o,
                "| {v} | {rate} | {} | {} | {} | {} | {} | {} |",
                num(m("ack_ok_per_s")),
                num(m("ack_latency_ms.p50")),
                num(m("ack_latency_ms.p99")),
                num(m("delivered_pct")),
                num(m("unanswered")),
                num(rows),
            );
        }
    }
    o.push('\n');
}

fn s6(c: &Commit<'_>, o: &mut String) {
    let variants: Vec<String> = c.variants("S6");
    if variants.is_empty() {
        return;
    }
    o.push_str("### S6: sign-up and sign-in while S2 runs (chatroom, bcrypt cost 10)\n\n");
    let ceiling = c.run_median(
        "S6",
        "bcrypt ceiling",
        "machine",
        "run.bcrypt.per_core_per_s",
    );
    let ms_hash = c.run_median("S6", "bcrypt ceiling", "machine", "run.bcrypt.ms_per_hash");
    let _ = writeln!(
        o,
        "bcrypt ceiling: {} ms per cost-10 hash on one core, so at most {} sign-ups or sign-ins per second on the \
         server's one core.\n",
        num(ms_hash),
        num(ceiling)
    );
    o.push_str(
        "With real-time priority (how the suite shields runs from the machine's other work), chatroom's \
         bcrypt threads and its event loop take the one core in turns of up to 100 ms, so messages wait \
         behind hashes far longer than under the ordinary scheduler; runs marked *ordinary scheduling* \
         show what a deployment sees.\n\n",
    );
    o.push_str("| variant | figure | value | ÷ ceiling |\n|---|---|---|---|\n");
    for v in variants.iter().filter(|v| v.as_str() != "bcrypt ceiling") {
        let runs: Vec<&Value> = c
            .runs("S6", v, "chatroom")
            .filter(|r| r["run"].get("error").is_none())
            .collect();
        let med = |p: &str| median(runs.iter().filter_map(|r| get(r, p).as_f64()).collect());
        for (name, path, vs) in [
            (
                "sign-ups per second",
                "run.gen.auth_load.signup.per_second",
                true,
            ),
            (
                "sign-up p99 ms",
                "run.gen.auth_load.signup.latency_ms.p99",
                false,
            ),
            (
                "sign-ins per second",
                "run.gen.auth_load.signin.per_second",
                true,
            ),
            (
                "sign-in p99 ms",
                "run.gen.auth_load.signin.latency_ms.p99",
                false,
            ),
        ] {
            let x = med(path);
            let _ = writeln!(
                o,
                "| {v} | {name} | {} | {} |",
                num(x),
                if vs {
                    ratio(x, ceiling).replace('×', "")
                } else {
                    String::new()
                }
            );
        }
        let p99 = c.step_median("S6", v, "chatroom", 50.0, "latency_ms.p99");
        let base = c.step_median("S2", "one room of 1000", "chatroom", 50.0, "latency_ms.p99");
        let _ = writeln!(
            o,
            "| {v} | message p99 ms at 50 msg/s during the sign-ups (S2 alone: {}) | {} | |",
            num(base),
            num(p99)
        );
    }
    o.push('\n');
}

fn s7(c: &Commit<'_>, o: &mut String) {
    let variants = c.variants("S7");
    if variants.is_empty() {
        return;
    }
    o.push_str("### S7: connect storm (every connection opened at once; chatroom: accounts made first, `room` joined)\n\n");
    o.push_str("| variant | figure | peer | chatroom | chatroom ÷ peer |\n|---|---|---|---|---|\n");
    for v in &variants {
        for (name, path) in [
            ("all ready after (s)", "run.gen.connect.seconds"),
            ("connects per second", "run.gen.connect.per_second"),
            ("per-connection p50 ms", "run.gen.connect.latency_ms.p50"),
            ("per-connection p99 ms", "run.gen.connect.latency_ms.p99"),
            ("failed", "run.gen.connect.failed"),
            ("server RSS peak (MB)", "run.memory.rss_max_mb"),
        ] {
            let p = c.run_median("S7", v, "peer", path);
            let r = c.run_median("S7", v, "chatroom", path);
            let _ = writeln!(
                o,
                "| {v} | {name} | {} | {} | {} |",
                num(p),
                num(r),
                ratio(r, p)
            );
        }
    }
    o.push('\n');
}

/// Scenario, variant and target.
type RunKey = (String, String, String);

/// A headline figure of one commit for one target.
type Figure = dyn Fn(&Commit<'_>, &str) -> Fig;

/// Scenario/target pairs without a clean figure, and why.
fn gaps(c: &Commit<'_>, o: &mut String) {
    let mut seen: BTreeMap<RunKey, (usize, usize, Vec<String>)> = BTreeMap::new();
    for r in &c.recs {
        let key = (
            r["scenario"].as_str().unwrap_or("?").to_owned(),
            r["variant"].as_str().unwrap_or("?").to_owned(),
            r["target"].as_str().unwrap_or("?").to_owned(),
        );
        let e = seen.entry(key).or_default();
        e.0 += 1;
        let steps = r["run"]["gen"]["steps"].as_array();
        let usable = run_usable(r) || steps.is_some_and(|s| s.iter().any(step_clean));
        if usable {
            e.1 += 1;
        }
        if let Some(err) = r["run"]["error"].as_str() {
            e.2.push(format!("error: {err}"));
        } else if let Some(why) = r["run"]["gen"]["aborted"].as_str() {
            e.2.push(format!("stopped: {why}"));
        } else if r["verdict"]["dirty"] == true {
            e.2.push(format!("foreign CPU {}", r["verdict"]["foreign_cores"]));
        }
        if r["verdict"]["gen_bound"] == true {
            e.2.push("generator-bound step".to_owned());
        }
    }
    let bad: Vec<_> = seen.iter().filter(|(_, v)| v.1 < v.0).collect();
    if bad.is_empty() {
        return;
    }
    o.push_str("### Runs not used\n\n| scenario | variant | target | runs | usable | why not |\n|---|---|---|---|---|---|\n");
    for ((s, v, t), (n, ok, why)) in bad {
        let mut why = why.clone();
        why.dedup();
        let _ = writeln!(
            o,
            "| {s} | {v} | {t} | {n} | {ok} | {} |",
            why.join("; ").replace('|', "/")
        );
    }
    o.push('\n');
}

fn before_after(commits: &[Commit<'_>], o: &mut String) {
    o.push_str("## Before and after\n\nHeadline figures of each commit measured (chatroom, and its ratio to the peer of the same suite).\n\n|");
    o.push_str(" figure |");
    for c in commits {
        let _ = write!(o, " `{}` |", c.label);
    }
    o.push_str("\n|---|");
    for _ in commits {
        o.push_str("---|");
    }
    o.push('\n');
    let rows: [(&str, &Figure); 6] = [
        ("S1 KB per connection at 10k", &|c, t| {
            c.run_median("S1", "10000 idle", t, "run.memory.kb_per_connection")
        }),
        ("S2 p99 ms at 100 msg/s", &|c, t| {
            c.step_median("S2", "one room of 1000", t, 100.0, "latency_ms.p99")
        }),
        ("S2 join of 1,000 (s)", &|c, t| {
            c.run_median("S2", "one room of 1000", t, "run.gen.connect.seconds")
        }),
        ("S4 p99 ms", &|c, t| {
            c.step_median("S4", "50 rooms of 20", t, 2000.0, "latency_ms.p99")
        }),
        ("S4 with login p99 ms", &|c, t| {
            c.step_median("S4", "50 rooms of 20, login", t, 2000.0, "latency_ms.p99")
        }),
        (
            "S5 committed msg/s, SQLite 1M rows, 10k offered",
            &|c, t| c.step_median("S5", "sqlite-1M", t, 10000.0, "ack_ok_per_s"),
        ),
    ];
    for (name, f) in rows {
        let _ = write!(o, "| {name} |");
        for c in commits {
            let cr = f(c, "chatroom");
            let p = f(c, "peer");
            let _ = write!(o, " {} ({}) |", num(cr), ratio(cr, p));
        }
        o.push('\n');
    }
    o.push('\n');
}

fn charts(commits: &[Commit<'_>], dir: &Path, rel: &str, o: &mut String) -> anyhow::Result<()> {
    // Latency against offered load (S2).
    let mut lat = Vec::new();
    let mut color = 0usize;
    let peer_commit = commits.last();
    let mut add = |lat: &mut Vec<Series>, c: &Commit<'_>, target: &str, name: String| {
        let pts = |q: &str| -> Vec<(f64, f64)> {
            c.rates("S2", "one room of 1000")
                .into_iter()
                .filter_map(|r| {
                    c.step_median("S2", "one room of 1000", target, r, q)
                        .v
                        .map(|y| (r, y))
                })
                .collect()
        };
        let col = PALETTE[color % PALETTE.len()];
        color += 1;
        lat.push(Series {
            name: format!("{name} p99"),
            points: pts("latency_ms.p99"),
            color: col,
            dashed: false,
        });
        lat.push(Series {
            name: format!("{name} p50"),
            points: pts("latency_ms.p50"),
            color: col,
            dashed: true,
        });
    };
    if let Some(c) = peer_commit {
        add(&mut lat, c, "peer", format!("peer ({} suite)", c.label));
    }
    for c in commits {
        add(&mut lat, c, "chatroom", format!("chatroom {}", c.label));
    }
    let any_lat = lat.iter().any(|s| !s.points.is_empty());
    if any_lat {
        let svg = line_chart(
            &Chart {
                title: "S2: latency against offered load (one room of 1,000)",
                x_label: "messages per second offered (each to 999 recipients)",
                y_label: "latency, ms (log scale)",
                log_y: true,
            },
            &lat,
        );
        std::fs::write(dir.join("latency-vs-load.svg"), svg)?;
    }
    // Memory against connections (S1).
    let mut mem = Vec::new();
    let mut color = 0usize;
    let mut add_mem = |mem: &mut Vec<Series>, c: &Commit<'_>, target: &str, name: String| {
        let pts = |p: &str| -> Vec<(f64, f64)> {
            c.variants("S1")
                .iter()
                .filter_map(|v| {
                    let n: f64 = v.split_whitespace().next()?.parse().ok()?;
                    c.run_median("S1", v, target, p).v.map(|y| (n, y))
                })
                .collect()
        };
        let col = PALETTE[color % PALETTE.len()];
        color += 1;
        mem.push(Series {
            name: format!("{name}, connected"),
            points: pts("run.memory.connected_mb"),
            color: col,
            dashed: false,
        });
        mem.push(Series {
            name: format!("{name}, 10 s after closing"),
            points: pts("run.memory.after_close_mb"),
            color: col,
            dashed: true,
        });
    };
    if let Some(c) = peer_commit {
        add_mem(&mut mem, c, "peer", format!("peer ({} suite)", c.label));
    }
    for c in commits {
        add_mem(&mut mem, c, "chatroom", format!("chatroom {}", c.label));
    }
    let any_mem = mem.iter().any(|s| !s.points.is_empty());
    if any_mem {
        let svg = line_chart(
            &Chart {
                title: "S1: server memory against idle connections",
                x_label: "connections",
                y_label: "resident memory, MB",
                log_y: false,
            },
            &mem,
        );
        std::fs::write(dir.join("memory-vs-connections.svg"), svg)?;
    }
    if any_lat || any_mem {
        o.push_str("## Charts\n\n");
        if any_lat {
            let _ = writeln!(
                o,
                "![S2 latency against offered load]({rel}/latency-vs-load.svg)\n"
            );
        }
        if any_mem {
            let _ = writeln!(
                o,
                "![S1 memory against connections]({rel}/memory-vs-connections.svg)\n"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn medians_and_dates() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(vec![]), None);
        assert_eq!(day(0.0), "1970-01-01");
        assert_eq!(day(1_795_931_897.0), "2026-11-29");
        assert_eq!(ratio(Some(4.0), Some(2.0)), "×2");
        assert_eq!(ratio(Some(3.0), Some(2.0)), "×1.50");
        assert_eq!(ratio(Some(4.0), None), "—");
    }

    #[test]
    fn dirty_steps_are_left_out_and_clean_ones_kept() {
        let step = |p99: f64, clean: bool| json!({ "rate": 50.0, "latency_ms": { "p99": p99 }, "clean": clean, "gen_bound": false });
        let rec = |steps: Vec<Value>, dirty: bool| {
            json!({ "scenario": "S2", "variant": "v", "target": "peer", "commit": "abc", "date": 1.0,
                    "verdict": { "dirty": dirty }, "run": { "gen": { "steps": steps } } })
        };
        let records = vec![
            rec(vec![step(10.0, true)], false),
            rec(vec![step(900.0, false)], true),
            rec(vec![step(30.0, true)], true),
        ];
        let cs = commits(&records);
        assert_eq!(cs.len(), 1);
        assert_eq!(
            cs[0].step_median("S2", "v", "peer", 50.0, "latency_ms.p99"),
            Fig {
                v: Some(20.0),
                shielded: false
            }
        );
        assert_eq!(cs[0].rates("S2", "v"), vec![50.0]);
        // Without a clean step, a shielded one is used, and marked.
        let shielded = json!({ "rate": 50.0, "latency_ms": { "p99": 40.0 }, "clean": false,
                               "shielded": true, "gen_bound": false });
        let records = vec![
            rec(vec![shielded], false),
            rec(vec![step(900.0, false)], true),
        ];
        let cs = commits(&records);
        let f = cs[0].step_median("S2", "v", "peer", 50.0, "latency_ms.p99");
        assert_eq!(
            f,
            Fig {
                v: Some(40.0),
                shielded: true
            }
        );
        assert_eq!(num(f), "40 †");
    }
}
