//! The load generator: one process, one thread, one task per connection.
//!
//! A run signs users up (or in) over HTTP when it targets chatroom, connects every client over
//! WebSocket (Engine.IO 4 or 3, spoken here directly), joins each to its room (`?room=` for the peer,
//! a `room` event with an ack for chatroom), then sends open-loop: message `n` of a step is due at
//! `start + n / rate`, whatever the server answers. Each message carries the time it was written to
//! its socket; a recipient's latency is its receive time minus that. A step's measurement window
//! starts after its warm-up; messages are counted in the window where they were sent, so their
//! deliveries, echoes and acks still count when they arrive late.
//!
//! It prints JSON lines on stdout: one per phase (`{"phase": …, "at": <unix s>}`), so that the
//! suite can read the server's memory at the right moments, and a last one with the summary.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use futures_util::{SinkExt as _, StreamExt as _};
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::frames::{self, Frame};
use crate::sys::{self, now_us, unix_of};

/// Which server is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// The Node socket.io peer: `chat` relayed to the room, joined by `?room=`.
    Peer,
    /// chatroom: accounts, tokens, `room`, `message` with acks, persistence.
    Chatroom,
}

/// How chatroom clients get their tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Auth {
    /// `POST /api/user/signup` with a new name.
    Signup,
    /// `POST /api/user/signin` of an account made before (`--accounts-only`).
    Signin,
}

/// The password of every account the generator makes.
const PASSWORD: &str = "benchpass1";

#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct LoadArgs {
    /// The server's base URL. Repeat it to spread the sockets over several nodes of one cluster
    /// (client `i` connects to URL `i % n`, or `(i / rooms) % n` with `--spread-rooms`); accounts are
    /// made on the first.
    #[arg(long, default_value = "http://127.0.0.1:38917")]
    pub url: Vec<String>,
    #[arg(long, value_enum, default_value = "peer")]
    pub target: Target,
    /// Engine.IO protocol: 4 (socket.io 3+) or 3 (socket.io 1.x/2.x, the v3 web client).
    #[arg(long, default_value_t = 4)]
    pub eio: u8,
    /// Connections.
    #[arg(long, default_value_t = 1000)]
    pub clients: usize,
    /// Rooms; client `i` is in room `i % rooms` (named `room<k>`).
    #[arg(long, default_value_t = 1)]
    pub rooms: usize,
    /// With several URLs, put every room's members on every node (client `i` on URL
    /// `(i / rooms) % n`). Without it, client `i` is on URL `i % n`: when the number of rooms is a
    /// multiple of the number of URLs, each room then lives on one node.
    #[arg(long)]
    pub spread_rooms: bool,
    /// Clients that send (the first ones, so they spread over the rooms).
    #[arg(long, default_value_t = 10)]
    pub senders: usize,
    /// Messages per second offered, all senders together; several values make several steps.
    #[arg(long, value_delimiter = ',', default_value = "100")]
    pub rate: Vec<f64>,
    /// Seconds sent before each step's measurement window.
    #[arg(long, default_value_t = 3.0)]
    pub warmup: f64,
    /// Seconds of each step's measurement window.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// Seconds to wait for late answers after the last step.
    #[arg(long, default_value_t = 2.0)]
    pub drain: f64,
    /// chatroom: send `login` after joining, as the v3 web client does.
    #[arg(long)]
    pub login: bool,
    /// Peer: characters of padding in each `chat` payload (64 gives 126-byte frames).
    #[arg(long, default_value_t = 64)]
    pub bytes: usize,
    /// chatroom: characters of each message's `msg` (the send time, a space, padding).
    #[arg(long, default_value_t = 44)]
    pub msg_chars: usize,
    /// Connect and hold only: no messages.
    #[arg(long)]
    pub idle: bool,
    /// Idle: seconds to hold the connections.
    #[arg(long, default_value_t = 8.0)]
    pub hold: f64,
    /// Idle: seconds to stay after closing them (the server's memory is read then).
    #[arg(long, default_value_t = 10.0)]
    pub after_close: f64,
    /// chatroom: seconds to wait between the sign-ups and the first connection.
    #[arg(long, default_value_t = 0.0)]
    pub pause_after_signup: f64,
    /// Connections being opened at once.
    #[arg(long, default_value_t = 200)]
    pub conn_conc: usize,
    /// Seconds allowed for every client to connect and join.
    #[arg(long, default_value_t = 60.0)]
    pub conn_timeout: f64,
    #[arg(long, value_enum, default_value = "signup")]
    pub auth: Auth,
    /// Sign-up / sign-in requests at once.
    #[arg(long, default_value_t = 16)]
    pub auth_conc: usize,
    /// Account names are `<prefix>_<client>`.
    #[arg(long, default_value = "u")]
    pub user_prefix: String,
    /// chatroom: make the accounts, print the summary and stop (for a later `--auth signin` run).
    #[arg(long)]
    pub accounts_only: bool,
    /// chatroom: during the first step's window, this many loops of sign-ups (first half) and
    /// sign-ins of those accounts (second half).
    #[arg(long, default_value_t = 0)]
    pub auth_load: usize,
}

