//! The balancing state, free of I/O and of the clock (every call is given the time): the
//! backends of each upstream and the EWMA of each backend's latency.
//!
//! Picking, for one upstream:
//!
//! 1. A backend that *needs a sample* — it has none yet, or its last one is older than
//!    `stale` — and has not been *probed* (picked while needing a sample) within `probe`, is
//!    picked first (the first such in id order), and marked probed. So a new backend gets one
//!    request, not every request until the proxy's next metric batch arrives; and a backend
//!    that was slow gets another chance once its average is stale, instead of never again.
//! 2. Otherwise the backend with the lowest EWMA among those with a fresh average (ties: id
//!    order).
//! 3. Otherwise (no backend has a fresh average and all were just probed) the one probed the
//!    longest ago.
//!
//! A sample updates the average as `ewma = alpha * sample + (1 - alpha) * ewma`; the first sample
//! (and the first after the average went stale) sets it. A request that ended in an error (the
//! proxy's `error` field: timeout, backend unreachable, ...) counts as
//! `max(latency, error_penalty)`.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// How the averages are kept.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tuning {
    /// Weight of a new sample, in (0, 1].
    pub alpha: f64,
    /// Latency (µs) a failed request counts as, at least.
    pub error_penalty_us: f64,
    /// How long after its last sample an average is no longer trusted.
    pub stale: Duration,
    /// How long a backend picked for a sample waits for it before it is tried again.
    pub probe: Duration,
}

#[derive(Debug, Clone, Default)]
struct Stats {
    /// The backend's address, to tell a replaced backend from one sent again.
    address: String,
    /// The average latency in µs and when its last sample arrived.
    ewma: Option<(f64, Instant)>,
    /// When it was last picked while it needed a sample.
    probed_at: Option<Instant>,
}

/// Every upstream's backends and their averages.
#[derive(Debug)]
pub struct Balancer {
    tuning: Tuning,
    /// upstream id → backend id (sorted) → stats.
    upstreams: HashMap<String, BTreeMap<String, Stats>>,
}

impl Balancer {
    /// An empty balancer.
    pub fn new(tuning: Tuning) -> Self {
        Balancer {
            tuning,
            upstreams: HashMap::new(),
        }
    }

    /// Adds a backend. The same backend sent again keeps its average; a replaced one (same id,
    /// another address) starts without samples.
    pub fn add(&mut self, upstream: &str, backend: &str, address: &str) {
        let backends = self.upstreams.entry(upstream.to_owned()).or_default();
        if backends
            .get(backend)
            .is_some_and(|stats| stats.address == address)
        {
            return;
        }
        let stats = Stats {
            address: address.to_owned(),
            ..Stats::default()
        };
        backends.insert(backend.to_owned(), stats);
    }

    /// Removes a backend; an upstream left without backends is forgotten.
    pub fn remove(&mut self, upstream: &str, backend: &str) {
        if let Some(backends) = self.upstreams.get_mut(upstream) {
            backends.remove(backend);
            if backends.is_empty() {
                self.upstreams.remove(upstream);
            }
        }
    }

    /// Records one request's outcome; samples of unknown backends are ignored.
    pub fn record(
        &mut self,
        upstream: &str,
        backend: &str,
        latency_us: u64,
        failed: bool,
        now: Instant,
    ) {
        let tuning = self.tuning;
        let Some(stats) = self
            .upstreams
            .get_mut(upstream)
            .and_then(|backends| backends.get_mut(backend))
        else {
            return;
        };
        let mut sample = latency_us as f64;
        if failed {
            sample = sample.max(tuning.error_penalty_us);
        }
        let alpha = tuning.alpha;
        let average = match stats.ewma {
            Some((old, at)) if !is_stale(tuning, at, now) => alpha * sample + (1.0 - alpha) * old,
            _ => sample,
        };
        stats.ewma = Some((average, now));
    }

    /// The backend for the next request to `upstream`, if it has any.
    pub fn pick(&mut self, upstream: &str, now: Instant) -> Option<String> {
        let tuning = self.tuning;
        let backends = self.upstreams.get_mut(upstream)?;
        let needs_sample = |stats: &Stats| match stats.ewma {
            None => true,
            Some((_, at)) => is_stale(tuning, at, now),
        };
        let probe_due = |stats: &Stats| match stats.probed_at {
            None => true,
            Some(at) => now.checked_duration_since(at).unwrap_or_default() >= tuning.probe,
        };

        if let Some((id, stats)) = backends
            .iter_mut()
            .find(|(_, stats)| needs_sample(stats) && probe_due(stats))
        {
            stats.probed_at = Some(now);
            return Some(id.clone());
        }
        let fastest = backends
            .iter()
            .filter(|(_, stats)| !needs_sample(stats))
            .filter_map(|(id, stats)| stats.ewma.map(|(average, _)| (id, average)))
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(id, _)| id.clone());
        if fastest.is_some() {
            return fastest;
        }
        backends
            .iter()
            .min_by_key(|(_, stats)| stats.probed_at)
            .map(|(id, _)| id.clone())
    }

    /// The average latency (µs) of a backend, if it has one.
    #[cfg(test)]
    pub fn average(&self, upstream: &str, backend: &str) -> Option<f64> {
        self.upstreams
            .get(upstream)?
            .get(backend)?
            .ewma
            .map(|(average, _)| average)
    }
}

/// Whether an average whose last sample arrived at `at` is too old to trust at `now`.
fn is_stale(tuning: Tuning, at: Instant, now: Instant) -> bool {
    now.checked_duration_since(at).unwrap_or_default() >= tuning.stale
}

#[cfg(test)]
mod tests {
    use super::*;

