//! The link to one Redis server: the publisher (notes in pipelines) and the subscriber (the other
//! nodes' notes on the channels this node reads), each reconnecting on its own whenever Redis goes
//! away; and what both kinds of link share (following the channels wanted, reading a note), the
//! heartbeat and the digests. A Redis Cluster's link is in `shards.rs`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::PubSubSink;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::digest::DIGEST_EVERY;
use super::peers::{Held, Peers, receive};
use super::subs::LINGER;
use super::wire::{Body, Channel, Kind, Note};
use super::{Bus, BusMetrics, HEARTBEAT, Local, MAX_BACKOFF, Outgoing, PIPELINE};

/// Channels named in one SUBSCRIBE or UNSUBSCRIBE at most.
const SUBSCRIBE_CHUNK: usize = 512;

/// Sends queued notes in pipelines, reconnecting whenever Redis goes away.
pub(super) async fn publish_all(
    bus: Bus,
    client: redis::Client,
    mut notes: mpsc::Receiver<Outgoing>,
) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let mut conn = match client.get_multiplexed_async_connection().await {
            Ok(conn) => conn,
            Err(e) => {
                tracing::debug!(error = %e, "cluster: Redis unreachable (publisher)");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        backoff = Duration::from_millis(50);
        bus.set_up(&bus.inner.publishing, true);
        tracing::info!("cluster: publishing to Redis");
        let mut batch = Vec::with_capacity(PIPELINE);
        loop {
            if notes.recv_many(&mut batch, PIPELINE).await == 0 {
                return;
            }
            let mut pipe = redis::pipe();
            for outgoing in &batch {
                pipe.publish(outgoing.channel.name(&bus.inner.prefix), &outgoing.note);
            }
            match pipe.query_async::<Vec<i64>>(&mut conn).await {
                Ok(readers) => {
                    for (outgoing, readers) in batch.drain(..).zip(readers) {
                        bus.learn(&outgoing.channel, readers, outgoing.at);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cluster: lost Redis (publisher); reconnecting");
                    batch.clear();
                    break;
                }
            }
        }
        bus.set_up(&bus.inner.publishing, false);
        // Whatever was queued is dropped: it would arrive late, and out of turn with newer events.
        while let Ok(_stale) = notes.try_recv() {
            bus.note_dropped();
        }
    }
}

/// Reads the other nodes' notes on the channels this node wants, reconnecting whenever Redis goes
/// away.
pub(super) async fn subscribe(bus: Bus, client: redis::Client, local: Local, peers: Arc<Peers>) {
    let mut backoff = Duration::from_millis(50);
    // The channels read before a disconnection: rooms among them no longer wanted are forgotten.
    let mut held = Held::new();
    loop {
        let pubsub = async {
            let (mut sink, stream) = client.get_async_pubsub().await?.split();
            let mut now = Held::new();
            follow(&bus, &mut sink, &mut now, None).await?;
            redis::RedisResult::Ok((sink, stream, now))
        };
        let (mut sink, mut stream, now) = match pubsub.await {
            Ok(pubsub) => pubsub,
            Err(e) => {
                tracing::debug!(error = %e, "cluster: Redis unreachable (subscriber)");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        resubscribed(&bus, (&local, &peers), &held, &now);
        held = now;
        backoff = Duration::from_millis(50);
        tracing::info!(channels = held.len(), "cluster: subscribed to Redis");
        let mut tick = tokio::time::interval(LINGER / 4);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let changed = tokio::select! {
                message = stream.next() => {
                    let Some(message) = message else { break };
                    let (name, payload) = (message.get_channel_name(), message.get_payload_bytes());
                    handle(&bus, &local, &peers, &held, name, payload).await;
                    false
                }
                () = bus.inner.wanted.changed.notified() => true,
                _ = tick.tick() => true,
            };
            if changed
                && follow(&bus, &mut sink, &mut held, Some(&peers))
                    .await
                    .is_err()
            {
                break;
            }
        }
        bus.set_up(&bus.inner.subscribed, false);
        tracing::warn!("cluster: lost Redis (subscriber); reconnecting");
    }
}

/// After (re)subscribing to `held` (the channels read `before` a lost connection): rooms no longer read
/// are forgotten, nothing learnt of channels nobody else read holds any more, and, since notes were
/// missed, every node is asked for its snapshot (now, and again with each heartbeat until each has
/// sent one: the publisher may still be reconnecting) and this node sends its own.
pub(super) fn resubscribed(
    bus: &Bus,
    (local, peers): (&Local, &Peers),
    before: &Held,
    held: &Held,
) {
    for channel in before.difference(held) {
        if let Channel::Room(room) = channel {
            peers.forget_room(room);
        }
    }
    bus.inner.listeners.forget_all();
    bus.set_up(&bus.inner.subscribed, true);
    peers.all_seen_now();
    peers.want_all();
    peers.ask(bus);
    bus.publish_snapshot(&local.presence);
}

/// Reads one note that came on the Redis channel `name`, unless this node sent it.
pub(super) async fn handle(
    bus: &Bus,
    local: &Local,
    peers: &Peers,
    held: &Held,
    name: &str,
    payload: &[u8],
) {
    let Some(channel) = Channel::parse(&bus.inner.prefix, name) else {
        return;
    };
    match serde_json::from_slice::<Note>(payload) {
        Ok(note) if note.n != bus.inner.node => {
            // Another node reads this channel (or, coming online, the user's).
            let listeners = &bus.inner.listeners;
            match (&channel, &note.b) {
                (Channel::Control, Body::Online { user }) => {
                    listeners.heard(&Channel::User(user.id));
                }
                // A node sends its snapshot after (re)subscribing: it reads its users' and rooms'
                // channels again.
                (Channel::Control, Body::Snapshot { online, rooms, .. }) => {
                    for user in online {
                        listeners.heard(&Channel::User(user.id));
                    }
                    for (room, _) in rooms {
                        listeners.heard(&Channel::Room(room.clone()));
                    }
                }
                (Channel::Control, _) => {}
                _ => listeners.heard(&channel),
            }
            let kind = Kind::of(&channel, &note.b);
            BusMetrics::kind(&bus.inner.metrics.received, kind).inc();
            receive(bus, local, peers, &channel, held, note).await;
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "cluster: unreadable note"),
    }
}

/// What subscribes: one Redis server's pub/sub connection, or a Redis Cluster connection.
pub(super) trait Subscriber {
    /// Subscribes to the channels `names`.
    async fn add(&mut self, names: &[String]) -> redis::RedisResult<()>;
    /// Unsubscribes from the channels `names`.
    async fn remove(&mut self, names: &[String]) -> redis::RedisResult<()>;
}

impl Subscriber for PubSubSink {
    async fn add(&mut self, names: &[String]) -> redis::RedisResult<()> {
        for chunk in names.chunks(SUBSCRIBE_CHUNK) {
            self.subscribe(chunk).await?;
        }
        Ok(())
    }

    async fn remove(&mut self, names: &[String]) -> redis::RedisResult<()> {
        for chunk in names.chunks(SUBSCRIBE_CHUNK) {
            self.unsubscribe(chunk).await?;
        }
        Ok(())
    }
}

/// Subscribes to the channels wanted and not held, and unsubscribes from those held and no longer
/// wanted: every channel wanted on (re)connecting (`live` is `None`: the snapshots asked for then cover
/// the rooms), the changes since the last call while connected, where a room read anew asks the other
/// nodes who is in it, and a room left is forgotten.
pub(super) async fn follow(
    bus: &Bus,
    sink: &mut impl Subscriber,
    held: &mut Held,
    live: Option<&Peers>,
) -> redis::RedisResult<()> {
    let now = Instant::now();
    let (new, old): (Vec<Channel>, Vec<Channel>) = if live.is_some() {
        let changes = bus.inner.wanted.changes(now);
        (
            changes
                .added
                .into_iter()
                .filter(|c| !held.contains(c))
                .collect(),
            changes
                .removed
                .into_iter()
                .filter(|c| held.contains(c))
                .collect(),
        )
    } else {
        let all: Held = bus.inner.wanted.all(now).into_iter().collect();
        (
            all.difference(held).cloned().collect(),
            held.difference(&all).cloned().collect(),
        )
    };
    if new.is_empty() && old.is_empty() {
        return Ok(());
    }
    let prefix = &bus.inner.prefix;
    let names =
        |channels: &[Channel]| -> Vec<String> { channels.iter().map(|c| c.name(prefix)).collect() };
    sink.add(&names(&new)).await?;
    held.extend(new.iter().cloned());
    sink.remove(&names(&old)).await?;
    for channel in &old {
        held.remove(channel);
    }
    if let Some(peers) = live {
        for channel in &new {
            if let Channel::Room(room) = channel {
                bus.publish(
                    &Channel::Room(room.clone()),
                    &Body::RoomAsk {
                        room: room.clone(),
                        node: String::new(),
                    },
                );
            }
        }
        for channel in &old {
            if let Channel::Room(room) = channel {
                peers.forget_room(room);
            }
        }
    }
    bus.inner.metrics.subscriptions.set(held.len() as i64);
    Ok(())
}

/// Publishes, every [`DIGEST_EVERY`], what this node posted per group room since the last digest.
pub(super) async fn send_digests(bus: Bus) {
    let mut tick = tokio::time::interval(DIGEST_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        bus.publish_digest();
    }
}

/// Says this node is alive, forgets nodes that went silent, and logs dropped notes.
pub(super) async fn heartbeat(bus: Bus, peers: Arc<Peers>) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut dropped = 0;
    loop {
        tick.tick().await;
        bus.publish(&Channel::Control, &Body::Alive);
        let now_dropped = bus.inner.dropped.load(Ordering::Relaxed);
        if now_dropped > dropped {
            tracing::warn!(
                notes = now_dropped - dropped,
                "cluster: notes dropped while Redis was slow or away"
            );
            dropped = now_dropped;
        }
        bus.inner.listeners.prune(Instant::now());
        if bus.inner.subscribed.load(Ordering::SeqCst) {
            peers.expire(Instant::now());
            peers.ask(&bus);
        }
        bus.inner.metrics.nodes.set(peers.lock().len() as i64);
    }
}