/// What a connection task is told.
enum Cmd {
    /// Send message `seq`, due at clock time `due`.
    Send { seq: u64, due: u64 },
    /// Close the connection.
    Close,
}

fn histogram() -> Histogram<u64> {
    // 1 µs .. 10 min, 3 significant digits.
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

fn ms(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        return 0.0;
    }
    (h.value_at_quantile(q) as f64 / 10.0).round() / 100.0
}

fn percentiles(h: &Histogram<u64>) -> Value {
    json!({
        "n": h.len(),
        "p50": ms(h, 0.5), "p90": ms(h, 0.9), "p99": ms(h, 0.99), "p999": ms(h, 0.999),
        "max": if h.is_empty() { 0.0 } else { (h.max() as f64 / 10.0).round() / 100.0 },
    })
}

/// Counters of one step.
struct Step {
    rate: f64,
    from: u64,
    to: u64,
    sent: u64,
    expected: u64,
    delivered: u64,
    echoes: u64,
    ack_ok: u64,
    ack_err: BTreeMap<String, u64>,
    latency: Histogram<u64>,
    echo_latency: Histogram<u64>,
    ack_latency: Histogram<u64>,
    lag: Histogram<u64>,
    gen_ticks: (u64, u64),
}

impl Step {
    fn new(rate: f64) -> Self {
        Self {
            rate,
            from: u64::MAX,
            to: u64::MAX,
            sent: 0,
            expected: 0,
            delivered: 0,
            echoes: 0,
            ack_ok: 0,
            ack_err: BTreeMap::new(),
            latency: histogram(),
            echo_latency: histogram(),
            ack_latency: histogram(),
            lag: histogram(),
            gen_ticks: (0, 0),
        }
    }
}

/// Everything the tasks count, shared on the one thread.
struct Shared {
    target: Target,
    steps: Vec<Step>,
    /// Ready clients per room.
    members: Vec<u64>,
    ready: u64,
    failed: u64,
    connect_errors: u64,
    join_failures: u64,
    closed_early: u64,
    connect_latency: Histogram<u64>,
    last_ready: u64,
    sent_all: u64,
    ack_ok_all: u64,
    ack_err_all: BTreeMap<String, u64>,
    delivered_all: u64,
    echoes_all: u64,
    message_frames: u64,
    other_frames: u64,
    other_bytes: u64,
    notices: BTreeMap<String, u64>,
    closing: bool,
}

impl Shared {
    fn step_of(&mut self, at: u64) -> Option<&mut Step> {
        self.steps.iter_mut().find(|s| at >= s.from && at < s.to)
    }

    fn delivered(&mut self, sent_at: u64, now: u64, echo: bool) {
        if echo {
            self.echoes_all += 1;
        } else {
            self.delivered_all += 1;
        }
        if let Some(step) = self.step_of(sent_at) {
            let latency = now.saturating_sub(sent_at).max(1);
            if echo {
                step.echoes += 1;
                step.echo_latency.saturating_record(latency);
            } else {
                step.delivered += 1;
                step.latency.saturating_record(latency);
            }
        }
    }

    fn acked(&mut self, sent_at: u64, now: u64, refusal: Option<String>) {
        match &refusal {
            None => self.ack_ok_all += 1,
            Some(code) => *self.ack_err_all.entry(code.clone()).or_default() += 1,
        }
        if let Some(step) = self.step_of(sent_at) {
            match refusal {
                None => {
                    step.ack_ok += 1;
                    step.ack_latency
                        .saturating_record(now.saturating_sub(sent_at).max(1));
                }
                Some(code) => *step.ack_err.entry(code).or_default() += 1,
            }
        }
    }
}

