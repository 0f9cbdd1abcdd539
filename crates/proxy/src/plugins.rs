//! Router and loadbalancer plugins as the proxy sees them: the [`RouterHook`] and
//! [`LoadBalancerHook`] traits, implemented by the gatekeeper binary on top of the plugin host.
//!
//! Both follow the same rules, applied per request:
//!
//! | situation | [`FailurePolicy::Open`] | [`FailurePolicy::Closed`] |
//! |---|---|---|
//! | plugin available, hook succeeds | its decision | its decision |
//! | hook fails (error, timeout, invalid answer) | built-in router / balancer | answer `status` (`plugin_failed`) |
//! | plugin not available (down, restarting) | built-in router / balancer | answer `status` (`plugin_failed`) |
//!
//! A router decision of "no upstream" is a 404 (`no_route`); a loadbalancer decision of "no
//! backend" is a 503 (`no_backend`). A loadbalancer naming a backend the upstream does not have
//! is a hook failure.
//!
//! Keeping the plugin in step with the registry (`add_upstream`, `add_backend`, … and the
//! replay after a restart) is the binary's job: see [`Registry::subscribe`](crate::Registry::subscribe)
//! and [`Snapshot::replay`](crate::Snapshot::replay).

use futures::future::BoxFuture;
use gatekeeper_rpc::methods::{
    GetBackendParams, GetBackendResult, RouteRequestParams, RouteRequestResult,
};

pub use crate::modifier::{FailurePolicy, HookError};

/// A router plugin: picks the upstream of every request instead of the built-in router.
pub trait RouterHook: Send + Sync + 'static {
    /// The plugin's configured name (logs, error bodies, metrics).
    fn name(&self) -> &str;
    /// Whether the plugin can be called now (false while it is down or restarting).
    fn is_available(&self) -> bool;
    /// What to do when the plugin fails or is not available.
    fn failure_policy(&self) -> FailurePolicy;
    /// `route_request`: the upstream for this request.
    fn route(
        &self,
        params: RouteRequestParams,
    ) -> BoxFuture<'static, Result<RouteRequestResult, HookError>>;
}

/// A loadbalancer plugin: picks the backend of every request instead of the built-in balancers.
///
/// It also receives `upstream_metric` batches: pass it to [`Metrics::new`](crate::Metrics::new)
/// as a [`MetricsExporter`](crate::MetricsExporter) that only wants
/// [`MetricKind::Upstream`](crate::MetricKind::Upstream).
pub trait LoadBalancerHook: Send + Sync + 'static {
    /// The plugin's configured name (logs, error bodies, metrics).
    fn name(&self) -> &str;
    /// Whether the plugin can be called now (false while it is down or restarting).
    fn is_available(&self) -> bool;
    /// What to do when the plugin fails or is not available.
    fn failure_policy(&self) -> FailurePolicy;
    /// `get_backend`: the backend of `params.upstream_id` for this request.
    fn get_backend(
        &self,
        params: GetBackendParams,
    ) -> BoxFuture<'static, Result<GetBackendResult, HookError>>;
}
