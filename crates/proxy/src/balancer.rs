//! Load balancing: the [`Balancer`] trait and the built-in [`RandomBalancer`].

use std::sync::Arc;

use rand::Rng;

use crate::registry::{BackendEntry, UpstreamEntry};

/// Picks the backend of an upstream for one request.
pub trait Balancer: Send + Sync + 'static {
    /// Picks one of `upstream.backends`; `None` when it has none (the proxy answers 503).
    fn pick(&self, upstream: &UpstreamEntry) -> Option<Arc<BackendEntry>>;
}

/// Picks a backend uniformly at random.
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomBalancer;

impl Balancer for RandomBalancer {
    fn pick(&self, upstream: &UpstreamEntry) -> Option<Arc<BackendEntry>> {
        match upstream.backends.len() {
            0 => None,
            1 => upstream.backends.first().cloned(),
            n => upstream
                .backends
                .get(rand::rng().random_range(0..n))
                .cloned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatekeeper_rpc::types::{Backend, Upstream};

    #[test]
    fn picks_every_backend_eventually() {
        let backends = (0..3)
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
        let mut entry = UpstreamEntry {
            upstream: Upstream {
                id: "u".into(),
                name: "u".into(),
                timeout_ms: None,
                protocols: vec![],
                hostnames: vec![],
                prefixes: vec![],
                balancer: None,
                extra: Default::default(),
            },
            backends,
        };
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            seen.insert(RandomBalancer.pick(&entry).unwrap().backend.id.clone());
        }
        assert_eq!(seen.len(), 3);
        entry.backends.clear();
        assert!(RandomBalancer.pick(&entry).is_none());
    }
}
