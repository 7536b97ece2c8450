//! Durability and faults (`docs/reliability.md`, "Durability and faults"; test plan R1, R2, R5–R7,
//! R10–R13): shutdown under load, kill -9, a database that restarts or stops answering, clients that
//! stop reading, churn and soak. Most run the real binary (`common::process`), so signals, exit codes and
//! what reached the database are what an operator would see.

pub mod batches;
pub mod checkpoint;
pub mod churn;
pub mod crash;
pub mod database;
pub mod order;
pub mod shutdown;
pub mod slow;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio_tungstenite::tungstenite::Message;

use crate::common::{TestApp, create_pg_database, drop_pg_database};

/// Socket.IO protocol generations a raw client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eio {
    /// Engine.IO 3: socket.io 1.x/2.x (both web clients).
    V3,
    /// Engine.IO 4: socket.io 3.x/4.x.
    V4,
}

/// What a raw client has received so far.
#[derive(Debug, Default)]
pub struct Seen {
    /// Acknowledgements by id.
    pub acks: BTreeMap<u64, Value>,
    /// Events, in arrival order.
    pub events: Vec<(String, Value)>,
    /// The server sent a Socket.IO DISCONNECT (`41`): the client sees "io server disconnect".
    pub disconnected: bool,
    /// Acknowledgements that came after the DISCONNECT packet (there must be none).
    pub acks_after_disconnect: usize,
    /// The transport is gone (a client that saw no DISCONNECT sees "transport close").
    pub closed: bool,
}

/// A raw socket.io client over WebSocket, in either protocol, that answers pings and records
/// everything it receives.
pub struct Raw {
    out: mpsc::UnboundedSender<Message>,
    next_ack: u64,
    pub seen: Arc<Mutex<Seen>>,
    /// Becomes true when the transport closes.
    pub gone: watch::Receiver<bool>,
    tasks: [tokio::task::AbortHandle; 2],
}

impl Raw {
    /// Connects to `address` with `query` (e.g. `token=…`) and waits for the namespace CONNECT.
    ///
    /// # Errors
    /// The server's refusal (`44…`) or why the connection failed.
    pub async fn connect(address: &str, eio: Eio, query: &str) -> Result<Self, String> {
        let version = match eio {
            Eio::V3 => 3,
            Eio::V4 => 4,
        };
        let url = format!("ws://{address}/socket.io/?EIO={version}&transport=websocket&{query}");
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .map_err(|e| e.to_string())?;
        let (mut sink, mut stream) = ws.split();
        let (out, mut outgoing) = mpsc::unbounded_channel::<Message>();
        let writer = tokio::spawn(async move {
            while let Some(m) = outgoing.recv().await {
                if sink.send(m).await.is_err() {
                    break;
                }
            }
            let _ = sink.close().await;
        });
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (gone_tx, gone) = watch::channel(false);
        let (connected_tx, mut connected) = mpsc::unbounded_channel::<Result<(), String>>();
        let pong = out.clone();
        let record = seen.clone();
        let reader = tokio::spawn(async move {
            while let Some(Ok(frame)) = stream.next().await {
                let Message::Text(text) = frame else { continue };
                let text = text.as_str();
                if text.starts_with('0') && eio == Eio::V4 {
                    let _ = pong.send(Message::text("40"));
                } else if text == "2" {
                    let _ = pong.send(Message::text("3"));
                } else if text.starts_with("40") {
                    let _ = connected_tx.send(Ok(()));
                } else if let Some(body) = text.strip_prefix("44") {
                    let _ = connected_tx.send(Err(body.to_owned()));
                } else if text.starts_with("41") {
                    record.lock().unwrap().disconnected = true;
                } else if let Some(body) = text.strip_prefix("42") {
                    if let Ok(Value::Array(mut args)) = serde_json::from_str::<Value>(body)
                        && let Some(Value::String(name)) = args.first().cloned()
                    {
                        let first = if args.len() > 1 {
                            args.remove(1)
                        } else {
                            Value::Null
                        };
                        record.lock().unwrap().events.push((name, first));
                    }
                } else if let Some(body) = text.strip_prefix("43") {
                    let digits: String = body.chars().take_while(char::is_ascii_digit).collect();
                    if let (Ok(id), Ok(Value::Array(mut args))) = (
                        digits.parse::<u64>(),
                        serde_json::from_str::<Value>(&body[digits.len()..]),
                    ) {
                        let first = if args.is_empty() {
                            Value::Null
                        } else {
                            args.remove(0)
                        };
                        let mut seen = record.lock().unwrap();
                        if seen.disconnected {
                            seen.acks_after_disconnect += 1;
                        }
                        seen.acks.insert(id, first);
                    }
                }
            }
            record.lock().unwrap().closed = true;
            let _ = gone_tx.send(true);
        });
        match tokio::time::timeout(Duration::from_secs(10), connected.recv()).await {
            Ok(Some(Ok(()))) => Ok(Self {
                out,
                next_ack: 0,
                seen,
                gone,
                tasks: [writer.abort_handle(), reader.abort_handle()],
            }),
            Ok(Some(Err(e))) => Err(e),
            _ => Err("no CONNECT packet".into()),
        }
    }

