//! A server-wide budget for frames in progress, and a per-session first-frame limit.
//!
//! A WebSocket message or a polling body is held in memory until its last byte arrives. A client that
//! announces a large frame and then stops sending keeps that memory, so the layer counts every such byte
//! against one [`FrameBudget`] shared by all sessions: when a frame would take the total past it, the
//! oldest frames still in progress are dropped (their sessions closed) until it fits, and if nothing
//! older is left the newcomer is refused.
//!
//! The layer does not know who has signed in, so it offers a hook instead: with
//! [`Limits::first_frame_limit`], every session starts with a small limit on a single frame or body, and
//! the application lifts it once the session is trusted through the [`FrameLimit`] handle it finds in the
//! session's request extensions (`socket.req_parts().extensions.get::<FrameLimit>()` in socketioxide).
//!
//! socketioxide's builder forwards only the settings it knows, so besides [`crate::config::EngineIoConfig::limits`],
//! a [`Limits`] value found in a request's extensions (put there by a tower layer, e.g. axum's
//! `Extension`) applies to the session that request opens, which takes it out of the request it keeps.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, PoisonError, Weak,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
};

/// Frames smaller than this are read in one go from the session's read chunk and are not counted.
pub(crate) const UNCOUNTED: usize = 1024;

/// The frame limits a session starts with.
#[derive(Debug, Clone, Default)]
pub struct Limits {
    /// The budget shared by every session opened with these limits.
    pub budget: Option<FrameBudget>,
    /// The largest frame (WebSocket message or polling body) a session may send until the application
    /// lifts it through [`FrameLimit`]. `None`: only the transport limits apply.
    pub first_frame_limit: Option<usize>,
}

impl Limits {
    /// No budget and no first-frame limit.
    pub fn new() -> Self {
        Self::default()
    }
    /// Counts frames in progress against `budget`.
    pub fn budget(mut self, budget: FrameBudget) -> Self {
        self.budget = Some(budget);
        self
    }
    /// Starts every session with a frame limit of `bytes`.
    pub fn first_frame_limit(mut self, bytes: usize) -> Self {
        self.first_frame_limit = Some(bytes);
        self
    }
}

/// A session's current frame limit, shared between the layer and the application. Found in the request
/// extensions of sessions opened with [`Limits::first_frame_limit`].
#[derive(Debug, Clone)]
pub struct FrameLimit(Arc<AtomicUsize>);

impl FrameLimit {
    pub(crate) fn new(bytes: usize) -> Self {
        Self(Arc::new(AtomicUsize::new(bytes)))
    }
    /// The limit now.
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
    /// Sets the limit to `bytes` (the transport limits still apply).
    pub fn set(&self, bytes: usize) {
        self.0.store(bytes, Ordering::Relaxed);
    }
    /// Leaves only the transport limits (`max_payload`, `ws_max_message_size`).
    pub fn lift(&self) {
        self.set(usize::MAX);
    }
}

/// Something the budget can stop to take its bytes back: a session.
pub(crate) trait Evict: Send + Sync {
    fn evict(&self);
}

/// The server-wide byte budget for frames in progress. Cheap to clone; clones share the budget.
#[derive(Clone)]
pub struct FrameBudget(Arc<Inner>);

struct Inner {
    total: usize,
    used: AtomicUsize,
    next_id: AtomicU64,
    evicted: AtomicU64,
    holds: Mutex<HashMap<u64, Entry>>,
}

struct Entry {
    bytes: usize,
    owner: Weak<dyn Evict>,
}

impl std::fmt::Debug for FrameBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameBudget")
            .field("total", &self.0.total)
            .field("used", &self.used())
            .finish()
    }
}

