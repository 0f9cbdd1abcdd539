//! The plugin: a map from upstream id to the ids of its backends, kept by `add_backend` and
//! `remove_backend` (gatekeeper sends every current backend again after a restart), and read by
//! `get_backend`, which picks one uniformly at random.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use gatekeeper_plugin_sdk::{
    AddBackend, AddBackendParams, GetBackend, GetBackendParams, GetBackendResult, HookError,
    LoadBalancerPlugin, Method, Plugin, RemoveBackend, RemoveBackendParams,
};
use rand::seq::IndexedRandom;

/// The hooks declared: no `upstream_metric`, since a random pick ignores how backends did.
const HOOKS: &[&str] = &[AddBackend::NAME, RemoveBackend::NAME, GetBackend::NAME];

/// Picks a random backend of the request's upstream.
#[derive(Debug, Default)]
pub struct SimpleLoadBalancer {
    /// Upstream id → its backends' ids, without duplicates, in the order they were added.
    backends: Mutex<HashMap<String, Vec<String>>>,
}

impl SimpleLoadBalancer {
    fn backends(&self) -> MutexGuard<'_, HashMap<String, Vec<String>>> {
        self.backends.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A random backend id of `upstream_id`, or `None` when it has none.
    fn pick(&self, upstream_id: &str) -> Option<String> {
        self.backends()
            .get(upstream_id)?
            .choose(&mut rand::rng())
            .cloned()
    }
}

impl Plugin for SimpleLoadBalancer {}

impl LoadBalancerPlugin for SimpleLoadBalancer {
    fn hooks(&self) -> &'static [&'static str] {
        HOOKS
    }

    /// Remembers the backend; adding one it knows (a replaced backend, or the replay after a
    /// restart) changes nothing.
    async fn add_backend(&self, params: AddBackendParams) -> Result<(), HookError> {
        let mut backends = self.backends();
        let ids = backends.entry(params.upstream_id).or_default();
        if !ids.contains(&params.backend.id) {
            ids.push(params.backend.id);
        }
        Ok(())
    }

    /// Forgets the backend (and the upstream once it has none); an unknown one is no error.
    async fn remove_backend(&self, params: RemoveBackendParams) -> Result<(), HookError> {
        let mut backends = self.backends();
        if let Some(ids) = backends.get_mut(&params.upstream_id) {
            ids.retain(|id| *id != params.backend_id);
            if ids.is_empty() {
                backends.remove(&params.upstream_id);
            }
        }
        Ok(())
    }

    /// A random backend of the upstream; `null` (gatekeeper's 503) when it has none.
    async fn get_backend(&self, params: GetBackendParams) -> Result<GetBackendResult, HookError> {
        let backend_id = self.pick(&params.upstream_id);
        if backend_id.is_none() {
            tracing::debug!(upstream = %params.upstream_id, "no backend known for the upstream");
        }
        Ok(GetBackendResult { backend_id })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatekeeper_plugin_sdk::{Backend, HttpRequest, Object};
    use std::collections::HashSet;

    async fn add(lb: &SimpleLoadBalancer, upstream: &str, id: &str) {
        lb.add_backend(AddBackendParams {
            upstream_id: upstream.into(),
            backend: Backend {
                id: id.into(),
                address: format!("http://127.0.0.1:9000/{id}"),
                weight: None,
                extra: Object::new(),
            },
        })
        .await
        .unwrap();
    }

    async fn remove(lb: &SimpleLoadBalancer, upstream: &str, id: &str) {
        lb.remove_backend(RemoveBackendParams {
            upstream_id: upstream.into(),
            backend_id: id.into(),
        })
        .await
        .unwrap();
    }

    async fn get(lb: &SimpleLoadBalancer, upstream: &str) -> Option<String> {
        let request: HttpRequest = serde_json::from_value(serde_json::json!({
            "method": "GET", "path": "/", "prefixless_path": "/", "headers": [], "context": {}
        }))
        .unwrap();
        lb.get_backend(GetBackendParams {
            upstream_id: upstream.into(),
            request,
        })
        .await
        .unwrap()
        .backend_id
    }

    async fn picks(lb: &SimpleLoadBalancer, upstream: &str, n: usize) -> HashSet<String> {
        let mut seen = HashSet::new();
        for _ in 0..n {
            if let Some(id) = get(lb, upstream).await {
                seen.insert(id);
            }
        }
        seen
    }

    #[tokio::test]
    async fn no_backend_for_an_unknown_or_emptied_upstream() {
        let lb = SimpleLoadBalancer::default();
        assert_eq!(get(&lb, "nothing").await, None);
        add(&lb, "api", "a").await;
        remove(&lb, "api", "a").await;
        assert_eq!(get(&lb, "api").await, None);
        // Removing what is not there is no error.
        remove(&lb, "api", "a").await;
        remove(&lb, "ghost", "x").await;
    }

    #[tokio::test]
    async fn picks_among_all_backends_of_the_upstream_only() {
        let lb = SimpleLoadBalancer::default();
        for id in ["a", "b", "c"] {
            add(&lb, "api", id).await;
        }
        add(&lb, "web", "w").await;
        // The chance that 200 uniform picks among 3 miss one is 3 * (2/3)^200: never.
        let seen = picks(&lb, "api", 200).await;
        assert_eq!(seen, HashSet::from(["a".into(), "b".into(), "c".into()]));
        assert_eq!(picks(&lb, "web", 20).await, HashSet::from(["w".into()]));
    }

    #[tokio::test]
    async fn add_is_idempotent_and_remove_takes_effect() {
        let lb = SimpleLoadBalancer::default();
        add(&lb, "api", "a").await;
        add(&lb, "api", "a").await;
        add(&lb, "api", "b").await;
        assert_eq!(lb.backends()["api"], ["a", "b"]);
        remove(&lb, "api", "a").await;
        assert_eq!(picks(&lb, "api", 50).await, HashSet::from(["b".into()]));
    }

    #[test]
    fn declares_no_upstream_metric() {
        let lb = SimpleLoadBalancer::default();
        assert_eq!(
            LoadBalancerPlugin::hooks(&lb),
            ["add_backend", "remove_backend", "get_backend"]
        );
    }
}
