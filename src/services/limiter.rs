//! Fixed-window rate limits keyed by strings (an address, an account, a user id), and the sign-in
//! limits built on them.
//!
//! Node-local and in memory: a limit on one node is enough to blunt password guessing and robot spam.
//! The number of tracked keys is capped, so an attacker rotating keys cannot grow memory without bound.
//!
//! Why not `governor` (the ecosystem's keyed limiter, weighed for issue 17): its GCRA cells cannot give
//! a hit back, and sign-in needs that: an attempt is counted *before* its password is checked (so
//! parallel guesses cannot slip past the limit) and handed back when it succeeds or never reached
//! the check ([`SignInAttempt::succeeded`], [`SignInAttempt::void`], [`RateLimiter::release`]).
//! Its keyed store is also unbounded between `retain_recent` sweeps, where these tables hold at most
//! [`MAX_KEYS`] keys each whatever an attacker sends. The fixed windows are the documented semantics
//! of every `--*-per-*` flag ("N per window").

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::metrics::Refusal;
use crate::proxy::AddrKey;

/// Keys one table tracks at most.
pub const MAX_KEYS: usize = 100_000;

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

    /// Counts a hit for `key`; returns whether it was within the limit (a key the full table cannot
    /// track is not).
    pub fn hit(&self, key: &str) -> bool {
        let n = self.count(key);
        n != u32::MAX && n <= self.limit
    }

    /// Counts a hit for `key` whatever its limit; returns its hits in the current window, or
    /// `u32::MAX` when the table is full of live keys and cannot track it.
    pub fn count(&self, key: &str) -> u32 {
        let now = Instant::now();
        let mut hits = self
            .hits
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if hits.len() >= MAX_KEYS && !hits.contains_key(key) {
            hits.retain(|_, (start, _)| now.duration_since(*start) < self.window);
            if hits.len() >= MAX_KEYS {
                return u32::MAX;
            }
        }
        let entry = hits.entry(key.to_owned()).or_insert((now, 0));
        if now.duration_since(entry.0) >= self.window {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(1);
        entry.1
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

/// Sign-in attempts, limited per (account, client address) pair and per client address, and slowed
/// down per account.
///
/// * **Per pair**: `per_pair` failed attempts at one account from one address (an IPv6 client's
///   network, see [`AddrKey`]) per window; past it, that address is refused at that account. Its
///   owner, signing in from anywhere else, is not: guessing at a name from one address cannot keep
///   its owner out.
/// * **Per address**: `per_ip` attempts per window across accounts, so one address cannot try a
///   password on every account.
/// * **Per account, a ceiling far above the pair budget**: failed attempts at one account from all
///   addresses together. Past `ceiling` in a window, each further attempt at the account waits
///   before its password is checked, 100 ms doubling every `ceiling / 4` further failures, at most
///   [`MAX_SIGNIN_DELAY`]. Attempts are slowed, never refused, so the owner with the right password
///   gets in (after at most that delay) while a guessing run spread over many addresses pays it on
///   every guess.
///
/// An attempt is counted **before** the password is checked (the check is slow on purpose), so
/// parallel guesses are counted as they arrive instead of after they have all been checked. Once the
/// attempt is settled: a success clears the pair's count (its owner proved the password), and gives
/// back the address's and the account's one attempt (it was no failure; the account's other
/// failures stay counted, so the owner signing in does not lift a slow-down of guessers); a wrong
/// password stays counted; a failure of ours gives all back.
///
/// Memory: each of the three tables holds at most 100 000 keys, and a key's window expires after
/// `window`. A pair or address table full of live keys refuses new keys; a full account table
/// counts a new account as past its ceiling (the longest delay), never as refused.
#[derive(Clone)]
pub struct SignInLimits {
    pair: RateLimiter,
    ip: RateLimiter,
    account: RateLimiter,
    ceiling: u32,
}

/// The longest an attempt at an account past its ceiling waits before its password is checked.
pub const MAX_SIGNIN_DELAY: Duration = Duration::from_secs(5);
const FIRST_SIGNIN_DELAY: Duration = Duration::from_millis(100);

/// A counted sign-in attempt. Dropping it leaves it counted (a failed attempt).
#[must_use = "settle the attempt, or drop it to count it as failed"]
pub struct SignInAttempt<'a> {
    limits: &'a SignInLimits,
    pair: String,
    account: String,
    ip: String,
    delay: Option<Duration>,
}

impl SignInLimits {
    /// `per_pair` failed attempts per account and address, `per_ip` attempts per client address,
    /// each in a `window`; attempts at an account with more than `ceiling` failures in a `window`
    /// are slowed down.
    pub fn new(per_pair: u32, per_ip: u32, ceiling: u32, window: Duration) -> Self {
        Self {
            pair: RateLimiter::new(per_pair, window),
            ip: RateLimiter::new(per_ip, window),
            account: RateLimiter::new(ceiling, window),
            ceiling: ceiling.max(1),
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
        let pair = format!("{account} {ip}");
        if !self.pair.try_acquire(&pair) {
            self.ip.release(&ip);
            return Err(Refusal::SigninAccount);
        }
        let failures = self.account.count(account);
        Ok(SignInAttempt {
            limits: self,
            pair,
            account: account.to_owned(),
            ip,
            delay: signin_delay(failures, self.ceiling),
        })
    }
}

/// How long an attempt waits when its account has `failures` (this attempt included) in the
/// window: nothing up to `ceiling`, then 100 ms doubling every `ceiling / 4` failures, at most
/// [`MAX_SIGNIN_DELAY`].
fn signin_delay(failures: u32, ceiling: u32) -> Option<Duration> {
    let excess = failures.checked_sub(ceiling).filter(|e| *e > 0)?;
    let doublings = (excess - 1) / (ceiling / 4).max(1);
    let delay = FIRST_SIGNIN_DELAY.saturating_mul(1u32.checked_shl(doublings).unwrap_or(u32::MAX));
    Some(delay.min(MAX_SIGNIN_DELAY))
}

impl SignInAttempt<'_> {
    /// How long to wait before checking the password: `Some` when the account is past its ceiling.
    pub fn delay(&self) -> Option<Duration> {
        self.delay
    }

    /// The password was right.
    pub fn succeeded(self) {
        self.limits.pair.reset(&self.pair);
        self.limits.ip.release(&self.ip);
        self.limits.account.release(&self.account);
    }

    /// The attempt could not be judged (our failure): it does not count.
    pub fn void(self) {
        self.limits.pair.release(&self.pair);
        self.limits.ip.release(&self.ip);
        self.limits.account.release(&self.account);
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

    fn key(ip: [u8; 4]) -> AddrKey {
        AddrKey::new(ip.into(), 64)
    }

    #[test]
    fn sign_in_attempts_count_per_account_and_address_pair_and_per_address() {
        let limits = SignInLimits::new(2, 4, 100, Duration::from_secs(60));
        let ip = key([10, 0, 0, 1]);
        let other = key([10, 0, 0, 2]);
        drop(limits.begin(ip, "user:1").unwrap());
        drop(limits.begin(ip, "user:1").unwrap());
        assert_eq!(
            limits.begin(ip, "user:1").err(),
            Some(Refusal::SigninAccount)
        );
        // Another address is not refused at that account, and a success there clears its pair only.
        limits.begin(other, "user:1").unwrap().succeeded();
        assert_eq!(
            limits.begin(ip, "user:1").err(),
            Some(Refusal::SigninAccount)
        );
        // The refusals did not use up the address's budget.
        limits.begin(ip, "user:3").unwrap().void();
        limits.begin(ip, "user:3").unwrap().succeeded();
        drop(limits.begin(ip, "user:4").unwrap());
        drop(limits.begin(ip, "user:5").unwrap());
        assert_eq!(limits.begin(ip, "user:6").err(), Some(Refusal::SigninIp));
    }

    #[test]
    fn attempts_past_the_account_ceiling_wait_longer_and_longer_but_are_not_refused() {
        let limits = SignInLimits::new(1, 1000, 8, Duration::from_secs(60));
        let mut delays = Vec::new();
        for i in 0..40u8 {
            let attempt = limits.begin(key([10, 0, 1, i]), "user:1").unwrap();
            delays.push(attempt.delay().map(|d| d.as_millis()));
        }
        assert!(delays[..8].iter().all(Option::is_none), "{delays:?}");
        assert_eq!(
            delays[8..16],
            [100, 100, 200, 200, 400, 400, 800, 800].map(Some)
        );
        assert_eq!(delays[39], Some(5000), "capped");
        // A success waits like any attempt, and does not count as a failure.
        let owner = limits.begin(key([10, 0, 2, 1]), "user:1").unwrap();
        assert_eq!(owner.delay(), Some(Duration::from_secs(5)));
        owner.succeeded();
        let next = limits.begin(key([10, 0, 2, 2]), "user:1").unwrap();
        assert_eq!(next.delay(), Some(Duration::from_secs(5)));
        // Other accounts are not slowed.
        assert_eq!(
            limits.begin(key([10, 0, 2, 3]), "user:2").unwrap().delay(),
            None
        );
    }

    #[test]
    fn the_delay_grows_and_is_capped() {
        assert_eq!(signin_delay(100, 100), None);
        assert_eq!(signin_delay(101, 100), Some(Duration::from_millis(100)));
        assert_eq!(signin_delay(125, 100), Some(Duration::from_millis(100)));
        assert_eq!(signin_delay(126, 100), Some(Duration::from_millis(200)));
        assert_eq!(signin_delay(226, 100), Some(Duration::from_millis(3200)));
        assert_eq!(signin_delay(251, 100), Some(MAX_SIGNIN_DELAY));
        assert_eq!(signin_delay(u32::MAX, 100), Some(MAX_SIGNIN_DELAY));
        assert_eq!(signin_delay(u32::MAX, 1), Some(MAX_SIGNIN_DELAY));
        assert_eq!(signin_delay(2, 1), Some(Duration::from_millis(100)));
        assert_eq!(signin_delay(3, 1), Some(Duration::from_millis(200)));
    }

    #[test]
    fn windows_expire() {
        let limiter = RateLimiter::new(1, Duration::from_millis(1));
        assert!(limiter.hit("a"));
        std::thread::sleep(Duration::from_millis(5));
        assert!(limiter.hit("a"));
    }
}
