//! The link to Redis: the publisher (notes in pipelines), the subscriber (the other nodes' notes) and
//! the heartbeat, each reconnecting on its own whenever Redis goes away.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::peers::{Peers, receive};
use super::wire::{Body, Note};
use super::{Bus, HEARTBEAT, Local, MAX_BACKOFF, PIPELINE};

/// Sends queued notes in pipelines, reconnecting whenever Redis goes away.
pub(super) async fn publish_all(
    bus: Bus,
    client: redis::Client,
    mut notes: mpsc::Receiver<Vec<u8>>,
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
            for note in batch.drain(..) {
                pipe.publish(&bus.inner.channel, note).ignore();
            }
            if let Err(e) = pipe.query_async::<()>(&mut conn).await {
                tracing::warn!(error = %e, "cluster: lost Redis (publisher); reconnecting");
                break;
            }
        }
        bus.set_up(&bus.inner.publishing, false);
        // Whatever was queued is dropped: it would arrive late, and out of turn with newer events.
        while let Ok(_stale) = notes.try_recv() {
            bus.note_dropped();
        }
    }
}

/// Reads the other nodes' notes, reconnecting whenever Redis goes away.
pub(super) async fn subscribe(bus: Bus, client: redis::Client, local: Local, peers: Arc<Peers>) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let pubsub = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&bus.inner.channel).await?;
            redis::RedisResult::Ok(pubsub)
        };
        let mut pubsub = match pubsub.await {
            Ok(pubsub) => pubsub,
            Err(e) => {
                tracing::debug!(error = %e, "cluster: Redis unreachable (subscriber)");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        backoff = Duration::from_millis(50);
        bus.set_up(&bus.inner.subscribed, true);
        tracing::info!("cluster: subscribed to Redis");
        // Notes were missed while away: start again from every node's snapshot (asked for now, and again
        // with each heartbeat until each node has sent one: the publisher may still be reconnecting).
        peers.all_seen_now();
        peers.want_all();
        peers.ask(&bus);
        bus.publish_snapshot(&local.presence);
        let mut messages = pubsub.on_message();
        while let Some(message) = messages.next().await {
            match serde_json::from_slice::<Note>(message.get_payload_bytes()) {
                Ok(note) if note.n != bus.inner.node => receive(&bus, &local, &peers, note).await,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cluster: unreadable note"),
            }
        }
        drop(messages);
        bus.set_up(&bus.inner.subscribed, false);
        tracing::warn!("cluster: lost Redis (subscriber); reconnecting");
    }
}

/// Says this node is alive, forgets nodes that went silent, and logs dropped notes.
pub(super) async fn heartbeat(bus: Bus, peers: Arc<Peers>) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut dropped = 0;
    loop {
        tick.tick().await;
        bus.publish(Body::Alive);
        let now_dropped = bus.inner.dropped.load(Ordering::Relaxed);
        if now_dropped > dropped {
            tracing::warn!(
                notes = now_dropped - dropped,
                "cluster: notes dropped while Redis was slow or away"
            );
            dropped = now_dropped;
        }
        if bus.inner.subscribed.load(Ordering::SeqCst) {
            peers.expire(Instant::now());
            peers.ask(&bus);
        }
        bus.inner.nodes.set(peers.lock().len() as i64);
    }
}
