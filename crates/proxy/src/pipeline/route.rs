//! Phase 2, **route**: runs after the request checks. Picks the request's upstream.
//!
//! - With a router plugin (`route_request`), its decision: an upstream id (unknown: 404
//!   `no_route`), "none" (404 `no_route`), optionally a `prefixless_path` for the backend (else
//!   the whole client path) and a changed request, applied to the parts at once. When it fails
//!   or is not available, its failure policy applies ([`crate::port`]): fail-open falls back to
//!   the default, fail-closed answers.
//! - Default: the built-in router ([`crate::router::route`]): listener, host, longest prefix;
//!   the matched `/prefix` is stripped from the path the backend gets. No match: 404.
//!
//! May change: the upstream, the backend path, and (router plugin) the whole request.

use gatekeeper_rpc::methods::{RouteRequest, RouteRequestParams, RouteRequestResult};
use gatekeeper_rpc::types::HttpRequest;

use super::{Exchange, Reject};
use crate::decision_cache::change::RequestChange;
use crate::router;
use crate::router::request_host;
use crate::view::Kind;

impl Exchange<'_> {
    /// Routes with the router plugin (when available and it succeeds) or the built-in router.
    pub(super) async fn route(&mut self) -> Result<(), Reject> {
        if let Some(router) = &self.hooks.router {
            let params = RouteRequestParams {
                request: self.request_view(None),
            };
            let routed = router
                .call::<RouteRequest>(&params)
                .await
                .map_err(Reject::Failed)?;
            if let Some(result) = routed {
                return self.apply_route(router.name(), &params.request, result);
            }
        }
        let routed = router::route(
            &self.snapshot,
            self.listener,
            self.parts.uri.path(),
            request_host(&self.parts),
        );
        let Some(routed) = routed else {
            let message = "no upstream matches the request".to_string();
            return Err(Reject::Error(Kind::NoRoute, message));
        };
        self.strip = routed.prefix.map(|p| p.len() + 1);
        self.upstream = Some(routed.upstream);
        Ok(())
    }

    /// Applies a router plugin's decision; a request it returned is applied as what changed
    /// from `sent` (as modifiers' results are).
    fn apply_route(
        &mut self,
        plugin: &str,
        sent: &HttpRequest,
        result: RouteRequestResult,
    ) -> Result<(), Reject> {
        let Some(id) = result.upstream else {
            let message = format!("router `{plugin}` found no upstream");
            return Err(Reject::Error(Kind::NoRoute, message));
        };
        let Some(upstream) = self.snapshot.upstream(&id).cloned() else {
            let message = format!("router `{plugin}` chose the unknown upstream `{id}`");
            return Err(Reject::Error(Kind::NoRoute, message));
        };
        // The backend path: the router's, else the client's whole path.
        let path = result
            .prefixless_path
            .unwrap_or_else(|| self.parts.uri.path().to_string());
        if let Some(mut request) = result.request {
            request.upstream = Some(id);
            request.prefixless_path = path.clone();
            self.apply_change(&RequestChange::between(sent, &request))?;
        }
        self.upstream = Some(upstream);
        self.backend_path = None;
        self.backend_path = (path != self.backend_path()).then_some(path);
        Ok(())
    }
}
