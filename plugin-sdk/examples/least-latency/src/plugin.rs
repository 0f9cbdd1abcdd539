//! The plugin: configuration and the four loadbalancer hooks, over a [`Balancer`] behind a
//! mutex.
//!
//! Config keys (numbers may also be given as strings, as `--loadbalancer-alpha 0.5` does):
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `alpha` | `0.3` | weight of a new latency sample in the moving average, in (0, 1] |
//! | `error_penalty_ms` | `5000` | latency a failed request (timeout, unreachable, ...) counts as, at least |
//! | `stale_ms` | `30000` | an average with no sample for this long is measured again (one request) |
//! | `probe_ms` | `1000` | a backend picked to be measured is picked again for that only after this long without a sample |

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use gatekeeper_plugin_sdk::config::{invalid, number};
use gatekeeper_plugin_sdk::{
    AddBackendParams, GetBackendParams, GetBackendResult, HookError, LoadBalancerPlugin, Object,
    Plugin, RemoveBackendParams, UpstreamMetricParams,
};

use crate::balancer::{Balancer, Tuning};

/// Default `alpha`.
pub const DEFAULT_ALPHA: f64 = 0.3;
/// Default `error_penalty_ms`.
pub const DEFAULT_ERROR_PENALTY_MS: f64 = 5000.0;
/// Default `stale_ms`.
pub const DEFAULT_STALE_MS: f64 = 30_000.0;
/// Default `probe_ms`.
pub const DEFAULT_PROBE_MS: f64 = 1000.0;

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

fn default_tuning() -> Tuning {
    Tuning {
        alpha: DEFAULT_ALPHA,
        error_penalty_us: DEFAULT_ERROR_PENALTY_MS * 1000.0,
        stale: Duration::from_secs_f64(DEFAULT_STALE_MS / 1000.0),
        probe: Duration::from_secs_f64(DEFAULT_PROBE_MS / 1000.0),
    }
}

/// Reads and checks the config map; unknown keys are ignored.
pub fn tuning_from_config(config: &Object) -> Result<Tuning, HookError> {
    let mut tuning = default_tuning();
    if let Some(alpha) = number(config, "alpha")? {
        if !(alpha > 0.0 && alpha <= 1.0) {
            return Err(invalid("alpha", "a number in (0, 1]", alpha));
        }
        tuning.alpha = alpha;
    }
    if let Some(ms) = millis(config, "error_penalty_ms")? {
        tuning.error_penalty_us = ms * 1000.0;
    }
    if let Some(ms) = millis(config, "stale_ms")? {
        tuning.stale = Duration::from_secs_f64(ms / 1000.0);
    }
    if let Some(ms) = millis(config, "probe_ms")? {
        tuning.probe = Duration::from_secs_f64(ms / 1000.0);
    }
    Ok(tuning)
}

/// A duration in milliseconds from the config: 0 to one day.
fn millis(config: &Object, key: &str) -> Result<Option<f64>, HookError> {
    match number(config, key)? {
        Some(ms) if !(0.0..=86_400_000.0).contains(&ms) => Err(invalid(
            key,
            "a number of milliseconds from 0 to 86400000",
            ms,
        )),
        other => Ok(other),
    }
}

/// The least-latency load balancer.
pub struct LeastLatency {
    clock: Arc<dyn Clock>,
    balancer: Mutex<Balancer>,
}

impl Default for LeastLatency {
    fn default() -> Self {
        LeastLatency::with_clock(Arc::new(SystemClock))
    }
}

impl LeastLatency {
    /// A balancer with the default tuning that reads the time from `clock`.
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        LeastLatency {
            clock,
            balancer: Mutex::new(Balancer::new(default_tuning())),
        }
    }

    fn balancer(&self) -> std::sync::MutexGuard<'_, Balancer> {
        self.balancer.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Plugin for LeastLatency {
    /// Reads the tuning. The proxy sends every backend after `start`, so starting empty is right.
    async fn configure(&self, config: Object) -> Result<(), HookError> {
        let tuning = tuning_from_config(&config)?;
        tracing::info!(?tuning, "least-latency configured");
        *self.balancer() = Balancer::new(tuning);
        Ok(())
    }
}

impl LoadBalancerPlugin for LeastLatency {
    async fn add_backend(&self, params: AddBackendParams) -> Result<(), HookError> {
        self.balancer().add(
            &params.upstream_id,
            &params.backend.id,
            &params.backend.address,
        );
        tracing::info!(
            upstream = params.upstream_id,
            backend = params.backend.id,
            "backend added"
        );
        Ok(())
    }

    async fn remove_backend(&self, params: RemoveBackendParams) -> Result<(), HookError> {
        self.balancer()
            .remove(&params.upstream_id, &params.backend_id);
        tracing::info!(
            upstream = params.upstream_id,
            backend = params.backend_id,
            "backend removed"
        );
        Ok(())
    }

    /// Folds a batch of outcomes into the averages.
    async fn upstream_metric(&self, params: UpstreamMetricParams) -> Result<(), HookError> {
        let now = self.clock.now();
        let mut balancer = self.balancer();
        for metric in &params.metrics {
            balancer.record(
                &metric.upstream,
                &metric.backend,
                metric.latency_us,
                metric.error.is_some(),
                now,
            );
        }
        Ok(())
    }

