//! The core's periodic work: unread counts pushed in ticks, read marks written in batches, idle rate
//! budgets forgotten, refusals summed up in the log, the room list reloaded (in a cluster), the store's
//! memory released after a crowd has left; and, once at start, each room's newest id.

use std::sync::{Arc, PoisonError, Weak};
use std::time::{Duration, Instant};

use super::events::Outbound;
use super::peak::PeakWatch;
use super::{Inner, REFUSAL_LOG_EVERY, Target, unread};
use crate::services::unread as read_marks;

/// Users told their counts by a tick before it lets other tasks run.
const TOLD_BETWEEN_YIELDS: usize = 16;

/// How often [`release_after_peak`] counts the sockets.
const PEAK_CHECK_EVERY: Duration = Duration::from_secs(1);

/// Counts this node's sockets every [`PEAK_CHECK_EVERY`] and, once a crowd has left ([`PeakWatch`]),
/// has the store give back what it held for it (`db::release_after_peak`: SQLite's page cache and
/// idle connections). chatroom's own tables shrink as they empty; this is the memory they cannot
/// reach. Ends with the core.
pub(super) async fn release_after_peak(inner: Weak<Inner>) {
    let mut watch = PeakWatch::default();
    let mut tick = tokio::time::interval(PEAK_CHECK_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        if inner.pusher.is_closed() {
            return;
        }
        let sockets = inner.metrics.sockets.iter().map(|g| g.get()).sum::<i64>();
        if watch.passed(usize::try_from(sockets).unwrap_or(0)) {
            let db = inner.db.clone();
            drop(inner);
            match crate::db::release_after_peak(&db).await {
                Ok(()) => tracing::info!(sockets, "a crowd has left: the store's cache released"),
                Err(e) => tracing::warn!(error = %e, "the store's cache could not be released"),
            }
        }
    }
}

/// The core's ticker: every [`unread::TICK`] ÷ [`unread::SLICES`] it tells one slice of users their
/// unread counts (so each user at most once per `TICK`); every `TICK` it writes read marks; every
/// [`REFUSAL_LOG_EVERY`] it sums up refusals and forgets idle rate budgets. Sleeps while nothing is
/// pending, and ends with the core.
pub(super) async fn tick_unread(inner: Weak<Inner>) {
    let step = unread::TICK / unread::SLICES as u32;
    let mut slice = 0;
    let mut last_marks = Instant::now();
    let mut last_summary = Instant::now();
    loop {
        let Some(strong) = inner.upgrade() else {
            return;
        };
        let unread = strong.unread.clone();
        drop(strong);
        if !unread.any_pending() {
            tokio::select! {
                () = unread.wait_for_messages() => {}
                () = tokio::time::sleep(unread::TICK) => {}
            }
        }
        let Some(inner) = inner.upgrade() else {
            return;
        };
        if inner.pusher.is_closed() {
            return;
        }
        tell_unread_counts(&inner, slice).await;
        slice = (slice + 1) % unread::SLICES;
        if last_marks.elapsed() >= unread::TICK {
            last_marks = Instant::now();
            flush_marks(&inner).await;
        }
        if last_summary.elapsed() >= REFUSAL_LOG_EVERY {
            last_summary = Instant::now();
            inner.metrics.log_refusals();
            forget_idle_budgets(&inner);
            refresh_rooms(&inner).await;
        }
        drop(inner);
        tokio::time::sleep(step).await;
    }
}

/// Tells the users of `slice` whose counts changed their new counts, on this node's sockets (every
/// node tells its own sockets from its own counters). A user present in a room reads it as it
/// arrives, so that room is not counted for them.
async fn tell_unread_counts(inner: &Inner, slice: usize) {
    // Who is in each changed room, read once: the tick then takes no lock per user.
    let rooms: Vec<String> = inner
        .unread
        .pending_rooms(slice)
        .iter()
        .map(ToString::to_string)
        .collect();
    if rooms.is_empty() {
        return;
    }
    let present = inner.presence.member_ids(&rooms);
    let told = inner.unread.tick(slice, |room, user| {
        present.get(room).is_some_and(|ids| ids.contains(&user))
    });
    for (n, (user, counts)) in told.into_iter().enumerate() {
        let event = Outbound::Unread(counts);
        inner
            .pusher
            .push_here(&Target::Users(vec![user]), &event)
            .await;
        // A slice can be hundreds of users: let messages through between every few of them, so a
        // tick never holds the runtime for long.
        if n % TOLD_BETWEEN_YIELDS == TOLD_BETWEEN_YIELDS - 1 {
            tokio::task::yield_now().await;
        }
    }
}

/// In a cluster, reloads the group rooms from the database: a node that missed a `rooms` note on the
/// bus (Redis away for a moment) catches up within [`REFUSAL_LOG_EVERY`].
async fn refresh_rooms(inner: &Inner) {
    if inner.bus.is_none() {
        return;
    }
    match crate::services::rooms::load(&inner.db).await {
        Ok(groups) if !groups.is_empty() => {
            super::moderation::rooms_here(&inner.pusher, groups).await;
        }
        Ok(_) => {}
        Err(e) => tracing::debug!(error = %e, "could not reload the rooms"),
    }
}

/// Forgets the message-rate budgets of senders who have been quiet long enough to have a full one.
fn forget_idle_budgets(inner: &Inner) {
    let now = Instant::now();
    let mut senders = inner.senders.lock().unwrap_or_else(PoisonError::into_inner);
    senders.retain(|_, bucket| !bucket.is_full(now));
    super::peak::shrink_after_peak(&mut senders);
}

/// Writes the read marks gathered since the last flush, in one transaction.
pub(super) async fn flush_marks(inner: &Inner) {
    if !inner.unread.has_marks() {
        return;
    }
    let marks = inner.unread.take_marks();
    if let Err(e) = read_marks::mark_read_many(&inner.db, &marks).await {
        tracing::warn!(error = %e, count = marks.len(), "could not record read positions");
    }
}

/// Reads the newest message id of each group room, so read marks need no query of their own.
pub(super) async fn load_latest_ids(inner: Arc<Inner>) {
    for room in inner.rooms.groups() {
        match read_marks::latest_id(&inner.db, &room).await {
            Ok(id) => inner.unread.know_latest(&room, id),
            Err(e) => tracing::warn!(error = %e, "could not read a room's newest message"),
        }
    }
}
