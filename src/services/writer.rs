//! The background message writer: persistence off the socket path, with group commit.
//!
//! Handlers hand each message to [`MessageWriter::submit`], which never waits: the message joins a
//! bounded queue, or is refused at once when the queue is full. One task drains the queue in batches
//! (up to [`WriterConfig::batch`] messages, or whatever arrived within [`WriterConfig::linger`] of the
//! first) and stores each batch in one transaction, so a burst costs one commit instead of hundreds.
//! Each submitter then learns, through its own channel, the stored message with its id: only then is
//! it echoed and broadcast, so an echo means "stored".
//!
//! A message whose `(sender, client id)` is already stored is not stored again: the submitter gets the
//! existing row, marked [`Saved::Existing`]. [`MessageWriter::close`] stops intake and waits until
//! every queued message is committed.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use entity::{message, user};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, TransactionTrait};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::auth::UserId;
use crate::error::AppError;
use crate::services::messages::{self, NewMessage, StoredMessage};

/// Queue and batch sizes.
#[derive(Debug, Clone, Copy)]
pub struct WriterConfig {
    /// Messages waiting at most; beyond it senders are refused.
    pub capacity: usize,
    /// Messages per transaction at most.
    pub batch: usize,
    /// How long the writer waits for more messages after the first of a batch.
    pub linger: Duration,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            capacity: 4096,
            batch: 256,
            linger: Duration::from_millis(2),
        }
    }
}

/// What became of a submitted message.
#[derive(Debug, Clone)]
pub enum Saved {
    /// Stored now.
    New(StoredMessage),
    /// The same sender's message with the same client id was stored before; this is that one.
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

/// Resolves when the message is stored, or the writer failed to store it.
pub type Receipt = oneshot::Receiver<Result<Saved, AppError>>;

struct Job {
    new: NewMessage,
    sender: user::Model,
    reply: oneshot::Sender<Result<Saved, AppError>>,
}

/// Handle to the writer task.
pub struct MessageWriter {
    intake: Mutex<Option<mpsc::Sender<Job>>>,
    task: tokio::sync::Mutex<Option<JoinHandle<()>>>,
}

impl MessageWriter {
    /// Starts the writer task on the current runtime.
    pub fn spawn(db: DatabaseConnection, config: WriterConfig) -> Self {
        let (tx, rx) = mpsc::channel(config.capacity.max(1));
        let task = tokio::spawn(run(db, rx, config));
        Self {
            intake: Mutex::new(Some(tx)),
            task: tokio::sync::Mutex::new(Some(task)),
        }
    }

    /// Queues `new` (sent by `sender`) without waiting.
    ///
    /// # Errors
    /// [`AppError::Unavailable`] when the queue is full or the writer is shutting down.
    pub fn submit(&self, new: NewMessage, sender: user::Model) -> Result<Receipt, AppError> {
        let (reply, receipt) = oneshot::channel();
        let intake = self
            .intake
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(tx) = intake.as_ref() else {
            return Err(AppError::Unavailable);
        };
        tx.try_send(Job { new, sender, reply })
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => {
                    tracing::warn!("message queue full: refusing a message");
                    AppError::Unavailable
                }
                mpsc::error::TrySendError::Closed(_) => AppError::Unavailable,
            })?;
        Ok(receipt)
    }

    /// Stops taking messages and waits until every queued one is committed (or has failed).
    pub async fn close(&self) {
        drop(
            self.intake
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take(),
        );
        if let Some(task) = self.task.lock().await.take()
            && let Err(e) = task.await
        {
            tracing::error!(error = %e, "message writer stopped abnormally");
        }
    }
}

async fn run(db: DatabaseConnection, mut rx: mpsc::Receiver<Job>, config: WriterConfig) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        let deadline = Instant::now() + config.linger;
        while batch.len() < config.batch {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(mpsc::error::TryRecvError::Disconnected) => break,
                Err(mpsc::error::TryRecvError::Empty) => {
                    match tokio::time::timeout_at(deadline, rx.recv()).await {
                        Ok(Some(job)) => batch.push(job),
                        Ok(None) | Err(_) => break,
                    }
                }
            }
        }
        commit(&db, batch).await;
    }
    tracing::debug!("message writer drained");
}

