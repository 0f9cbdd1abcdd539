//! Prometheus metrics (`prometheus-client`), served on `metrics_listen` and on the admin socket
//! as `GET /metrics` in the OpenMetrics text format.
//!
//! Per-request data comes from the metrics pipeline: [`PrometheusExporter`] is one more
//! [`MetricsExporter`] that takes the batched `request_metric` records and updates
//! `gatekeeper_requests_total{upstream,status}` and
//! `gatekeeper_request_duration_seconds{upstream}`. Everything else is read at scrape time:
//! plugin counters (calls, errors, timeouts, bad results, retries, restarts, recycles) and
//! gauges (up, spares ready, instances per state) from the [`PluginHandle`]s, backend health and in-flight requests from the
//! registry, dropped metric records from the pipeline.

use std::sync::Arc;

use arc_swap::ArcSwapOption;

use futures::future::BoxFuture;
use gatekeeper_plugin_host::{PluginHandle, PluginStatus};
use gatekeeper_proxy::{MetricKind, Metrics, MetricsExporter, Registry as Upstreams};
use gatekeeper_rpc::metrics::RequestMetric;

use crate::admin::routes::status_word;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// The content type of [`Prometheus::render`]'s text.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Labels of `gatekeeper_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    /// The upstream's id; empty when the request was not routed.
    upstream: String,
    /// The status sent to the client.
    status: String,
}

/// Labels of per-upstream metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    upstream: String,
}

/// Labels of per-backend metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    upstream: String,
    backend: String,
}

/// Labels of per-plugin metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginLabels {
    plugin: String,
}

/// Labels of `gatekeeper_plugin_instances`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InstanceLabels {
    plugin: String,
    /// As `ctl plugins` says it ([`status_word`]).
    state: String,
}

/// Every instance state, as [`status_word`] writes it.
const STATE_WORDS: [&str; 5] = ["running", "starting", "restarting", "backoff", "stopped"];

/// Request duration buckets: 0.5 ms to about 16 s, doubling.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// What is read at scrape time, known once gatekeeper is ready.
struct Sources {
    upstreams: Arc<Upstreams>,
    plugins: Vec<PluginHandle>,
    metrics: Metrics,
}

/// The metric families and the sources read at scrape time.
pub struct Prometheus {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Family<UpstreamLabels, Histogram, fn() -> Histogram>,
    sources: ArcSwapOption<Sources>,
}

impl Default for Prometheus {
    fn default() -> Self {
        Self::new()
    }
}

impl Prometheus {
    /// Empty families.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "gatekeeper_requests",
            "Requests answered, by upstream (empty: not routed) and status",
            requests.clone(),
        );
        let durations =
            Family::<UpstreamLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                duration_histogram,
            );
        registry.register(
            "gatekeeper_request_duration_seconds",
            "Time from a request's arrival until its response body was sent",
            durations.clone(),
        );
        Prometheus {
            registry,
            requests,
            durations,
            sources: ArcSwapOption::empty(),
        }
    }

    /// Gatekeeper is ready (or reloaded): the registry, plugins and pipeline to read at scrape
    /// time.
    pub fn attach(&self, upstreams: Arc<Upstreams>, plugins: Vec<PluginHandle>, metrics: Metrics) {
        self.sources.store(Some(Arc::new(Sources {
            upstreams,
            plugins,
            metrics,
        })));
    }

    /// Counts finished requests.
    fn record(&self, batch: &[RequestMetric]) {
        for request in batch {
            let upstream = request.upstream.clone().unwrap_or_default();
            self.durations
                .get_or_create(&UpstreamLabels {
                    upstream: upstream.clone(),
                })
                .observe(request.phases.total_us as f64 / 1e6);
            self.requests
                .get_or_create(&RequestLabels {
                    upstream,
                    status: request.status.to_string(),
                })
                .inc();
        }
    }

    /// Every metric in the OpenMetrics text format.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        encode_registry(&mut text, &self.registry)?;
        if let Some(sources) = self.sources.load().as_deref() {
            encode_registry(&mut text, &scraped(sources))?;
        }
        encode_eof(&mut text)?;
        Ok(text)
    }
}