    /// Emits `event` asking for an acknowledgement; returns its id (false sends are ignored: the
    /// transport is gone).
    pub fn emit_acked(&mut self, event: &str, data: &Value) -> u64 {
        let id = self.next_ack;
        self.next_ack += 1;
        let _ = self
            .out
            .send(Message::text(format!("42{id}{}", json!([event, data]))));
        id
    }

    /// Emits `event` without asking for an acknowledgement.
    pub fn emit(&self, event: &str, data: &Value) {
        let _ = self
            .out
            .send(Message::text(format!("42{}", json!([event, data]))));
    }

    /// The acknowledgement `id`, waiting at most `wait`.
    pub async fn ack(&self, id: u64, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(v) = self.seen.lock().unwrap().acks.get(&id) {
                return Some(v.clone());
            }
            if tokio::time::Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits (at most `wait`) until the transport is gone; true if it is.
    pub async fn until_gone(&mut self, wait: Duration) -> bool {
        tokio::time::timeout(wait, self.gone.wait_for(|g| *g))
            .await
            .is_ok()
    }

    /// The next event named `name` at or after position `from` of the event log, waiting at most
    /// `wait`.
    pub async fn event(&self, name: &str, from: usize, wait: Duration) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some((_, v)) = self
                .seen
                .lock()
                .unwrap()
                .events
                .iter()
                .skip(from)
                .find(|(n, _)| n == name)
            {
                return Some(v.clone());
            }
            if tokio::time::Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Drops the connection without a WebSocket or Engine.IO goodbye (a tab killed, a lost network).
    pub fn abort(&self) {
        for task in &self.tasks {
            task.abort();
        }
    }

    /// Closes the WebSocket.
    pub fn close(&self) {
        let _ = self.out.send(Message::Close(None));
    }
}

/// A v3 message payload for group room `room`.
pub fn text(room: &str, msg: &str, client_id: &str) -> Value {
    json!({"msg": msg, "img": "", "roomid": room, "clientId": client_id})
}

/// Signs up `name` on the server at `address`; returns the token.
pub async fn signup(http: &reqwest::Client, address: &str, name: &str) -> String {
    let reply = http
        .post(format!("http://{address}/api/user/signup"))
        .json(&json!({"name": name, "password": "secret123"}))
        .send()
        .await
        .unwrap();
    let (status, body) = crate::common::read(reply).await;
    assert_eq!(status, 200, "signup {name}: {body}");
    body["token"].as_str().unwrap().to_owned()
}

/// A database for a test's own server: a fresh PostgreSQL database when `TEST_DATABASE_URL` names a
/// server, otherwise a SQLite file in `dir`. Dropped with the returned guard.
pub struct TestDatabase {
    pub url: String,
    admin: Option<(String, String)>,
}

impl TestDatabase {
    pub async fn new(dir: &std::path::Path) -> Self {
        match std::env::var("TEST_DATABASE_URL") {
            Ok(admin) if admin.starts_with("postgres") => Self::postgres(&admin).await,
            _ => Self {
                url: format!("sqlite://{}?mode=rwc", dir.join("chatroom.db").display()),
                admin: None,
            },
        }
    }

    /// A fresh database on the PostgreSQL server at `admin` (a URL naming an existing database).
    pub async fn postgres(admin: &str) -> Self {
        let (url, name) = create_pg_database(admin).await;
        Self {
            url,
            admin: Some((admin.to_owned(), name)),
        }
    }

    pub async fn connect(&self) -> DatabaseConnection {
        Database::connect(self.url.as_str()).await.unwrap()
    }

