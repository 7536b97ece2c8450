//! The background message writer: persistence off the socket path, with group commit.
//!
//! [`MessageWriter::submit`] never waits. A message takes one of `capacity` slots, or is refused at once
//! when they are all taken; it carries a *ticket* of the caller's (whatever the caller needs to answer
//! the sender later). One task drains the queue: each batch is everything waiting when the previous
//! one was stored (up to [`WriterConfig::batch`]), stored in one transaction: multi-row
//! `INSERT … VALUES` on SQLite, on a connection the writer keeps between batches when it is its own
//! ([`WriterConfig::own_connection`]); on PostgreSQL one `INSERT … SELECT … FROM UNNEST` of one array per
//! column, with two batches in flight (the next is inserted while the previous commits; see
//! `pipelined`). Under light load a batch is one message and nothing waits for company; under
//! heavy load batches grow by themselves, because messages pile up while a commit runs.
//!
//! Results leave through one channel, in commit order, as [`Committed`] values; the slot stays taken
//! until the consumer drops the value, so a consumer that falls behind (announcing is slower than
//! storing) pushes back on new submissions instead of growing a queue.
//!
//! A message whose `(sender, client id)` is already stored is not stored again. A resend (same room,
//! same text and picture) gets the stored row back as [`Saved::Existing`]; a *different* message reusing
//! a client id is refused with [`AppError::Conflict`]. The unique index on `(sender_id, client_id)`
//! decides, so this holds across restarts and across nodes sharing a database.
//! A database that fails or stops answering is retried a bounded number of times (each attempt bounded
//! in time); then the batch is refused (`unavailable`), and while it stays down each later batch gets
//! one attempt, so senders hear within seconds. Writes resume by themselves once it answers.
//! [`MessageWriter::close`] stops intake and waits until every queued message is committed and handed on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use sea_orm::sqlx::Sqlite;
use sea_orm::sqlx::pool::PoolConnection;
use sea_orm::{DatabaseConnection, DbBackend};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::auth::UserId;
use crate::db::WalLimit;
use crate::error::AppError;
use crate::services::messages::{NewMessage, StoredMessage};
use crate::services::users::Author;

mod postgres;
mod rows;
mod sqlite;
mod store;

use self::rows::settle_repeat;
use self::store::{store, store_one};

/// Queue and batch sizes, and what the writer's connection is.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Messages between submission and their consumer at most; beyond it senders are refused.
    pub capacity: usize,
    /// Messages per transaction at most.
    pub batch: usize,
    /// How long the writer waits for more messages after the first of a batch, when no others are
    /// waiting. Zero (the default) stores a lone message at once.
    pub linger: Duration,
    /// Whether the writer's connection is its own (nothing else takes it from its pool). On SQLite the
    /// writer then keeps it between batches instead of giving it back to the pool after each.
    pub own_connection: bool,
    /// On a kept SQLite connection: the WAL file and its limit. The writer starts the WAL over between
    /// two batches when the background checkpoints ask, or once the file is past the limit.
    pub wal_limit: Option<WalLimit>,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            capacity: 4096,
            batch: 1024,
            linger: Duration::ZERO,
            own_connection: false,
            wal_limit: None,
        }
    }
}

/// Rows per INSERT statement: 8 columns each keeps far below SQLite's 32 766 bound parameters.
const ROWS_PER_STATEMENT: usize = 500;

/// What became of a submitted message.
#[derive(Debug, Clone)]
pub enum Saved {
    /// Stored now.
    New(StoredMessage),
    /// The same sender sent this message (same client id, room and content) before; this is that one.
    Existing(StoredMessage),
}

impl Saved {
    /// The stored message, new or not.
    pub fn message(&self) -> &StoredMessage {
        match self {
            Self::New(m) | Self::Existing(m) => m,
        }
    }
}

/// One committed batch: every message's outcome in commit order, and how long the commit took.
pub struct Batch<T> {
    pub committed: Vec<Committed<T>>,
    pub took: Duration,
}

/// A message's outcome, handed to the consumer in commit order with the submitter's ticket.
pub struct Committed<T> {
    pub ticket: T,
    pub result: Result<Saved, AppError>,
    _slot: OwnedSemaphorePermit,
}

struct Job<T> {
    new: NewMessage,
    author: Author,
    ticket: T,
    slot: OwnedSemaphorePermit,
}

/// Handle to the writer task.
pub struct MessageWriter<T> {
    intake: Mutex<Option<mpsc::UnboundedSender<Job<T>>>>,
    slots: Arc<Semaphore>,
    task: tokio::sync::Mutex<Option<JoinHandle<()>>>,
}

