//! Load balancing: the [`Balancer`] trait and the built-in balancers.
//!
//! Each upstream chooses a built-in balancer with its `balancer` field ([`BalancerKind`]):
//! `random` (the default), `round_robin` or `least_outstanding`. [`BuiltinBalancer`], the
//! proxy's default [`Balancer`], applies the upstream's choice.
//!
//! All three honour backend weights (`Backend.weight`, default 1) and health: they skip
//! backends that are not available ([`BackendEntry::is_available`]: ejected by passive health,
//! down by active checks, or drained by an operator); when no backend of the upstream is available they choose among
//! all of them (fail-open), as if all were healthy.
//!
//! When all weights are equal (the common case) selection is lock-free and reads a few atomics
//! kept in the registry's entries (the round-robin position of the upstream, the in-flight count
//! and health of each backend). Weighted round robin is smooth weighted round robin (as in
//! nginx) under a short per-upstream lock.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use rand::Rng;

pub use crate::upstream_settings::BalancerKind;

use crate::registry::{BackendEntry, UpstreamEntry};

/// Picks the backend of an upstream for one request.
pub trait Balancer: Send + Sync + 'static {
    /// Picks one of `upstream.backends`; `None` when it has none (the proxy answers 503).
    fn pick(&self, upstream: &UpstreamEntry) -> Option<Arc<BackendEntry>>;
}

/// The algorithms of the built-in balancers (the kind itself, parsed from `Upstream.balancer`,
/// is an upstream setting).
impl BalancerKind {
    /// Picks a backend of `upstream` with this strategy; `None` when it has none.
    pub fn pick(self, upstream: &UpstreamEntry) -> Option<Arc<BackendEntry>> {
        let backends = &upstream.backends;
        if backends.len() <= 1 {
            return backends.first().cloned();
        }
        let index = match self {
            BalancerKind::Random => random(upstream),
            BalancerKind::RoundRobin => round_robin(upstream),
            BalancerKind::LeastOutstanding => least_outstanding(backends),
        };
        backends.get(index).cloned()
    }
}

/// Weighted random among the available backends (all, if none is). The first draw ignores
/// health and usually hits an available backend; only otherwise are the backends scanned.
fn random(upstream: &UpstreamEntry) -> usize {
    let backends = &upstream.backends;
    let mut rng = rand::rng();
    let first = match upstream.cumulative_weights.last() {
        Some(&total) if upstream.weighted => {
            let r = rng.random_range(0..total);
            upstream.cumulative_weights.partition_point(|&sum| sum <= r)
        }
        _ => rng.random_range(0..backends.len()),
    };
    if backends.get(first).is_some_and(|b| b.is_available()) {
        return first;
    }
    let total: u64 = backends
        .iter()
        .filter(|b| b.is_available())
        .map(|b| u64::from(b.weight))
        .sum();
    if total == 0 {
        return first;
    }
    let mut r = rng.random_range(0..total);
    for (i, b) in backends
        .iter()
        .enumerate()
        .filter(|(_, b)| b.is_available())
    {
        let weight = u64::from(b.weight);
        if r < weight {
            return i;
        }
        r -= weight;
    }
    first
}

/// Round robin: lock-free with equal weights (the next position of the upstream's counter,
/// taking further positions while the backend there is unavailable, unless none is available);
/// smooth weighted round robin otherwise.
fn round_robin(upstream: &UpstreamEntry) -> usize {
    if upstream.weighted {
        return smooth_weighted(upstream);
    }
    let backends = &upstream.backends;
    let n = backends.len();
    let first = upstream.next_round_robin() % n;
    if backends[first].is_available() || !backends.iter().any(|b| b.is_available()) {
        return first;
    }
    for _ in 1..n {
        let i = upstream.next_round_robin() % n;
        if backends[i].is_available() {
            return i;
        }
    }
    first
}

