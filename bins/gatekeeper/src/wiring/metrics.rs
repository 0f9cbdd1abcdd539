//! Plugins that receive metric batches: metric plugins (every kind they declared), and
//! loadbalancer and upstream plugins that declared `upstream_metric`.

use futures::future::BoxFuture;
use gatekeeper_plugin_host::PluginHandle;
use gatekeeper_proxy::{MetricKind, MetricsExporter};
use gatekeeper_rpc::methods::{
    EventMetricHook, EventMetricParams, Method, PluginMetricHook, PluginMetricParams,
    ProfilingMetricHook, ProfilingMetricParams, RequestMetricHook, RequestMetricParams,
    UpstreamMetricHook, UpstreamMetricParams,
};
use gatekeeper_rpc::metrics::{
    EventMetric, PluginMetric, ProfilingMetric, RequestMetric, UpstreamMetric,
};

/// The hook that carries each kind of record.
fn hook_of(kind: MetricKind) -> &'static str {
    match kind {
        MetricKind::Event => EventMetricHook::NAME,
        MetricKind::Profile => ProfilingMetricHook::NAME,
        MetricKind::Plugin => PluginMetricHook::NAME,
        MetricKind::Request => RequestMetricHook::NAME,
        MetricKind::Upstream => UpstreamMetricHook::NAME,
    }
}

/// Sends batches to one plugin. Calls are not metered themselves (a `plugin_metric` about
/// delivering `plugin_metric`s would feed itself).
pub struct PluginExporter {
    handle: PluginHandle,
    kinds: Vec<MetricKind>,
}

impl PluginExporter {
    /// An exporter for the kinds among `kinds` that the plugin declared; `None` if none.
    pub fn new(handle: PluginHandle, kinds: &[MetricKind]) -> Option<Self> {
        let kinds: Vec<MetricKind> = kinds
            .iter()
            .copied()
            .filter(|kind| handle.has_hook(hook_of(*kind)))
            .collect();
        (!kinds.is_empty()).then_some(PluginExporter { handle, kinds })
    }

    fn send<M>(&self, params: M::Params, records: usize) -> BoxFuture<'static, ()>
    where
        M: Method + 'static,
    {
        let handle = self.handle.clone();
        Box::pin(async move {
            if let Err(error) = handle.call::<M>(&params).await {
                tracing::warn!(plugin = %handle.name(), method = M::NAME, records, %error, "metric batch not delivered");
            }
        })
    }
}

impl MetricsExporter for PluginExporter {
    fn wants(&self, kind: MetricKind) -> bool {
        self.kinds.contains(&kind)
    }

    fn export_events(&self, events: Vec<EventMetric>) -> BoxFuture<'static, ()> {
        let n = events.len();
        self.send::<EventMetricHook>(EventMetricParams { events }, n)
    }

    fn export_profiles(&self, profiles: Vec<ProfilingMetric>) -> BoxFuture<'static, ()> {
        let n = profiles.len();
        self.send::<ProfilingMetricHook>(ProfilingMetricParams { profiles }, n)
    }

    fn export_plugin_metrics(&self, metrics: Vec<PluginMetric>) -> BoxFuture<'static, ()> {
        let n = metrics.len();
        self.send::<PluginMetricHook>(PluginMetricParams { metrics }, n)
    }

    fn export_requests(&self, metrics: Vec<RequestMetric>) -> BoxFuture<'static, ()> {
        let n = metrics.len();
        self.send::<RequestMetricHook>(RequestMetricParams { metrics }, n)
    }

    fn export_upstream_metrics(&self, metrics: Vec<UpstreamMetric>) -> BoxFuture<'static, ()> {
        let n = metrics.len();
        self.send::<UpstreamMetricHook>(UpstreamMetricParams { metrics }, n)
    }
}