impl<T: Send + Sync + 'static> MessageWriter<T> {
    /// Starts the writer task on the current runtime. Results go to `out`, one [`Batch`] per commit.
    pub fn spawn(
        db: DatabaseConnection,
        config: WriterConfig,
        out: mpsc::Sender<Batch<T>>,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let slots = Arc::new(Semaphore::new(config.capacity.max(1)));
        let task = tokio::spawn(run(db, rx, config, out));
        Self {
            intake: Mutex::new(Some(tx)),
            slots,
            task: tokio::sync::Mutex::new(Some(task)),
        }
    }

    /// Queues `new` (sent by `author`) without waiting.
    ///
    /// # Errors
    /// [`AppError::Unavailable`] when every slot is taken or the writer is shutting down.
    pub fn submit(&self, new: NewMessage, author: Author, ticket: T) -> Result<(), AppError> {
        let intake = self.intake.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(tx) = intake.as_ref() else {
            return Err(AppError::Unavailable);
        };
        let slot = self.slots.clone().try_acquire_owned().map_err(|_| {
            tracing::warn!("message queue full: refusing a message");
            AppError::Unavailable
        })?;
        tx.send(Job {
            new,
            author,
            ticket,
            slot,
        })
        .map_err(|_| AppError::Unavailable)
    }

    /// Messages submitted and not yet handed on and dropped by the consumer.
    pub fn in_flight(&self, capacity: usize) -> usize {
        capacity.saturating_sub(self.slots.available_permits())
    }

    /// Stops taking messages and waits until every queued one is committed (or has failed) and handed
    /// to the consumer.
    pub async fn close(&self) {
        drop(
            self.intake
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        if let Some(task) = self.task.lock().await.take()
            && let Err(e) = task.await
        {
            tracing::error!(error = %e, "message writer stopped abnormally");
        }
    }
}

async fn run<T: Send + Sync>(
    db: DatabaseConnection,
    mut rx: mpsc::UnboundedReceiver<Job<T>>,
    config: WriterConfig,
    out: mpsc::Sender<Batch<T>>,
) {
    let mut down = false;
    if db.get_database_backend() == DbBackend::Postgres {
        pipelined(&db, &mut rx, &config, &out, &mut down).await;
    } else if config.own_connection {
        let mut kept = None;
        let mut looked = Instant::now();
        while let Some(batch) = gather(&mut rx, &config).await {
            let started = Instant::now();
            // The commit runs on SQLite's own thread, on the event loop's core when there is one.
            let committed =
                crate::sys::hand_over_core(commit_kept(&db, &mut kept, batch, &mut down)).await;
            hand_on(&out, committed, started.elapsed()).await;
            if let (Some(wal), Some(conn)) = (&config.wal_limit, kept.as_mut()) {
                let mut due = wal.requested();
                if !due && looked.elapsed() >= WAL_LOOK_EVERY {
                    looked = Instant::now();
                    due = wal.passed();
                }
                if due {
                    crate::sys::hand_over_core(finish_checkpoint(conn)).await;
                }
            }
        }
    } else {
        while let Some(batch) = gather(&mut rx, &config).await {
            let started = Instant::now();
            let committed = crate::sys::hand_over_core(commit(&db, batch, &mut down, None)).await;
            hand_on(&out, committed, started.elapsed()).await;
            // sqlx gives the connection back to its pool in a task of its own, after a round trip to the
            // connection's thread. Let that task run now, so that the next batch, waiting for the
            // connection, hands the core to a thread that already has the round trip to answer.
            tokio::task::yield_now().await;
        }
    }
    tracing::debug!("message writer drained");
}

/// Stores a batch on SQLite on the connection the writer keeps (`kept`, taken from the pool when
/// there is none). Should that fail or not answer in time, the connection goes back to the pool,
/// which tests it, and the batch takes the slow way ([`commit`]: retries, then one by one), as it
/// does while the database is known to be down.
async fn commit_kept<T: Send + Sync>(
    db: &DatabaseConnection,
    kept: &mut Option<PoolConnection<Sqlite>>,
    batch: Vec<Job<T>>,
    down: &mut bool,
) -> Vec<Committed<T>> {
    if *down {
        return commit(db, batch, down, None).await;
    }
    let started = Instant::now();
    let conn = match kept {
        Some(conn) => conn,
        None => {
            let pool = db.get_sqlite_connection_pool();
            match tokio::time::timeout(ATTEMPT_TIMEOUT, pool.acquire()).await {
                Ok(Ok(conn)) => kept.insert(conn),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "taking the writer's connection failed");
                    return commit(db, batch, down, None).await;
                }
                Err(_) => return commit(db, batch, down, Some(started)).await,
            }
        }
    };
    let plan = Plan::of(&batch);
    let unanswered =
        match tokio::time::timeout(ATTEMPT_TIMEOUT, sqlite::store(conn, &batch, &plan.fresh)).await
        {
            Ok(Ok(results)) => return settle(batch, &plan, results),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "storing a batch of messages failed");
                None
            }
            Err(_) => {
                tracing::warn!(timeout = ?ATTEMPT_TIMEOUT, "storing a batch of messages timed out");
                Some(started)
            }
        };
    *kept = None;
    commit(db, batch, down, unanswered).await
}

