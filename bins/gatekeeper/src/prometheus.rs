//! Prometheus metrics (`prometheus-client`), served on `metrics_listen` and on the admin socket
//! as `GET /metrics` in the OpenMetrics text format.
//!
//! Per-request data comes from the metrics pipeline: [`PrometheusExporter`] is one more
//! [`MetricsExporter`] that takes the batched `request_metric` and `upstream_metric` records
//! and updates `gatekeeper_requests_total{upstream,status,listener,method,error_kind}`,
//! `gatekeeper_request_duration_seconds{upstream}`, `gatekeeper_retries_total{upstream}` and
//! the per-backend families (`gatekeeper_backend_requests_total`, `_errors_total`,
//! `_response_seconds`). Reloads are counted as they happen ([`Prometheus::count_reload`]).
//! Everything else is read at scrape time: plugin counters (calls, errors, timeouts, bad
//! results, retries, restarts, recycles) and gauges (up, spares ready, instances per state)
//! from the [`PluginHandle`]s, backend health and in-flight requests from the registry, dropped
//! metric records and the listeners' connection counters from the pipeline, `process_*` from
//! `/proc` ([`crate::process_metrics`]), and `gatekeeper_build_info`.
//!
//! Label values come from bounded sets only (no paths, hosts or client addresses): methods
//! other than the standard ones are `OTHER`.

use std::sync::Arc;

use arc_swap::ArcSwapOption;

use futures::future::BoxFuture;
use gatekeeper_plugin_host::{PluginHandle, PluginStatus};
use gatekeeper_proxy::{MetricKind, Metrics, MetricsExporter, Registry as Upstreams};
use gatekeeper_rpc::metrics::{RequestMetric, UpstreamMetric};

use crate::admin::routes::status_word;
use crate::plugins::PluginCaches;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

mod listeners;

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
    /// The listener's name.
    listener: String,
    /// The method: a standard one, else `OTHER` ([`method_label`]).
    method: String,
    /// The proxy's error kind; empty when there was none.
    error_kind: String,
}

/// Labels of `gatekeeper_backend_errors_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendErrorLabels {
    upstream: String,
    backend: String,
    /// `unreachable`, `timeout`, `failed` (no answer), or `status_5xx`.
    error_kind: String,
}

/// Labels of `gatekeeper_reloads_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    /// `ok` or `failed`.
    result: String,
}

/// Labels of `gatekeeper_build_info`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: String,
}

/// The method as a label: a standard method's name, else `OTHER` (a bounded set).
fn method_label(method: &str) -> &str {
    const STANDARD: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
    ];
    if STANDARD.contains(&method) {
        method
    } else {
        "OTHER"
    }
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

/// Latency buckets, seconds: the usual SLO edges (Prometheus' defaults, 5 ms to 10 s) with
/// 0.5, 1 and 2.5 ms below them for a proxy's fast answers.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A latency histogram with [`LATENCY_BUCKETS`].
fn duration_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

/// What is read at scrape time, known once gatekeeper is ready.
struct Sources {
    upstreams: Arc<Upstreams>,
    plugins: Vec<PluginHandle>,
    caches: PluginCaches,
    metrics: Metrics,
}

