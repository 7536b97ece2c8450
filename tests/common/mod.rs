//! `TestApp`: the real server on a free loopback port, with its own database and upload directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use chatroom::config::Settings;
use chatroom::state::AppState;
use reqwest::{Client, RequestBuilder, Response};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::oneshot;

pub mod images;
pub mod process;
pub mod socket;

/// A running server.
pub struct TestApp {
    pub addr: SocketAddr,
    pub state: AppState,
    pub http: Client,
    pub dir: TempDir,
    /// The server's database.
    pub database_url: String,
    /// The PostgreSQL server and database name to drop when the test ends.
    pg_database: Option<(String, String)>,
    _stop: oneshot::Sender<()>,
}

/// A signed-up v3 user.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: String,
    pub token: String,
}

impl TestApp {
    /// Starts a server with the test settings.
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// Starts a server after `tweak` has adjusted the test settings.
    pub async fn spawn_with(tweak: impl FnOnce(&mut Settings)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (url, pg_database) = fresh_database(dir.path()).await;
        let mut settings = Settings::for_tests(url.clone(), dir.path().join("uploads"));
        settings.store.pool = 4;
        tweak(&mut settings);
        let state = chatroom::app::state(settings).await.expect("state");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let router = chatroom::app::build(state.clone());
        let options = chatroom::listener::ServeOptions::new(&state);
        tokio::spawn(chatroom::app::serve(
            listener,
            router,
            options,
            async move {
                let _ = stopped.await;
            },
        ));
        let http = Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Self {
            addr,
            state,
            http,
            dir,
            database_url: url,
            pg_database,
            _stop: stop,
        }
    }

    /// Signs up a Laravel-era user by e-mail; returns its id and `api_token`.
    pub async fn register_legacy(&self, email: &str) -> TestUser {
        let body = json!({"name": email, "password": "secret123", "src": "//s3.qiufengh.com/avatar/2.jpeg"});
        let (status, reply) = self.post_json("/api/register", &body).await;
        assert_eq!(
            (status, reply["errno"].as_i64()),
            (200, Some(0)),
            "register {email}: {reply}"
        );
        TestUser {
            id: reply["user"]["id"].to_string(),
            token: reply["user"]["api_token"].as_str().unwrap().to_owned(),
        }
    }

    /// Runs the first half of a graceful shutdown (what SIGTERM does before HTTP stops).
    pub async fn drain(&self) {
        chatroom::app::drain(&self.state).await;
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.state.db
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn get(&self, path: &str) -> RequestBuilder {
        self.http.get(self.url(path))
    }

    pub fn post(&self, path: &str) -> RequestBuilder {
        self.http.post(self.url(path))
    }

    /// POSTs JSON and returns the status and the JSON reply.
    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        read(self.post(path).json(body).send().await.unwrap()).await
    }

