//! The token bucket behind every per-socket and per-user rate in the core.

use std::time::Instant;

/// A token bucket: `rate` tokens per second, holding at most `2 × rate`.
#[derive(Debug)]
pub struct Bucket {
    rate: f32,
    capacity: f32,
    tokens: f32,
    last: Instant,
}

impl Bucket {
    /// A bucket for `per_second` events, full.
    pub fn new(per_second: u32) -> Self {
        let rate = per_second.max(1) as f32;
        Self {
            rate,
            capacity: rate * 2.0,
            tokens: rate * 2.0,
            last: Instant::now(),
        }
    }

    /// Whether the bucket has refilled completely by `now` (an idle sender).
    pub fn is_full(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last);
        self.tokens + elapsed.as_secs_f32() * self.rate >= self.capacity
    }

    /// Takes a token at `now`; false when there is none.
    pub fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last);
        self.last = now;
        self.tokens = (self.tokens + elapsed.as_secs_f32() * self.rate).min(self.capacity);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_bucket_allows_bursts_then_the_rate() {
        let mut b = Bucket::new(5);
        let t = b.last;
        assert_eq!((0..20).filter(|_| b.take(t)).count(), 10);
        assert!(!b.take(t));
        assert!(b.take(t + Duration::from_millis(200)));
        assert!(!b.take(t + Duration::from_millis(200)));
    }
}