/// How often, at most, the writer looks at the WAL file's size (one `stat`), for when the background
/// checkpoints fall behind: the WAL then passes its limit by what the writer commits in this time.
const WAL_LOOK_EVERY: Duration = Duration::from_millis(10);

/// Runs a checkpoint on the writer's kept connection, between two batches, so that the next batch
/// starts the WAL over (see [`WalLimit`]). While the core has idle time most pages are already back in
/// the database: the background checkpoints copied all but what came after their last run. A
/// checkpoint kept from finishing (a reader still on an older snapshot, or the background one
/// running) leaves the WAL as it is, and the writer tries again at its next look.
async fn finish_checkpoint(conn: &mut PoolConnection<Sqlite>) {
    let started = Instant::now();
    match tokio::time::timeout(ATTEMPT_TIMEOUT, crate::db::checkpoint(&mut **conn)).await {
        Ok(Ok(done)) if done.finished() => tracing::debug!(
            frames = done.frames,
            took = ?started.elapsed(),
            "WAL checkpoint finished by the writer"
        ),
        Ok(Ok(done)) => tracing::debug!(
            frames = done.frames,
            copied = done.copied,
            took = ?started.elapsed(),
            "the writer's WAL checkpoint did not finish"
        ),
        Ok(Err(e)) => tracing::warn!(error = %e, "the writer's WAL checkpoint failed"),
        Err(_) => {
            tracing::warn!(timeout = ?ATTEMPT_TIMEOUT, "the writer's WAL checkpoint timed out")
        }
    }
}

/// The next batch: waits for a first message, then takes what else is waiting (up to
/// [`WriterConfig::batch`], lingering for more when so configured). `None` once intake is closed
/// and drained.
async fn gather<T>(
    rx: &mut mpsc::UnboundedReceiver<Job<T>>,
    config: &WriterConfig,
) -> Option<Vec<Job<T>>> {
    let max = config.batch.max(1);
    let first = rx.recv().await?;
    let mut batch = vec![first];
    let deadline = Instant::now() + config.linger;
    while batch.len() < max {
        match rx.try_recv() {
            Ok(job) => batch.push(job),
            Err(mpsc::error::TryRecvError::Disconnected) => break,
            Err(mpsc::error::TryRecvError::Empty) if config.linger.is_zero() => break,
            Err(mpsc::error::TryRecvError::Empty) => {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(job)) => batch.push(job),
                    Ok(None) | Err(_) => break,
                }
            }
        }
    }
    Some(batch)
}

/// What is waiting now, up to `max` messages; empty when nothing is.
fn waiting<T>(rx: &mut mpsc::UnboundedReceiver<Job<T>>, max: usize) -> Vec<Job<T>> {
    let mut batch = Vec::new();
    while batch.len() < max {
        match rx.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
    batch
}

async fn hand_on<T>(out: &mpsc::Sender<Batch<T>>, committed: Vec<Committed<T>>, took: Duration) {
    if out.send(Batch { committed, took }).await.is_err() {
        tracing::warn!("the consumer of stored messages is gone");
    }
}

/// A batch inserted on PostgreSQL by a transaction not committed yet.
struct InFlight<T> {
    batch: Vec<Job<T>>,
    plan: Plan,
    open: postgres::Open,
    started: Instant,
}

/// A batch whose first attempt failed, and whether that was because the database did not answer
/// (then the attempt counts as the first of [`store_retrying`]'s).
struct Failed<T> {
    batch: Vec<Job<T>>,
    unanswered: Option<Instant>,
}

/// Inserts `batch` in a transaction of its own, left open, within [`ATTEMPT_TIMEOUT`].
async fn insert<T: Send + Sync>(
    db: &DatabaseConnection,
    batch: Vec<Job<T>>,
) -> Result<InFlight<T>, Failed<T>> {
    let started = Instant::now();
    let plan = Plan::of(&batch);
    let pool = db.get_postgres_connection_pool();
    let attempt = postgres::insert(pool, &batch, &plan.fresh);
    match tokio::time::timeout(ATTEMPT_TIMEOUT, attempt).await {
        Ok(Ok(open)) => Ok(InFlight {
            batch,
            plan,
            open,
            started,
        }),
        Ok(Err(e)) => {
            let unanswered = (!reachable(db).await).then_some(started);
            tracing::warn!(error = %e, "inserting a batch of messages failed");
            Err(Failed { batch, unanswered })
        }
        Err(_) => {
            tracing::warn!(timeout = ?ATTEMPT_TIMEOUT, "inserting a batch of messages timed out");
            Err(Failed {
                batch,
                unanswered: Some(started),
            })
        }
    }
}

/// Commits an inserted batch within [`ATTEMPT_TIMEOUT`] and hands it on.
async fn finish<T: Send + Sync>(
    db: &DatabaseConnection,
    flight: InFlight<T>,
    out: &mpsc::Sender<Batch<T>>,
) -> Result<(), Failed<T>> {
    let InFlight {
        batch,
        plan,
        open,
        started,
    } = flight;
    let unanswered = match tokio::time::timeout(ATTEMPT_TIMEOUT, open.commit()).await {
        Ok(Ok(results)) => {
            let committed = settle(batch, &plan, results);
            hand_on(out, committed, started.elapsed()).await;
            return Ok(());
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "committing a batch of messages failed");
            (!reachable(db).await).then_some(started)
        }
        Err(_) => {
            tracing::warn!(timeout = ?ATTEMPT_TIMEOUT, "committing a batch of messages timed out");
            Some(started)
        }
    };
    Err(Failed { batch, unanswered })
}