/// A registry of the values read now from the plugins, the backends and the pipeline.
fn scraped(sources: &Sources) -> Registry {
    let mut registry = Registry::default();
    let counter = |registry: &mut Registry, name: &str, help: &str| {
        let family = Family::<PluginLabels, Counter>::default();
        registry.register(name, help, family.clone());
        family
    };
    let calls = counter(
        &mut registry,
        "gatekeeper_plugin_calls",
        "Calls made to a plugin",
    );
    let errors = counter(
        &mut registry,
        "gatekeeper_plugin_errors",
        "Plugin calls that failed (timeouts included)",
    );
    let timeouts = counter(
        &mut registry,
        "gatekeeper_plugin_timeouts",
        "Plugin calls that timed out",
    );
    let restarts = counter(
        &mut registry,
        "gatekeeper_plugin_restarts",
        "Times a plugin's processes were restarted",
    );
    let recycles = counter(
        &mut registry,
        "gatekeeper_plugin_recycles",
        "Times a plugin's processes were replaced make-before-break (max_memory, recycle_after)",
    );
    let bad_results = counter(
        &mut registry,
        "gatekeeper_plugin_bad_results",
        "Plugin calls answered with a result of the wrong shape (counted in errors too)",
    );
    let retries = counter(
        &mut registry,
        "gatekeeper_plugin_retries",
        "Plugin calls sent a second time after the process they were on went down",
    );
    let call_seconds = Family::<PluginLabels, Counter<f64>>::default();
    registry.register(
        "gatekeeper_plugin_call_seconds",
        "Time spent in plugin calls, all together",
        call_seconds.clone(),
    );
    let up = Family::<PluginLabels, Gauge>::default();
    registry.register(
        "gatekeeper_plugin_up",
        "1 while at least one of a plugin's processes is running",
        up.clone(),
    );
    let standby_ready = Family::<PluginLabels, Gauge>::default();
    registry.register(
        "gatekeeper_plugin_standby_ready",
        "Spare processes of a plugin started and ready to take over (standby)",
        standby_ready.clone(),
    );
    let instances = Family::<InstanceLabels, Gauge>::default();
    registry.register(
        "gatekeeper_plugin_instances",
        "A plugin's instances in each state (running, starting, restarting, backoff, stopped)",
        instances.clone(),
    );
    let config_rejected = Family::<PluginLabels, Gauge>::default();
    registry.register(
        "gatekeeper_plugin_config_rejected",
        "1 while a plugin reports that it rejected a change of its config (config_status) and keeps its last good one",
        config_rejected.clone(),
    );
    for plugin in &sources.plugins {
        let state = plugin.state();
        for word in STATE_WORDS {
            let in_state = state
                .instances
                .iter()
                .filter(|instance| status_word(instance.status) == word)
                .count();
            instances
                .get_or_create(&InstanceLabels {
                    plugin: plugin.name().to_owned(),
                    state: word.to_owned(),
                })
                .set(i64::try_from(in_state).unwrap_or(i64::MAX));
        }
        let labels = PluginLabels {
            plugin: plugin.name().to_owned(),
        };
        calls.get_or_create(&labels).inc_by(state.calls);
        errors.get_or_create(&labels).inc_by(state.errors);
        timeouts.get_or_create(&labels).inc_by(state.timeouts);
        restarts.get_or_create(&labels).inc_by(state.restarts);
        recycles.get_or_create(&labels).inc_by(state.recycles);
        bad_results.get_or_create(&labels).inc_by(state.bad_results);
        retries.get_or_create(&labels).inc_by(state.retries);
        standby_ready
            .get_or_create(&labels)
            .set(i64::try_from(state.standby_ready).unwrap_or(i64::MAX));
        call_seconds
            .get_or_create(&labels)
            .inc_by(state.latency_us_total as f64 / 1e6);
        up.get_or_create(&labels)
            .set(i64::from(state.status == PluginStatus::Ready));
        config_rejected
            .get_or_create(&labels)
            .set(i64::from(state.config_error.is_some()));
    }

    let healthy = Family::<BackendLabels, Gauge>::default();
    registry.register(
        "gatekeeper_backend_healthy",
        "1 while the built-in balancers may send a backend new requests (not drained, ejected or down)",
        healthy.clone(),
    );
    let in_flight = Family::<BackendLabels, Gauge>::default();
    registry.register(
        "gatekeeper_backend_in_flight",
        "Requests sent to a backend whose response has not finished",
        in_flight.clone(),
    );
    for upstream in sources.upstreams.snapshot().iter() {
        for backend in &upstream.backends {
            let labels = BackendLabels {
                upstream: upstream.upstream.id.clone(),
                backend: backend.backend.id.clone(),
            };
            healthy
                .get_or_create(&labels)
                .set(i64::from(backend.is_available()));
            in_flight
                .get_or_create(&labels)
                .set(i64::try_from(backend.in_flight()).unwrap_or(i64::MAX));
        }
    }

    let dropped: Counter = Counter::default();
    dropped.inc_by(sources.metrics.dropped());
    registry.register(
        "gatekeeper_metrics_dropped",
        "Metric records dropped because the pipeline's buffers were full",
        dropped,
    );
    registry
}

