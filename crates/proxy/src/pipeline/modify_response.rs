//! Phase 6, **modify response**: runs when the backend answered (not for a switched protocol),
//! when some modifier declared `modify_response`. The modifiers are called in order, each
//! seeing the previous one's output, with the request as it was forwarded (no body). They may
//! change the status and headers, or replace the body (the backend's is then dropped); an
//! invalid status is a 500. When they all answered with patches, only the headers the patches
//! name are touched on the response. A failing modifier follows its failure policy ([`crate::port`]).
//!
//! Bodies: when a modifier wants the response body, it is read into memory (at most
//! `max_plugin_body` and the upstream's `timeout`; a larger one streams on, with
//! `body_omitted` set).
//!
//! Default (no modifier): the backend's response head and body go to the client as they are.

use std::sync::Arc;
use std::time::Duration;

use gatekeeper_rpc::methods::{Method as _, ModifyResponse};
use gatekeeper_rpc::types::{encode_body, HttpResponse};
use http::{response, Response};
use hyper::body::Body as _;

use super::apply_change::apply_header_changes;
use super::forward::Forwarded;
use super::{Exchange, Reject};
use crate::body::ProxyBody;
use crate::decision_cache::change::HeaderChange;
use crate::modifier::ResponseChange;
use crate::registry::UpstreamEntry;
use crate::view::{headers_from_view, headers_to_view};
use crate::view::{plain, response_from_view, valid_status, Kind};

impl Exchange<'_> {
    /// Runs the `modify_response` hooks on what the backend answered.
    pub(super) async fn modify_response(
        &mut self,
        upstream: &Arc<UpstreamEntry>,
        forwarded: Forwarded,
    ) -> Response<ProxyBody> {
        let (parts, body) = match forwarded {
            Forwarded::Switched(switched) => return switched,
            Forwarded::Response(parts, body) => (parts, body),
        };
        if !self.hooks.chain.has_hook(ModifyResponse::NAME) {
            return Response::from_parts(parts, body);
        }
        // Boxed, as in `modify_request`: the hooks' state stays out of the request's future.
        Box::pin(self.call_response_modifiers(upstream, parts, body)).await
    }

    /// Calls the `modify_response` hooks and applies what they returned.
    async fn call_response_modifiers(
        &mut self,
        upstream: &Arc<UpstreamEntry>,
        parts: response::Parts,
        body: ProxyBody,
    ) -> Response<ProxyBody> {
        let hooks = self.hooks;
        let mut view = HttpResponse::new(parts.status.as_u16(), headers_to_view(&parts.headers));
        let timeout = self.shared.timeout(upstream);
        let body = match self.read_response_body(body, &mut view, timeout).await {
            Ok(body) => body,
            Err(reject) => return self.modify_error(reject).await,
        };
        let sent_body = view.body_base64.clone();
        let request = self.sent_request();
        let phases = self.record.as_mut().map(|r| &mut r.phases.modifiers);
        let modified = hooks.chain.modify_response(&request, view, phases).await;
        // Kept for the error hooks, should the response be refused.
        self.sent = Some(request);
        match modified {
            Err(failure) => self.modify_error(Reject::Failed(failure)).await,
            Ok((_, ResponseChange::Unchanged)) => Response::from_parts(parts, body),
            Ok((_, ResponseChange::Patched { status, headers })) => {
                self.apply_response_patch(parts, body, status, &headers)
                    .await
            }
            Ok((new, ResponseChange::Whole)) => {
                self.apply_response(parts, body, new, sent_body).await
            }
        }
    }

    /// Applies what response patches changed to the parts: the status, and only the headers
    /// they name (the header map is not rebuilt).
    async fn apply_response_patch(
        &mut self,
        mut parts: response::Parts,
        body: ProxyBody,
        status: Option<u16>,
        headers: &[HeaderChange],
    ) -> Response<ProxyBody> {
        if let Some(status) = status {
            let Some(valid) = valid_status(status) else {
                let message = format!("a plugin set the invalid status {status}");
                return self
                    .modify_error(Reject::Error(Kind::Internal, message))
                    .await;
            };
            parts.status = valid;
        }
        apply_header_changes(&mut parts.headers, headers);
        Response::from_parts(parts, body)
    }

    /// Applies the response the modifiers returned.
    async fn apply_response(
        &mut self,
        mut parts: response::Parts,
        body: ProxyBody,
        new: HttpResponse,
        sent_body: Option<String>,
    ) -> Response<ProxyBody> {
        let Some(status) = valid_status(new.status) else {
            let message = format!("a plugin set the invalid status {}", new.status);
            return self
                .modify_error(Reject::Error(Kind::Internal, message))
                .await;
        };
        if new.body.is_some() || new.body_base64 != sent_body {
            // The plugin's body replaces the backend's, which is dropped.
            return response_from_view(new).unwrap_or_else(|| plain(Kind::Internal));
        }
        parts.status = status;
        parts.headers = headers_from_view(&new.headers);
        Response::from_parts(parts, body)
    }

    /// Reads a backend's response body into memory (and `view.body_base64`) when a modifier
    /// wants it and it is at most `max_plugin_body`; a larger one streams on, with
    /// `view.body_omitted` set. Reading it takes at most `timeout`.
    async fn read_response_body(
        &mut self,
        body: ProxyBody,
        view: &mut HttpResponse,
        timeout: Duration,
    ) -> Result<ProxyBody, Reject> {
        let chain = &self.hooks.chain;
        if !chain.wants_body(ModifyResponse::NAME) {
            return Ok(body);
        }
        let limit = chain.max_body();
        if body.size_hint().lower() > limit as u64 {
            view.body_omitted = true;
            return Ok(body);
        }
        match tokio::time::timeout(timeout, body.read_up_to(limit)).await {
            Ok(Ok(Ok(bytes))) => {
                view.body_base64 = Some(encode_body(&bytes));
                Ok(ProxyBody::full(bytes))
            }
            Ok(Ok(Err(streaming))) => {
                view.body_omitted = true;
                Ok(streaming)
            }
            Ok(Err(e)) => {
                let message = format!("cannot read the backend's body: {e}");
                Err(Reject::Error(Kind::BackendUnreachable, message))
            }
            Err(_) => {
                let message = format!("the backend's body took longer than {timeout:?}");
                Err(Reject::Error(Kind::Timeout, message))
            }
        }
    }
}
