//! Several nodes: two real server processes on one PostgreSQL database and a private Redis, with real
//! socket.io clients on each.
//!
//! These tests need PostgreSQL (`TEST_DATABASE_URL`, as the PostgreSQL run of the suite sets it) and
//! `redis-server` on the PATH (`.ci/run` installs it). Without `TEST_DATABASE_URL` they say so and
//! pass; with it, a missing `redis-server` fails them.

mod failover;
mod nodes;
mod operators;
mod scoping;
mod shards;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::Client;
use rust_socketio::TransportType;
use serde_json::{Value, json};
use tempfile::TempDir;

use self::shards::RedisCluster;
use crate::common::process::{Binary, start_binary};
use crate::common::socket::{Auth, Sio, connect_sio};
use crate::common::{create_pg_database, drop_pg_database};

/// The token secret every node of a test cluster shares.
const SECRET: &str = "cluster-test-secret-cluster-test-secret";

/// A private `redis-server` on a free loopback port.
pub struct Redis {
    child: Option<Child>,
    port: u16,
    dir: TempDir,
}

impl Redis {
    pub fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut redis = Self {
            child: None,
            port,
            dir: tempfile::tempdir().unwrap(),
        };
        redis.run();
        redis
    }

    fn run(&mut self) {
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (apt-get install redis-server)");
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// How many connections read `channel` (`PUBSUB NUMSUB`).
    pub fn readers(&self, channel: &str) -> u64 {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["PUBSUB", "NUMSUB", channel])
            .output()
            .expect("redis-cli is installed with redis-server");
        let text = String::from_utf8_lossy(&out.stdout);
        text.lines()
            .nth(1)
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("PUBSUB NUMSUB answered {text:?}"))
    }

    /// Kills the server (every connection to it breaks).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port, empty.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A PostgreSQL database of the test's own, dropped afterwards.
struct PgDatabase {
    admin: String,
    name: String,
    url: String,
}

impl PgDatabase {
    async fn create(admin: String) -> Self {
        let (url, name) = create_pg_database(&admin).await;
        Self { admin, name, url }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        drop_pg_database(self.admin.clone(), self.name.clone());
    }
}

/// One server process of the cluster.
pub struct Node {
    pub binary: Binary,
    _dir: TempDir,
}

impl Node {
    fn start(database_url: &str, redis_url: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let binary = start_node(dir.path(), database_url, redis_url);
        Self { binary, _dir: dir }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.binary.address)
    }

    /// Kills the process at once (SIGKILL: no goodbye).
    pub fn crash(&mut self) {
        let _ = self.binary.child.kill();
        let _ = self.binary.child.wait();
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.crash();
    }
}

fn start_node(dir: &Path, database_url: &str, redis_url: &str) -> Binary {
    start_binary(
        &[
            "--database-url",
            database_url,
            "--redis-url",
            redis_url,
            "--token-secret",
            SECRET,
            "--db-pool",
            "4",
        ],
        dir,
    )
}

/// What the nodes of a test cluster share their notes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// One Redis server (`--redis-url redis://…`).
    One,
    /// A Redis Cluster of three masters and three replicas (`--redis-url` lists every node): sharded
    /// pub/sub.
    Shards,
}

/// The Redis a test cluster uses.
pub enum Store {
    One(Redis),
    Shards(RedisCluster),
}

impl Store {
    fn start(backend: Backend) -> Self {
        match backend {
            Backend::One => Self::One(Redis::start()),
            Backend::Shards => Self::Shards(RedisCluster::start()),
        }
    }

    /// The nodes' `--redis-url`.
    fn url(&self) -> String {
        match self {
            Self::One(redis) => redis.url(),
            Self::Shards(cluster) => cluster.seeds().join(","),
        }
    }
}

/// Nodes, their database and their Redis.
pub struct Cluster {
    pub nodes: Vec<Node>,
    pub store: Store,
    pub http: Client,
    _db: PgDatabase,
}

/// Runs the test `$name(backend)` twice: as `$name::one_redis` and as `$name::redis_cluster`.
macro_rules! on_both {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn one_redis() {
                super::$name(crate::cluster::Backend::One).await;
            }

            #[tokio::test]
            async fn redis_cluster() {
                super::$name(crate::cluster::Backend::Shards).await;
            }
        }
    };
}
pub(crate) use on_both;

impl Cluster {
    /// Starts Redis and two nodes at once (they migrate one fresh database together), and waits until
    /// both reach Redis. `None` (the test is skipped) when `TEST_DATABASE_URL` names no PostgreSQL.
    pub async fn start() -> Option<Self> {
        Self::start_on(Backend::One, 2).await
    }

