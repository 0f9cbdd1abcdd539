//! The token buckets, free of any I/O or clock: every call is given the current time, so the
//! plugin passes its [`Clock`] and the tests pass whatever instants they like.
//!
//! A bucket holds up to `burst` tokens and gains `rate` tokens per second; a request takes one
//! token or is refused. A bucket that has been idle long enough to be full again behaves exactly
//! like a fresh one, so it can be dropped without changing any decision: that is how the map is
//! kept at most `max_keys` long. Only when every bucket is still refilling does the map drop
//! the one idle the longest (which forgives that key part of its debt).

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// A source of the current time, so tests can move time by hand.
pub trait Clock: Send + Sync {
    /// The current instant.
    fn now(&self) -> Instant;
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// What to do with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// It may pass (it took a token).
    Allow,
    /// It is over the limit; a token will be available in `retry_after_secs` (rounded up, at
    /// least 1).
    Deny {
        /// Seconds until the next token, rounded up.
        retry_after_secs: u64,
    },
}

/// Slack for floating point: a bucket that refilled to 0.999999999 tokens holds one.
const EPSILON: f64 = 1e-9;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Token buckets keyed by a string, at most `max_keys` of them.
#[derive(Debug)]
pub struct Limiter {
    rate: f64,
    burst: f64,
    max_keys: usize,
    buckets: HashMap<String, Bucket>,
}

impl Limiter {
    /// Buckets of `burst` tokens gaining `rate` tokens per second. The caller validates:
    /// `rate > 0`, `burst >= 1`, `max_keys >= 1`, all finite.
    pub fn new(rate: f64, burst: f64, max_keys: usize) -> Self {
        Limiter {
            rate,
            burst,
            max_keys: max_keys.max(1),
            buckets: HashMap::new(),
        }
    }

    /// How many buckets are held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Takes a token from `key`'s bucket at time `now`, or says how long to wait for one.
    pub fn check(&mut self, key: &str, now: Instant) -> Decision {
        if !self.buckets.contains_key(key) && self.buckets.len() >= self.max_keys {
            self.evict(now);
        }
        let (rate, burst) = (self.rate, self.burst);
        let bucket = self.buckets.entry(key.to_owned()).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        bucket.tokens = refilled(bucket, rate, burst, now);
        bucket.last = bucket.last.max(now);
        if bucket.tokens + EPSILON >= 1.0 {
            bucket.tokens = (bucket.tokens - 1.0).max(0.0);
            Decision::Allow
        } else {
            let wait = (1.0 - bucket.tokens) / rate;
            Decision::Deny {
                retry_after_secs: (wait.ceil() as u64).max(1),
            }
        }
    }

    /// Makes room for one more bucket: drops every bucket that is full again, and if that freed
    /// nothing, the one idle the longest.
    fn evict(&mut self, now: Instant) {
        let (rate, burst) = (self.rate, self.burst);
        self.buckets
            .retain(|_, bucket| refilled(bucket, rate, burst, now) + EPSILON < burst);
        if self.buckets.len() >= self.max_keys {
            let oldest = self
                .buckets
                .iter()
                .min_by_key(|(_, bucket)| bucket.last)
                .map(|(key, _)| key.clone());
            if let Some(key) = oldest {
                self.buckets.remove(&key);
            }
        }
    }
}

