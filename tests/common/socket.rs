//! Socket clients for tests: rust_socketio (Engine.IO 4, what socket.io 3/4 clients speak), and two
//! small raw Engine.IO 3 clients (socket.io 1.x/2.x), one on WebSocket and one on long-polling that
//! frames its bodies the way socket.io-client 1.7 does in a browser.

use std::time::Duration;

use futures_util::{FutureExt, SinkExt, StreamExt};
use reqwest::Client;
use rust_socketio::asynchronous::{Client as SioHandle, ClientBuilder};
use rust_socketio::{Event, Payload, TransportType};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

use super::TestApp;

/// How long a test waits for an event it expects.
pub const WAIT: Duration = Duration::from_secs(5);
/// How long a test waits to be sure an event does not come.
pub const QUIET: Duration = Duration::from_millis(400);

/// Events received by a client, in order, with a look-ahead buffer.
pub struct Inbox {
    rx: mpsc::UnboundedReceiver<(String, Value)>,
    seen: Vec<(String, Value)>,
}

impl Inbox {
    fn new(rx: mpsc::UnboundedReceiver<(String, Value)>) -> Self {
        Self {
            rx,
            seen: Vec::new(),
        }
    }

    /// The next `event` (earlier events of other names stay buffered). Panics after [`WAIT`].
    pub async fn next(&mut self, event: &str) -> Value {
        self.try_next(event, WAIT)
            .await
            .unwrap_or_else(|| panic!("no `{event}` event within {WAIT:?}; got {:?}", self.seen))
    }

    /// The next `event` within `wait`, if any.
    pub async fn try_next(&mut self, event: &str, wait: Duration) -> Option<Value> {
        if let Some(i) = self.seen.iter().position(|(e, _)| e == event) {
            return Some(self.seen.remove(i).1);
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some((e, v))) if e == event => return Some(v),
                Ok(Some(other)) => self.seen.push(other),
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// Panics if `event` arrives within [`QUIET`].
    pub async fn nothing(&mut self, event: &str) {
        if let Some(v) = self.try_next(event, QUIET).await {
            panic!("unexpected `{event}`: {v}");
        }
    }
}

/// A socket.io 4 client (rust_socketio).
pub struct Sio {
    pub client: SioHandle,
    pub inbox: Inbox,
}

impl Sio {
    /// Emits `event` with one argument.
    pub async fn emit(&self, event: &str, data: Value) {
        self.client.emit(event, data).await.expect("emit");
    }

    /// Emits `event` and waits for its acknowledgement.
    pub async fn ack(&self, event: &str, data: Value) -> Value {
        self.try_ack(event, data).await.expect("no acknowledgement")
    }

    /// Emits `event`; its acknowledgement, or `None` if the connection closed first.
    pub async fn try_ack(&self, event: &str, data: Value) -> Option<Value> {
        let (tx, rx) = oneshot::channel();
        let tx = std::sync::Mutex::new(Some(tx));
        self.client
            .emit_with_ack(event, data, WAIT, move |payload: Payload, _| {
                // rust_socketio hands over an acknowledgement's arguments as one array.
                let first = match payload {
                    Payload::Text(mut values) if !values.is_empty() => match values.remove(0) {
                        Value::Array(mut args) if !args.is_empty() => args.remove(0),
                        other => other,
                    },
                    _ => Value::Null,
                };
                if let Some(tx) = tx.lock().unwrap().take() {
                    let _ = tx.send(first);
                }
                async {}.boxed()
            })
            .await
            .expect("emit with ack");
        tokio::time::timeout(WAIT, rx).await.ok()?.ok()
    }

