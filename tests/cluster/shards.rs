//! A throw-away Redis Cluster on loopback ports for the cluster tests: three masters and three
//! replicas (`redis-server --cluster-enabled yes`, each node's bus on its port + 10000), made with
//! `redis-cli --cluster create`, and the means to fail a master over.

use std::collections::HashSet;
use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

/// Cluster bus port = client port + this offset (fixed by Redis).
const BUS_OFFSET: u16 = 10000;
/// `cluster-node-timeout` given to every node, in milliseconds.
pub const NODE_TIMEOUT_MS: u64 = 2000;
const START_TIMEOUT: Duration = Duration::from_secs(30);
const TOTAL_SLOTS: u32 = 16384;

struct Node {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

pub struct RedisCluster {
    nodes: Vec<Node>,
    /// Ports of masters killed by `kill_master_of` and not yet replaced.
    pending_failover: Vec<u16>,
    // Declared last so the directory goes away after the processes are killed.
    dir: tempfile::TempDir,
}

impl RedisCluster {
    /// Starts 6 nodes on free loopback ports, creates the cluster with one
    /// replica per master and waits until it is fully usable.
    pub fn start() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("redis-cluster-")
            .tempdir()
            .expect("cannot create temp dir for the redis cluster");
        let ports = pick_ports(6);
        let mut cluster = RedisCluster {
            nodes: Vec::new(),
            pending_failover: Vec::new(),
            dir,
        };
        for port in ports {
            let node_dir = cluster.dir.path().join(format!("node-{port}"));
            std::fs::create_dir_all(&node_dir).expect("cannot create node dir");
            let child = spawn_node(port, &node_dir);
            cluster.nodes.push(Node {
                port,
                dir: node_dir,
                child: Some(child),
            });
        }
        for node in &cluster.nodes {
            cluster.wait_until(
                START_TIMEOUT,
                &format!("redis-server on port {} answers PING", node.port),
                || {
                    cli(node.port, &["PING"])
                        .map(|s| s.trim() == "PONG")
                        .unwrap_or(false)
                },
            );
        }

        let mut create = Command::new("redis-cli");
        create.arg("--cluster").arg("create");
        for node in &cluster.nodes {
            create.arg(format!("127.0.0.1:{}", node.port));
        }
        create.args(["--cluster-replicas", "1", "--cluster-yes"]);
        let out = create
            .output()
            .expect("cannot run `redis-cli --cluster create`");
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        if !out.status.success() || text.contains("[ERR]") {
            panic!(
                "`redis-cli --cluster create` failed:\n{text}{}",
                cluster.logs_tail()
            );
        }

        cluster.wait_until(
            START_TIMEOUT,
            "cluster_state:ok on all nodes, 3 masters, replicas in sync",
            || cluster.fully_ready(),
        );
        cluster
    }

    /// `redis://127.0.0.1:P` for every node still running.
    pub fn seeds(&self) -> Vec<String> {
        self.alive_ports()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect()
    }

    /// Hash slot of a key / shard channel name, as computed by the server.
    pub fn slot_of(&self, key: &str) -> u32 {
        let port = self.any_alive_port();
        let out = cli(port, &["CLUSTER", "KEYSLOT", key]).expect("CLUSTER KEYSLOT failed");
        out.trim()
            .parse()
            .unwrap_or_else(|_| panic!("bad CLUSTER KEYSLOT reply: {out:?}"))
    }

    /// Port of the master currently serving `key_or_channel`, as seen by a running node.
    pub fn master_of(&self, key_or_channel: &str) -> u16 {
        let slot = self.slot_of(key_or_channel);
        let port = self.any_alive_port();
        let view = cluster_nodes(port).expect("CLUSTER NODES failed");
        owner_of_slot(&view, slot).unwrap_or_else(|| {
            panic!("no master owns slot {slot} in the view of node {port}: {view:?}")
        })
    }

    /// SIGKILLs the master serving `channel`; returns its port.
    pub fn kill_master_of(&mut self, channel: &str) -> u16 {
        let port = self.master_of(channel);
        self.kill_node(port);
        self.pending_failover.push(port);
        port
    }

    /// SIGKILLs the node on `port` (no failover bookkeeping).
    fn kill_node(&mut self, port: u16) {
        let node = self
            .nodes
            .iter_mut()
            .find(|n| n.port == port)
            .unwrap_or_else(|| panic!("port {port} is not a node of this cluster"));
        if let Some(mut child) = node.child.take() {
            let _ = child.kill(); // SIGKILL on unix
            let _ = child.wait();
        }
    }

