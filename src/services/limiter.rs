//! Fixed-window rate limits keyed by strings (an address, an account, a user id), and the sign-in
//! limits built on them.
//!
//! Node-local and in memory: a limit on one node is enough to blunt password guessing and robot spam.
//! The number of tracked keys is capped, so an attacker rotating keys cannot grow memory without bound.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::metrics::Refusal;
use crate::proxy::AddrKey;

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

    /// Counts a hit for `key` only if it is still under its limit; returns whether it was. Unlike
    /// [`RateLimiter::hit`], a refused attempt is not counted, and the check and the count are one
    /// step, so concurrent attempts cannot all pass a check made before any of them is counted.
    pub fn try_acquire(&self, key: &str) -> bool {
        let now = Instant::now();
        let mut hits = self
            .hits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if hits.len() >= MAX_KEYS && !hits.contains_key(key) {
            hits.retain(|_, (start, _)| now.duration_since(*start) < self.window);
            if hits.len() >= MAX_KEYS {
                return false;
            }
        }
        let entry = hits.entry(key.to_owned()).or_insert((now, 0));
        if now.duration_since(entry.0) >= self.window {
            *entry = (now, 0);
        }
        if entry.1 >= self.limit {
            return false;
        }
        entry.1 += 1;
        true
    }

    /// Takes back one hit of `key`: an attempt that, once settled, should not count.
    pub fn release(&self, key: &str) {
        let mut hits = self
            .hits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(entry) = hits.get_mut(key) {
            entry.1 = entry.1.saturating_sub(1);
        }
    }
}

/// Sign-in attempts, limited per account and per client address.
///
/// An attempt is counted **before** the password is checked (the check is slow on purpose), so
/// parallel guesses are counted as they arrive instead of after they have all been checked. Once the
/// attempt is settled: a success clears the account's count (its owner proved the password) and
/// gives back the address's one attempt; a wrong password stays counted; a failure of ours gives both
/// back.
#[derive(Clone)]
pub struct SignInLimits {
    account: RateLimiter,
    ip: RateLimiter,
}

/// A counted sign-in attempt. Dropping it leaves it counted (a failed attempt).
#[must_use = "settle the attempt, or drop it to count it as failed"]
pub struct SignInAttempt<'a> {
    limits: &'a SignInLimits,
    account: String,
    ip: String,
}

impl SignInLimits {
    /// `per_account` attempts per account and `per_ip` per client address in each `window`.
    pub fn new(per_account: u32, per_ip: u32, window: Duration) -> Self {
        Self {
            account: RateLimiter::new(per_account, window),
            ip: RateLimiter::new(per_ip, window),
        }
    }

    /// Counts an attempt at `account` (a stable key for the account the login names) from `ip`.
    ///
    /// # Errors
    /// Which limit refuses it; a refused attempt is not counted.
    pub fn begin(&self, ip: AddrKey, account: &str) -> Result<SignInAttempt<'_>, Refusal> {
        let ip = ip.to_string();
        if !self.ip.try_acquire(&ip) {
            return Err(Refusal::SigninIp);
        }
        if !self.account.try_acquire(account) {
            self.ip.release(&ip);
            return Err(Refusal::SigninAccount);
        }
        Ok(SignInAttempt {
            limits: self,
            account: account.to_owned(),
            ip,
        })
    }
}

impl SignInAttempt<'_> {
    /// The password was right.
    pub fn succeeded(self) {
        self.limits.account.reset(&self.account);
        self.limits.ip.release(&self.ip);
    }

    /// The attempt could not be judged (our failure): it does not count.
    pub fn void(self) {
        self.limits.account.release(&self.account);
        self.limits.ip.release(&self.ip);
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
    fn acquiring_checks_and_counts_in_one_step() {
        let limiter = RateLimiter::new(2, Duration::from_secs(60));
        assert!(limiter.try_acquire("a") && limiter.try_acquire("a"));
        assert!(!limiter.try_acquire("a"));
        limiter.release("a");
        assert!(limiter.try_acquire("a"));
        assert!(!limiter.try_acquire("a"));
    }

    #[test]
    fn sign_in_attempts_count_per_account_and_per_address() {
        let limits = SignInLimits::new(2, 3, Duration::from_secs(60));
        let ip = AddrKey::new([10, 0, 0, 1].into(), 64);
        let other = AddrKey::new([10, 0, 0, 2].into(), 64);
        drop(limits.begin(ip, "user:1").unwrap());
        drop(limits.begin(other, "user:1").unwrap());
        assert_eq!(
            limits.begin(ip, "user:1").err(),
            Some(Refusal::SigninAccount)
        );
        // The refusal did not use up the address's budget.
        drop(limits.begin(ip, "user:2").unwrap());
        limits.begin(ip, "user:3").unwrap().void();
        limits.begin(ip, "user:3").unwrap().succeeded();
        drop(limits.begin(ip, "user:4").unwrap());
        assert_eq!(limits.begin(ip, "user:5").err(), Some(Refusal::SigninIp));
    }

    #[test]
    fn windows_expire() {
        let limiter = RateLimiter::new(1, Duration::from_millis(1));
        assert!(limiter.hit("a"));
        std::thread::sleep(Duration::from_millis(5));
        assert!(limiter.hit("a"));
    }
}
