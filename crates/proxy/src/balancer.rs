//! Load balancing: the [`Balancer`] trait and the built-in balancers.
//!
//! Each upstream chooses a built-in balancer with its `balancer` field ([`BalancerKind`]):
//! `random` (the default), `round_robin` or `least_outstanding`. [`BuiltinBalancer`], the
//! proxy's default [`Balancer`], applies the upstream's choice. Selection is lock-free: it reads
//! atomics kept in the registry's entries (the round-robin position of the upstream, the
//! in-flight count of each backend).

use std::sync::Arc;

use rand::Rng;

use crate::registry::{BackendEntry, UpstreamEntry};

/// Picks the backend of an upstream for one request.
pub trait Balancer: Send + Sync + 'static {
    /// Picks one of `upstream.backends`; `None` when it has none (the proxy answers 503).
    fn pick(&self, upstream: &UpstreamEntry) -> Option<Arc<BackendEntry>>;
}

/// The built-in balancers, by the names of [`gatekeeper_rpc::types::BALANCERS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BalancerKind {
    /// `random`: uniformly at random.
    #[default]
    Random,
    /// `round_robin`: each backend in turn (by id).
    RoundRobin,
    /// `least_outstanding`: the backend with the fewest in-flight requests; ties at random.
    LeastOutstanding,
}

impl BalancerKind {
    /// The name used in `Upstream.balancer`.
    pub fn as_str(self) -> &'static str {
        match self {
            BalancerKind::Random => "random",
            BalancerKind::RoundRobin => "round_robin",
            BalancerKind::LeastOutstanding => "least_outstanding",
        }
    }

    /// Picks a backend of `upstream` with this strategy; `None` when it has none.
    pub fn pick(self, upstream: &UpstreamEntry) -> Option<Arc<BackendEntry>> {
        let backends = &upstream.backends;
        let n = backends.len();
        if n <= 1 {
            return backends.first().cloned();
        }
        let index = match self {
            BalancerKind::Random => rand::rng().random_range(0..n),
            BalancerKind::RoundRobin => upstream.next_round_robin() % n,
            BalancerKind::LeastOutstanding => least_outstanding(backends),
        };
        backends.get(index).cloned()
    }
}

/// The index of the backend with the fewest in-flight requests; among equals, each is equally
/// likely (reservoir sampling over the ties, one pass, no allocation).
fn least_outstanding(backends: &[Arc<BackendEntry>]) -> usize {
    let mut rng = rand::rng();
    let mut best = 0;
    let mut best_load = usize::MAX;
    let mut ties = 0u32;
    for (i, b) in backends.iter().enumerate() {
        let load = b.in_flight();
        if load < best_load {
            best = i;
            best_load = load;
            ties = 1;
        } else if load == best_load {
            ties += 1;
            if rng.random_range(0..ties) == 0 {
                best = i;
            }
        }
    }
    best
}

impl std::str::FromStr for BalancerKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            BalancerKind::Random,
            BalancerKind::RoundRobin,
            BalancerKind::LeastOutstanding,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
        .ok_or_else(|| format!("unknown balancer `{s}`"))
    }
}

/// The default [`Balancer`]: the built-in balancer each upstream chose.
#[derive(Debug, Clone, Copy, Default)]
pub struct BuiltinBalancer;

impl Balancer for BuiltinBalancer {
    fn pick(&self, upstream: &UpstreamEntry) -> Option<Arc<BackendEntry>> {
        upstream.balancer.pick(upstream)
    }
}

/// Picks a backend uniformly at random, whatever the upstream chose.
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
    use gatekeeper_rpc::types::{Backend, Upstream, BALANCERS};

    fn entry(kind: BalancerKind, n: usize) -> UpstreamEntry {
        let backends = (0..n)
            .map(|i| {
                Arc::new(
                    BackendEntry::new(Backend {
                        id: format!("b{i}"),
                        address: format!("http://127.0.0.1:{}", 1000 + i),
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
            host_header: None,
            extra: Default::default(),
        };
        UpstreamEntry::new(upstream, backends, kind, Arc::default())
    }

    fn id(b: Option<Arc<BackendEntry>>) -> String {
        b.unwrap().backend.id.clone()
    }

    #[test]
    fn names_match_the_protocol() {
        for name in BALANCERS {
            assert_eq!(name.parse::<BalancerKind>().unwrap().as_str(), name);
        }
        assert!("nope".parse::<BalancerKind>().is_err());
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
}