    /// GETs with a v3 `Authorization` header (`Bearer false` without a token) and returns status and JSON.
    pub async fn get_v3(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        read(
            self.get(path)
                .header("authorization", bearer(token))
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// POSTs JSON with a v3 `Authorization` header.
    pub async fn post_v3(&self, path: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
        read(
            self.post(path)
                .header("authorization", bearer(token))
                .json(body)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// Signs up a v3 user (password `secret123`).
    pub async fn signup(&self, name: &str) -> TestUser {
        let (status, body) =
            self.post_json("/api/user/signup", &json!({"name": name, "password": "secret123", "src": "//s3.qiufengh.com/avatar/1.jpeg"})).await;
        assert_eq!(
            (status, body["errno"].as_i64()),
            (200, Some(0)),
            "signup {name}: {body}"
        );
        TestUser {
            id: body["userInfo"]["id"].as_str().unwrap().to_owned(),
            token: body["token"].as_str().unwrap().to_owned(),
        }
    }

    /// Stores a message directly in the database, bypassing the server (to prepare history).
    pub async fn seed_message(&self, sender: &TestUser, room: &str, text: &str) -> i64 {
        use chatroom::services::messages::{self, Kind, NewMessage};
        let sender_id: i64 = sender.id.parse().unwrap();
        let user = chatroom::services::users::find(self.db(), sender_id)
            .await
            .unwrap()
            .unwrap();
        let room = self.state.rooms.parse(room).expect("room");
        let new = NewMessage {
            sender: sender_id,
            room,
            kind: Kind::Text,
            body: text.to_owned(),
            image: String::new(),
            client_id: Some(format!("c-{}", rand_suffix())),
        };
        messages::insert(
            self.db(),
            new,
            chatroom::services::users::Author::from(&user),
        )
        .await
        .unwrap()
        .message
        .id
    }

    /// How many rows `table` holds.
    pub async fn count(&self, table: &str) -> i64 {
        let row = self
            .db()
            .query_one_raw(sea_orm::Statement::from_string(
                self.db().get_database_backend(),
                format!("SELECT COUNT(*) AS n FROM {table}"),
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get::<i64>("", "n").unwrap()
    }

    /// The ids of all stored messages.
    pub async fn message_ids(&self) -> Vec<i64> {
        use sea_orm::{EntityTrait, QuerySelect};
        entity::message::Entity::find()
            .select_only()
            .column(entity::message::Column::Id)
            .into_tuple()
            .all(self.db())
            .await
            .unwrap()
    }

    /// Files in the upload directory, temporary ones included.
    pub fn upload_files(&self) -> Vec<PathBuf> {
        match std::fs::read_dir(self.state.uploads.dir()) {
            Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
            Err(_) => Vec::new(),
        }
    }
}

pub fn bearer(token: Option<&str>) -> String {
    format!("Bearer {}", token.unwrap_or("false"))
}

/// Status and JSON body (`Value::Null` when the body is not JSON).
pub async fn read(response: Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

pub fn rand_suffix() -> String {
    format!("{:x}", rand::random::<u64>())
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // Drop the test's PostgreSQL database, closing the server's connections to it. This runs on a
        // thread of its own because the test's runtime may already be shutting down.
        if let Some((admin, name)) = self.pg_database.take() {
            drop_pg_database(admin, name);
        }
    }
}

/// Creates a fresh database on the PostgreSQL server at `admin` (a URL naming an existing database);
/// returns the new database's URL and name. Its name starts `chatroom_test_`, which `.ci/run` clears
/// if an interrupted run left it behind.
pub async fn create_pg_database(admin: &str) -> (String, String) {
    let name = format!("chatroom_test_{}", rand_suffix());
    let db = Database::connect(admin)
        .await
        .expect("the test PostgreSQL server is reachable");
    db.execute_unprepared(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap();
    db.close().await.unwrap();
    let base = admin.rsplit_once('/').map_or(admin, |(base, _)| base);
    (format!("{base}/{name}"), name)
}

/// Drops the database `name` of the PostgreSQL server at `admin`, closing its connections. It runs on
/// a thread of its own because the test's runtime may already be shutting down.
pub fn drop_pg_database(admin: String, name: String) {
    let dropped = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let db = Database::connect(admin.as_str()).await?;
            db.execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await?;
            db.close().await
        })
    });
    if let Ok(Err(e)) = dropped.join() {
        eprintln!("could not drop test database: {e}");
    }
}

/// A new empty database: a SQLite file in `dir`, or a fresh PostgreSQL database when
/// `TEST_DATABASE_URL` names a server (returned with the server's URL, to drop it afterwards).
async fn fresh_database(dir: &Path) -> (String, Option<(String, String)>) {
    match std::env::var("TEST_DATABASE_URL") {
        Ok(admin) if admin.starts_with("postgres") => {
            let (url, name) = create_pg_database(&admin).await;
            (url, Some((admin, name)))
        }
        _ => (
            format!("sqlite://{}?mode=rwc", dir.join("chatroom.db").display()),
            None,
        ),
    }
}
