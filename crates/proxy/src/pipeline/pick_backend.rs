//! Phase 4, **pick backend**: runs after `modify_request`, when the request is to be
//! forwarded. Picks one backend of the routed upstream.
//!
//! - With a loadbalancer plugin (`get_backend`), its decision: a backend id of the upstream, or
//!   "none" (503 `no_backend`). Naming a backend the upstream does not have is a hook failure
//!   ([`HookError::BadResult`]); when it fails or is not available, its failure policy applies
//!   ([`crate::port`]): fail-open falls back to the default, fail-closed answers.
//! - Default: the upstream's built-in balancer ([`crate::Balancer`]); no backend: 503.
//!
//! Changes nothing on the request.

use std::sync::Arc;

use gatekeeper_rpc::methods::{GetBackend, GetBackendParams, Method as _};

use super::{Exchange, Reject};
use crate::port::HookError;
use crate::registry::{BackendEntry, UpstreamEntry};
use crate::view::Kind;

impl Exchange<'_> {
    /// The routed upstream and its backend for this request.
    pub(super) async fn pick_backend(
        &mut self,
    ) -> Result<(Arc<UpstreamEntry>, Arc<BackendEntry>), Reject> {
        let Some(upstream) = self.upstream.clone() else {
            let reject = Reject::Error(Kind::Internal, "request was not routed".into());
            return Err(reject);
        };
        let id = &upstream.upstream.id;
        if let Some(lb) = &self.hooks.loadbalancer {
            let params = GetBackendParams {
                upstream_id: id.clone(),
                request: self.request_view(None),
            };
            let picked = lb.call::<GetBackend>(&params).await;
            match picked.map_err(Reject::Failed)?.map(|r| r.backend_id) {
                Some(None) => {
                    let message = format!("loadbalancer `{}` found no backend", lb.name());
                    return Err(Reject::Error(Kind::NoBackend, message));
                }
                Some(Some(backend)) => match upstream.backend(&backend) {
                    Some(b) => return Ok((upstream.clone(), b.clone())),
                    None => {
                        let what =
                            format!("chose the unknown backend `{backend}` of upstream `{id}`");
                        let error = HookError::BadResult { what };
                        lb.failed(GetBackend::NAME, error).map_err(Reject::Failed)?;
                    }
                },
                None => {}
            }
        }
        match self.shared.balancer.pick(&upstream) {
            Some(backend) => Ok((upstream, backend)),
            None => {
                tracing::debug!(upstream = %id, "no backend");
                let message = format!("upstream `{id}` has no backends");
                Err(Reject::Error(Kind::NoBackend, message))
            }
        }
    }
}