    /// Whether every master killed by `kill_master_of` has been replaced by a promoted replica and every
    /// running node reports `cluster_state:ok` (one look, no waiting).
    pub fn failed_over(&self) -> bool {
        let killed: HashSet<u16> = self.pending_failover.iter().copied().collect();
        self.alive_ports().all(|p| {
            let ok = cli(p, &["CLUSTER", "INFO"]).is_ok_and(|s| s.contains("cluster_state:ok"));
            ok && slots_covered_by_running_masters(&cluster_nodes(p).unwrap_or_default(), &killed)
        })
    }

    /// Moves the hash slot of `channel` to another master (as resharding does); returns the new
    /// master's port once every node agrees.
    pub fn move_slot_of(&self, channel: &str) -> u16 {
        let slot = self.slot_of(channel).to_string();
        let from = self.master_of(channel);
        let view = cluster_nodes(from).expect("CLUSTER NODES failed");
        let id = |port: u16| {
            view.iter()
                .find(|n| n.port == port)
                .map(|n| n.id.clone())
                .unwrap()
        };
        let to = view
            .iter()
            .find(|n| n.is_master() && !n.is_failing() && n.port != from && !n.slots.is_empty())
            .map(|n| n.port)
            .expect("another master");
        let (from_id, to_id) = (id(from), id(to));
        cli(to, &["CLUSTER", "SETSLOT", &slot, "IMPORTING", &from_id]).unwrap();
        cli(from, &["CLUSTER", "SETSLOT", &slot, "MIGRATING", &to_id]).unwrap();
        for port in [to, from] {
            cli(port, &["CLUSTER", "SETSLOT", &slot, "NODE", &to_id]).unwrap();
        }
        self.wait_until(
            Duration::from_secs(20),
            &format!("every node to see slot {slot} on {to}"),
            || {
                self.alive_ports().all(|p| {
                    cluster_nodes(p)
                        .is_ok_and(|v| owner_of_slot(&v, slot.parse().unwrap()) == Some(to))
                })
            },
        );
        to
    }

    /// How many connections read the shard channel `channel` (`PUBSUB SHARDNUMSUB` on its master).
    pub fn readers(&self, channel: &str) -> u64 {
        let out = cli(self.master_of(channel), &["PUBSUB", "SHARDNUMSUB", channel])
            .expect("PUBSUB SHARDNUMSUB failed");
        out.lines()
            .nth(1)
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("PUBSUB SHARDNUMSUB answered {out:?}"))
    }

    fn alive_ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.nodes
            .iter()
            .filter(|n| n.child.is_some())
            .map(|n| n.port)
    }

    fn any_alive_port(&self) -> u16 {
        self.alive_ports().next().expect("no redis node is running")
    }

    fn fully_ready(&self) -> bool {
        for port in self.alive_ports() {
            let Ok(info) = cli(port, &["CLUSTER", "INFO"]) else {
                return false;
            };
            if !info.contains("cluster_state:ok")
                || !info.contains(&format!("cluster_slots_ok:{TOTAL_SLOTS}"))
            {
                return false;
            }
            let Ok(view) = cluster_nodes(port) else {
                return false;
            };
            if view
                .iter()
                .filter(|n| n.is_master() && !n.slots.is_empty())
                .count()
                != 3
                || view.iter().filter(|n| n.is_replica()).count() != 3
            {
                return false;
            }
            let Ok(repl) = cli(port, &["INFO", "replication"]) else {
                return false;
            };
            if repl.contains("role:slave") && !repl.contains("master_link_status:up") {
                return false;
            }
        }
        true
    }

    fn wait_until(&self, timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
        let start = Instant::now();
        while !cond() {
            if start.elapsed() > timeout {
                panic!(
                    "RedisCluster: timed out after {timeout:?} waiting for: {what}{}",
                    self.logs_tail()
                );
            }
            sleep(Duration::from_millis(50));
        }
    }

    fn logs_tail(&self) -> String {
        let mut s = String::new();
        for node in &self.nodes {
            let log = std::fs::read_to_string(node.dir.join("redis.log")).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(8)..].join("\n");
            s.push_str(&format!("\n--- node {} log tail ---\n{tail}", node.port));
        }
        s
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

