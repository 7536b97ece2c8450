//! The message writer's batches (`services::writer`; on PostgreSQL one `INSERT … FROM UNNEST` per
//! batch, two batches in flight): however messages are grouped into batches, each is stored once,
//! answered with its stored id, repeats are answered with the first copy's id, and ids grow in the
//! order messages are announced. Both databases (the PostgreSQL pass sets `TEST_DATABASE_URL`).

use std::collections::BTreeMap;
use std::time::Duration;

use chatroom::config::store::DEFAULT_WAL_LIMIT;
use chatroom::services::messages::{Kind, NewMessage};
use chatroom::services::rooms::Room;
use chatroom::services::users::Author;
use chatroom::services::writer::{Batch, MessageWriter, Saved, WriterConfig};
use rand::Rng;
use serde_json::Value;
use tokio::sync::mpsc;

use super::{Eio, Raw, text};
use crate::common::TestApp;

const WAIT: Duration = Duration::from_secs(20);
const ROOMS: [&str; 4] = ["b1", "b2", "b3", "b4"];

/// A socket signed in with `token` in every one of [`ROOMS`].
async fn joined(app: &TestApp, eio: Eio, token: &str) -> Raw {
    super::joined(app, eio, token, &ROOMS, WAIT).await
}

/// The ids of the `message` events a socket received, in arrival order, with their client ids.
fn heard(socket: &Raw) -> Vec<(i64, String)> {
    socket
        .seen
        .lock()
        .unwrap()
        .events
        .iter()
        .filter(|(n, _)| n == "message")
        .map(|(_, m)| {
            (
                m["_id"].as_str().unwrap().parse().unwrap(),
                m["clientId"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn concurrent_senders_with_repeats_are_stored_once_and_heard_in_id_order() {
    const CLIENTS: usize = 10;
    const EACH: usize = 50;
    const WAVE: usize = 25;
    let app = TestApp::spawn_with(|s| {
        s.realtime.rooms = ROOMS.iter().map(|r| (*r).to_owned()).collect();
        s.realtime.socket_events_per_second = 100_000;
    })
    .await;
    let watcher_user = app.signup("batch-watcher").await;
    let watcher = joined(&app, Eio::V4, &watcher_user.token).await;
    let mut sockets = Vec::new();
    for k in 0..CLIENTS {
        let user = app.signup(&format!("batch{k}")).await;
        let eio = if k % 2 == 0 { Eio::V3 } else { Eio::V4 };
        sockets.push(joined(&app, eio, &user.token).await);
    }
    // Waves of messages in flight at once (below a socket's inbox of 64), so the writer sees large
    // batches: every fifth message is sent twice in a row (a repeat within a batch, or in the next
    // one while the first is committing).
    let mut sent: Vec<(usize, u64, String, Value)> = Vec::new();
    let mut acked: BTreeMap<String, i64> = BTreeMap::new();
    for wave in 0..EACH / WAVE {
        let mut pending = Vec::new();
        for n in wave * WAVE..(wave + 1) * WAVE {
            for (k, socket) in sockets.iter_mut().enumerate() {
                let room = ROOMS[rand::rng().random_range(0..ROOMS.len())];
                let client_id = format!("b{k}-{n}");
                let message = text(room, &format!("batched {k} {n}"), &client_id);
                let copies = if n % 5 == 0 { 2 } else { 1 };
                for _ in 0..copies {
                    let id = socket.emit_acked("message", &message);
                    pending.push((k, id, client_id.clone(), message.clone()));
                }
            }
        }
        for (k, id, client_id, _) in &pending {
            let ack = sockets[*k].ack(*id, WAIT).await.expect("answered");
            assert_eq!(ack["ok"], true, "{client_id}: {ack}");
            let stored = ack["id"].as_i64().unwrap();
            let first = *acked.entry(client_id.clone()).or_insert(stored);
            assert_eq!(first, stored, "every copy of {client_id} gets one id");
        }
        sent.extend(pending);
    }
    // Repeats in later batches: the same message again, and its client id reused for another one.
    for (k, id, client_id, message) in sent.iter().filter(|(_, _, c, _)| c.ends_with("-7")) {
        let again = sockets[*k].emit_acked("message", message);
        let ack = sockets[*k].ack(again, WAIT).await.expect("answered");
        assert_eq!(ack["ok"], true, "{client_id} again: {ack}");
        assert_eq!(ack["id"].as_i64(), Some(acked[client_id]), "{id}");
        let mut other = message.clone();
        other["msg"] = Value::from("something else");
        let reuse = sockets[*k].emit_acked("message", &other);
        let ack = sockets[*k].ack(reuse, WAIT).await.expect("answered");
        assert_eq!(ack["ok"], false, "{client_id} reused: {ack}");
        assert_eq!(ack["code"], "conflict", "{ack}");
    }

    let stored = super::TestDatabase::rows_by_client_id(app.db()).await;
    assert_eq!(
        app.count("messages").await,
        (CLIENTS * EACH) as i64,
        "each message stored once"
    );
    assert_eq!(
        stored, acked,
        "every acknowledged message is stored, under its id"
    );
    // Announced in commit order, which is id order: the watcher hears each message once, ids rising.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let got = heard(&watcher);
        if got.len() >= CLIENTS * EACH {
            let ids: Vec<i64> = got.iter().map(|(id, _)| *id).collect();
            assert!(
                ids.windows(2).all(|w| w[0] < w[1]),
                "heard once each, in id order"
            );
            let by_client: BTreeMap<String, i64> = got.into_iter().map(|(id, c)| (c, id)).collect();
            assert_eq!(by_client, acked, "heard what was stored");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the watcher heard {} of {}",
            got.len(),
            CLIENTS * EACH
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn message(sender: &Author, n: usize, client_id: Option<String>) -> NewMessage {
    NewMessage {
        sender: sender.id,
        room: Room::Group(ROOMS[n % ROOMS.len()].to_owned()),
        kind: Kind::Text,
        body: format!("message {n}"),
        image: String::new(),
        client_id,
    }
}

async fn outcomes(rx: &mut mpsc::Receiver<Batch<usize>>, n: usize) -> (usize, Vec<(usize, Saved)>) {
    let (mut batches, mut all) = (0, Vec::new());
    while all.len() < n {
        let batch = tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("committed in time")
            .expect("the writer runs");
        batches += 1;
        for c in batch.committed {
            let saved = c
                .result
                .unwrap_or_else(|e| panic!("ticket {}: {e}", c.ticket));
            all.push((c.ticket, saved));
        }
    }
    (batches, all)
}

/// One batch of 10,000 rows: more than the 65,535 parameters of one statement could bind row by row
/// (eight columns a row), with repeats of its own client ids and messages without one. On the pool
/// the server shares, the writer takes a connection for each batch.
#[tokio::test]
async fn a_batch_beyond_the_parameter_limit_is_stored_whole_in_order_once() {
    let app = TestApp::spawn().await;
    a_batch_beyond_the_parameter_limit(&app, app.db().clone(), false).await;
}

/// The same on a SQLite file's connection of the writer's own, which it keeps between batches (as
/// the server's writer does); PostgreSQL has no such connection.
#[tokio::test]
async fn a_batch_beyond_the_parameter_limit_is_stored_whole_on_a_kept_sqlite_connection() {
    let app = TestApp::spawn().await;
    let store = chatroom::db::open(&app.database_url, 1, DEFAULT_WAL_LIMIT)
        .await
        .unwrap();
    if store.writer_is_own {
        a_batch_beyond_the_parameter_limit(&app, store.writer, true).await;
    } else {
        assert!(
            app.database_url.starts_with("postgres"),
            "only PostgreSQL shares"
        );
    }
}

async fn a_batch_beyond_the_parameter_limit(
    app: &TestApp,
    db: sea_orm::DatabaseConnection,
    own_connection: bool,
) {
    const N: usize = 10_000;
    let mut authors = Vec::new();
    for k in 0..3 {
        let user = app.signup(&format!("bulk{k}")).await;
        authors.push(Author {
            id: user.id.parse().unwrap(),
            name: format!("bulk{k}"),
            avatar: String::new(),
        });
    }
    let (tx, mut rx) = mpsc::channel(16);
    let config = WriterConfig {
        capacity: 2 * N,
        batch: 2 * N,
        linger: Duration::ZERO,
        own_connection,
        ..WriterConfig::default()
    };
    let writer = MessageWriter::spawn(db, config, tx);
    // Submitted before the writer task runs (this test's runtime has one thread): one backlog.
    let client_id = |n: usize| (n % 10 != 9).then(|| format!("bulk-{n}"));
    for n in 0..N {
        let author = &authors[n % authors.len()];
        // Every 1,000th message repeats the one 500 before it (same sender, room and text).
        let (source, id) = if n % 1000 == 999 {
            (n - 501, client_id(n - 501))
        } else {
            (n, client_id(n))
        };
        let author = if source == n {
            author
        } else {
            &authors[source % authors.len()]
        };
        writer
            .submit(message(author, source, id), author.clone(), n)
            .unwrap();
    }
    let (batches, results) = outcomes(&mut rx, N).await;
    assert_eq!(batches, 1, "the backlog is one batch");
    let tickets: Vec<usize> = results.iter().map(|(t, _)| *t).collect();
    assert_eq!(tickets, (0..N).collect::<Vec<_>>(), "handed on in order");
    let mut new_ids = Vec::new();
    let mut id_of: BTreeMap<usize, i64> = BTreeMap::new();
    for (n, saved) in &results {
        match saved {
            Saved::New(m) => {
                new_ids.push(m.message.id);
                id_of.insert(*n, m.message.id);
                assert_eq!(m.message.body, format!("message {n}"));
            }
            Saved::Existing(m) => {
                assert_eq!(n % 1000, 999, "only the repeats are not new");
                assert_eq!(
                    m.message.id,
                    id_of[&(n - 501)],
                    "a repeat gets the first's id"
                );
            }
        }
    }
    assert_eq!(new_ids.len(), N - N / 1000);
    assert!(
        new_ids.windows(2).all(|w| w[0] < w[1]),
        "ids in batch order"
    );

    // The next batch: resends of stored ones, a client id reused for another text, new ones.
    let author = &authors[0];
    writer
        .submit(message(author, 0, client_id(0)), author.clone(), 0)
        .unwrap();
    writer
        .submit(message(author, 3, client_id(3)), author.clone(), 1)
        .unwrap();
    writer
        .submit(
            message(author, N, Some("bulk-after".into())),
            author.clone(),
            2,
        )
        .unwrap();
    let mut reused = message(author, 6, client_id(6));
    reused.body = "not the same".into();
    writer.submit(reused, author.clone(), 3).unwrap();
    let mut after = Vec::new();
    while after.len() < 4 {
        let batch = rx.recv().await.unwrap();
        after.extend(batch.committed.into_iter().map(|c| (c.ticket, c.result)));
    }
    assert!(matches!(&after[0].1, Ok(Saved::Existing(m)) if m.message.id == id_of[&0]));
    assert!(matches!(&after[1].1, Ok(Saved::Existing(m)) if m.message.id == id_of[&3]));
    assert!(matches!(&after[2].1, Ok(Saved::New(m)) if m.message.id > *new_ids.last().unwrap()));
    assert!(
        matches!(&after[3].1, Err(chatroom::error::AppError::Conflict(_))),
        "{:?}",
        after[3].1
    );
    writer.close().await;
    assert_eq!(app.count("messages").await, (N - N / 1000 + 1) as i64);
}

/// A row the database refuses (its sender is gone) costs only its own message: the batch is stored
/// one by one, in order, and that message is refused.
#[tokio::test]
async fn a_refused_row_costs_only_its_own_message() {
    let app = TestApp::spawn().await;
    let user = app.signup("rows").await;
    let author = Author {
        id: user.id.parse().unwrap(),
        name: "rows".into(),
        avatar: String::new(),
    };
    let ghost = Author {
        id: 999_999_999,
        name: "ghost".into(),
        avatar: String::new(),
    };
    let (tx, mut rx) = mpsc::channel(16);
    let writer = MessageWriter::spawn(app.db().clone(), WriterConfig::default(), tx);
    for n in 0..20 {
        let who = if n == 10 { &ghost } else { &author };
        writer
            .submit(message(who, n, Some(format!("row-{n}"))), who.clone(), n)
            .unwrap();
    }
    let mut results = Vec::new();
    while results.len() < 20 {
        let batch = tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("answered in time")
            .expect("the writer runs");
        results.extend(batch.committed.into_iter().map(|c| (c.ticket, c.result)));
    }
    let tickets: Vec<usize> = results.iter().map(|(t, _)| *t).collect();
    assert_eq!(tickets, (0..20).collect::<Vec<_>>(), "handed on in order");
    let mut ids = Vec::new();
    for (n, result) in &results {
        match result {
            Ok(Saved::New(m)) if *n != 10 => ids.push(m.message.id),
            Err(_) if *n == 10 => {}
            other => panic!("message {n}: {other:?}"),
        }
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "stored in order");
    writer.close().await;
    assert_eq!(app.count("messages").await, 19);
}
