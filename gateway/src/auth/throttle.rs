//! Failed-login throttling: a leaky bucket of failures per key (user name, client
//! address). `burst` failures pass at once, then one per `leak`; a key that stops failing
//! is free again after at most `leak`, so nobody is ever locked out for good.
//!
//! Only failures fill the bucket (a limiter that counts every attempt, as `governor`
//! does, cannot refuse a flood of wrong passwords while leaving the right one alone), and
//! a refused attempt adds nothing, so hammering a locked key does not extend its lock.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Keys kept before those that have drained are dropped.
const PRUNE_ABOVE: usize = 10_000;

/// Failures per key, as the time their bucket would be empty again (GCRA).
pub struct Throttle<K> {
    burst: u32,
    leak: Duration,
    empty_at: Mutex<HashMap<K, Instant>>,
}

impl<K: Hash + Eq + Clone> Throttle<K> {
    /// `burst` failures in a row pass, then one per `leak`.
    pub fn new(burst: u32, leak: Duration) -> Self {
        Throttle {
            burst: burst.max(1),
            leak,
            empty_at: Mutex::new(HashMap::new()),
        }
    }

    /// `Err(wait)` while `key` has failed too often: try again after `wait`.
    pub fn check(&self, key: &K, now: Instant) -> Result<(), Duration> {
        let Ok(map) = self.empty_at.lock() else {
            return Ok(());
        };
        let Some(&empty_at) = map.get(key) else {
            return Ok(());
        };
        let allowed = self.leak * (self.burst - 1);
        match empty_at.checked_duration_since(now) {
            Some(debt) if debt > allowed => Err(debt - allowed),
            _ => Ok(()),
        }
    }

    /// One more failure of `key`.
    pub fn fail(&self, key: &K, now: Instant) {
        let Ok(mut map) = self.empty_at.lock() else {
            return;
        };
        if map.len() > PRUNE_ABOVE {
            map.retain(|_, empty_at| *empty_at > now);
        }
        let empty_at = map.entry(key.clone()).or_insert(now);
        *empty_at = (*empty_at).max(now) + self.leak;
    }

    /// `key` succeeded: its failures are forgotten.
    pub fn forget(&self, key: &K) {
        if let Ok(mut map) = self.empty_at.lock() {
            map.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_one_per_leak_and_free_after_the_window() {
        let t = Throttle::new(3, Duration::from_secs(10));
        let now = Instant::now();
        for _ in 0..3 {
            assert_eq!(t.check(&"alice", now), Ok(()));
            t.fail(&"alice", now);
        }
        let wait = t.check(&"alice", now).unwrap_err();
        assert_eq!(wait, Duration::from_secs(10));
        assert_eq!(t.check(&"bob", now), Ok(()), "other keys are not affected");
        assert_eq!(t.check(&"alice", now + wait), Ok(()));
        t.forget(&"alice");
        assert_eq!(t.check(&"alice", now), Ok(()));
    }
}