/// Smooth weighted round robin (nginx's): every backend's current weight grows by its weight;
/// the largest is picked and lowered by the total. Over the available backends, or all of them
/// when none is available.
fn smooth_weighted(upstream: &UpstreamEntry) -> usize {
    let backends = &upstream.backends;
    // A poisoned lock guards no data of its own (the current weights are atomics).
    let _guard = upstream.swrr_lock.lock().unwrap_or_else(|e| e.into_inner());
    let pass = |only_available: bool| -> Option<usize> {
        let mut total = 0i64;
        let mut best: Option<(usize, i64)> = None;
        for (i, b) in backends.iter().enumerate() {
            if only_available && !b.is_available() {
                continue;
            }
            let weight = i64::from(b.weight);
            let current = b.swrr_current.load(Ordering::Relaxed) + weight;
            b.swrr_current.store(current, Ordering::Relaxed);
            total += weight;
            if best.is_none_or(|(_, top)| current > top) {
                best = Some((i, current));
            }
        }
        let (i, top) = best?;
        backends[i]
            .swrr_current
            .store(top - total, Ordering::Relaxed);
        Some(i)
    };
    pass(true).or_else(|| pass(false)).unwrap_or(0)
}

/// The index of the backend with the lowest `(in_flight + 1) / weight` among the available
/// backends (all, if none is); among equals, each is equally likely (reservoir sampling over the
/// ties, one pass, no allocation). With equal weights this is the fewest in-flight requests.
fn least_outstanding(backends: &[Arc<BackendEntry>]) -> usize {
    let mut rng = rand::rng();
    let mut pass = |only_available: bool| -> Option<usize> {
        let mut best: Option<(usize, u128, u128)> = None;
        let mut ties = 0u32;
        for (i, b) in backends.iter().enumerate() {
            if only_available && !b.is_available() {
                continue;
            }
            let load = b.in_flight() as u128 + 1;
            let weight = u128::from(b.weight);
            match best {
                // load / weight < best_load / best_weight
                Some((_, l, w)) if load * w > l * weight => {}
                Some((_, l, w)) if load * w == l * weight => {
                    ties += 1;
                    if rng.random_range(0..ties) == 0 {
                        best = Some((i, load, weight));
                    }
                }
                _ => {
                    best = Some((i, load, weight));
                    ties = 1;
                }
            }
        }
        best.map(|(i, _, _)| i)
    };
    pass(true).or_else(|| pass(false)).unwrap_or(0)
}

/// The default [`Balancer`]: the built-in balancer each upstream chose.
#[derive(Debug, Clone, Copy, Default)]
pub struct BuiltinBalancer;

impl Balancer for BuiltinBalancer {
    fn pick(&self, upstream: &UpstreamEntry) -> Option<Arc<BackendEntry>> {
        upstream.balancer.pick(upstream)
    }
}

/// Picks a backend at random (weighted, healthy ones first), whatever the upstream chose.
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomBalancer;

impl Balancer for RandomBalancer {
    fn pick(&self, upstream: &UpstreamEntry) -> Option<Arc<BackendEntry>> {
        BalancerKind::Random.pick(upstream)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::InFlight;
    use crate::upstream_settings::PassivePolicy;
    use gatekeeper_rpc::types::{Backend, Upstream};

    fn entry(kind: BalancerKind, n: usize) -> UpstreamEntry {
        weighted(kind, &vec![1; n])
    }

    fn weighted(kind: BalancerKind, weights: &[u32]) -> UpstreamEntry {
        let backends = weights
            .iter()
            .enumerate()
            .map(|(i, &w)| {
                Arc::new(
                    BackendEntry::new(Backend {
                        id: format!("b{i}"),
                        address: format!("http://127.0.0.1:{}", 1000 + i),
                        weight: (w != 1).then_some(w),
                        extra: Default::default(),
                    })
                    .unwrap(),
                )
            })
            .collect();
        let upstream = Upstream {
            id: "u".into(),
            name: "u".into(),
            timeout_ms: None,
            protocols: vec![],
            hostnames: vec![],
            prefixes: vec![],
            balancer: Some(kind.as_str().into()),
            backend_protocol: None,
            connect_timeout_ms: None,
            max_connections_per_backend: None,
            passive_health: None,
            health_check: None,
            host_header: None,
            extra: Default::default(),
        };
        UpstreamEntry::new(upstream, backends, kind, Arc::default())
    }

    fn id(b: Option<Arc<BackendEntry>>) -> String {
        b.unwrap().backend.id.clone()
    }

    #[test]
    fn random_picks_every_backend_eventually() {
        let mut entry = entry(BalancerKind::Random, 3);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            seen.insert(id(BuiltinBalancer.pick(&entry)));
        }
        assert_eq!(seen.len(), 3);
        entry.backends.clear();
        assert!(RandomBalancer.pick(&entry).is_none());
    }