    async fn get_backend(&self, params: GetBackendParams) -> Result<GetBackendResult, HookError> {
        let now = self.clock.now();
        Ok(GetBackendResult {
            backend_id: self.balancer().pick(&params.upstream_id, now),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatekeeper_plugin_sdk::{Backend, HttpRequest, UpstreamMetric, LOADBALANCER_HOOKS};
    use serde_json::{json, Value};

    struct ManualClock(Mutex<Instant>);

    impl ManualClock {
        fn advance(&self, by: Duration) {
            *self.0.lock().unwrap() += by;
        }
    }

    impl Clock for ManualClock {
        fn now(&self) -> Instant {
            *self.0.lock().unwrap()
        }
    }

    fn config(pairs: &[(&str, Value)]) -> Object {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    async fn add(plugin: &LeastLatency, upstream: &str, id: &str) {
        plugin
            .add_backend(AddBackendParams {
                upstream_id: upstream.into(),
                backend: Backend {
                    id: id.into(),
                    address: format!("http://127.0.0.1:9{id}"),
                    weight: None,
                    extra: Object::new(),
                },
            })
            .await
            .unwrap();
    }

    async fn pick(plugin: &LeastLatency, upstream: &str) -> Option<String> {
        plugin
            .get_backend(GetBackendParams {
                upstream_id: upstream.into(),
                request: HttpRequest::default(),
            })
            .await
            .unwrap()
            .backend_id
    }

    fn metric(backend: &str, latency_ms: u64, error: Option<&str>) -> UpstreamMetric {
        UpstreamMetric {
            time_ms: 0,
            upstream: "api".into(),
            backend: backend.into(),
            latency_us: latency_ms * 1000,
            status: error.is_none().then_some(200),
            error: error.map(str::to_owned),
        }
    }

    async fn report(plugin: &LeastLatency, metrics: Vec<UpstreamMetric>) {
        plugin
            .upstream_metric(UpstreamMetricParams { metrics })
            .await
            .unwrap();
    }

    #[test]
    fn declares_every_loadbalancer_hook() {
        assert_eq!(LeastLatency::default().hooks(), LOADBALANCER_HOOKS);
    }

    #[test]
    fn config_is_validated() {
        let tuning = tuning_from_config(&config(&[
            ("alpha", json!("0.5")),
            ("error_penalty_ms", json!(100)),
            ("stale_ms", json!(2000)),
            ("probe_ms", json!("250")),
        ]))
        .unwrap();
        assert_eq!(tuning.alpha, 0.5);
        assert_eq!(tuning.error_penalty_us, 100_000.0);
        assert_eq!(tuning.stale, Duration::from_secs(2));
        assert_eq!(tuning.probe, Duration::from_millis(250));
        assert_eq!(
            tuning_from_config(&Object::new()).unwrap(),
            default_tuning()
        );
        assert_eq!(default_tuning().alpha, 0.3);

        for (key, value) in [
            ("alpha", json!(0)),
            ("alpha", json!(1.5)),
            ("alpha", json!("x")),
            ("alpha", json!(null)),
            ("error_penalty_ms", json!(-1)),
            ("stale_ms", json!(1e12)),
            ("probe_ms", json!([1])),
        ] {
            let err = tuning_from_config(&config(&[(key, value.clone())])).unwrap_err();
            assert!(err.message().contains(key), "{key}={value}: {err}");
        }
    }

    #[tokio::test]
    async fn null_without_backends() {
        let plugin = LeastLatency::default();
        assert_eq!(pick(&plugin, "api").await, None);
        add(&plugin, "api", "0").await;
        plugin
            .remove_backend(RemoveBackendParams {
                upstream_id: "api".into(),
                backend_id: "0".into(),
            })
            .await
            .unwrap();
        assert_eq!(pick(&plugin, "api").await, None);
    }

    #[tokio::test]
    async fn sends_traffic_to_the_fastest_after_measuring_each() {
        let clock = Arc::new(ManualClock(Mutex::new(Instant::now())));
        let plugin = LeastLatency::with_clock(clock.clone());
        plugin
            .configure(config(&[("alpha", json!(0.3))]))
            .await
            .unwrap();
        add(&plugin, "api", "0").await;
        add(&plugin, "api", "1").await;
        // Both are measured first.
        assert_eq!(pick(&plugin, "api").await.as_deref(), Some("0"));
        assert_eq!(pick(&plugin, "api").await.as_deref(), Some("1"));
        report(&plugin, vec![metric("0", 50, None), metric("1", 2, None)]).await;
        for _ in 0..10 {
            assert_eq!(pick(&plugin, "api").await.as_deref(), Some("1"));
        }
        // "1" starts failing: the penalty sends traffic back to "0".
        report(&plugin, vec![metric("1", 1, Some("backend_unreachable"))]).await;
        assert_eq!(pick(&plugin, "api").await.as_deref(), Some("0"));
        // Removed backends are never picked.
        plugin
            .remove_backend(RemoveBackendParams {
                upstream_id: "api".into(),
                backend_id: "0".into(),
            })
            .await
            .unwrap();
        assert_eq!(pick(&plugin, "api").await.as_deref(), Some("1"));
        // Much later the failing backend's average is stale: it is measured again.
        clock.advance(Duration::from_secs(60));
        add(&plugin, "api", "2").await;
        report(&plugin, vec![metric("2", 500, None)]).await;
        assert_eq!(pick(&plugin, "api").await.as_deref(), Some("1"));
    }
}
