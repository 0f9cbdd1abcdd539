//! [`LoadBalancerPlugin`]: a plugin that picks the backend of every request, in place of the
//! proxy's built-in balancers.

use std::future::Future;

use gatekeeper_rpc::methods::{
    AddBackend, AddBackendParams, GetBackend, GetBackendParams, GetBackendResult, PluginType,
    RemoveBackend, RemoveBackendParams, UpstreamMetricHook, UpstreamMetricParams,
};

use crate::dispatch::adapter;
use crate::error::HookError;
use crate::plugin::Plugin;

/// Every hook a loadbalancer can implement (from the protocol table).
pub use gatekeeper_rpc::methods::LOADBALANCER_HOOKS;

/// A plugin that picks the backend of an upstream for each request.
///
/// The proxy keeps a load balancer in step with its registry: it calls
/// [`add_backend`](Self::add_backend) for every backend there is when the plugin starts (and
/// again after a restart) and whenever one is added or replaced, and
/// [`remove_backend`](Self::remove_backend) when one goes. It reports how backends did in
/// batches through [`upstream_metric`](Self::upstream_metric), and asks
/// [`get_backend`](Self::get_backend) for every request it forwards, after the modifiers'
/// `modify_request`.
pub trait LoadBalancerPlugin: Plugin {
    /// The hooks this plugin implements, sent in the handshake: the proxy never calls the others
    /// (and the SDK refuses them). Names are the method names, e.g. [`GetBackend::NAME`](crate::Method::NAME).
    ///
    /// Default: all four ([`LOADBALANCER_HOOKS`]).
    fn hooks(&self) -> &'static [&'static str] {
        LOADBALANCER_HOOKS
    }

    /// Runs when a backend enters the proxy's registry, or is replaced (same upstream and id):
    /// for every backend in the registry when the plugin (re)starts, then on every change. The
    /// same backend may arrive more than once.
    ///
    /// Default: does nothing.
    fn add_backend(
        &self,
        params: AddBackendParams,
    ) -> impl Future<Output = Result<(), HookError>> + Send {
        async move {
            let _ = params;
            Ok(())
        }
    }

    /// Runs when a backend leaves the proxy's registry.
    ///
    /// Default: does nothing.
    fn remove_backend(
        &self,
        params: RemoveBackendParams,
    ) -> impl Future<Output = Result<(), HookError>> + Send {
        async move {
            let _ = params;
            Ok(())
        }
    }

    /// Runs when the proxy flushes its buffer of backend outcomes: a batch of
    /// [`UpstreamMetric`](crate::UpstreamMetric)s (latency, status or error), oldest first. The
    /// proxy does not wait on it for any request.
    ///
    /// Default: ignores the batch.
    fn upstream_metric(
        &self,
        params: UpstreamMetricParams,
    ) -> impl Future<Output = Result<(), HookError>> + Send {
        async move {
            let _ = params;
            Ok(())
        }
    }

    /// Runs for every request to be forwarded: return the id of one of the upstream's backends
    /// in [`GetBackendResult::backend_id`]. No backend (or an id the upstream does not have)
    /// makes the proxy answer 503.
    ///
    /// Default: no backend.
    fn get_backend(
        &self,
        params: GetBackendParams,
    ) -> impl Future<Output = Result<GetBackendResult, HookError>> + Send {
        async move {
            let _ = params;
            Ok(GetBackendResult::default())
        }
    }
}

adapter!(
    /// A [`LoadBalancerPlugin`] being served.
    AsLoadBalancer: LoadBalancerPlugin as PluginType::Loadbalancer, {
        AddBackend => answer_empty(add_backend),
        RemoveBackend => answer_empty(remove_backend),
        UpstreamMetricHook => answer_empty(upstream_metric),
        GetBackend => answer(get_backend),
    }
);