/// Stores a failed batch the slow way ([`commit`]: retries, then one by one) and hands it on.
async fn recover<T: Send + Sync>(
    db: &DatabaseConnection,
    failed: Failed<T>,
    down: &mut bool,
    out: &mpsc::Sender<Batch<T>>,
) {
    let started = Instant::now();
    let committed = commit(db, failed.batch, down, failed.unanswered).await;
    hand_on(out, committed, started.elapsed()).await;
}

/// The writer on PostgreSQL, with two batches in flight: while one commits and is handed on, the
/// next one (whatever waits when the previous `INSERT` returned) is inserted by another
/// transaction. Ids still grow in commit order: the next `INSERT` starts only once the previous
/// one has drawn all its ids, and commits only after it. A batch whose insert or commit fails is
/// stored the slow way ([`commit`]), and a batch inserted behind it is rolled back and stored after
/// it. While the database is down, batches take the slow way only, one at a time.
async fn pipelined<T: Send + Sync>(
    db: &DatabaseConnection,
    rx: &mut mpsc::UnboundedReceiver<Job<T>>,
    config: &WriterConfig,
    out: &mpsc::Sender<Batch<T>>,
    down: &mut bool,
) {
    let max = config.batch.max(1);
    let mut flight: Option<InFlight<T>> = None;
    loop {
        let Some(previous) = flight.take() else {
            let Some(batch) = gather(rx, config).await else {
                break;
            };
            if *down {
                let started = Instant::now();
                let committed = commit(db, batch, down, None).await;
                hand_on(out, committed, started.elapsed()).await;
                continue;
            }
            match insert(db, batch).await {
                Ok(inserted) => flight = Some(inserted),
                Err(failed) => recover(db, failed, down, out).await,
            }
            continue;
        };
        let next = waiting(rx, max);
        if next.is_empty() {
            if let Err(failed) = finish(db, previous, out).await {
                recover(db, failed, down, out).await;
            }
            continue;
        }
        let (committed, inserted) = tokio::join!(finish(db, previous, out), insert(db, next));
        match (committed, inserted) {
            (Ok(()), Ok(inserted)) => flight = Some(inserted),
            (Ok(()), Err(failed)) => recover(db, failed, down, out).await,
            (Err(failed), inserted) => {
                // The next batch's ids follow the failed one's: it must not commit before the
                // failed batch is stored again, with new ids.
                let behind = match inserted {
                    Ok(inserted) => {
                        let rollback = inserted.open.roll_back();
                        if tokio::time::timeout(PING_TIMEOUT, rollback).await.is_err() {
                            tracing::warn!("rolling back a batch of messages timed out");
                        }
                        Failed {
                            batch: inserted.batch,
                            unanswered: None,
                        }
                    }
                    Err(failed) => failed,
                };
                recover(db, failed, down, out).await;
                recover(db, behind, down, out).await;
            }
        }
    }
}

type Key = (UserId, String);

fn key(new: &NewMessage) -> Option<Key> {
    new.client_id.as_ref().map(|c| (new.sender, c.clone()))
}

/// How long one attempt at storing a batch may take. A database that stops answering (a stopped
/// server, a dropped network path) would otherwise hold the writer, and every sender, indefinitely.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a readiness check of the database may take.
pub const PING_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a batch is retried while the database does not answer (a restart, a dropped connection)
/// before it is refused.
const BATCH_DEADLINE: Duration = Duration::from_secs(10);
/// Pauses before the retries of a batch.
const RETRY_PAUSES: [Duration; 3] = [
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_secs(1),
];

/// Why a batch was not stored.
enum Failure {
    /// The database answers, but not to this batch (a bad row): store its messages one by one.
    Rows(AppError),
    /// The database does not answer: refuse the batch.
    Unreachable,
}

/// Whether the database answers a ping within [`PING_TIMEOUT`].
pub async fn reachable(db: &DatabaseConnection) -> bool {
    matches!(
        tokio::time::timeout(PING_TIMEOUT, db.ping()).await,
        Ok(Ok(()))
    )
}

