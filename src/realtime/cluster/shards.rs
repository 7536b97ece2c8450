//! The link to a Redis Cluster (`--redis-url` with several comma-separated seeds): sharded pub/sub
//! (`SPUBLISH`/`SSUBSCRIBE`, Redis ≥ 7), so each channel lives on the shard that owns its slot and the
//! bus's load spreads over the cluster's masters.
//!
//! What the redis crate (1.8) does here, measured against a local cluster of three masters and three
//! replicas: it sends each SPUBLISH and SSUBSCRIBE to the owner of the channel's slot and follows slot
//! moves for requests. But a connection that only listens does not notice that a master failed over
//! (it refreshes its slot map only when a request fails), so its subscriptions on that shard would be
//! gone for good while publishers, which do notice, go on publishing to nobody. So on every
//! `Disconnection` push this link subscribes again to every channel it reads, retrying until each is
//! confirmed by a node serving the slot (the promoted replica once the cluster has failed over), then
//! twice more, [`RESUBSCRIBE_AGAIN`] apart. Notes lost meanwhile are lost as on one Redis: numbered
//! channels show the gap, and after each pass every node is asked for a snapshot.
//!
//! Channels of different slots cannot share a command, so a batch of notes goes out as one pipeline per
//! channel (a channel's notes keep their order), all at once, and channels are subscribed one per
//! command, many at once.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{StreamExt, stream};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::io::tcp::TcpSettings;
use redis::{ProtocolVersion, PushInfo, PushKind, RedisResult, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::link::{Subscriber, follow, handle, resubscribed};
use super::peers::{Held, Peers};
use super::subs::LINGER;
use super::wire::Channel;
use super::{Bus, Local, MAX_BACKOFF, Outgoing, PIPELINE};

/// After a resubscription pass, another one this much later, twice (a subscription the server
/// confirmed during a failover may still be lost with the old master's state).
const RESUBSCRIBE_AGAIN: Duration = Duration::from_secs(1);
/// The longest pause between two resubscription attempts while a shard fails over.
const RESUBSCRIBE_PAUSE: Duration = Duration::from_millis(250);
/// Commands in flight at once to the cluster.
const CONCURRENCY: usize = 64;

/// The seeds' cluster client, with timeouts short enough that a failover costs seconds, not minutes.
fn client(
    seeds: &[String],
    pushes: Option<mpsc::UnboundedSender<PushInfo>>,
) -> RedisResult<ClusterClient> {
    let builder = ClusterClientBuilder::new(seeds.to_vec())
        .use_protocol(ProtocolVersion::RESP3)
        .tcp_settings(TcpSettings::default().set_nodelay(true))
        .connection_timeout(Duration::from_millis(500))
        .response_timeout(Duration::from_millis(500))
        .retries(10)
        .min_retry_wait(50)
        .max_retry_wait(500);
    match pushes {
        Some(pushes) => builder.push_sender(pushes).build(),
        None => builder.build(),
    }
}

/// Checks that every seed is a Redis URL.
pub(super) fn check(seeds: &[String]) -> RedisResult<()> {
    client(seeds, None).map(drop)
}

/// Connects, retrying with a growing pause until the cluster answers.
async fn connect(client: &ClusterClient, who: &str) -> ClusterConnection {
    let mut backoff = Duration::from_millis(50);
    loop {
        match client.get_async_connection().await {
            Ok(conn) => return conn,
            Err(e) => {
                tracing::debug!(error = %e, who, "cluster: Redis Cluster unreachable");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// A note waiting, and when it was queued.
type Queued = (Vec<u8>, Instant);

/// Sends queued notes: per batch, one pipeline of SPUBLISH per channel, all at once. The connection
/// follows the cluster by itself; notes whose pipeline failed (a shard failing over) are dropped.
pub(super) async fn publish_all(bus: Bus, seeds: Vec<String>, mut notes: mpsc::Receiver<Outgoing>) {
    let client = match client(&seeds, None) {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "cluster: cannot use the Redis Cluster seeds");
            return;
        }
    };
    let conn = connect(&client, "publisher").await;
    bus.set_up(&bus.inner.publishing, true);
    tracing::info!("cluster: publishing to the Redis Cluster");
    let mut batch = Vec::with_capacity(PIPELINE);
    loop {
        if notes.recv_many(&mut batch, PIPELINE).await == 0 {
            return;
        }
        let mut channels: Vec<(Channel, Vec<Queued>)> = Vec::new();
        for Outgoing { channel, note, at } in batch.drain(..) {
            match channels.iter_mut().find(|(c, _)| *c == channel) {
                Some((_, queued)) => queued.push((note, at)),
                None => channels.push((channel, vec![(note, at)])),
            }
        }
        let prefix = &bus.inner.prefix;
        let failed: Vec<usize> = stream::iter(channels)
            .map(|(channel, queued)| {
                let mut conn = conn.clone();
                let bus = &bus;
                async move {
                    let mut pipe = redis::pipe();
                    let name = channel.name(prefix);
                    for (note, _) in &queued {
                        pipe.cmd("SPUBLISH").arg(&name).arg(note);
                    }
                    match pipe.query_async::<Vec<i64>>(&mut conn).await {
                        Ok(readers) => {
                            for ((_, at), readers) in queued.iter().zip(readers) {
                                bus.learn(&channel, readers, *at);
                            }
                            0
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "cluster: a shard refused notes");
                            queued.len()
                        }
                    }
                }
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        for _ in 0..failed.iter().sum::<usize>() {
            bus.note_dropped();
        }
    }
}

/// A cluster connection subscribing: one SSUBSCRIBE or SUNSUBSCRIBE per channel, many at once.
struct Shards(ClusterConnection);

impl Shards {
    async fn each(&self, names: &[String], subscribe: bool) -> RedisResult<()> {
        let results: Vec<RedisResult<()>> = stream::iter(names.iter().cloned())
            .map(|name| {
                let mut conn = self.0.clone();
                async move {
                    if subscribe {
                        conn.ssubscribe(name).await
                    } else {
                        conn.sunsubscribe(name).await
                    }
                }
            })
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        results.into_iter().collect()
    }
}

impl Subscriber for Shards {
    async fn add(&mut self, names: &[String]) -> RedisResult<()> {
        self.each(names, true).await
    }

    async fn remove(&mut self, names: &[String]) -> RedisResult<()> {
        self.each(names, false).await
    }
}

/// Reads the other nodes' notes on the channels this node wants, from every shard; subscribes again
/// whenever a connection to a shard was lost.
pub(super) async fn subscribe(bus: Bus, seeds: Vec<String>, local: Local, peers: Arc<Peers>) {
    let (tx, mut pushes) = mpsc::unbounded_channel::<PushInfo>();
    let client = match client(&seeds, Some(tx)) {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(error = %e, "cluster: cannot use the Redis Cluster seeds");
            return;
        }
    };
    let mut shards = Shards(connect(&client, "subscriber").await);
    let mut held = Held::new();
    // Resubscription passes still wanted, and when the next is due. A pass that fails is tried again
    // soon; notes keep being read in between, from the shards that are up.
    let mut passes = Passes::new();
    let mut tick = tokio::time::interval(LINGER / 4);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if passes.due(Instant::now()) {
            let ok = resync(&bus, &mut shards, &mut held, (&local, &peers)).await;
            passes.done(ok, Instant::now());
            if ok && passes.left == 0 {
                tracing::info!(
                    channels = held.len(),
                    "cluster: subscribed to the Redis Cluster"
                );
            }
            continue;
        }
        let next = passes.at.unwrap_or_else(|| Instant::now() + LINGER);
        let follow_now = tokio::select! {
            push = pushes.recv() => {
                let Some(push) = push else { return };
                match push.kind {
                    PushKind::SMessage | PushKind::Message => {
                        if let [Value::BulkString(name), Value::BulkString(payload)] = &push.data[..] {
                            let name = String::from_utf8_lossy(name);
                            handle(&bus, &local, &peers, &held, &name, payload).await;
                        }
                    }
                    PushKind::Disconnection => {
                        bus.set_up(&bus.inner.subscribed, false);
                        tracing::warn!("cluster: lost a Redis Cluster node (subscriber); subscribing again");
                        passes = Passes::new();
                    }
                    _ => {}
                }
                false
            }
            () = tokio::time::sleep_until(next), if passes.at.is_some() => false,
            () = bus.inner.wanted.changed.notified() => true,
            _ = tick.tick() => true,
        };
        if follow_now
            && !passes.failing
            && follow(&bus, &mut shards, &mut held, Some(&peers))
                .await
                .is_err()
        {
            bus.set_up(&bus.inner.subscribed, false);
            passes = Passes::new();
        }
    }
}

/// The resubscription passes after a lost connection: one now (retried every [`RESUBSCRIBE_PAUSE`]
/// until it succeeds), then two more, [`RESUBSCRIBE_AGAIN`] apart.
struct Passes {
    left: u8,
    at: Option<Instant>,
    /// The last pass failed (or none ran yet): channels are followed by the next pass, not before.
    failing: bool,
}

impl Passes {
    fn new() -> Self {
        Self {
            left: 3,
            at: Some(Instant::now()),
            failing: true,
        }
    }

    fn due(&self, now: Instant) -> bool {
        self.at.is_some_and(|at| now >= at)
    }

    fn done(&mut self, ok: bool, now: Instant) {
        self.failing = !ok;
        if !ok {
            self.at = Some(now + RESUBSCRIBE_PAUSE);
            return;
        }
        self.left = self.left.saturating_sub(1);
        self.at = (self.left > 0).then(|| now + RESUBSCRIBE_AGAIN);
    }
}

/// Subscribes again to every channel held (a failed-over shard lost them), then follows the channels
/// wanted; rooms no longer read are forgotten. When every command was confirmed, asks every node for a
/// snapshot (notes were lost meanwhile) and returns true.
async fn resync(
    bus: &Bus,
    shards: &mut Shards,
    held: &mut Held,
    (local, peers): (&Local, &Peers),
) -> bool {
    let before = held.clone();
    let names: Vec<String> = held.iter().map(|c| c.name(&bus.inner.prefix)).collect();
    if shards.add(&names).await.is_err() || follow(bus, shards, held, None).await.is_err() {
        return false;
    }
    resubscribed(bus, (local, peers), &before, held);
    true
}
