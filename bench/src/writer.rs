//! `chatroom-bench writer`: chatroom's message writer alone, on SQLite or PostgreSQL, optionally over
//! a table that already holds many rows: how many messages a second it commits when it is never
//! short of work. The server's own path (sockets, fan-out) is measured by the suite; this isolates
//! what persistence can take.

use std::time::{Duration, Instant};

use chatroom::config::store::DEFAULT_WAL_LIMIT;
use chatroom::services::messages::{Kind, NewMessage};
use chatroom::services::rooms::Room;
use chatroom::services::users::Author;
use chatroom::services::writer::{MessageWriter, WriterConfig};
use sea_orm::{ConnectionTrait, DatabaseBackend};
use serde_json::json;

/// Where and how much.
#[derive(clap::Args)]
pub struct WriterArgs {
    /// `sqlite:///path/file.db?mode=rwc` or `postgres://user@host/db` (an empty database).
    #[arg(long)]
    pub database: String,
    /// Rows stored before the measurement, written with SQL in one statement.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Messages submitted during the measurement.
    #[arg(long, default_value_t = 200_000)]
    pub messages: u64,
    /// Senders (users) and rooms the messages are spread over.
    #[arg(long, default_value_t = 100)]
    pub senders: i64,
    #[arg(long, default_value_t = 50)]
    pub rooms: u64,
    /// The writer's queue (the server's `--message-queue`).
    #[arg(long, default_value_t = 4096)]
    pub queue: usize,
}

pub fn run(args: &WriterArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(measure(args))
}

async fn measure(args: &WriterArgs) -> anyhow::Result<()> {
    // The server's store: on a SQLite file the writer has a connection of its own, and the WAL is
    // checkpointed beside it.
    let store = chatroom::db::open(&args.database, 8, DEFAULT_WAL_LIMIT).await?;
    chatroom::db::checkpoints(&store, &args.database, chatroom::db::CHECKPOINT_EVERY);
    let db = store.pool.clone();
    let postgres = db.get_database_backend() == DatabaseBackend::Postgres;
    for u in 1..=args.senders {
        db.execute_unprepared(&format!(
            "INSERT INTO users (name, password_hash, avatar, created_at, updated_at) \
             VALUES ('writer{u}', 'x', '', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z')"
        ))
        .await?;
    }
    let seeded = Instant::now();
    if args.seed > 0 {
        let (n, senders, rooms) = (args.seed, args.senders, args.rooms);
        let rows = if postgres {
            format!(
                "SELECT 1 + (g % {senders}), 'room' || (g % {rooms}), 'group', 'text', \
                     'a seeded message body', '', 'seed-' || g, now() FROM generate_series(1, {n}) g"
            )
        } else {
            format!(
                "WITH RECURSIVE g(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM g WHERE x < {n}) \
                     SELECT 1 + (x % {senders}), 'room' || (x % {rooms}), 'group', 'text', \
                     'a seeded message body', '', 'seed-' || x, '2026-01-01T00:00:00Z' FROM g"
            )
        };
        db.execute_unprepared(&format!(
            "INSERT INTO messages (sender_id, room_id, room_type, kind, body, image, client_id, \
             created_at) {rows}"
        ))
        .await?;
    }
    let seed_seconds = seeded.elapsed().as_secs_f64();
    let (tx, mut rx) = tokio::sync::mpsc::channel(64);
    let config = WriterConfig {
        capacity: args.queue,
        own_connection: store.writer_is_own,
        wal_limit: store.wal.clone(),
        ..WriterConfig::default()
    };
    let writer = MessageWriter::spawn(store.writer, config, tx);
    let counter = tokio::spawn(async move {
        let (mut batches, mut stored, mut failed) = (0u64, 0u64, 0u64);
        while let Some(batch) = rx.recv().await {
            batches += 1;
            for c in batch.committed {
                if c.result.is_ok() {
                    stored += 1;
                } else {
                    failed += 1;
                }
            }
        }
        (batches, stored, failed)
    });
    let started = Instant::now();
    let mut i = 0u64;
    while i < args.messages {
        // Keep the queue full without spinning on refusals.
        if writer.in_flight(args.queue) + 64 >= args.queue {
            tokio::time::sleep(Duration::from_micros(200)).await;
            continue;
        }
        let sender = 1 + (i as i64 % args.senders);
        let author = Author {
            id: sender,
            name: format!("writer{sender}"),
            avatar: String::new(),
        };
        let new = NewMessage {
            sender,
            room: Room::Group(format!("room{}", i % args.rooms)),
            kind: Kind::Text,
            body: format!("message number {i} of the writer benchmark"),
            image: String::new(),
            client_id: Some(format!("w-{i}")),
        };
        if writer.submit(new, author, ()).is_ok() {
            i += 1;
        }
    }
    writer.close().await;
    let seconds = started.elapsed().as_secs_f64();
    let (batches, stored, failed) = counter.await?;
    println!(
        "{}",
        json!({
            "database": if postgres { "postgres" } else { "sqlite" },
            "seeded_rows": args.seed,
            "seed_seconds": seed_seconds,
            "messages": args.messages,
            "stored": stored,
            "failed": failed,
            "batches": batches,
            "seconds": seconds,
            "committed_per_second": stored as f64 / seconds,
        })
    );
    Ok(())
}