    #[test]
    fn round_robin_in_order() {
        let entry = entry(BalancerKind::RoundRobin, 3);
        let order: Vec<_> = (0..7).map(|_| id(BuiltinBalancer.pick(&entry))).collect();
        assert_eq!(order, ["b0", "b1", "b2", "b0", "b1", "b2", "b0"]);
    }

    #[test]
    fn least_outstanding_prefers_the_idle_backend() {
        let entry = entry(BalancerKind::LeastOutstanding, 3);
        let busy: Vec<_> = [0, 2, 2]
            .iter()
            .enumerate()
            .flat_map(|(i, &n)| (0..n).map(move |_| i))
            .map(|i| InFlight::new(entry.backends[i].clone()))
            .collect();
        for _ in 0..50 {
            assert_eq!(id(BuiltinBalancer.pick(&entry)), "b0");
        }
        // Picking does not count: only an InFlight guard does, until dropped.
        let g = InFlight::new(entry.backends[0].clone());
        let g2 = InFlight::new(entry.backends[0].clone());
        assert_eq!(entry.backends[0].in_flight(), 2);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..100 {
            seen.insert(id(BuiltinBalancer.pick(&entry)));
        }
        assert_eq!(seen.len(), 3, "ties are broken at random");
        drop((g, g2, busy));
        assert!(entry.backends.iter().all(|b| b.in_flight() == 0));
    }

    /// Takes a backend out (passive health, one-minute cool-down).
    fn eject(b: &BackendEntry) {
        let policy = PassivePolicy {
            failures: 1,
            cooldown: std::time::Duration::from_secs(60),
        };
        assert!(b.health().record_failure(&policy).is_some());
        assert!(!b.is_available());
    }

    /// How often each backend is picked in `n` picks, by index.
    fn counts(entry: &UpstreamEntry, n: usize) -> Vec<usize> {
        let mut counts = vec![0; entry.backends.len()];
        for _ in 0..n {
            let b = BuiltinBalancer.pick(entry).unwrap();
            let i = entry.backends.iter().position(|x| Arc::ptr_eq(x, &b));
            counts[i.unwrap()] += 1;
        }
        counts
    }

    #[test]
    fn weighted_random_follows_the_weights() {
        // 20,000 picks with weights 1:3:6; the expected counts are 2,000, 6,000 and 12,000 with
        // standard deviations of about 42, 65 and 69: a tolerance of 400 is more than 5 of them.
        let entry = weighted(BalancerKind::Random, &[1, 3, 6]);
        assert!(entry.weighted);
        let got = counts(&entry, 20_000);
        for (got, want) in got.iter().zip([2_000, 6_000, 12_000]) {
            assert!(
                got.abs_diff(want) < 400,
                "{got} picks, expected about {want}"
            );
        }
    }