type Key = (UserId, String);

fn key(job: &Job) -> Option<Key> {
    job.new
        .client_id
        .as_ref()
        .map(|c| (job.new.sender, c.clone()))
}

/// Stores a batch and answers every job in it.
async fn commit(db: &DatabaseConnection, batch: Vec<Job>) {
    let started = Instant::now();
    let size = batch.len();
    let existing = match already_stored(db, &batch).await {
        Ok(existing) => existing,
        Err(e) => {
            tracing::error!(error = %e, size, "cannot check for repeated messages");
            for job in batch {
                let _ = job.reply.send(Err(unavailable()));
            }
            return;
        }
    };
    // Split the batch: repeats of stored messages, repeats within the batch, and new ones.
    let mut fresh: Vec<Job> = Vec::with_capacity(size);
    let mut repeats: Vec<(Job, usize)> = Vec::new();
    let mut first_of: HashMap<Key, usize> = HashMap::new();
    for job in batch {
        let k = key(&job);
        if let Some(row) = k.as_ref().and_then(|k| existing.get(k)) {
            let stored = StoredMessage {
                message: row.clone(),
                sender: job.sender.clone(),
            };
            let _ = job.reply.send(Ok(Saved::Existing(stored)));
        } else if let Some(index) = k.as_ref().and_then(|k| first_of.get(k)) {
            repeats.push((job, *index));
        } else {
            if let Some(k) = k {
                first_of.insert(k, fresh.len());
            }
            fresh.push(job);
        }
    }
    let results = match insert_all(db, &fresh).await {
        Ok(stored) => stored.into_iter().map(Ok).collect(),
        Err(e) => {
            // One bad row (or a race with another node on the same client id) must not sink the
            // others: store them one by one.
            tracing::warn!(error = %e, size = fresh.len(), "batch commit failed; storing one by one");
            let mut results = Vec::with_capacity(fresh.len());
            for job in &fresh {
                results.push(insert_one(db, job).await);
            }
            results
        }
    };
    for (job, index) in repeats {
        let reply = match &results[index] {
            Ok(saved) => Ok(Saved::Existing(saved.message().clone())),
            Err(_) => Err(unavailable()),
        };
        let _ = job.reply.send(reply);
    }
    for (job, result) in fresh.into_iter().zip(results) {
        let _ = job.reply.send(result);
    }
    tracing::debug!(
        size,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "committed messages"
    );
}

fn unavailable() -> AppError {
    AppError::Unavailable
}

/// Stored messages with the same `(sender, client id)` as a job of `batch`.
async fn already_stored(
    db: &DatabaseConnection,
    batch: &[Job],
) -> Result<HashMap<Key, message::Model>, AppError> {
    let client_ids: Vec<String> = batch
        .iter()
        .filter_map(|j| j.new.client_id.clone())
        .collect();
    if client_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = message::Entity::find()
        .filter(message::Column::ClientId.is_in(client_ids))
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|m| Some(((m.sender_id, m.client_id.clone()?), m)))
        .collect())
}

async fn insert_all(db: &DatabaseConnection, jobs: &[Job]) -> Result<Vec<Saved>, AppError> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let txn = db.begin().await?;
    let mut stored = Vec::with_capacity(jobs.len());
    for job in jobs {
        let m = messages::insert(&txn, job.new.clone(), job.sender.clone()).await?;
        stored.push(Saved::New(m));
    }
    txn.commit().await?;
    Ok(stored)
}