impl FrameBudget {
    /// A budget of `total` bytes.
    pub fn new(total: usize) -> Self {
        Self(Arc::new(Inner {
            total,
            used: AtomicUsize::new(0),
            next_id: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
            holds: Mutex::new(HashMap::new()),
        }))
    }
    /// Bytes held by frames in progress now.
    pub fn used(&self) -> usize {
        self.0.used.load(Ordering::Relaxed)
    }
    /// The budget.
    pub fn total(&self) -> usize {
        self.0.total
    }
    /// Frames dropped so far (oldest-first eviction and refused newcomers), for metrics.
    pub fn refused(&self) -> u64 {
        self.0.evicted.load(Ordering::Relaxed)
    }

    /// Starts counting one frame in progress for `owner`.
    pub(crate) fn hold(&self, owner: Weak<dyn Evict>) -> Hold {
        let id = self.0.next_id.fetch_add(1, Ordering::Relaxed);
        self.0
            .holds
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, Entry { bytes: 0, owner });
        Hold {
            budget: self.clone(),
            id,
        }
    }
}

/// One frame in progress. Dropping it gives its bytes back.
pub(crate) struct Hold {
    budget: FrameBudget,
    id: u64,
}

/// The budget could not make room (or this frame was evicted meanwhile).
#[derive(Debug)]
pub(crate) struct Refused;

impl Hold {
    /// Counts `n` more bytes, evicting the oldest other frames if the total would pass the budget.
    pub(crate) fn grow(&self, n: usize) -> Result<(), Refused> {
        let inner = &self.budget.0;
        let mut evict = Vec::new();
        let res = {
            let mut holds = inner.holds.lock().unwrap_or_else(PoisonError::into_inner);
            if !holds.contains_key(&self.id) {
                return Err(Refused);
            }
            // Ids grow with time, so the smallest id is the oldest frame.
            while inner.used.load(Ordering::Relaxed) + n > inner.total {
                let Some(oldest) = holds.keys().filter(|id| **id != self.id).min().copied() else {
                    break;
                };
                if let Some(e) = holds.remove(&oldest) {
                    inner.used.fetch_sub(e.bytes, Ordering::Relaxed);
                    inner.evicted.fetch_add(1, Ordering::Relaxed);
                    evict.push(e.owner);
                }
            }
            if inner.used.load(Ordering::Relaxed) + n > inner.total {
                if let Some(e) = holds.remove(&self.id) {
                    inner.used.fetch_sub(e.bytes, Ordering::Relaxed);
                }
                inner.evicted.fetch_add(1, Ordering::Relaxed);
                Err(Refused)
            } else {
                if let Some(e) = holds.get_mut(&self.id) {
                    e.bytes += n;
                }
                inner.used.fetch_add(n, Ordering::Relaxed);
                Ok(())
            }
        };
        // Closing a session takes locks of its own: never under the budget's.
        for owner in evict {
            if let Some(owner) = owner.upgrade() {
                owner.evict();
            }
        }
        res
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        let inner = &self.budget.0;
        if let Some(e) = inner
            .holds
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id)
        {
            inner.used.fetch_sub(e.bytes, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    struct Owner(AtomicBool);
    impl Evict for Owner {
        fn evict(&self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }

    #[test]
    fn the_oldest_frame_makes_room_and_bytes_come_back() {
        let budget = FrameBudget::new(100);
        let a = Arc::new(Owner(AtomicBool::new(false)));
        let b = Arc::new(Owner(AtomicBool::new(false)));
        let wa: Weak<dyn Evict> = Arc::downgrade(&a) as Weak<dyn Evict>;
        let wb: Weak<dyn Evict> = Arc::downgrade(&b) as Weak<dyn Evict>;
        let ha = budget.hold(wa);
        let hb = budget.hold(wb);
        assert!(ha.grow(80).is_ok());
        assert!(hb.grow(50).is_ok());
        assert!(a.0.load(Ordering::Relaxed), "the oldest frame was dropped");
        assert!(ha.grow(1).is_err(), "an evicted frame cannot grow");
        assert_eq!(budget.used(), 50);
        assert!(hb.grow(60).is_err(), "nothing older left: refused");
        assert_eq!(budget.used(), 0);
        drop((ha, hb));
        assert_eq!(budget.used(), 0);
    }
}
