//! Failed logins, remembered per account and per client address, to slow down guessing: past
//! a few free failures a key is blocked for a second, then twice as long at every further
//! failure, up to [`MAX_BLOCK`]. A blocked key is answered 429 before any password is checked,
//! so a guesser learns nothing and costs nothing. A key's failures are forgotten after
//! [`FORGET_AFTER`] without one; an account's are forgotten at its next successful login.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures an account may have before it is blocked.
pub const FREE_ACCOUNT_FAILURES: u32 = 5;
/// Failures one address may have (over every account) before it is blocked: more than an
/// account's, as several dispatchers may share an address.
pub const FREE_ADDRESS_FAILURES: u32 = 20;
/// The first block; each failure past the free ones doubles it.
pub const FIRST_BLOCK: Duration = Duration::from_secs(1);
/// The longest block.
pub const MAX_BLOCK: Duration = Duration::from_secs(15 * 60);
/// How long a key's failures are remembered after the last one.
pub const FORGET_AFTER: Duration = Duration::from_secs(30 * 60);
/// Most keys remembered; past it, the forgotten ones are dropped, then the oldest.
const MAX_KEYS: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
    blocked_until: Option<Instant>,
}

/// The failures of every key.
#[derive(Debug, Default)]
pub struct Throttle {
    keys: Mutex<HashMap<String, Failures>>,
}

impl Throttle {
    /// `Err(wait)` while `key` is blocked.
    pub fn check(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        match keys.get(key).and_then(|f| f.blocked_until) {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// Records a failure of `key`, blocked past `free` failures.
    pub fn failed(&self, key: &str, free: u32, now: Instant) {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        if keys.len() >= MAX_KEYS && !keys.contains_key(key) {
            keys.retain(|_, f| now.duration_since(f.last) < FORGET_AFTER);
            if keys.len() >= MAX_KEYS
                && let Some(oldest) = keys
                    .iter()
                    .min_by_key(|(_, f)| f.last)
                    .map(|(k, _)| k.clone())
            {
                keys.remove(&oldest);
            }
        }
        let failures = keys.entry(key.to_string()).or_insert(Failures {
            count: 0,
            last: now,
            blocked_until: None,
        });
        if now.duration_since(failures.last) >= FORGET_AFTER {
            failures.count = 0;
        }
        failures.count += 1;
        failures.last = now;
        if failures.count > free {
            let doublings = (failures.count - free - 1).min(20);
            let block = FIRST_BLOCK.saturating_mul(1 << doublings).min(MAX_BLOCK);
            failures.blocked_until = Some(now + block);
        }
    }

    /// Forgets the failures of `key` (a successful login of its account).
    pub fn succeeded(&self, key: &str) {
        self.keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_grow_past_the_free_failures_and_a_success_clears_them() {
        let throttle = Throttle::default();
        let t0 = Instant::now();
        for i in 0..FREE_ACCOUNT_FAILURES {
            assert!(throttle.check("a", t0).is_ok(), "failure {i} is free");
            throttle.failed("a", FREE_ACCOUNT_FAILURES, t0);
        }
        assert!(throttle.check("a", t0).is_ok());
        throttle.failed("a", FREE_ACCOUNT_FAILURES, t0);
        assert_eq!(throttle.check("a", t0), Err(FIRST_BLOCK));
        throttle.failed("a", FREE_ACCOUNT_FAILURES, t0);
        assert_eq!(throttle.check("a", t0), Err(FIRST_BLOCK * 2));
        for _ in 0..30 {
            throttle.failed("a", FREE_ACCOUNT_FAILURES, t0);
        }
        assert_eq!(throttle.check("a", t0), Err(MAX_BLOCK));
        assert!(
            throttle.check("a", t0 + MAX_BLOCK).is_ok(),
            "the block ends"
        );
        // Another key is not blocked; a success clears the key.
        assert!(throttle.check("b", t0).is_ok());
        throttle.succeeded("a");
        assert!(throttle.check("a", t0).is_ok());
    }

    #[test]
    fn failures_long_ago_are_forgotten() {
        let throttle = Throttle::default();
        let t0 = Instant::now();
        for _ in 0..FREE_ACCOUNT_FAILURES {
            throttle.failed("a", FREE_ACCOUNT_FAILURES, t0);
        }
        let later = t0 + FORGET_AFTER;
        throttle.failed("a", FREE_ACCOUNT_FAILURES, later);
        assert!(throttle.check("a", later).is_ok(), "counted from 1 again");
    }
}