    #[test]
    fn weighted_random_skips_unavailable_backends() {
        let entry = weighted(BalancerKind::Random, &[1, 3, 6]);
        eject(&entry.backends[2]);
        let got = counts(&entry, 8_000);
        assert_eq!(got[2], 0);
        // 1:3 of 8,000: 2,000 expected, standard deviation about 39.
        assert!(got[0].abs_diff(2_000) < 300, "{got:?}");
        // Equal weights too.
        let entry = entry_ejecting(BalancerKind::Random, 4, &[0, 3]);
        let got = counts(&entry, 1_000);
        assert_eq!((got[0], got[3]), (0, 0), "{got:?}");
        assert!(got[1] > 300 && got[2] > 300, "{got:?}");
    }

    fn entry_ejecting(kind: BalancerKind, n: usize, out: &[usize]) -> UpstreamEntry {
        let entry = entry(kind, n);
        for &i in out {
            eject(&entry.backends[i]);
        }
        entry
    }

    #[test]
    fn smooth_weighted_round_robin_sequence() {
        let entry = weighted(BalancerKind::RoundRobin, &[3, 1]);
        let order: Vec<_> = (0..8).map(|_| id(BuiltinBalancer.pick(&entry))).collect();
        assert_eq!(order, ["b0", "b0", "b1", "b0", "b0", "b0", "b1", "b0"]);
        // Exact counts over whole periods: 5 + 2 + 1 = 8 picks per period.
        let entry = weighted(BalancerKind::RoundRobin, &[5, 2, 1]);
        assert_eq!(counts(&entry, 80), [50, 20, 10]);
        // Spread out: never more than 2 picks of the heaviest in a row.
        let order: Vec<_> = (0..8).map(|_| id(BuiltinBalancer.pick(&entry))).collect();
        assert_eq!(order, ["b0", "b1", "b0", "b0", "b2", "b0", "b1", "b0"]);
    }

    #[test]
    fn round_robin_skips_unavailable_backends() {
        let entry = entry_ejecting(BalancerKind::RoundRobin, 4, &[1]);
        let order: Vec<_> = (0..6).map(|_| id(BuiltinBalancer.pick(&entry))).collect();
        assert_eq!(order, ["b0", "b2", "b3", "b0", "b2", "b3"]);
        let entry = weighted(BalancerKind::RoundRobin, &[3, 2, 1]);
        eject(&entry.backends[0]);
        assert_eq!(counts(&entry, 30), [0, 20, 10]);
    }

    #[test]
    fn all_unavailable_fails_open() {
        for kind in [
            BalancerKind::Random,
            BalancerKind::RoundRobin,
            BalancerKind::LeastOutstanding,
        ] {
            let entry = entry_ejecting(kind, 3, &[0, 1, 2]);
            assert_eq!(counts(&entry, 300).iter().filter(|&&c| c > 0).count(), 3);
            let entry = weighted(kind, &[2, 1]);
            entry.backends.iter().for_each(|b| eject(b));
            assert_eq!(counts(&entry, 30).iter().sum::<usize>(), 30);
        }
        let entry = weighted(BalancerKind::RoundRobin, &[2, 1]);
        entry.backends.iter().for_each(|b| eject(b));
        assert_eq!(counts(&entry, 30), [20, 10], "weights still apply");
    }

    #[test]
    fn least_outstanding_divides_by_weight() {
        let entry = weighted(BalancerKind::LeastOutstanding, &[1, 4]);
        // Idle: (0+1)/1 against (0+1)/4: the heavier backend.
        assert_eq!(id(BuiltinBalancer.pick(&entry)), "b1");
        let busy: Vec<_> = (0..4)
            .map(|_| InFlight::new(entry.backends[1].clone()))
            .collect();
        // (0+1)/1 = 1 against (4+1)/4 = 1.25.
        assert_eq!(id(BuiltinBalancer.pick(&entry)), "b0");
        drop(busy);
        eject(&entry.backends[1]);
        assert_eq!(
            id(BuiltinBalancer.pick(&entry)),
            "b0",
            "skips the ejected one"
        );
    }
}
