//! Phase 7, **respond** to a modifier's direct answer: runs when a `modify_request` hook
//! answered the request itself (nothing is forwarded). The answer goes through the
//! `modify_response` hooks (which see the request as the answering modifier saw it), then to
//! the client; an invalid status is a 500 through `modify_error_response`.
//!
//! The backend's responses go to the client from `modify_response`, errors from
//! `modify_error`; every response then passes the record phase.

use gatekeeper_rpc::methods::{Method as _, ModifyResponse};
use http::Response;

use super::modify_request::Answer;
use super::{Exchange, Reject};
use crate::body::ProxyBody;
use crate::view::{response_from_view, Kind};

impl Exchange<'_> {
    /// Answers with a response a plugin produced in `modify_request`, after `modify_response`.
    pub(super) async fn respond(&mut self, answer: Answer) -> Response<ProxyBody> {
        let (request, response) = answer;
        let hooks = self.hooks;
        let response = if hooks.chain.has_hook(ModifyResponse::NAME) {
            let phases = self.record.as_mut().map(|r| &mut r.phases.modifiers);
            match hooks
                .chain
                .modify_response(&request, response, phases)
                .await
            {
                Ok((response, _)) => response,
                Err(failure) => {
                    self.sent = Some(request);
                    return self.modify_error(Reject::Failed(failure)).await;
                }
            }
        } else {
            response
        };
        let status = response.status;
        match response_from_view(response) {
            Some(response) => response,
            None => {
                self.sent = Some(request);
                let message = format!("a plugin set the invalid status {status}");
                self.modify_error(Reject::Error(Kind::Internal, message))
                    .await
            }
        }
    }
}