fn spawn_node(port: u16, dir: &Path) -> Child {
    let log = File::create(dir.join("stdout.log")).expect("cannot create node stdout log");
    Command::new("redis-server")
        .args(["--port", &port.to_string()])
        .args(["--bind", "127.0.0.1"])
        .args(["--cluster-enabled", "yes"])
        .arg("--cluster-config-file")
        .arg(dir.join("nodes.conf"))
        .args(["--cluster-node-timeout", &NODE_TIMEOUT_MS.to_string()])
        .args(["--save", ""])
        .args(["--appendonly", "no"])
        .arg("--dir")
        .arg(dir)
        .arg("--logfile")
        .arg(dir.join("redis.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("cannot start redis-server (is it installed and on PATH?)")
}

/// Picks `n` distinct ports p with p < 55536 such that both p and p + 10000
/// can be bound on 127.0.0.1 right now.
fn pick_ports(n: usize) -> Vec<u16> {
    let mut held = Vec::new(); // keep listeners open so we never pick a port twice
    let mut ports = Vec::new();
    for _ in 0..1000 {
        if ports.len() == n {
            break;
        }
        let Ok(l) = TcpListener::bind("127.0.0.1:0") else {
            continue;
        };
        let p = l.local_addr().unwrap().port();
        held.push(l);
        if p > u16::MAX - BUS_OFFSET || ports.contains(&(p + BUS_OFFSET)) {
            continue;
        }
        let Ok(bus) = TcpListener::bind(("127.0.0.1", p + BUS_OFFSET)) else {
            continue;
        };
        held.push(bus);
        ports.push(p);
    }
    assert_eq!(
        ports.len(),
        n,
        "could not find {n} free port pairs (p, p+10000) below 55536"
    );
    ports
}

/// Runs `redis-cli -p PORT args...`; Err if it cannot connect or the reply is an error.
fn cli(port: u16, args: &[&str]) -> Result<String, String> {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run redis-cli: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success()
        || stdout.starts_with("Could not connect")
        || stdout.starts_with("ERR")
        || stdout.starts_with("(error)")
    {
        return Err(format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(stdout)
}

#[derive(Debug, Clone, Default)]
struct NodeView {
    id: String,
    port: u16,
    flags: Vec<String>,
    slots: Vec<(u32, u32)>,
}

impl NodeView {
    fn is_master(&self) -> bool {
        self.flags.iter().any(|f| f == "master")
    }
    fn is_replica(&self) -> bool {
        self.flags.iter().any(|f| f == "slave")
    }
    fn is_failing(&self) -> bool {
        self.flags.iter().any(|f| f == "fail" || f == "fail?")
    }
}

/// Parses `CLUSTER NODES`: `<id> <ip:port@cport[,host]> <flags> <master> <ping> <pong> <epoch> <link> <slot>...`
fn cluster_nodes(port: u16) -> Result<Vec<NodeView>, String> {
    let text = cli(port, &["CLUSTER", "NODES"])?;
    let mut nodes = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 8 {
            continue;
        }
        let addr = f[1].split('@').next().unwrap_or("");
        let node_port = addr
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        let mut slots = Vec::new();
        for s in &f[8..] {
            if s.starts_with('[') {
                continue; // slot being imported / migrated
            }
            let (a, b) = s.split_once('-').unwrap_or((s, s));
            if let (Ok(a), Ok(b)) = (a.parse(), b.parse()) {
                slots.push((a, b));
            }
        }
        nodes.push(NodeView {
            id: f[0].to_string(),
            port: node_port,
            flags: f[2].split(',').map(str::to_string).collect(),
            slots,
        });
    }
    Ok(nodes)
}

fn owner_of_slot(view: &[NodeView], slot: u32) -> Option<u16> {
    view.iter()
        .filter(|n| n.is_master())
        .find(|n| n.slots.iter().any(|&(a, b)| a <= slot && slot <= b))
        .map(|n| n.port)
}

/// True if every slot is owned by a master that is neither killed nor flagged failing.
fn slots_covered_by_running_masters(view: &[NodeView], killed: &HashSet<u16>) -> bool {
    let mut covered = 0u32;
    for n in view.iter().filter(|n| n.is_master()) {
        let count: u32 = n.slots.iter().map(|&(a, b)| b - a + 1).sum();
        if count > 0 && (killed.contains(&n.port) || n.is_failing()) {
            return false;
        }
        covered += count;
    }
    covered == TOTAL_SLOTS
}
