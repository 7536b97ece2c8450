//! Presence rounds: the newest list of each changed room sent to the room's sockets that have not seen
//! it, paced to [`super::ROUND_BYTES_PER_SECOND`], one task per round.

use std::sync::Arc;
use std::time::Duration;

use socketioxide::socket::Sid;
use tokio::time::Instant;

use super::{CHUNK_BYTES, PresenceHub, ROUND_BYTES_PER_SECOND};
use crate::realtime::conn::Conn;
use crate::realtime::events::Outbound;
use crate::realtime::pusher::{Pusher, Target};

/// Runs presence rounds until the server closes. One task for the node; each round runs on a task of
/// its own, so a slow round of a big room never holds up small rooms.
pub async fn run_rounds(hub: Arc<PresenceHub>, pusher: Pusher) {
    loop {
        let (due, next) = hub.due_rounds(Instant::now());
        for room in due {
            tokio::spawn(round(hub.clone(), pusher.clone(), room));
        }
        match next {
            Some(at) => {
                tokio::select! {
                    () = tokio::time::sleep_until(at) => {}
                    () = hub.wake.notified() => {}
                }
            }
            None => hub.wake.notified().await,
        }
        if pusher.is_closed() {
            return;
        }
    }
}

/// Sends the room's newest list to each of its sockets on this node that has not seen it, in paced
/// chunks. Each chunk carries the newest list at its time, so no socket is ever sent a list older than
/// one it already has.
///
/// A room that fits in one chunk gets one broadcast, encoded once for all: to the whole room, or, when
/// one socket has this list already (the newcomer whose arrival started the round), to the others
/// (laravel-swoole's `toOthers`).
async fn round(hub: Arc<PresenceHub>, pusher: Pusher, room: String) {
    let started = Instant::now();
    let sockets = pusher.room_sockets(&room);
    let mut remaining = sockets.as_slice();
    while !remaining.is_empty() {
        let Some(listing) = hub.current(&room) else {
            break;
        };
        let event = Outbound::Presence {
            room: room.clone(),
            entered: listing.entered,
            members: listing.members.clone(),
        };
        let encoded = pusher.encode(&event);
        let size = encoded.largest_frame().max(1);
        let per_chunk = (CHUNK_BYTES / size).max(1);
        if remaining.len() == sockets.len() && sockets.len() <= per_chunk {
            let conns: Vec<(Sid, Arc<Conn>)> = sockets
                .iter()
                .filter_map(|s| Some((s.id, s.extensions.get::<Arc<Conn>>()?)))
                .collect();
            let have: Vec<Sid> = conns
                .iter()
                .filter(|(_, c)| c.presence_seen(&room) >= listing.version)
                .map(|(sid, _)| *sid)
                .collect();
            if have.len() <= 1 {
                for (_, conn) in &conns {
                    conn.saw_presence(&room, listing.version);
                }
                let target = match have.as_slice() {
                    [newcomer] => Target::RoomExcept(room.clone(), *newcomer),
                    _ => Target::Room(room.clone()),
                };
                // Every node runs its own rounds for its own sockets.
                pusher.send_here(&target, &encoded).await;
                if hub.current(&room).map(|l| l.version) != Some(listing.version) {
                    // Someone entered meanwhile and may have just been sent this older list after
                    // their own newer one: the next round sends them the newest again.
                    for socket in pusher.room_sockets(&room) {
                        if let Some(conn) = socket.extensions.get::<Arc<Conn>>() {
                            conn.forget_presence_after(&room, listing.version);
                        }
                    }
                }
                break;
            }
        }
        let take = per_chunk.min(remaining.len());
        let (chunk, rest) = remaining.split_at(take);
        remaining = rest;
        let mut sent = 0usize;
        for socket in chunk {
            let Some(conn) = socket.extensions.get::<Arc<Conn>>() else {
                continue;
            };
            if conn.presence_seen(&room) >= listing.version {
                continue;
            }
            conn.saw_presence(&room, listing.version);
            pusher.send_to(std::slice::from_ref(socket), &encoded);
            sent += size;
        }
        if !remaining.is_empty() && sent > 0 {
            tokio::time::sleep(Duration::from_secs_f64(
                sent as f64 / ROUND_BYTES_PER_SECOND,
            ))
            .await;
        }
    }
    hub.finish_round(&room, started.elapsed());
}
