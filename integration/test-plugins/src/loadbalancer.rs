//! `test-loadbalancer`: a loadbalancer plugin that picks by the request header `x-backend`, else
//! round robin.
//!
//! - `get_backend`: the value of `x-backend` if the request has one (unchecked: an id the
//!   upstream does not have is gatekeeper's 503); otherwise the next of the upstream's backends,
//!   round robin, in the order `add_backend` first named them; `null` (a 503) when it knows none.
//! - `add_backend` / `remove_backend` keep the per-upstream lists (re-adding keeps the position).
//! - `upstream_metric` only records.
//!
//! Settings: `file` (record to it).
//!
//! Records: `{"method":"add_backend","upstream_id":U,"id":B}`,
//! `{"method":"remove_backend","upstream_id":U,"id":B}`,
//! `{"method":"upstream_metric","metrics":[UpstreamMetric…]}`,
//! `{"method":"get_backend","upstream_id":U,"backend_id":B|null}`.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use gatekeeper_plugin_sdk::{
    header, AddBackendParams, GetBackendParams, GetBackendResult, HookError, LoadBalancerPlugin,
    Object, Plugin, RemoveBackendParams, UpstreamMetricParams,
};
use serde_json::json;

use crate::{Recorder, Settings};

/// The header naming the backend.
pub const BACKEND_HEADER: &str = "x-backend";

/// One upstream's backends and whose turn is next.
#[derive(Debug, Default)]
struct Pool {
    backends: Vec<String>,
    next: usize,
}

/// The load balancer.
#[derive(Debug, Default)]
pub struct TestLoadBalancer {
    args: Settings,
    recorder: Recorder,
    pools: Mutex<HashMap<String, Pool>>,
}

impl TestLoadBalancer {
    /// A load balancer whose command-line settings are `args`.
    pub fn new(args: Settings) -> Self {
        TestLoadBalancer {
            args,
            ..TestLoadBalancer::default()
        }
    }

    fn pools(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pool>> {
        self.pools.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next backend of `upstream_id`, round robin.
    fn next(&self, upstream_id: &str) -> Option<String> {
        let mut pools = self.pools();
        let pool = pools.get_mut(upstream_id)?;
        if pool.backends.is_empty() {
            return None;
        }
        let chosen = pool.backends[pool.next % pool.backends.len()].clone();
        pool.next = pool.next.wrapping_add(1);
        Some(chosen)
    }
}

impl Plugin for TestLoadBalancer {
    async fn configure(&self, config: Object) -> Result<(), HookError> {
        let settings = Settings::from_config(&config).overridden_by(&self.args);
        self.recorder.open(settings.get("file"))
    }
}

impl LoadBalancerPlugin for TestLoadBalancer {
    async fn add_backend(&self, params: AddBackendParams) -> Result<(), HookError> {
        let id = params.backend.id;
        {
            let mut pools = self.pools();
            let pool = pools.entry(params.upstream_id.clone()).or_default();
            if !pool.backends.contains(&id) {
                pool.backends.push(id.clone());
            }
        }
        self.recorder.record(&json!({
            "method": "add_backend",
            "upstream_id": params.upstream_id,
            "id": id,
        }));
        Ok(())
    }

    async fn remove_backend(&self, params: RemoveBackendParams) -> Result<(), HookError> {
        if let Some(pool) = self.pools().get_mut(&params.upstream_id) {
            pool.backends.retain(|b| *b != params.backend_id);
        }
        self.recorder.record(&json!({
            "method": "remove_backend",
            "upstream_id": params.upstream_id,
            "id": params.backend_id,
        }));
        Ok(())
    }

    async fn upstream_metric(&self, params: UpstreamMetricParams) -> Result<(), HookError> {
        self.recorder
            .record(&json!({"method": "upstream_metric", "metrics": params.metrics}));
        Ok(())
    }

    async fn get_backend(&self, params: GetBackendParams) -> Result<GetBackendResult, HookError> {
        let backend_id = match header(&params.request.headers, BACKEND_HEADER) {
            Some(wanted) => Some(wanted.to_owned()),
            None => self.next(&params.upstream_id),
        };
        self.recorder.record(&json!({
            "method": "get_backend",
            "upstream_id": params.upstream_id,
            "backend_id": backend_id,
        }));
        Ok(GetBackendResult { backend_id })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::record::tests::{lines, temp_file};
    use gatekeeper_plugin_sdk::{Backend, HttpRequest, UpstreamMetric};

    async fn add(lb: &TestLoadBalancer, upstream: &str, id: &str) {
        let backend = Backend {
            id: id.into(),
            address: "http://127.0.0.1:9".into(),
            weight: None,
            extra: Object::new(),
        };
        lb.add_backend(AddBackendParams {
            upstream_id: upstream.into(),
            backend,
        })
        .await
        .unwrap();
    }

    async fn pick(lb: &TestLoadBalancer, upstream: &str, wanted: Option<&str>) -> Option<String> {
        let mut request = HttpRequest::default();
        if let Some(wanted) = wanted {
            request.headers.push((BACKEND_HEADER.into(), wanted.into()));
        }
        let params = GetBackendParams {
            upstream_id: upstream.into(),
            request,
        };
        lb.get_backend(params).await.unwrap().backend_id
    }

    #[tokio::test]
    async fn round_robin_unless_a_header_names_the_backend() {
        let lb = TestLoadBalancer::default();
        assert_eq!(pick(&lb, "api", None).await, None);
        add(&lb, "api", "a").await;
        add(&lb, "api", "b").await;
        add(&lb, "api", "a").await; // a replacement keeps its place
        add(&lb, "web", "w").await;
        let picks: Vec<_> = futures::future::join_all((0..4).map(|_| pick(&lb, "api", None))).await;
        let picks: Vec<_> = picks.into_iter().flatten().collect();
        assert_eq!(picks, ["a", "b", "a", "b"]);
        assert_eq!(pick(&lb, "api", Some("zzz")).await.as_deref(), Some("zzz"));
        assert_eq!(pick(&lb, "web", None).await.as_deref(), Some("w"));
        let remove = RemoveBackendParams {
            upstream_id: "api".into(),
            backend_id: "a".into(),
        };
        lb.remove_backend(remove).await.unwrap();
        assert_eq!(pick(&lb, "api", None).await.as_deref(), Some("b"));
        assert_eq!(pick(&lb, "api", None).await.as_deref(), Some("b"));
    }

    #[tokio::test]
    async fn records_registry_changes_metrics_and_picks() {
        let path = temp_file("loadbalancer");
        let lb = TestLoadBalancer::new(
            Settings::from_args(["--file".to_owned(), path.to_str().unwrap().to_owned()]).unwrap(),
        );
        lb.configure(Object::new()).await.unwrap();
        add(&lb, "api", "a").await;
        let metric = UpstreamMetric {
            time_ms: 1,
            upstream: "api".into(),
            backend: "a".into(),
            latency_us: 7,
            status: Some(200),
            error: None,
        };
        lb.upstream_metric(UpstreamMetricParams {
            metrics: vec![metric],
        })
        .await
        .unwrap();
        pick(&lb, "api", None).await;
        assert_eq!(
            lines(&path),
            vec![
                json!({"method": "add_backend", "upstream_id": "api", "id": "a"}),
                json!({"method": "upstream_metric", "metrics": [
                    {"time_ms": 1, "upstream": "api", "backend": "a", "latency_us": 7, "status": 200}
                ]}),
                json!({"method": "get_backend", "upstream_id": "api", "backend_id": "a"}),
            ]
        );
        let _ = std::fs::remove_file(path);
    }
}