/// Stores a batch, retrying while the database cannot be reached: at most `1 + RETRY_PAUSES.len()`
/// attempts of at most [`ATTEMPT_TIMEOUT`] each, all within [`BATCH_DEADLINE`]. While the database is
/// known to be down (`down`, set when a batch was refused), each batch gets one attempt, so messages
/// are refused within one attempt's time until it answers again; then `down` clears by itself.
/// `unanswered` is when an earlier attempt at this batch started that the database did not answer:
/// it counts as the first attempt.
async fn store_retrying<T: Send + Sync>(
    db: &DatabaseConnection,
    batch: &[Job<T>],
    fresh: &[usize],
    down: &mut bool,
    unanswered: Option<Instant>,
) -> Result<Vec<Result<Saved, AppError>>, Failure> {
    let deadline = unanswered.unwrap_or_else(Instant::now) + BATCH_DEADLINE;
    let mut pauses = RETRY_PAUSES.iter();
    let mut attempt = unanswered.is_none();
    loop {
        if attempt {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(ATTEMPT_TIMEOUT.min(left), store(db, batch, fresh)).await {
                Ok(Ok(results)) => {
                    if std::mem::replace(down, false) {
                        tracing::info!("the database answers again: storing messages");
                    }
                    return Ok(results);
                }
                Ok(Err(e)) => {
                    if reachable(db).await {
                        return Err(Failure::Rows(e));
                    }
                    tracing::warn!(error = %e, "storing messages failed: the database does not answer");
                }
                Err(_) => {
                    tracing::warn!(timeout = ?ATTEMPT_TIMEOUT, "storing messages timed out");
                }
            }
        }
        attempt = true;
        match pauses.next() {
            Some(pause) if !*down && Instant::now() + *pause < deadline => {
                tokio::time::sleep(*pause).await;
            }
            _ => {
                if !std::mem::replace(down, true) {
                    tracing::error!(
                        "the database does not answer: refusing messages until it does"
                    );
                }
                return Err(Failure::Unreachable);
            }
        }
    }
}

/// Which jobs of a batch go to the database: the first with each client id (`fresh`, in batch
/// order); a repeat within the batch rides on its first copy's outcome (`repeat_of`).
struct Plan {
    fresh: Vec<usize>,
    repeat_of: Vec<Option<usize>>,
}

impl Plan {
    fn of<T>(batch: &[Job<T>]) -> Self {
        let mut first_of: HashMap<Key, usize> = HashMap::new();
        let mut fresh: Vec<usize> = Vec::with_capacity(batch.len());
        let mut repeat_of: Vec<Option<usize>> = vec![None; batch.len()];
        for (i, job) in batch.iter().enumerate() {
            match key(&job.new) {
                Some(k) => match first_of.get(&k) {
                    Some(first) => repeat_of[i] = Some(*first),
                    None => {
                        first_of.insert(k, i);
                        fresh.push(i);
                    }
                },
                None => fresh.push(i),
            }
        }
        Self { fresh, repeat_of }
    }
}

/// Every job's outcome, in the batch's order, from the outcomes of the fresh ones (in the order of
/// `plan.fresh`).
fn settle<T>(
    batch: Vec<Job<T>>,
    plan: &Plan,
    fresh: Vec<Result<Saved, AppError>>,
) -> Vec<Committed<T>> {
    let size = batch.len();
    let mut outcomes: Vec<Option<Result<Saved, AppError>>> = (0..size).map(|_| None).collect();
    for (i, outcome) in plan.fresh.iter().zip(fresh) {
        outcomes[*i] = Some(outcome);
    }
    for i in 0..size {
        if let Some(first) = plan.repeat_of[i] {
            let outcome = match &outcomes[first] {
                Some(Ok(saved)) => settle_repeat(&batch[i].new, saved.message()),
                Some(Err(_)) | None => Err(AppError::Unavailable),
            };
            outcomes[i] = Some(outcome);
        }
    }
    tracing::debug!(size, "committed messages");
    batch
        .into_iter()
        .zip(outcomes)
        .map(|(job, outcome)| Committed {
            ticket: job.ticket,
            result: outcome.unwrap_or(Err(AppError::Unavailable)),
            _slot: job.slot,
        })
        .collect()
}