    /// [`start`](Self::start) with `count` nodes on `backend`.
    pub async fn start_on(backend: Backend, count: usize) -> Option<Self> {
        let admin = match std::env::var("TEST_DATABASE_URL") {
            Ok(url) if url.starts_with("postgres") => url,
            _ => {
                eprintln!("cluster test skipped: set TEST_DATABASE_URL to a PostgreSQL server");
                return None;
            }
        };
        let db = PgDatabase::create(admin).await;
        let store = Store::start(backend);
        let starts: Vec<_> = (0..count)
            .map(|_| {
                let (db, redis) = (db.url.clone(), store.url());
                std::thread::spawn(move || Node::start(&db, &redis))
            })
            .collect();
        let nodes = starts.into_iter().map(|s| s.join().unwrap()).collect();
        let cluster = Self {
            nodes,
            store,
            http: Client::new(),
            _db: db,
        };
        for node in 0..count {
            cluster.wait_ready(node, "ready").await;
        }
        Some(cluster)
    }

    /// The single Redis (the test runs on [`Backend::One`]).
    pub fn redis(&mut self) -> &mut Redis {
        match &mut self.store {
            Store::One(redis) => redis,
            Store::Shards(_) => panic!("this test runs on one Redis"),
        }
    }

    /// The Redis Cluster (the test runs on [`Backend::Shards`]).
    pub fn shards(&mut self) -> &mut RedisCluster {
        match &mut self.store {
            Store::Shards(cluster) => cluster,
            Store::One(_) => panic!("this test runs on a Redis Cluster"),
        }
    }

    /// How many connections read `channel`, on either kind of Redis.
    pub fn readers(&self, channel: &str) -> u64 {
        match &self.store {
            Store::One(redis) => redis.readers(channel),
            Store::Shards(cluster) => cluster.readers(channel),
        }
    }

    /// Waits (at most `wait`) until `channel` has `want` readers in Redis; panics otherwise.
    pub async fn readers_become(&self, channel: &str, want: u64, wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let got = self.readers(channel);
            if got == want {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{channel} has {got} readers, not {want}, after {wait:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits (at most 20 s) until `/readyz` of `node` answers `body`.
    pub async fn wait_ready(&self, node: usize, body: &str) {
        let mut last = String::new();
        for _ in 0..200 {
            if let Ok(reply) = self.http.get(self.nodes[node].url("/readyz")).send().await {
                last = reply.text().await.unwrap_or_default();
                if last == body {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("node {node} answers /readyz with {last:?}, not {body:?}");
    }

    /// Signs up `name` on `node`; returns the user's id and token.
    pub async fn signup(&self, node: usize, name: &str) -> (String, String) {
        let body = json!({"name": name, "password": "secret123", "src": "//s3.qiufengh.com/avatar/1.jpeg"});
        let (status, reply) = self.post(node, "/api/user/signup", None, &body).await;
        assert_eq!((status, reply["errno"].as_i64()), (200, Some(0)), "{reply}");
        (
            reply["userInfo"]["id"].as_str().unwrap().to_owned(),
            reply["token"].as_str().unwrap().to_owned(),
        )
    }

    pub async fn post(
        &self,
        node: usize,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> (u16, Value) {
        let mut request = self.http.post(self.nodes[node].url(path)).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let reply = request.send().await.unwrap();
        let status = reply.status().as_u16();
        (status, reply.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, node: usize, path: &str, token: Option<&str>) -> (u16, Value) {
        let mut request = self.http.get(self.nodes[node].url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let reply = request.send().await.unwrap();
        let status = reply.status().as_u16();
        (status, reply.json().await.unwrap_or(Value::Null))
    }

    /// `/metrics` of `node`, as text.
    pub async fn metrics(&self, node: usize) -> String {
        self.http
            .get(self.nodes[node].url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The value of the series `series` (name and labels, as `/metrics` writes them) on `node`; 0 when
    /// it is not there yet.
    pub async fn metric(&self, node: usize, series: &str) -> f64 {
        self.metrics(node)
            .await
            .lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .map_or(0.0, |v| v.trim().parse().unwrap())
    }

    /// A socket.io 4 client of `node`, signed in with `token`.
    pub async fn sio(&self, node: usize, token: &str) -> Sio {
        self.try_sio(node, token).await.expect("socket connects")
    }

    pub async fn try_sio(&self, node: usize, token: &str) -> Result<Sio, String> {
        connect_sio(
            self.nodes[node].url("/"),
            Auth::Payload(token),
            TransportType::Websocket,
        )
        .await
    }
}