/// One client.
struct Client {
    index: usize,
    room: usize,
    name: String,
    token: Option<String>,
}

fn phase(name: &str) {
    println!("{}", json!({ "phase": name, "at": sys::unix_now() }));
}

/// Runs the generator on a single-threaded runtime and prints its summary.
pub fn run(args: LoadArgs) -> anyhow::Result<()> {
    if args.eio != 3 && args.eio != 4 {
        bail!("--eio must be 3 or 4");
    }
    if args.clients == 0 || args.rooms == 0 || args.rooms > args.clients {
        bail!("need at least one client per room");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let summary = local.block_on(&runtime, generate(args))?;
    println!("{summary}");
    Ok(())
}

async fn generate(args: LoadArgs) -> anyhow::Result<Value> {
    let bases: Vec<String> = args
        .url
        .iter()
        .map(|u| u.trim_end_matches('/').to_owned())
        .collect();
    let hosts = bases
        .iter()
        .map(|b| {
            b.strip_prefix("http://")
                .map(str::to_owned)
                .context("--url must be http://host:port")
        })
        .collect::<anyhow::Result<Vec<String>>>()?;
    let base = bases.first().cloned().context("--url is required")?;
    let t_start = sys::unix_now();
    let mut clients: Vec<Client> = (0..args.clients)
        .map(|index| Client {
            index,
            room: index % args.rooms,
            name: format!("{}_{index}", args.user_prefix),
            token: None,
        })
        .collect();

    // Accounts and tokens.
    let mut auth_summary = Value::Null;
    if args.target == Target::Chatroom {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(args.auth_conc)
            .build()?;
        let t0 = sys::unix_now();
        let names: Vec<String> = clients.iter().map(|c| c.name.clone()).collect();
        let tokens = fetch_tokens(&http, &base, &names, args.auth, args.auth_conc).await;
        let failed = tokens.iter().filter(|t| t.is_none()).count();
        for (client, token) in clients.iter_mut().zip(tokens) {
            client.token = token;
        }
        auth_summary = json!({
            "mode": args.auth, "seconds": round2(sys::unix_now() - t0), "failed": failed,
        });
        phase("signed_up");
        if args.accounts_only {
            return Ok(
                json!({ "summary": { "accounts": args.clients - failed, "auth": auth_summary } }),
            );
        }
        if args.pause_after_signup > 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(args.pause_after_signup)).await;
        }
    }

    let shared = Rc::new(RefCell::new(Shared {
        target: args.target,
        steps: args.rate.iter().map(|r| Step::new(*r)).collect(),
        members: vec![0; args.rooms],
        ready: 0,
        failed: 0,
        connect_errors: 0,
        join_failures: 0,
        closed_early: 0,
        connect_latency: histogram(),
        last_ready: 0,
        sent_all: 0,
        ack_ok_all: 0,
        ack_err_all: BTreeMap::new(),
        delivered_all: 0,
        echoes_all: 0,
        message_frames: 0,
        other_frames: 0,
        other_bytes: 0,
        notices: BTreeMap::new(),
        closing: false,
    }));

    // Connections, `conn_conc` at a time: a permit is held until the client is ready or failed.
    phase("connecting");
    let gate = std::sync::Arc::new(Semaphore::new(args.conn_conc.max(1)));
    let opts = Rc::new(args.clone());
    let t_connect = now_us();
    let deadline = t_connect + (args.conn_timeout * 1e6) as u64;
    let deadline_at = tokio::time::Instant::now() + Duration::from_secs_f64(args.conn_timeout);
    let mut senders = Vec::new();
    let mut controls = Vec::new();
    for client in clients {
        if args.target == Target::Chatroom && client.token.is_none() {
            shared.borrow_mut().failed += 1;
            continue;
        }
        let Ok(Ok(permit)) =
            tokio::time::timeout_at(deadline_at, gate.clone().acquire_owned()).await
        else {
            // Out of time: the clients not started count as failed.
            shared.borrow_mut().failed += 1;
            continue;
        };
        let (tx, rx) = mpsc::unbounded_channel();
        if client.index < args.senders {
            senders.push((tx.clone(), client.room));
        }
        controls.push(tx);
        let slot = if args.spread_rooms {
            client.index / args.rooms.max(1)
        } else {
            client.index
        };
        let host = hosts[slot % hosts.len()].clone();
        tokio::task::spawn_local(connection(
            client,
            host,
            opts.clone(),
            shared.clone(),
            rx,
            permit,
        ));
    }
    loop {
        let done = {
            let s = shared.borrow();
            (s.ready + s.failed) as usize >= args.clients || now_us() >= deadline
        };
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let connect = {
        let s = shared.borrow();
        let seconds = s.last_ready.saturating_sub(t_connect) as f64 / 1e6;
        json!({
            "ready": s.ready, "failed": s.failed, "connect_errors": s.connect_errors,
            "join_failures": s.join_failures,
            "seconds": round2(seconds),
            "per_second": if seconds > 0.0 { (s.ready as f64 / seconds).round() } else { 0.0 },
            "latency_ms": percentiles(&s.connect_latency),
            "timed_out": (s.ready + s.failed) < args.clients as u64,
            "presence_mb": round2(s.other_bytes as f64 / 1_048_576.0),
            "presence_frames": s.other_frames,
        })
    };
    phase("connected");

    let mut steps_out = Vec::new();
    let mut auth_load = Value::Null;
    if args.idle {
        tokio::time::sleep(Duration::from_secs_f64(args.hold)).await;
        phase("closing");
        shared.borrow_mut().closing = true;
        for c in &controls {
            let _ = c.send(Cmd::Close);
        }
        // Give the close frames a moment to go out before the clock for "after close" starts.
        tokio::time::sleep(Duration::from_millis(500)).await;
        phase("closed");
        tokio::time::sleep(Duration::from_secs_f64(args.after_close)).await;
    } else {
        let auth_task = if args.auth_load > 0 && args.target == Target::Chatroom {
            Some(tokio::task::spawn_local(auth_load_run(
                base.clone(),
                args.clone(),
            )))
        } else {
            None
        };
        send_steps(&args, &shared, &senders).await;
        tokio::time::sleep(Duration::from_secs_f64(args.drain)).await;
        if let Some(task) = auth_task {
            auth_load = task.await.unwrap_or(Value::Null);
        }
        {
            let mut s = shared.borrow_mut();
            for step in &s.steps {
                steps_out.push(step_summary(step, &args));
            }
            s.closing = true;
        }
        for c in &controls {
            let _ = c.send(Cmd::Close);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    let s = shared.borrow();
    let unanswered = if args.target == Target::Chatroom {
        json!(
            s.sent_all
                .saturating_sub(s.ack_ok_all + s.ack_err_all.values().sum::<u64>())
        )
    } else {
        Value::Null
    };
    Ok(json!({ "summary": {
        "target": args.target, "eio": args.eio, "clients": args.clients, "rooms": args.rooms,
        "senders": args.senders.min(args.clients), "started_at": t_start,
        "auth": auth_summary, "connect": connect, "steps": steps_out, "auth_load": auth_load,
        "totals": {
            "sent": s.sent_all, "ack_ok": s.ack_ok_all, "ack_err": s.ack_err_all,
            "unanswered": unanswered, "delivered": s.delivered_all, "echoes": s.echoes_all,
            "message_frames": s.message_frames, "other_frames": s.other_frames,
            "other_mb": round2(s.other_bytes as f64 / 1_048_576.0), "notices": s.notices,
            "closed_early": s.closed_early,
        },
        "gen_rss_mb": round2(sys::proc_rss_kb(std::process::id()).unwrap_or(0) as f64 / 1024.0),
    }}))
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn step_summary(step: &Step, args: &LoadArgs) -> Value {
    let secs = args.duration.max(1e-9);
    let gen_cores = (step.gen_ticks.1.saturating_sub(step.gen_ticks.0)) as f64 / sys::HZ / secs;
    let errs: u64 = step.ack_err.values().sum();
    let chatroom = args.target == Target::Chatroom;
    json!({
        "rate": step.rate,
        "window": [unix_of(step.from), unix_of(step.to)],
        "sent": step.sent,
        "sent_per_s": round2(step.sent as f64 / secs),
        "expected": step.expected,
        "delivered": step.delivered,
        "delivered_pct": if step.expected > 0 { round2(100.0 * step.delivered as f64 / step.expected as f64) } else { 0.0 },
        "delivered_per_s": (step.delivered as f64 / secs).round(),
        "latency_ms": percentiles(&step.latency),
        "echo_latency_ms": if chatroom { percentiles(&step.echo_latency) } else { Value::Null },
        "echoes": step.echoes,
        "ack_ok": step.ack_ok,
        "ack_ok_per_s": round2(step.ack_ok as f64 / secs),
        "ack_err": step.ack_err,
        "ack_latency_ms": if chatroom { percentiles(&step.ack_latency) } else { Value::Null },
        "unanswered": if chatroom { json!(step.sent.saturating_sub(step.ack_ok + errs)) } else { Value::Null },
        "send_lag_ms": percentiles(&step.lag),
        "gen_cores": round2(gen_cores),
    })
}

/// Sends every step open-loop: message `n` of a step is due at `start + n / rate`.
async fn send_steps(
    args: &LoadArgs,
    shared: &Rc<RefCell<Shared>>,
    senders: &[(mpsc::UnboundedSender<Cmd>, usize)],
) {
    if senders.is_empty() {
        return;
    }
    let mut seq = 0u64;
    for i in 0..args.rate.len() {
        let rate = args.rate[i].max(0.001);
        let start = now_us();
        let from = start + (args.warmup * 1e6) as u64;
        let to = from + (args.duration * 1e6) as u64;
        {
            let mut s = shared.borrow_mut();
            s.steps[i].from = from;
            s.steps[i].to = to;
        }
        let mut n = 0u64;
        let mut in_window = false;
        loop {
            let now = now_us();
            if !in_window && now >= from {
                in_window = true;
                shared.borrow_mut().steps[i].gen_ticks.0 = sys::own_ticks();
            }
            if now >= to {
                shared.borrow_mut().steps[i].gen_ticks.1 = sys::own_ticks();
                break;
            }
            let due_count = ((now - start) as f64 / 1e6 * rate) as u64;
            while n < due_count {
                let due = start + ((n + 1) as f64 * 1e6 / rate) as u64;
                let (tx, _) = &senders[(seq % senders.len() as u64) as usize];
                let _ = tx.send(Cmd::Send { seq, due });
                n += 1;
                seq += 1;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

/// One client's connection, from TCP connect to close.
async fn connection(
    client: Client,
    host: String,
    args: Rc<LoadArgs>,
    shared: Rc<RefCell<Shared>>,
    mut rx: mpsc::UnboundedReceiver<Cmd>,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let started = now_us();
    let mut permit = Some(permit);
    let Ok(ws) = open(&client, &host, &args).await else {
        shared.borrow_mut().failed += 1;
        return;
    };
    let mut conn = Conn {
        client,
        args,
        shared: shared.clone(),
        ws,
        ready: false,
        next_ack: 1,
        in_flight: VecDeque::new(),
        ping_every: None,
        pad: String::new(),
    };
    conn.pad = match conn.args.target {
        Target::Peer => "x".repeat(conn.args.bytes),
        Target::Chatroom => "x".repeat(conn.args.msg_chars.saturating_sub(17)),
    };
    let ended_ready = conn.serve(&mut rx, started, &mut permit).await;
    let mut s = shared.borrow_mut();
    if !ended_ready {
        s.failed += 1;
    } else if !s.closing {
        s.closed_early += 1;
    }
}

async fn open(client: &Client, host: &str, args: &LoadArgs) -> anyhow::Result<Ws> {
    let mut url = format!(
        "ws://{host}/socket.io/?EIO={}&transport=websocket",
        args.eio
    );
    match args.target {
        Target::Peer => url.push_str(&format!("&room=room{}", client.room)),
        Target::Chatroom if args.eio == 3 => {
            // Engine.IO 3 has no CONNECT payload: the token goes in the query.
            if let Some(token) = &client.token {
                url.push_str(&format!("&token={token}"));
            }
        }
        Target::Chatroom => {}
    }
    let tcp = TcpStream::connect(host).await?;
    tcp.set_nodelay(true)?;
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(Some(64 << 20));
    let (ws, _) = tokio_tungstenite::client_async_with_config(url, tcp, Some(config)).await?;
    Ok(ws)
}

/// Waits for the next Engine.IO 3 ping, or forever on Engine.IO 4 (the server pings there).
async fn tick(every: &mut Option<tokio::time::Interval>) {
    match every {
        Some(every) => {
            every.tick().await;
        }
        None => std::future::pending::<()>().await,
    }
}

struct Conn {
    client: Client,
    args: Rc<LoadArgs>,
    shared: Rc<RefCell<Shared>>,
    ws: Ws,
    ready: bool,
    next_ack: u64,
    /// Ack ids of messages in flight, with their send times.
    in_flight: VecDeque<(u64, u64)>,
    ping_every: Option<tokio::time::Interval>,
    pad: String,
}

impl Conn {
    /// Serves the connection until it closes; returns whether it ever became ready.
    async fn serve(
        &mut self,
        rx: &mut mpsc::UnboundedReceiver<Cmd>,
        started: u64,
        permit: &mut Option<tokio::sync::OwnedSemaphorePermit>,
    ) -> bool {
        loop {
            tokio::select! {
                frame = self.ws.next() => {
                    let text = match frame {
                        Some(Ok(Message::Text(t))) => t,
                        Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                        Some(Ok(_)) => continue,
                    };
                    let was_ready = self.ready;
                    let keep = self.on_frame(text.as_str()).await;
                    if self.ready && !was_ready {
                        let now = now_us();
                        let mut s = self.shared.borrow_mut();
                        s.ready += 1;
                        s.last_ready = s.last_ready.max(now);
                        s.members[self.client.room] += 1;
                        s.connect_latency.saturating_record(now.saturating_sub(started).max(1));
                        drop(s);
                        permit.take();
                    }
                    if !keep {
                        break;
                    }
                }
                cmd = rx.recv() => match cmd {
                    Some(Cmd::Send { seq, due }) => {
                        if self.send_message(seq, due).await.is_err() {
                            break;
                        }
                    }
                    Some(Cmd::Close) | None => {
                        let _ = self.ws.close(None).await;
                        break;
                    }
                },
                () = tick(&mut self.ping_every) => {
                    if self.ws.send(Message::text("2")).await.is_err() {
                        break;
                    }
                }
            }
        }
        if self.ready {
            let mut s = self.shared.borrow_mut();
            s.members[self.client.room] = s.members[self.client.room].saturating_sub(1);
        }
        self.ready
    }

    async fn say(&mut self, text: String) -> bool {
        self.ws.send(Message::text(text)).await.is_ok()
    }

    /// Handles one frame; false ends the connection.
    async fn on_frame(&mut self, text: &str) -> bool {
        let now = now_us();
        match frames::parse(text) {
            Frame::Open(open) => {
                if self.args.eio == 4 {
                    let auth = match (&self.client.token, self.args.target) {
                        (Some(token), Target::Chatroom) => json!({ "token": token }).to_string(),
                        _ => String::new(),
                    };
                    return self.say(format!("40{auth}")).await;
                }
                let every = Duration::from_millis(frames::ping_interval_ms(open).max(100));
                let mut interval =
                    tokio::time::interval_at(tokio::time::Instant::now() + every, every);
                interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                self.ping_every = Some(interval);
                true
            }
            Frame::Ping => {
                if self.args.eio == 4 {
                    return self.say("3".to_owned()).await;
                }
                true
            }
            Frame::Connected => {
                match self.args.target {
                    Target::Peer => self.ready = true,
                    Target::Chatroom => {
                        let join =
                            json!(["room", { "roomid": format!("room{}", self.client.room) }]);
                        if !self.say(format!("420{join}")).await {
                            return false;
                        }
                        if self.args.login {
                            let login = json!(["login", { "name": self.client.name }]);
                            if !self.say(format!("42{login}")).await {
                                return false;
                            }
                        }
                    }
                }
                true
            }
            Frame::ConnectError => {
                self.shared.borrow_mut().connect_errors += 1;
                false
            }
            Frame::Close => false,
            Frame::Ack { id: 0, body } => {
                if frames::ack_ok(body) {
                    self.ready = true;
                    true
                } else {
                    self.shared.borrow_mut().join_failures += 1;
                    false
                }
            }
            Frame::Ack { id, body } => {
                let at = self.in_flight.iter().position(|(a, _)| *a == id);
                if let Some(pos) = at
                    && let Some((_, sent_at)) = self.in_flight.remove(pos)
                {
                    let refusal = (!frames::ack_ok(body)).then(|| frames::code(body));
                    self.shared.borrow_mut().acked(sent_at, now, refusal);
                }
                true
            }
            Frame::Event { name, rest } => {
                self.on_event(name, rest, text.len(), now);
                true
            }
            Frame::Pong | Frame::Other => true,
        }
    }

    fn on_event(&mut self, name: &str, rest: &str, len: usize, now: u64) {
        let mut s = self.shared.borrow_mut();
        match (s.target, name) {
            (Target::Peer, "chat") => {
                s.message_frames += 1;
                if let Some(t) = frames::number_after(rest, "\"t\":") {
                    s.delivered(t, now, false);
                }
            }
            (Target::Chatroom, "message") => {
                s.message_frames += 1;
                if let Some(t) = frames::number_after(rest, "\"msg\":\"") {
                    let own = frames::string_after(rest, "\"clientId\":\"").is_some_and(|id| {
                        id.split('_').next() == Some(self.client.index.to_string().as_str())
                    });
                    s.delivered(t, now, own);
                }
            }
            (_, "notice") => {
                *s.notices.entry(frames::code(rest)).or_default() += 1;
            }
            _ => {
                s.other_frames += 1;
                s.other_bytes += len as u64;
            }
        }
    }

    async fn send_message(&mut self, seq: u64, due: u64) -> Result<(), ()> {
        let now = now_us();
        let frame = match self.args.target {
            Target::Peer => format!(
                "42[\"chat\",{{\"t\":{now},\"s\":{seq},\"u\":\"u{}\",\"m\":\"{}\"}}]",
                self.client.index, self.pad
            ),
            Target::Chatroom => {
                let id = self.next_ack;
                self.next_ack += 1;
                self.in_flight.push_back((id, now));
                format!(
                    "42{id}[\"message\",{{\"msg\":\"{now} {}\",\"img\":\"\",\"roomid\":\"room{}\",\"clientId\":\"{}_{seq}\"}}]",
                    self.pad, self.client.room, self.client.index
                )
            }
        };
        {
            let mut s = self.shared.borrow_mut();
            s.sent_all += 1;
            let members = s.members[self.client.room];
            if let Some(step) = s.step_of(now) {
                step.sent += 1;
                step.expected += members.saturating_sub(1);
                step.lag.saturating_record(now.saturating_sub(due).max(1));
            }
        }
        self.ws.send(Message::text(frame)).await.map_err(|_| ())
    }
}

/// Tokens for `names`, `conc` requests at a time (None where it failed).
async fn fetch_tokens(
    http: &reqwest::Client,
    base: &str,
    names: &[String],
    auth: Auth,
    conc: usize,
) -> Vec<Option<String>> {
    let path = match auth {
        Auth::Signup => "/api/user/signup",
        Auth::Signin => "/api/user/signin",
    };
    futures_util::stream::iter(names.iter().map(|name| {
        let url = format!("{base}{path}");
        async move { account(http, &url, name).await.ok() }
    }))
    .buffered(conc.max(1))
    .collect()
    .await
}

async fn account(http: &reqwest::Client, url: &str, name: &str) -> anyhow::Result<String> {
    let reply: Value = http
        .post(url)
        .json(&json!({ "name": name, "password": PASSWORD }))
        .send()
        .await?
        .json()
        .await?;
    if reply.get("errno").and_then(Value::as_i64) != Some(0) {
        bail!("refused");
    }
    reply
        .get("token")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .context("no token")
}

/// Sign-ups for the first half of the first step's window, then sign-ins of those accounts for
/// the second half, `args.auth_load` loops at once.
async fn auth_load_run(base: String, args: LoadArgs) -> Value {
    let Ok(http) = reqwest::Client::builder().build() else {
        return Value::Null;
    };
    // Wait for the first window (set by the sender loop).
    tokio::time::sleep(Duration::from_secs_f64(args.warmup)).await;
    let half = Duration::from_secs_f64(args.duration / 2.0);
    let made: Rc<RefCell<Vec<String>>> = Rc::new(RefCell::new(Vec::new()));
    let counter = Rc::new(Cell::new(0u64));
    let mut out = serde_json::Map::new();
    for (label, path) in [
        ("signup", "/api/user/signup"),
        ("signin", "/api/user/signin"),
    ] {
        let until = tokio::time::Instant::now() + half;
        let stats = Rc::new(RefCell::new((0u64, 0u64, histogram())));
        let mut loops = Vec::new();
        for k in 0..args.auth_load {
            let http = http.clone();
            let url = format!("{base}{path}");
            let made = made.clone();
            let counter = counter.clone();
            let stats = stats.clone();
            let prefix = args.user_prefix.clone();
            loops.push(tokio::task::spawn_local(async move {
                let mut i = 0usize;
                while tokio::time::Instant::now() < until {
                    let name = if label == "signup" {
                        counter.set(counter.get() + 1);
                        format!("{prefix}s_{}", counter.get())
                    } else {
                        let list = made.borrow();
                        if list.is_empty() {
                            break;
                        }
                        list[(k + i * 7) % list.len()].clone()
                    };
                    i += 1;
                    let t0 = now_us();
                    let ok = account(&http, &url, &name).await.is_ok();
                    let mut st = stats.borrow_mut();
                    if ok {
                        st.0 += 1;
                        st.2.saturating_record(now_us().saturating_sub(t0).max(1));
                        if label == "signup" {
                            made.borrow_mut().push(name);
                        }
                    } else {
                        st.1 += 1;
                    }
                }
            }));
        }
        for l in loops {
            let _ = l.await;
        }
        let st = stats.borrow();
        out.insert(
            label.to_owned(),
            json!({
                "ok": st.0, "failed": st.1,
                "per_second": round2(st.0 as f64 / half.as_secs_f64()),
                "latency_ms": percentiles(&st.2),
            }),
        );
    }
    Value::Object(out)
}

/// Times `rounds` bcrypt hashes at `cost` on this core: the ceiling of sign-ups and sign-ins a core
/// can serve.
pub fn bcrypt_ceiling(cost: u32, rounds: u32) -> anyhow::Result<Value> {
    let t0 = std::time::Instant::now();
    for _ in 0..rounds {
        bcrypt::hash(PASSWORD, cost)?;
    }
    let each = t0.elapsed().as_secs_f64() / f64::from(rounds.max(1));
    Ok(
        json!({ "cost": cost, "ms_per_hash": round2(each * 1000.0), "per_core_per_s": round2(1.0 / each) }),
    )
}

/// Keeps the compiler honest about the clock base being what frames carry.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::CLOCK_BASE_US;

    #[test]
    fn the_clock_has_sixteen_digits() {
        assert_eq!(now_us().to_string().len(), 16);
        assert!(now_us() >= CLOCK_BASE_US);
    }

    #[test]
    fn counts_land_in_the_step_of_their_send_time() {
        let mut s = Shared {
            target: Target::Chatroom,
            steps: vec![Step::new(10.0), Step::new(20.0)],
            members: vec![0],
            ready: 0,
            failed: 0,
            connect_errors: 0,
            join_failures: 0,
            closed_early: 0,
            connect_latency: histogram(),
            last_ready: 0,
            sent_all: 0,
            ack_ok_all: 0,
            ack_err_all: BTreeMap::new(),
            delivered_all: 0,
            echoes_all: 0,
            message_frames: 0,
            other_frames: 0,
            other_bytes: 0,
            notices: BTreeMap::new(),
            closing: false,
        };
        s.steps[0].from = 100;
        s.steps[0].to = 200;
        s.steps[1].from = 300;
        s.steps[1].to = 400;
        s.delivered(150, 1150, false);
        s.delivered(250, 1250, false);
        s.delivered(350, 2350, true);
        s.acked(150, 170, None);
        s.acked(350, 370, Some("unavailable".into()));
        assert_eq!(s.delivered_all, 2);
        assert_eq!(s.steps[0].delivered, 1);
        assert_eq!(s.steps[0].latency.max(), 1000);
        assert_eq!(s.steps[1].echoes, 1);
        assert_eq!(s.steps[0].ack_ok, 1);
        assert_eq!(s.steps[1].ack_err.get("unavailable"), Some(&1));
    }
}