/// Stores a batch one transaction at a time, with retries (see [`store_retrying`]); returns every
/// job's outcome, in the batch's order.
async fn commit<T: Send + Sync>(
    db: &DatabaseConnection,
    batch: Vec<Job<T>>,
    down: &mut bool,
    unanswered: Option<Instant>,
) -> Vec<Committed<T>> {
    let plan = Plan::of(&batch);
    let fresh = &plan.fresh;
    let outcomes = match store_retrying(db, &batch, fresh, down, unanswered).await {
        Ok(results) => results,
        Err(Failure::Unreachable) => {
            tracing::warn!(
                size = fresh.len(),
                "refused a batch of messages: database unreachable"
            );
            fresh.iter().map(|_| Err(AppError::Unavailable)).collect()
        }
        Err(Failure::Rows(e)) => {
            // One bad row (a sender deleted meanwhile, say) must not sink the others.
            tracing::warn!(error = %e, size = fresh.len(), "batch commit failed; storing one by one");
            let mut gone = false;
            let mut outcomes = Vec::with_capacity(fresh.len());
            for i in fresh {
                let job = &batch[*i];
                let outcome = if gone {
                    Err(AppError::Unavailable)
                } else {
                    match tokio::time::timeout(ATTEMPT_TIMEOUT, store_one(db, job)).await {
                        Ok(outcome) => outcome,
                        Err(_) => Err(AppError::Unavailable),
                    }
                };
                if outcome.is_err() && !gone && !reachable(db).await {
                    gone = true;
                }
                outcomes.push(outcome);
            }
            outcomes
        }
    };
    settle(batch, &plan, outcomes)
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use entity::{message, user};
    use sea_orm::{ActiveModelTrait, EntityTrait, Set};

    use super::*;
    use crate::config::store::{DEFAULT_WAL_LIMIT, MIN_WAL_LIMIT};
    use crate::services::messages::Kind;
    use crate::services::rooms::Room;

    /// A database with one user, and the writer's connection to it: an in-memory database's one
    /// connection, shared with the pool, or a SQLite file's connection of the writer's own, which it
    /// keeps between batches.
    struct Fixture {
        dir: Option<tempfile::TempDir>,
        db: DatabaseConnection,
        writer_db: DatabaseConnection,
        own: bool,
        wal: Option<WalLimit>,
        author: Author,
    }

    async fn setup(own: bool) -> Fixture {
        setup_with(own, DEFAULT_WAL_LIMIT, None).await
    }

    /// The database of [`setup`], its WAL started over past `wal_limit` bytes, and with the
    /// checkpointer running every `checkpoints` when given (on a file only).
    async fn setup_with(own: bool, wal_limit: u64, checkpoints: Option<Duration>) -> Fixture {
        let (dir, store) = if own {
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}/chat.db?mode=rwc", dir.path().display());
            let store = crate::db::open(&url, 2, wal_limit).await.unwrap();
            if let Some(every) = checkpoints {
                crate::db::checkpoints(&store, &url, every);
            }
            (Some(dir), store)
        } else {
            let store = crate::db::open("sqlite::memory:", 1, wal_limit).await;
            (None, store.unwrap())
        };
        assert_eq!(store.writer_is_own, own);
        let user = user::ActiveModel {
            name: Set("writer".into()),
            password_hash: Set("x".into()),
            avatar: Set(String::new()),
            created_at: Set(Utc::now()),
            updated_at: Set(Utc::now()),
            ..Default::default()
        }
        .insert(&store.pool)
        .await
        .unwrap();
        Fixture {
            dir,
            db: store.pool,
            writer_db: store.writer,
            own,
            wal: store.wal,
            author: Author::from(&user),
        }
    }

    fn message(sender: &Author, room: &str, client_id: Option<&str>) -> NewMessage {
        NewMessage {
            sender: sender.id,
            room: Room::Group(room.into()),
            kind: Kind::Text,
            body: format!("body of {client_id:?}"),
            image: String::new(),
            client_id: client_id.map(str::to_owned),
        }
    }

    type Out = mpsc::Receiver<Batch<usize>>;

    fn writer(f: &Fixture, config: WriterConfig) -> (MessageWriter<usize>, Out) {
        let (tx, rx) = mpsc::channel(16);
        let config = WriterConfig {
            own_connection: f.own,
            wal_limit: f.wal.clone(),
            ..config
        };
        (MessageWriter::spawn(f.writer_db.clone(), config, tx), rx)
    }

    async fn outcomes(rx: &mut Out, n: usize) -> Vec<(usize, Result<Saved, AppError>)> {
        let mut all = Vec::new();
        while all.len() < n {
            for c in rx.recv().await.unwrap().committed {
                all.push((c.ticket, c.result));
            }
        }
        all
    }

    // These run on a single-threaded runtime: the writer task cannot run until the test awaits, so
    // everything submitted before that is one backlog, stored as one batch.

    async fn a_backlog_is_stored_in_order_and_repeats_are_stored_once(own: bool) {
        let f = setup(own).await;
        let (db, author) = (&f.db, &f.author);
        let (writer, mut rx) = writer(&f, WriterConfig::default());
        for i in 0..50 {
            let id = format!("c{i}");
            writer
                .submit(message(author, "room1", Some(&id)), author.clone(), i)
                .unwrap();
        }
        // No client id: always a new message. A repeat of c7 within the batch.
        writer
            .submit(message(author, "room1", None), author.clone(), 50)
            .unwrap();
        writer
            .submit(message(author, "room1", Some("c7")), author.clone(), 51)
            .unwrap();
        let results = outcomes(&mut rx, 52).await;
        let tickets: Vec<usize> = results.iter().map(|(t, _)| *t).collect();
        assert_eq!(tickets, (0..52).collect::<Vec<_>>(), "handed on in order");
        let ids: Vec<i64> = results[..51]
            .iter()
            .map(|(_, r)| match r {
                Ok(Saved::New(m)) => m.message.id,
                other => panic!("a first send is new: {other:?}"),
            })
            .collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "stored in order");
        assert!(matches!(&results[51].1, Ok(Saved::Existing(m)) if m.message.id == ids[7]));
        // A later resend is answered from the database.
        writer
            .submit(message(author, "room1", Some("c3")), author.clone(), 52)
            .unwrap();
        let again = outcomes(&mut rx, 1).await;
        assert!(matches!(&again[0].1, Ok(Saved::Existing(m)) if m.message.id == ids[3]));
        assert_eq!(message::Entity::find().all(db).await.unwrap().len(), 51);
    }

    async fn a_client_id_reused_for_another_message_is_refused(own: bool) {
        let f = setup(own).await;
        let (db, author) = (&f.db, &f.author);
        let (writer, mut rx) = writer(&f, WriterConfig::default());
        writer
            .submit(message(author, "room1", Some("same")), author.clone(), 0)
            .unwrap();
        assert!(matches!(outcomes(&mut rx, 1).await[0].1, Ok(Saved::New(_))));
        // Another room, from the database and within one batch.
        writer
            .submit(message(author, "room2", Some("same")), author.clone(), 1)
            .unwrap();
        writer
            .submit(message(author, "room2", Some("fresh")), author.clone(), 2)
            .unwrap();
        writer
            .submit(message(author, "room1", Some("fresh")), author.clone(), 3)
            .unwrap();
        let results = outcomes(&mut rx, 3).await;
        assert!(
            matches!(results[0].1, Err(AppError::Conflict(_))),
            "{results:?}"
        );
        assert!(matches!(results[1].1, Ok(Saved::New(_))));
        assert!(matches!(results[2].1, Err(AppError::Conflict(_))));
        assert_eq!(message::Entity::find().all(db).await.unwrap().len(), 2);
    }

    async fn full_slots_refuse_instead_of_waiting_and_close_drains(own: bool) {
        let f = setup(own).await;
        let (db, author) = (&f.db, &f.author);
        let config = WriterConfig {
            capacity: 3,
            ..WriterConfig::default()
        };
        let (writer, mut rx) = writer(&f, config);
        for i in 0..3 {
            let id = format!("q{i}");
            writer
                .submit(message(author, "room1", Some(&id)), author.clone(), i)
                .unwrap();
        }
        assert!(matches!(
            writer.submit(message(author, "room1", Some("q3")), author.clone(), 3),
            Err(AppError::Unavailable)
        ));
        writer.close().await;
        let results = outcomes(&mut rx, 3).await;
        assert!(results.iter().all(|(_, r)| matches!(r, Ok(Saved::New(_)))));
        // Slots come back when the consumer drops the outcomes; a closed writer refuses anyway.
        drop(results);
        assert!(matches!(
            writer.submit(message(author, "room1", Some("late")), author.clone(), 4),
            Err(AppError::Unavailable)
        ));
        assert_eq!(message::Entity::find().all(db).await.unwrap().len(), 3);
    }

    async fn more_rows_than_one_statement_holds_are_stored_in_one_transaction_in_order(own: bool) {
        let f = setup(own).await;
        let (db, author) = (&f.db, &f.author);
        let (writer, mut rx) = writer(&f, WriterConfig::default());
        writer
            .submit(message(author, "room1", Some("c3")), author.clone(), 0)
            .unwrap();
        let first = outcomes(&mut rx, 1).await;
        let Ok(Saved::New(c3)) = &first[0].1 else {
            panic!("a first send is new: {first:?}");
        };
        // 1 200 at once: a batch of 1 024 (three statements in one transaction), then the rest. The
        // resend of c3 sits in the batch's second statement and is answered from the stored row.
        for i in 1..=1200 {
            let id = if i == 700 {
                "c3".to_owned()
            } else {
                format!("b{i}")
            };
            writer
                .submit(message(author, "room1", Some(&id)), author.clone(), i)
                .unwrap();
        }
        let results = outcomes(&mut rx, 1200).await;
        let mut ids = Vec::new();
        for (ticket, result) in &results {
            match result {
                Ok(Saved::Existing(m)) if *ticket == 700 => {
                    assert_eq!(m.message.id, c3.message.id);
                }
                Ok(Saved::New(m)) if *ticket != 700 => ids.push(m.message.id),
                other => panic!("ticket {ticket}: {other:?}"),
            }
        }
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "stored in order");
        let stored = message::Entity::find().all(db).await.unwrap();
        assert_eq!(stored.len(), 1200);
        let last = stored.iter().max_by_key(|m| m.id).unwrap();
        let (_, Ok(Saved::New(answered))) = results.last().unwrap() else {
            panic!("the last is new");
        };
        assert_eq!(
            &answered.message, last,
            "what is handed on is what was stored"
        );
    }

    async fn a_row_the_database_refuses_is_refused_alone(own: bool) {
        let f = setup(own).await;
        let (db, author) = (&f.db, &f.author);
        let (writer, mut rx) = writer(&f, WriterConfig::default());
        let stranger = Author {
            id: author.id + 1000,
            ..author.clone()
        };
        for i in 0..5 {
            let id = format!("r{i}");
            let sender = if i == 2 { &stranger } else { author };
            writer
                .submit(message(sender, "room1", Some(&id)), sender.clone(), i)
                .unwrap();
        }
        let results = outcomes(&mut rx, 5).await;
        for (ticket, result) in &results {
            match (ticket, result) {
                (2, Err(AppError::Unavailable)) => {}
                (t, Ok(Saved::New(_))) if *t != 2 => {}
                other => panic!("{other:?}"),
            }
        }
        // The writer goes on storing batches after the failed one.
        writer
            .submit(message(author, "room1", Some("after")), author.clone(), 5)
            .unwrap();
        assert!(matches!(outcomes(&mut rx, 1).await[0].1, Ok(Saved::New(_))));
        assert_eq!(message::Entity::find().all(db).await.unwrap().len(), 5);
    }

    /// While commits never pause, the background checkpoints never finish and can't start the WAL
    /// over; near its limit the writer finishes one between two batches, and the WAL starts over
    /// instead of growing for as long as the load lasts.
    #[tokio::test]
    async fn under_a_load_that_never_pauses_the_wal_starts_over_near_its_limit() {
        let f = setup_with(true, MIN_WAL_LIMIT, Some(Duration::from_millis(50))).await;
        let wal = f.dir.as_ref().unwrap().path().join("chat.db-wal");
        let (db, author) = (&f.db, &f.author);
        let (writer, mut rx) = writer(&f, WriterConfig::default());
        let (mut sent, mut largest) = (0, 0);
        let mut restarts = (wal_restarts(&wal), 0);
        let started = Instant::now();
        // Batches of 20 back to back: the writer commits again as soon as it has handed a batch on.
        while restarts.1 < 3 && started.elapsed() < Duration::from_secs(60) {
            for _ in 0..20 {
                let id = format!("w{sent}");
                writer
                    .submit(message(author, "room1", Some(&id)), author.clone(), sent)
                    .unwrap();
                sent += 1;
            }
            for (ticket, result) in outcomes(&mut rx, 20).await {
                assert!(matches!(result, Ok(Saved::New(_))), "{ticket}: {result:?}");
            }
            let now = wal_restarts(&wal);
            if now != restarts.0 {
                restarts = (now, restarts.1 + 1);
            }
            largest = largest.max(std::fs::metadata(&wal).map_or(0, |m| m.len()));
        }
        assert!(
            restarts.1 >= 3,
            "the WAL started over {} times in {sent} messages",
            restarts.1
        );
        // The limit, and some of what a load this fast writes between two checkpoints.
        assert!(
            largest < 4 * MIN_WAL_LIMIT,
            "the WAL reached {largest} bytes"
        );
        assert_eq!(message::Entity::find().all(db).await.unwrap().len(), sent);
    }

    /// The checkpoint sequence number in a WAL file's header, which SQLite counts up each time it
    /// starts the WAL over (bytes 12 to 15, big-endian).
    fn wal_restarts(wal: &std::path::Path) -> Option<u32> {
        use std::io::Read;
        let mut header = [0; 16];
        std::fs::File::open(wal)
            .ok()?
            .read_exact(&mut header)
            .ok()?;
        Some(u32::from_be_bytes([
            header[12], header[13], header[14], header[15],
        ]))
    }

    /// Runs a case on an in-memory database's shared connection and on a SQLite file's kept one.
    macro_rules! on_both {
        ($($case:ident),* $(,)?) => {$(
            mod $case {
                #[tokio::test]
                async fn shared_connection() {
                    super::$case(false).await;
                }

                #[tokio::test]
                async fn kept_connection() {
                    super::$case(true).await;
                }
            }
        )*};
    }

    on_both!(
        a_backlog_is_stored_in_order_and_repeats_are_stored_once,
        a_client_id_reused_for_another_message_is_refused,
        full_slots_refuse_instead_of_waiting_and_close_drains,
        more_rows_than_one_statement_holds_are_stored_in_one_transaction_in_order,
        a_row_the_database_refuses_is_refused_alone,
    );
}