/// Feeds request records from the metrics pipeline into [`Prometheus`].
pub struct PrometheusExporter {
    prometheus: Arc<Prometheus>,
}

impl PrometheusExporter {
    /// An exporter updating `prometheus`.
    pub fn new(prometheus: Arc<Prometheus>) -> Self {
        PrometheusExporter { prometheus }
    }
}

impl MetricsExporter for PrometheusExporter {
    fn wants(&self, kind: MetricKind) -> bool {
        kind == MetricKind::Request
    }

    fn export_requests(&self, batch: Vec<RequestMetric>) -> BoxFuture<'static, ()> {
        self.prometheus.record(&batch);
        Box::pin(async {})
    }
}

#[cfg(test)]
mod tests {
    use gatekeeper_rpc::metrics::Phases;

    use super::*;

    fn request(upstream: Option<&str>, status: u16, total_us: u64) -> RequestMetric {
        RequestMetric {
            time_ms: 0,
            listener: "http-public".into(),
            method: "GET".into(),
            host: "h".into(),
            path: "/".into(),
            status,
            upstream: upstream.map(str::to_owned),
            backend: None,
            bytes_in: 0,
            bytes_out: 0,
            error: None,
            client: None,
            query: None,
            version: None,
            phases: Phases {
                router_us: 0,
                loadbalancer_us: 0,
                modifiers: Vec::new(),
                upstream_connect_us: 0,
                upstream_response_us: 0,
                total_us,
            },
        }
    }

    #[tokio::test]
    async fn request_records_become_counters_and_histograms() {
        let prometheus = Arc::new(Prometheus::new());
        let exporter = PrometheusExporter::new(prometheus.clone());
        assert!(exporter.wants(MetricKind::Request) && !exporter.wants(MetricKind::Plugin));
        exporter
            .export_requests(vec![
                request(Some("echo"), 200, 1_000),
                request(Some("echo"), 200, 3_000),
                request(None, 404, 10),
            ])
            .await;
        let text = prometheus.render().unwrap();
        assert!(
            text.contains("gatekeeper_requests_total{upstream=\"echo\",status=\"200\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("gatekeeper_requests_total{upstream=\"\",status=\"404\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("gatekeeper_request_duration_seconds_count{upstream=\"echo\"} 2"),
            "{text}"
        );
        assert!(
            text.contains(
                "gatekeeper_request_duration_seconds_bucket{le=\"0.001\",upstream=\"echo\"} 1"
            ),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
