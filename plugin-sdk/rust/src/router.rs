//! [`RouterPlugin`]: a plugin that picks the upstream of every request, in place of the proxy's
//! built-in prefix and host routing.

use std::future::Future;

use gatekeeper_rpc::methods::{
    AddUpstream, AddUpstreamParams, PluginType, RemoveUpstream, RemoveUpstreamParams, RouteRequest,
    RouteRequestParams, RouteRequestResult,
};

use crate::dispatch::adapter;
use crate::error::HookError;
use crate::plugin::Plugin;

/// Every hook a router can implement (from the protocol table).
pub use gatekeeper_rpc::methods::ROUTER_HOOKS;

/// A plugin that picks the upstream for each request.
///
/// The proxy keeps a router in step with its registry: it calls
/// [`add_upstream`](Self::add_upstream) for every upstream there is when the router starts (and
/// again after a restart) and whenever one is added or replaced, and
/// [`remove_upstream`](Self::remove_upstream) when one goes. [`route_request`](Self::route_request)
/// then runs for every request, before any modifier.
pub trait RouterPlugin: Plugin {
    /// The hooks this plugin implements, sent in the handshake: the proxy never calls the others
    /// (and the SDK refuses them). Names are the method names, e.g. [`RouteRequest::NAME`](crate::Method::NAME).
    ///
    /// Default: all three ([`ROUTER_HOOKS`]). A router that does not need to know the upstreams
    /// (e.g. it routes by a header naming the upstream) may declare only `route_request`.
    fn hooks(&self) -> &'static [&'static str] {
        ROUTER_HOOKS
    }

    /// Runs when an upstream enters the proxy's registry, or is replaced (same id): for every
    /// upstream in the registry when the plugin (re)starts, then on every change. The same
    /// upstream may arrive more than once.
    ///
    /// Default: does nothing.
    fn add_upstream(
        &self,
        params: AddUpstreamParams,
    ) -> impl Future<Output = Result<(), HookError>> + Send {
        async move {
            let _ = params;
            Ok(())
        }
    }

    /// Runs when an upstream (with its backends) leaves the proxy's registry.
    ///
    /// Default: does nothing.
    fn remove_upstream(
        &self,
        params: RemoveUpstreamParams,
    ) -> impl Future<Output = Result<(), HookError>> + Send {
        async move {
            let _ = params;
            Ok(())
        }
    }

    /// Runs for every request, first thing after it is parsed. Return the id of the upstream in
    /// [`RouteRequestResult::upstream`] (an id the proxy does not know is a 404), optionally the
    /// path the backend gets (`prefixless_path`) and a changed request. No upstream means no
    /// route: the proxy answers 404.
    ///
    /// Default: no route.
    fn route_request(
        &self,
        params: RouteRequestParams,
    ) -> impl Future<Output = Result<RouteRequestResult, HookError>> + Send {
        async move {
            let _ = params;
            Ok(RouteRequestResult::default())
        }
    }
}

adapter!(
    /// A [`RouterPlugin`] being served.
    AsRouter: RouterPlugin as PluginType::Router, {
        AddUpstream => answer_empty(add_upstream),
        RemoveUpstream => answer_empty(remove_upstream),
        RouteRequest => answer(route_request),
    }
);
