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
//! confirmed by a node serving the slot (the promoted replica once the cluster has failed over), and
//! once more [`RESUBSCRIBE_AGAIN`] later. Notes lost meanwhile are lost as on one Redis: numbered
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

use super::link::{Subscriber, follow, handle};
use super::peers::{Held, Peers};
use super::subs::LINGER;
use super::wire::Channel;
use super::{Bus, Local, MAX_BACKOFF, Outgoing, PIPELINE};

/// After a resubscription pass, another one this much later (a subscription the server confirmed
/// during a failover may still be lost with the old master's state).
const RESUBSCRIBE_AGAIN: Duration = Duration::from_secs(3);
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
    resync(&bus, &mut shards, &mut held, (&local, &peers)).await;
    tracing::info!(
        channels = held.len(),
        "cluster: subscribed to the Redis Cluster"
    );
    let mut again: Option<Instant> = None;
    let mut tick = tokio::time::interval(LINGER / 4);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
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
                        resync(&bus, &mut shards, &mut held, (&local, &peers)).await;
                        again = Some(Instant::now() + RESUBSCRIBE_AGAIN);
                    }
                    _ => {}
                }
                false
            }
            () = bus.inner.wanted.changed.notified() => true,
            _ = tick.tick() => true,
        };
        if !follow_now {
            continue;
        }
        if again.is_some_and(|at| Instant::now() >= at) {
            again = None;
            resync(&bus, &mut shards, &mut held, (&local, &peers)).await;
        } else if follow(&bus, &mut shards, &mut held, Some(&peers))
            .await
            .is_err()
        {
            bus.set_up(&bus.inner.subscribed, false);
            resync(&bus, &mut shards, &mut held, (&local, &peers)).await;
        }
    }
}

/// Subscribes again to every channel held (a failed-over shard lost them), then follows the channels
/// wanted, retrying until every command is confirmed; rooms no longer read are forgotten. Then asks
/// every node for a snapshot: notes were lost meanwhile.
async fn resync(bus: &Bus, shards: &mut Shards, held: &mut Held, (local, peers): (&Local, &Peers)) {
    let before = held.clone();
    let mut pause = Duration::from_millis(50);
    loop {
        let names: Vec<String> = held.iter().map(|c| c.name(&bus.inner.prefix)).collect();
        if shards.add(&names).await.is_ok() && follow(bus, shards, held, None).await.is_ok() {
            break;
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_BACKOFF);
    }
    for channel in before.difference(held) {
        if let Channel::Room(room) = channel {
            peers.forget_room(room);
        }
    }
    bus.set_up(&bus.inner.subscribed, true);
    peers.all_seen_now();
    peers.want_all();
    peers.ask(bus);
    bus.publish_snapshot(&local.presence);
}
