//! Phase 6b, **modify error response**: runs whenever the proxy answers with an error of its
//! own instead of a backend's response (no route, no backend, backend unreachable or late, a
//! body over `max_plugin_body`, a plugin failing closed, an invalid plugin answer, ...).
//! When some modifier declared `modify_error_response`, the modifiers are called in order with
//! the error (`kind`, `message`) and the plain-text error response, and may change it; a
//! fail-closed failure here ends the chain with that plugin's failure response. An invalid
//! status from them is a 500.
//!
//! Default (no modifier): the plain-text error response of the error's kind (e.g. 404
//! `no route`), or for a plugin failing closed its status and `plugin `NAME` failed`. No view
//! is built.

use gatekeeper_rpc::methods::{Method as _, ModifyErrorResponse};
use gatekeeper_rpc::types::{HttpRequest, ProxyError};
use http::Response;

use super::{Exchange, Reject};
use crate::body::ProxyBody;
use crate::view::{plain, response_from_view, text_response, Kind};

impl Exchange<'_> {
    /// Answers with an error, through the `modify_error_response` hooks.
    pub(super) async fn modify_error(&mut self, reject: Reject) -> Response<ProxyBody> {
        let hooks = self.hooks;
        let error_hooks = hooks.chain.has_hook(ModifyErrorResponse::NAME);
        let kind = match &reject {
            Reject::Error(kind, _) => kind.as_str(),
            Reject::Failed(_) => "plugin_failed",
        };
        if let Some(record) = &mut self.record {
            record.error = Some(kind);
        }
        self.proxy_error = true;
        let (response, error) = match reject {
            Reject::Error(kind, message) => {
                tracing::debug!(kind = kind.as_str(), %message, "error response");
                if !error_hooks {
                    return plain(kind);
                }
                let error = ProxyError {
                    kind: kind.as_str().to_string(),
                    message,
                };
                (text_response(kind.status(), kind.body()), error)
            }
            Reject::Failed(failure) => (failure.response(), failure.proxy_error()),
        };
        let response = if error_hooks {
            let request = self.sent_request();
            let phases = self.record.as_mut().map(|r| &mut r.phases.modifiers);
            hooks
                .chain
                .modify_error_response(&request, response, &error, phases)
                .await
        } else {
            response
        };
        let status = response.status;
        response_from_view(response).unwrap_or_else(|| {
            tracing::warn!(
                status,
                "a plugin set an invalid status on an error response"
            );
            plain(Kind::Internal)
        })
    }

    /// The request as response and error hooks see it: as it was forwarded (or as the last
    /// modifier saw it), else built from the parts now.
    pub(super) fn sent_request(&mut self) -> HttpRequest {
        match self.sent.take() {
            Some(request) => request,
            None => self.request_view(None),
        }
    }
}
