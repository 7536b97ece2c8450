//! Fixed-window rate limits keyed by strings (an IP and a name, a user id).
//!
//! Node-local and in memory: a limit on one node is enough to blunt password guessing and robot spam.
//! The number of tracked keys is capped, so an attacker rotating keys cannot grow memory without bound.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MAX_KEYS: usize = 100_000;

/// Allows `limit` hits per key in each window of `window`.
#[derive(Clone)]
pub struct RateLimiter {
    limit: u32,
    window: Duration,
    hits: Arc<Mutex<HashMap<String, (Instant, u32)>>>,
}

impl RateLimiter {
    /// A limiter allowing `limit` hits per `window` for each key.
    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit,
            window,
            hits: Arc::default(),
        }
    }

    /// Whether `key` is still under its limit, without counting a hit.
    pub fn allows(&self, key: &str) -> bool {
        let now = Instant::now();
        let hits = self
            .hits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        hits.get(key)
            .is_none_or(|(start, n)| now.duration_since(*start) >= self.window || *n < self.limit)
    }

    /// Counts a hit for `key`; returns whether it was within the limit.
    pub fn hit(&self, key: &str) -> bool {
        let now = Instant::now();
        let mut hits = self
            .hits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if hits.len() >= MAX_KEYS && !hits.contains_key(key) {
            hits.retain(|_, (start, _)| now.duration_since(*start) < self.window);
            if hits.len() >= MAX_KEYS {
                // Still full of live keys: refuse rather than grow.
                return false;
            }
        }
        let entry = hits.entry(key.to_owned()).or_insert((now, 0));
        if now.duration_since(entry.0) >= self.window {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
        entry.1 <= self.limit
    }

    /// Forgets `key` (e.g. after a successful sign-in).
    pub fn reset(&self, key: &str) {
        self.hits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_up_to_the_limit_per_key() {
        let limiter = RateLimiter::new(2, Duration::from_secs(60));
        assert!(limiter.hit("a") && limiter.hit("a"));
        assert!(!limiter.hit("a"));
        assert!(!limiter.allows("a"));
        assert!(limiter.hit("b"));
        limiter.reset("a");
        assert!(limiter.allows("a"));
    }

    #[test]
    fn windows_expire() {
        let limiter = RateLimiter::new(1, Duration::from_millis(1));
        assert!(limiter.hit("a"));
        std::thread::sleep(Duration::from_millis(5));
        assert!(limiter.hit("a"));
    }
}
