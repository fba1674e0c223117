//! Failed-login throttling: a leaky bucket of failures per key (user name, client
//! address). `burst` failures pass at once, then one per `leak`; a key that stops failing
//! is free again after at most `leak`, so nobody is ever locked out for good.
//!
//! Only failures fill the bucket (a limiter that counts every attempt, as `governor`
//! does, cannot refuse a flood of wrong passwords while leaving the right one alone), and
//! a refused attempt adds nothing, so hammering a locked key does not extend its lock.
//!
//! An attempt takes its place in the bucket *before* its argon2 check and gives it back
//! if it succeeds ([`Throttle::reserve`], [`Throttle::refund`]): checking first and
//! counting the failure after the hash let every attempt that arrived during those tens
//! of milliseconds through, so 200 concurrent wrong passwords cost 200 hashes, not 30.

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

    /// Counts an attempt of `key` as failed in advance, or `Err(wait)` while `key` has
    /// failed too often (then nothing is counted): try again after `wait`.
    pub fn reserve(&self, key: &K, now: Instant) -> Result<(), Duration> {
        let Ok(mut map) = self.empty_at.lock() else {
            return Ok(());
        };
        if map.len() > PRUNE_ABOVE {
            map.retain(|_, empty_at| *empty_at > now);
        }
        let allowed = self.leak * (self.burst - 1);
        let empty_at = map.entry(key.clone()).or_insert(now);
        match empty_at.checked_duration_since(now) {
            Some(debt) if debt > allowed => Err(debt - allowed),
            _ => {
                *empty_at = (*empty_at).max(now) + self.leak;
                Ok(())
            }
        }
    }

    /// A reserved attempt of `key` succeeded after all: its place is given back.
    pub fn refund(&self, key: &K, now: Instant) {
        if let Ok(mut map) = self.empty_at.lock()
            && let Some(empty_at) = map.get_mut(key)
        {
            *empty_at = empty_at.checked_sub(self.leak).unwrap_or(now).max(now);
        }
    }

    /// `key` succeeded: all its failures are forgotten.
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
            assert_eq!(t.reserve(&"alice", now), Ok(()));
        }
        let wait = t.reserve(&"alice", now).unwrap_err();
        assert_eq!(wait, Duration::from_secs(10));
        assert_eq!(
            t.reserve(&"alice", now).unwrap_err(),
            wait,
            "a refused attempt adds nothing"
        );
        assert_eq!(
            t.reserve(&"bob", now),
            Ok(()),
            "other keys are not affected"
        );
        assert_eq!(t.reserve(&"alice", now + wait), Ok(()));
        t.forget(&"alice");
        assert_eq!(t.reserve(&"alice", now), Ok(()));
    }

    #[test]
    fn a_refunded_attempt_leaves_room_for_another() {
        let t = Throttle::new(2, Duration::from_secs(10));
        let now = Instant::now();
        t.reserve(&"10.0.0.1", now).unwrap();
        t.reserve(&"10.0.0.1", now).unwrap();
        assert!(t.reserve(&"10.0.0.1", now).is_err());
        t.refund(&"10.0.0.1", now);
        assert_eq!(t.reserve(&"10.0.0.1", now), Ok(()));
        assert!(t.reserve(&"10.0.0.1", now).is_err());
    }
}