    /// The ids of the messages stored in each room, in stored order.
    pub async fn rows_by_room(db: &DatabaseConnection) -> BTreeMap<String, Vec<i64>> {
        let rows = db
            .query_all_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                "SELECT room_id, id FROM messages ORDER BY id",
            ))
            .await
            .unwrap();
        let mut by_room: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for r in rows {
            by_room
                .entry(r.try_get::<String>("", "room_id").unwrap())
                .or_default()
                .push(r.try_get::<i64>("", "id").unwrap());
        }
        by_room
    }

    /// Every stored message's id, by client id.
    pub async fn rows_by_client_id(db: &DatabaseConnection) -> BTreeMap<String, i64> {
        let rows = db
            .query_all_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                "SELECT client_id, id FROM messages WHERE client_id IS NOT NULL",
            ))
            .await
            .unwrap();
        rows.into_iter()
            .map(|r| {
                (
                    r.try_get::<String>("", "client_id").unwrap(),
                    r.try_get::<i64>("", "id").unwrap(),
                )
            })
            .collect()
    }

    /// Every stored message's `(client id, id)`.
    pub async fn stored(&self) -> Vec<(String, i64)> {
        let db = self.connect().await;
        let rows = db
            .query_all_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                "SELECT client_id, id FROM messages ORDER BY id",
            ))
            .await
            .unwrap();
        let stored = rows
            .iter()
            .map(|r| {
                (
                    r.try_get::<Option<String>>("", "client_id")
                        .unwrap()
                        .unwrap_or_default(),
                    r.try_get::<i64>("", "id").unwrap(),
                )
            })
            .collect();
        db.close().await.unwrap();
        stored
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let Some((admin, name)) = self.admin.take() {
            drop_pg_database(admin, name);
        }
    }
}

/// The sum of a `/metrics` series over its labels (0 when absent).
pub async fn metric(app: &TestApp, name: &str) -> f64 {
    series_from(app.get("/metrics"), name).await
}

/// The sum of a `/metrics` series over its labels, of the binary at `address` (0 when absent).
pub async fn binary_metric(http: &reqwest::Client, address: &str, name: &str) -> f64 {
    series_from(http.get(format!("http://{address}/metrics")), name).await
}

async fn series_from(request: reqwest::RequestBuilder, name: &str) -> f64 {
    let text = request.send().await.unwrap().text().await.unwrap();
    sum_of_series(&text, name)
}

/// The sum of the Prometheus series `name` over its labels in `/metrics` text (0 when absent).
pub fn sum_of_series(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A socket signed in with `token` that has joined `rooms`: each join is answered with the room's
/// list, and every answer has come within `wait`.
pub async fn joined(app: &TestApp, eio: Eio, token: &str, rooms: &[&str], wait: Duration) -> Raw {
    let socket = Raw::connect(&app.addr.to_string(), eio, &format!("token={token}"))
        .await
        .expect("connects");
    for room in rooms {
        socket.emit("room", &serde_json::json!({"roomid": room}));
    }
    let deadline = tokio::time::Instant::now() + wait;
    while socket
        .seen
        .lock()
        .unwrap()
        .events
        .iter()
        .filter(|(n, _)| n == "room")
        .count()
        < rooms.len()
    {
        assert!(tokio::time::Instant::now() < deadline, "joined every room");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    socket
}

/// A raw client of protocol `eio` authenticated with `token`, in group room `room1`.
pub async fn in_room(address: &str, eio: Eio, token: &str) -> Raw {
    let socket = Raw::connect(address, eio, &format!("token={token}"))
        .await
        .expect("connects");
    socket.emit("room", &json!({"roomid": "room1"}));
    // A bound for a loaded machine running the whole suite in parallel, not a speed check.
    socket
        .event("room", 0, Duration::from_secs(30))
        .await
        .expect("joined");
    socket
}

/// One client of a load: sends messages with client ids `<tag>-<n>`, at most 16 unanswered, one
/// every 2 ms, until the server disconnects it or the connection drops. Returns how many it sent.
pub async fn send_until_disconnected(socket: &mut Raw, tag: &str) -> u64 {
    const WINDOW: u64 = 16;
    let mut sent = 0;
    loop {
        let (gone, answered) = {
            let seen = socket.seen.lock().unwrap();
            (seen.disconnected || seen.closed, seen.acks.len() as u64)
        };
        if gone {
            break;
        }
        if sent - answered >= WINDOW {
            tokio::time::sleep(Duration::from_millis(2)).await;
            continue;
        }
        socket.emit_acked("message", &text("room1", "load", &format!("{tag}-{sent}")));
        sent += 1;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    sent
}