    const TUNING: Tuning = Tuning {
        alpha: 0.5,
        error_penalty_us: 10_000_000.0,
        stale: Duration::from_secs(30),
        probe: Duration::from_secs(1),
    };

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    fn pool(backends: &[&str]) -> Balancer {
        let mut balancer = Balancer::new(TUNING);
        for backend in backends {
            balancer.add("api", backend, "http://127.0.0.1:1");
        }
        balancer
    }

    #[test]
    fn no_backends_no_pick() {
        let t0 = Instant::now();
        let mut balancer = pool(&[]);
        assert_eq!(balancer.pick("api", t0), None);
        balancer.add("api", "a", "http://x");
        balancer.remove("api", "a");
        assert_eq!(balancer.pick("api", t0), None);
        // Removing what is not there is harmless.
        balancer.remove("api", "a");
        balancer.remove("nope", "a");
    }

    #[test]
    fn unsampled_backends_are_tried_first_once_each() {
        let t0 = Instant::now();
        let mut balancer = pool(&["a", "b", "c"]);
        balancer.record("api", "a", 100, false, t0);
        // b and c have no samples: each gets one request, in id order.
        assert_eq!(balancer.pick("api", t0).as_deref(), Some("b"));
        assert_eq!(balancer.pick("api", t0).as_deref(), Some("c"));
        // Both probed, waiting for their samples: the sampled one serves meanwhile.
        assert_eq!(balancer.pick("api", t0).as_deref(), Some("a"));
        assert_eq!(balancer.pick("api", t0 + ms(500)).as_deref(), Some("a"));
        // No sample came within the probe time: b is tried again.
        assert_eq!(balancer.pick("api", t0 + ms(1000)).as_deref(), Some("b"));
    }

    #[test]
    fn picks_the_lowest_average() {
        let t0 = Instant::now();
        let mut balancer = pool(&["a", "b"]);
        balancer.record("api", "a", 50_000, false, t0);
        balancer.record("api", "b", 1_000, false, t0);
        for _ in 0..5 {
            assert_eq!(balancer.pick("api", t0).as_deref(), Some("b"));
        }
        // b gets slow: its average follows (alpha 0.5) and a takes over.
        balancer.record("api", "b", 200_000, false, t0);
        assert_eq!(balancer.average("api", "b"), Some(100_500.0));
        assert_eq!(balancer.pick("api", t0).as_deref(), Some("a"));
    }

    #[test]
    fn ewma_follows_alpha() {
        let t0 = Instant::now();
        let mut balancer = pool(&["a"]);
        balancer.record("api", "a", 1000, false, t0);
        assert_eq!(balancer.average("api", "a"), Some(1000.0));
        balancer.record("api", "a", 3000, false, t0);
        assert_eq!(balancer.average("api", "a"), Some(2000.0));
        balancer.record("api", "a", 2000, false, t0);
        assert_eq!(balancer.average("api", "a"), Some(2000.0));
    }

    #[test]
    fn errors_count_as_a_penalty() {
        let t0 = Instant::now();
        let mut balancer = pool(&["a", "b"]);
        balancer.record("api", "a", 1_000, false, t0);
        balancer.record("api", "b", 300_000, false, t0);
        balancer.record("api", "a", 10, true, t0);
        assert_eq!(balancer.average("api", "a"), Some(5_000_500.0));
        assert_eq!(balancer.pick("api", t0).as_deref(), Some("b"));
    }

    #[test]
    fn stale_averages_are_probed_again() {
        let t0 = Instant::now();
        let mut balancer = pool(&["a", "b"]);
        balancer.record("api", "a", 500_000, false, t0);
        balancer.record("api", "b", 1_000, false, t0 + ms(29_000));
        assert_eq!(balancer.pick("api", t0 + ms(29_000)).as_deref(), Some("b"));
        // a's average is 30 s old: it gets one request to measure it again.
        let t1 = t0 + ms(30_000);
        assert_eq!(balancer.pick("api", t1).as_deref(), Some("a"));
        assert_eq!(balancer.pick("api", t1).as_deref(), Some("b"));
        // The fresh sample replaces the stale average instead of being mixed with it.
        balancer.record("api", "a", 100, false, t1);
        assert_eq!(balancer.average("api", "a"), Some(100.0));
        assert_eq!(balancer.pick("api", t1).as_deref(), Some("a"));
    }

    #[test]
    fn without_fresh_averages_probes_rotate() {
        let t0 = Instant::now();
        let mut balancer = pool(&["a", "b"]);
        assert_eq!(balancer.pick("api", t0).as_deref(), Some("a"));
        assert_eq!(balancer.pick("api", t0 + ms(1)).as_deref(), Some("b"));
        assert_eq!(balancer.pick("api", t0 + ms(2)).as_deref(), Some("a"));
    }

    #[test]
    fn upstreams_are_separate_and_unknown_samples_ignored() {
        let t0 = Instant::now();
        let mut balancer = pool(&["a"]);
        balancer.add("web", "a", "http://x");
        balancer.record("web", "a", 7, false, t0);
        balancer.record("web", "zzz", 7, false, t0);
        balancer.record("nope", "a", 7, false, t0);
        assert_eq!(balancer.average("api", "a"), None);
        assert_eq!(balancer.average("web", "a"), Some(7.0));
        assert_eq!(balancer.pick("nope", t0), None);
    }

    #[test]
    fn a_replaced_backend_forgets_its_samples() {
        let t0 = Instant::now();
        let mut balancer = pool(&["a"]);
        balancer.record("api", "a", 7, false, t0);
        balancer.add("api", "a", "http://127.0.0.1:1");
        assert_eq!(balancer.average("api", "a"), Some(7.0));
        balancer.add("api", "a", "http://127.0.0.1:2");
        assert_eq!(balancer.average("api", "a"), None);
    }
}