async fn insert_one(db: &DatabaseConnection, job: &Job) -> Result<Saved, AppError> {
    match messages::insert(db, job.new.clone(), job.sender.clone()).await {
        Ok(m) => Ok(Saved::New(m)),
        Err(e) => {
            // A repeat that raced us in: answer with the stored row.
            let stored = already_stored(db, std::slice::from_ref(job)).await;
            if let (Ok(mut stored), Some(k)) = (stored, key(job))
                && let Some(row) = stored.remove(&k)
            {
                return Ok(Saved::Existing(StoredMessage {
                    message: row,
                    sender: job.sender.clone(),
                }));
            }
            tracing::error!(error = %e, "storing a message failed");
            Err(unavailable())
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Utc;
    use entity::user;
    use sea_orm::{ActiveModelTrait, Set};

    use super::*;
    use crate::services::messages::Kind;
    use crate::services::rooms::Room;

    async fn setup() -> (DatabaseConnection, user::Model) {
        let db = crate::db::connect("sqlite::memory:", 1).await.unwrap();
        let user = user::ActiveModel {
            name: Set("writer".into()),
            password_hash: Set("x".into()),
            avatar: Set(String::new()),
            created_at: Set(Utc::now()),
            updated_at: Set(Utc::now()),
            ..Default::default()
        }
        .insert(&db)
        .await
        .unwrap();
        (db, user)
    }

    fn message(sender: &user::Model, client_id: &str) -> NewMessage {
        NewMessage {
            sender: sender.id,
            room: Room::Group("room1".into()),
            kind: Kind::Text,
            body: format!("body of {client_id}"),
            image: String::new(),
            client_id: Some(client_id.to_owned()),
        }
    }

    // These run on a single-threaded runtime: the writer task cannot run until the test awaits, so
    // everything submitted before that is one backlog.

    #[tokio::test]
    async fn a_backlog_is_stored_in_order_and_repeats_are_stored_once() {
        let (db, user) = setup().await;
        let writer = MessageWriter::spawn(db.clone(), WriterConfig::default());
        let mut receipts = Vec::new();
        for i in 0..50 {
            receipts.push(
                writer
                    .submit(message(&user, &format!("c{i}")), user.clone())
                    .unwrap(),
            );
        }
        let repeat = writer.submit(message(&user, "c7"), user.clone()).unwrap();
        let mut ids = Vec::new();
        for receipt in receipts {
            match receipt.await.unwrap().unwrap() {
                Saved::New(m) => ids.push(m.message.id),
                Saved::Existing(_) => panic!("a first send is new"),
            }
        }
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "stored in submission order"
        );
        match repeat.await.unwrap().unwrap() {
            Saved::Existing(m) => assert_eq!(m.message.id, ids[7]),
            Saved::New(_) => panic!("a repeat is not stored again"),
        }
        let again = writer.submit(message(&user, "c3"), user.clone()).unwrap();
        assert!(
            matches!(again.await.unwrap().unwrap(), Saved::Existing(m) if m.message.id == ids[3])
        );
        assert_eq!(message::Entity::find().all(&db).await.unwrap().len(), 50);
    }

    #[tokio::test]
    async fn a_full_queue_refuses_instead_of_waiting_and_close_drains() {
        let (db, user) = setup().await;
        let config = WriterConfig {
            capacity: 3,
            ..WriterConfig::default()
        };
        let writer = MessageWriter::spawn(db.clone(), config);
        let accepted: Vec<Receipt> = (0..3)
            .map(|i| {
                writer
                    .submit(message(&user, &format!("q{i}")), user.clone())
                    .unwrap()
            })
            .collect();
        assert!(matches!(
            writer.submit(message(&user, "q3"), user.clone()),
            Err(AppError::Unavailable)
        ));
        writer.close().await;
        for receipt in accepted {
            assert!(matches!(receipt.await.unwrap(), Ok(Saved::New(_))));
        }
        assert!(matches!(
            writer.submit(message(&user, "late"), user.clone()),
            Err(AppError::Unavailable)
        ));
        assert_eq!(message::Entity::find().all(&db).await.unwrap().len(), 3);
    }
}