/// The metric families and the sources read at scrape time.
pub struct Prometheus {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Family<UpstreamLabels, Histogram, fn() -> Histogram>,
    retries: Family<UpstreamLabels, Counter>,
    backend_requests: Family<BackendLabels, Counter>,
    backend_errors: Family<BackendErrorLabels, Counter>,
    backend_latency: Family<BackendLabels, Histogram, fn() -> Histogram>,
    reloads: Family<ReloadLabels, Counter>,
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
        let retries = Family::<UpstreamLabels, Counter>::default();
        registry.register(
            "gatekeeper_retries",
            "Requests sent again to another backend after a connect failure",
            retries.clone(),
        );
        let backend_requests = Family::<BackendLabels, Counter>::default();
        registry.register(
            "gatekeeper_backend_requests",
            "Requests sent to a backend (each attempt)",
            backend_requests.clone(),
        );
        let backend_errors = Family::<BackendErrorLabels, Counter>::default();
        registry.register(
            "gatekeeper_backend_errors",
            "Requests to a backend that got no answer (unreachable, timeout, failed) or a 5xx",
            backend_errors.clone(),
        );
        let backend_latency =
            Family::<BackendLabels, Histogram, fn() -> Histogram>::new_with_constructor(
                duration_histogram,
            );
        registry.register(
            "gatekeeper_backend_response_seconds",
            "Time from sending a request to a backend until its response head (or failure)",
            backend_latency.clone(),
        );
        let reloads = Family::<ReloadLabels, Counter>::default();
        for result in ["ok", "failed"] {
            // Both series exist from the start, at 0.
            let _ = reloads.get_or_create(&ReloadLabels {
                result: result.into(),
            });
        }
        registry.register(
            "gatekeeper_reloads",
            "Configuration reloads (SIGHUP): ok, or failed (nothing or not everything applied)",
            reloads.clone(),
        );
        let build_info = Family::<BuildLabels, Gauge>::default();
        build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").into(),
            })
            .set(1);
        registry.register(
            "gatekeeper_build_info",
            "1, labelled with the running gatekeeper's version",
            build_info,
        );
        Prometheus {
            registry,
            requests,
            durations,
            retries,
            backend_requests,
            backend_errors,
            backend_latency,
            reloads,
            sources: ArcSwapOption::empty(),
        }
    }

    /// Counts a configuration reload: `ok` when everything was applied.
    pub fn count_reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.reloads
            .get_or_create(&ReloadLabels {
                result: result.into(),
            })
            .inc();
    }

    /// Gatekeeper is ready (or reloaded): the registry, plugins and pipeline to read at scrape
    /// time.
    pub fn attach(
        &self,
        upstreams: Arc<Upstreams>,
        plugins: Vec<PluginHandle>,
        caches: PluginCaches,
        metrics: Metrics,
    ) {
        self.sources.store(Some(Arc::new(Sources {
            upstreams,
            plugins,
            caches,
            metrics,
        })));
    }

    /// Counts finished (and refused) requests.
    fn record(&self, batch: &[RequestMetric]) {
        for request in batch {
            let upstream = UpstreamLabels {
                upstream: request.upstream.clone().unwrap_or_default(),
            };
            self.durations
                .get_or_create(&upstream)
                .observe(request.phases.total_us as f64 / 1e6);
            if request.retries > 0 {
                self.retries
                    .get_or_create(&upstream)
                    .inc_by(u64::from(request.retries));
            }
            self.requests
                .get_or_create(&RequestLabels {
                    upstream: upstream.upstream,
                    status: request.status.to_string(),
                    listener: request.listener.clone(),
                    method: method_label(&request.method).to_owned(),
                    error_kind: request.error.clone().unwrap_or_default(),
                })
                .inc();
        }
    }

    /// Counts the requests sent to backends, their failures and latencies.
    fn record_backends(&self, batch: &[UpstreamMetric]) {
        for attempt in batch {
            let labels = BackendLabels {
                upstream: attempt.upstream.clone(),
                backend: attempt.backend.clone(),
            };
            self.backend_latency
                .get_or_create(&labels)
                .observe(attempt.latency_us as f64 / 1e6);
            self.backend_requests.get_or_create(&labels).inc();
            let error_kind = match (&attempt.error, attempt.status) {
                (Some(error), _) => error.clone(),
                (None, Some(status)) if status >= 500 => "status_5xx".to_owned(),
                _ => continue,
            };
            self.backend_errors
                .get_or_create(&BackendErrorLabels {
                    upstream: labels.upstream,
                    backend: labels.backend,
                    error_kind,
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
        let mut process = Registry::default();
        let stats = crate::process_metrics::read(std::path::Path::new("/proc"));
        crate::process_metrics::register(&mut process, &stats);
        encode_registry(&mut text, &process)?;
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
    let cache_hits = counter(
        &mut registry,
        "gatekeeper_plugin_cache_hits",
        "Requests given a plugin's cached modify_request decision without a call",
    );
    let cache_misses = counter(
        &mut registry,
        "gatekeeper_plugin_cache_misses",
        "Requests that called a plugin because no cached modify_request decision applied",
    );
    let cache_entries = Family::<PluginLabels, Gauge>::default();
    registry.register(
        "gatekeeper_plugin_cache_entries",
        "Decisions a plugin's cache keeps now (at most 10,000)",
        cache_entries.clone(),
    );
    for plugin in &sources.plugins {
        let state = plugin.state();
        if let Some(cache) = sources.caches.of(plugin.name()) {
            let labels = PluginLabels {
                plugin: plugin.name().to_owned(),
            };
            let stats = cache.stats();
            cache_hits.get_or_create(&labels).inc_by(stats.hits);
            cache_misses.get_or_create(&labels).inc_by(stats.misses);
            cache_entries
                .get_or_create(&labels)
                .set(i64::try_from(stats.entries).unwrap_or(i64::MAX));
        }
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
    listeners::register(&mut registry, &sources.metrics);
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
        matches!(kind, MetricKind::Request | MetricKind::Upstream)
    }

    fn export_requests(&self, batch: Vec<RequestMetric>) -> BoxFuture<'static, ()> {
        self.prometheus.record(&batch);
        Box::pin(async {})
    }

    fn export_upstream_metrics(&self, batch: Vec<UpstreamMetric>) -> BoxFuture<'static, ()> {
        self.prometheus.record_backends(&batch);
        Box::pin(async {})
    }
}

#[cfg(test)]
mod tests;