/// The tokens `bucket` holds at `now` (time never runs backwards for a bucket).
fn refilled(bucket: &Bucket, rate: f64, burst: f64, now: Instant) -> f64 {
    let elapsed = now
        .checked_duration_since(bucket.last)
        .unwrap_or(Duration::ZERO);
    (bucket.tokens + elapsed.as_secs_f64() * rate).min(burst)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn a_full_bucket_allows_burst_then_denies() {
        let t0 = Instant::now();
        let mut limiter = Limiter::new(1.0, 3.0, 100);
        for _ in 0..3 {
            assert_eq!(limiter.check("a", t0), Decision::Allow);
        }
        assert_eq!(
            limiter.check("a", t0),
            Decision::Deny {
                retry_after_secs: 1
            }
        );
        // Another key has its own bucket.
        assert_eq!(limiter.check("b", t0), Decision::Allow);
    }

    #[test]
    fn tokens_come_back_at_the_rate() {
        let t0 = Instant::now();
        let mut limiter = Limiter::new(2.0, 2.0, 100);
        assert_eq!(limiter.check("a", t0), Decision::Allow);
        assert_eq!(limiter.check("a", t0), Decision::Allow);
        assert!(matches!(limiter.check("a", t0), Decision::Deny { .. }));
        // Half a second at 2 tokens/s is one token.
        assert_eq!(limiter.check("a", t0 + secs(0.5)), Decision::Allow);
        assert!(matches!(
            limiter.check("a", t0 + secs(0.5)),
            Decision::Deny { .. }
        ));
        // Never more than burst, however long the wait.
        let later = t0 + secs(1000.0);
        assert_eq!(limiter.check("a", later), Decision::Allow);
        assert_eq!(limiter.check("a", later), Decision::Allow);
        assert!(matches!(limiter.check("a", later), Decision::Deny { .. }));
    }

    #[test]
    fn retry_after_is_rounded_up() {
        let t0 = Instant::now();
        // One token every 4 s.
        let mut limiter = Limiter::new(0.25, 1.0, 100);
        assert_eq!(limiter.check("a", t0), Decision::Allow);
        assert_eq!(
            limiter.check("a", t0),
            Decision::Deny {
                retry_after_secs: 4
            }
        );
        assert_eq!(
            limiter.check("a", t0 + secs(1.5)),
            Decision::Deny {
                retry_after_secs: 3
            }
        );
        // Fast rates still say at least 1 s.
        let mut fast = Limiter::new(100.0, 1.0, 100);
        assert_eq!(fast.check("a", t0), Decision::Allow);
        assert_eq!(
            fast.check("a", t0),
            Decision::Deny {
                retry_after_secs: 1
            }
        );
    }

    #[test]
    fn denied_requests_take_no_token() {
        let t0 = Instant::now();
        let mut limiter = Limiter::new(1.0, 1.0, 100);
        assert_eq!(limiter.check("a", t0), Decision::Allow);
        for i in 1..10 {
            assert!(matches!(
                limiter.check("a", t0 + secs(0.09 * f64::from(i))),
                Decision::Deny { .. }
            ));
        }
        assert_eq!(limiter.check("a", t0 + secs(1.0)), Decision::Allow);
    }

    #[test]
    fn the_map_is_bounded_and_drops_full_buckets_first() {
        let t0 = Instant::now();
        let mut limiter = Limiter::new(1.0, 2.0, 3);
        for key in ["a", "b", "c"] {
            assert_eq!(limiter.check(key, t0), Decision::Allow);
        }
        assert_eq!(limiter.len(), 3);
        // At t0 + 1 s every bucket is full again: all are dropped to make room for "d".
        assert_eq!(limiter.check("d", t0 + secs(1.0)), Decision::Allow);
        assert_eq!(limiter.len(), 1);

        // Nothing full: the bucket idle the longest goes.
        let t1 = t0 + secs(10.0);
        limiter.check("e", t1);
        limiter.check("e", t1);
        limiter.check("f", t1 + secs(0.1));
        limiter.check("f", t1 + secs(0.1));
        // "d" refilled by now and is dropped; "e" and "f" are still refilling.
        limiter.check("g", t1 + secs(0.2));
        limiter.check("g", t1 + secs(0.2));
        assert_eq!(limiter.len(), 3);
        limiter.check("h", t1 + secs(0.3));
        assert_eq!(limiter.len(), 3);
        // "e" (idle the longest) was dropped, so it starts over with a full bucket; "f" was
        // not, so it is still empty.
        assert!(matches!(
            limiter.check("f", t1 + secs(0.3)),
            Decision::Deny { .. }
        ));
        assert_eq!(limiter.len(), 3);
    }

    #[test]
    fn time_going_backwards_is_harmless() {
        let t0 = Instant::now() + secs(10.0);
        let mut limiter = Limiter::new(1.0, 1.0, 10);
        assert_eq!(limiter.check("a", t0), Decision::Allow);
        assert!(matches!(
            limiter.check("a", t0 - secs(5.0)),
            Decision::Deny { .. }
        ));
        assert_eq!(limiter.check("a", t0 + secs(1.0)), Decision::Allow);
    }
}