    pub async fn disconnect(self) {
        let _ = self.client.disconnect().await;
    }
}

/// How a test client authenticates.
pub enum Auth<'a> {
    None,
    Payload(&'a str),
    Query(&'a str),
}

impl TestApp {
    /// A connected socket.io 4 client (waits for the namespace to be joined).
    pub async fn sio(&self, auth: Auth<'_>) -> Sio {
        self.try_sio(auth, TransportType::Any)
            .await
            .expect("socket connects")
    }

    /// A socket.io 4 client, or the connection error the server answered with.
    pub async fn try_sio(&self, auth: Auth<'_>, transport: TransportType) -> Result<Sio, String> {
        connect_sio(self.url("/"), auth, transport).await
    }
}

/// A socket.io 4 client of the server at `url` (`http://host:port/`), or the connection error the
/// server answered with.
pub async fn connect_sio(
    mut url: String,
    auth: Auth<'_>,
    transport: TransportType,
) -> Result<Sio, String> {
    let mut builder = ClientBuilder::new(url.clone());
    match auth {
        Auth::None => {}
        Auth::Payload(token) => builder = builder.auth(json!({ "token": token })),
        Auth::Query(token) => {
            url = format!("{url}?token={token}");
            builder = ClientBuilder::new(url);
        }
    }
    let (tx, rx) = mpsc::unbounded_channel();
    let (open_tx, mut open_rx) = mpsc::unbounded_channel::<Result<(), String>>();
    let error_tx = open_tx.clone();
    let client = builder
        .transport_type(transport)
        .reconnect(false)
        .on("open", move |_, _| {
            let _ = open_tx.send(Ok(()));
            async {}.boxed()
        })
        .on(Event::Error, move |payload, _| {
            let _ = error_tx.send(Err(format!("{payload:?}")));
            async {}.boxed()
        })
        .on_any(move |event, payload, _| {
            // rust_socketio reports the event named `message` as `Event::Message`.
            let name = match event {
                Event::Custom(name) => Some(name),
                Event::Message => Some("message".to_owned()),
                _ => None,
            };
            if let (Some(name), Payload::Text(mut values)) = (name, payload) {
                let first = if values.is_empty() {
                    Value::Null
                } else {
                    values.remove(0)
                };
                let _ = tx.send((name, first));
            }
            async {}.boxed()
        })
        .connect()
        .await
        .map_err(|e| e.to_string())?;
    // `connect` returns before the namespace is joined: wait for `open`, then for the server to
    // accept or refuse the namespace connection.
    match tokio::time::timeout(WAIT, open_rx.recv()).await {
        Ok(Some(Ok(()))) => {}
        Ok(Some(Err(e))) => return Err(e),
        _ => return Err("no open event".into()),
    }
    if let Ok(Some(Err(e))) = tokio::time::timeout(QUIET, open_rx.recv()).await {
        return Err(e);
    }
    Ok(Sio {
        client,
        inbox: Inbox::new(rx),
    })
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A frame an [`Eio3`] client received, in arrival order.
#[derive(Debug, Clone)]
pub enum Received {
    Event(String, Value),
    Ack(u64, Value),
}

/// A raw Engine.IO 3 / socket.io protocol 4 client over WebSocket (what socket.io 1.x/2.x speak).
pub struct Eio3 {
    sink: futures_util::stream::SplitSink<Ws, Message>,
    pub inbox: Inbox,
    acks: mpsc::UnboundedReceiver<(u64, Value)>,
    next_ack: u64,
    pub closed: oneshot::Receiver<()>,
    /// Every event and acknowledgement, in the order they arrived.
    pub log: std::sync::Arc<std::sync::Mutex<Vec<Received>>>,
}

impl Eio3 {
    /// Connects with `query` (e.g. `api_token=…`) and waits for the namespace CONNECT (`40`).
    pub async fn connect(app: &TestApp, query: &str) -> Self {
        Self::connect_to(&app.addr.to_string(), query).await
    }

    /// Connects to the server at `address` (`host:port`), as [`Eio3::connect`] does.
    pub async fn connect_to(address: &str, query: &str) -> Self {
        let url = format!("ws://{address}/socket.io/?EIO=3&transport=websocket&{query}");
        let (ws, _) = tokio_tungstenite::connect_async(url)
            .await
            .expect("ws connect");
        let (sink, mut stream) = ws.split();
        let (tx, rx) = mpsc::unbounded_channel();
        let (ack_tx, acks) = mpsc::unbounded_channel();
        let (closed_tx, closed) = oneshot::channel();
        let (connected_tx, connected) = oneshot::channel();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let logged = log.clone();
        tokio::spawn(async move {
            let mut connected_tx = Some(connected_tx);
            while let Some(Ok(frame)) = stream.next().await {
                let Message::Text(text) = frame else { continue };
                let text = text.as_str();
                if text.starts_with("40") {
                    if let Some(c) = connected_tx.take() {
                        let _ = c.send(());
                    }
                } else if let Some(body) = text.strip_prefix("42") {
                    if let Ok(Value::Array(mut args)) = serde_json::from_str::<Value>(body)
                        && let Some(Value::String(name)) = args.first().cloned()
                    {
                        let first = if args.len() > 1 {
                            args.remove(1)
                        } else {
                            Value::Null
                        };
                        logged
                            .lock()
                            .unwrap()
                            .push(Received::Event(name.clone(), first.clone()));
                        let _ = tx.send((name, first));
                    }
                } else if let Some(body) = text.strip_prefix("43") {
                    let digits: String = body.chars().take_while(char::is_ascii_digit).collect();
                    if let (Ok(id), Ok(Value::Array(mut args))) = (
                        digits.parse(),
                        serde_json::from_str::<Value>(&body[digits.len()..]),
                    ) {
                        let first = if args.is_empty() {
                            Value::Null
                        } else {
                            args.remove(0)
                        };
                        logged
                            .lock()
                            .unwrap()
                            .push(Received::Ack(id, first.clone()));
                        let _ = ack_tx.send((id, first));
                    }
                } else if let Some(body) = text.strip_prefix("44") {
                    let _ = tx.send((
                        "error".into(),
                        serde_json::from_str(body).unwrap_or_default(),
                    ));
                }
            }
            let _ = closed_tx.send(());
        });
        tokio::time::timeout(WAIT, connected)
            .await
            .expect("no CONNECT packet")
            .expect("connection closed before CONNECT");
        Self {
            sink,
            inbox: Inbox::new(rx),
            acks,
            next_ack: 0,
            closed,
            log,
        }
    }

    /// Closes the WebSocket (a tab closing).
    pub async fn close(mut self) {
        let _ = self.sink.send(Message::Close(None)).await;
        let _ = self.sink.close().await;
    }

    /// Sends a raw Engine.IO frame.
    pub async fn send_raw(&mut self, frame: String) {
        self.sink.send(Message::text(frame)).await.expect("send");
    }

    /// Emits `event` with one argument.
    pub async fn emit(&mut self, event: &str, data: Value) {
        self.send_raw(format!("42{}", json!([event, data]))).await;
    }

    /// Emits `event` asking for an acknowledgement; returns the acknowledgement id.
    pub async fn emit_acked(&mut self, event: &str, data: Value) -> u64 {
        let id = self.next_ack;
        self.next_ack += 1;
        self.send_raw(format!("42{id}{}", json!([event, data])))
            .await;
        id
    }

    /// Waits until `n` acknowledgements have arrived in all (panics after `wait`); returns them.
    pub async fn acks(&mut self, n: usize, wait: Duration) -> Vec<(u64, Value)> {
        let mut acks = Vec::with_capacity(n);
        let deadline = tokio::time::Instant::now() + wait;
        while acks.len() < n {
            match tokio::time::timeout_at(deadline, self.acks.recv()).await {
                Ok(Some(ack)) => acks.push(ack),
                _ => panic!("{} of {n} acknowledgements within {wait:?}", acks.len()),
            }
        }
        acks
    }

    /// Every acknowledgement that arrives until the server closes the connection.
    pub async fn acks_until_closed(&mut self) -> Vec<(u64, Value)> {
        let mut acks = Vec::new();
        while let Ok(Some(ack)) = tokio::time::timeout(WAIT, self.acks.recv()).await {
            acks.push(ack);
        }
        acks
    }

    /// Emits `event` and waits for its acknowledgement.
    pub async fn ack(&mut self, event: &str, data: Value) -> Value {
        let id = self.emit_acked(event, data).await;
        loop {
            let (got, value) = tokio::time::timeout(WAIT, self.acks.recv())
                .await
                .expect("no acknowledgement")
                .expect("connection closed");
            if got == id {
                return value;
            }
        }
    }
}

/// A raw Engine.IO 3 long-polling client that writes bodies as socket.io-client 1.7 does in a browser
/// (byte lengths, non-ASCII UTF-8-encoded twice) and reads the binary payload framing. It keeps
/// cookies, like the browser: the `io` session cookie comes back with API requests.
pub struct Polling {
    pub http: Client,
    base: String,
    pub sid: String,
}

impl Polling {
    /// Opens a session (`query` is appended to the handshake) and reads up to the namespace CONNECT.
    pub async fn open(app: &TestApp, query: &str) -> Self {
        let http = Client::builder().cookie_store(true).build().unwrap();
        Self::open_with(app, query, http).await
    }

    /// Like [`Polling::open`], with the cookies of an earlier session (a reload of the same page).
    pub async fn open_with(app: &TestApp, query: &str, http: Client) -> Self {
        let base = format!("http://{}/socket.io/?EIO=3&transport=polling", app.addr);
        let res = http.get(format!("{base}&{query}")).send().await.unwrap();
        assert_eq!(res.status(), 200);
        assert!(
            res.headers()
                .get_all("set-cookie")
                .iter()
                .any(|c| c.to_str().unwrap().starts_with("io=")),
            "the handshake sets the io cookie"
        );
        let packets = decode_binary_payload(&res.bytes().await.unwrap());
        let open: Value = serde_json::from_str(packets[0].strip_prefix('0').unwrap()).unwrap();
        let sid = open["sid"].as_str().unwrap().to_owned();
        let this = Self { http, base, sid };
        let mut packets = packets[1..].to_vec();
        if packets.is_empty() {
            packets = this.poll().await;
        }
        assert!(
            packets.iter().any(|p| p == "40"),
            "CONNECT after open: {packets:?}"
        );
        this
    }

    fn url(&self) -> String {
        format!("{}&sid={}", self.base, self.sid)
    }

    /// POSTs JSON to the API from the same browser (its cookies go along): status and JSON reply.
    pub async fn post_json(&self, app: &TestApp, path: &str, body: &Value) -> (u16, Value) {
        let request = self.http.post(app.url(path)).json(body);
        super::read(request.send().await.unwrap()).await
    }

    /// Sends packets the way the 1.7 browser client does.
    pub async fn send(&self, packets: &[String]) {
        let mut body = String::new();
        for p in packets {
            body.push_str(&format!("{}:", p.len()));
            body.extend(p.bytes().map(char::from));
        }
        let res = self
            .http
            .post(self.url())
            .header("content-type", "text/plain;charset=UTF-8")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            res.status(),
            200,
            "{}",
            res.text().await.unwrap_or_default()
        );
    }

    /// Emits `event` with one argument.
    pub async fn emit(&self, event: &str, data: Value) {
        self.send(&[format!("42{}", json!([event, data]))]).await;
    }

    /// One long-poll: the packets the server had for us.
    pub async fn poll(&self) -> Vec<String> {
        let res = tokio::time::timeout(WAIT, self.http.get(self.url()).send())
            .await
            .expect("poll timed out")
            .unwrap();
        assert_eq!(res.status(), 200);
        let binary = res
            .headers()
            .get("content-type")
            .is_some_and(|c| c.to_str().unwrap().starts_with("application/octet-stream"));
        let bytes = res.bytes().await.unwrap();
        assert!(
            binary,
            "EIO3 polling answers use the binary framing: {bytes:?}"
        );
        decode_binary_payload(&bytes)
    }

    /// Polls until an `event` arrives; returns its first argument.
    pub async fn next(&self, event: &str) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        while tokio::time::Instant::now() < deadline {
            for packet in self.poll().await {
                if let Some(body) = packet.strip_prefix("42")
                    && let Ok(Value::Array(args)) = serde_json::from_str::<Value>(body)
                    && args.first() == Some(&json!(event))
                {
                    return args.get(1).cloned().unwrap_or(Value::Null);
                }
            }
        }
        panic!("no `{event}` over polling");
    }
}

/// Decodes an Engine.IO 3 binary payload as socket.io-client 1.x does: string packets with their
/// length in UTF-8 bytes. Panics on anything else, which is the 1.x client's `parser error`.
pub fn decode_binary_payload(mut bytes: &[u8]) -> Vec<String> {
    let mut packets = Vec::new();
    while !bytes.is_empty() {
        assert_eq!(bytes[0], 0, "string packet expected: {bytes:?}");
        let sep = bytes
            .iter()
            .position(|&b| b == 0xFF)
            .expect("length separator");
        let len = bytes[1..sep]
            .iter()
            .fold(0usize, |n, d| n * 10 + usize::from(*d));
        let packet = &bytes[sep + 1..sep + 1 + len];
        packets
            .push(String::from_utf8(packet.to_vec()).expect("packet is UTF-8 of its byte length"));
        bytes = &bytes[sep + 1 + len..];
    }
    packets
}
