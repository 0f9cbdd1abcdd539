//! Phase 3, **modify request**: runs after routing, when some modifier declared
//! `modify_request`. The modifiers are called in their configured order, each seeing the
//! previous one's output ([`crate::modifier::Chain`]); any may answer the request directly
//! (then `modify_response` runs on that answer and nothing is forwarded). What they changed
//! (patches, or the differences between the request sent and a whole one returned) is applied
//! to the parts at once, touching only the headers named: method, headers, path and query, backend path,
//! context, upstream. A failing modifier follows its failure policy ([`crate::port`]).
//!
//! Bodies: when a modifier wants the request body, it is read into memory first (at most
//! `max_plugin_body`, else 413 before anything is forwarded) and sent as `body_base64`; a
//! modifier that replaces it replaces the forwarded body, with a matching `Content-Length`.
//!
//! Default (no modifier): nothing happens, no view is built, the body streams.

use bytes::Bytes;
use gatekeeper_rpc::methods::{Method as _, ModifyRequest};
use gatekeeper_rpc::types::{decode_body, encode_body, HttpRequest, HttpResponse};
use http::header::{self, HeaderValue};
use hyper::body::Body as _;

use super::{Exchange, Reject};
use crate::body::{read_limited, LimitedRead, RequestBody};
use crate::modifier::RequestOutcome;
use crate::view::Kind;

/// A modifier's direct answer, and the request as that modifier saw it.
pub(super) type Answer = (HttpRequest, HttpResponse);

impl Exchange<'_> {
    /// Runs the `modify_request` hooks: the body to forward, or a modifier's direct answer.
    ///
    /// The hook calls are boxed: their state (views, the chain's futures) then lives apart from
    /// the request's future, which stays small for requests without such hooks (each nested
    /// await copies its future, and every request's future is moved into hyper's slot).
    pub(super) async fn modify_request(
        &mut self,
        body: RequestBody,
    ) -> Result<Result<RequestBody, Answer>, Reject> {
        if !self.hooks.chain.has_hook(ModifyRequest::NAME) {
            return Ok(Ok(body));
        }
        Box::pin(self.call_request_modifiers(body)).await
    }

    /// Calls the `modify_request` hooks and applies what they returned.
    async fn call_request_modifiers(
        &mut self,
        mut body: RequestBody,
    ) -> Result<Result<RequestBody, Answer>, Reject> {
        let hooks = self.hooks;
        let sent_body = self.read_request_body(&mut body).await?;
        let view = self.request_view(sent_body.clone());
        let phases = self.record.as_mut().map(|r| &mut r.phases.modifiers);
        match hooks.chain.modify_request(view, phases).await {
            RequestOutcome::Forward {
                mut request,
                changed,
                change,
            } => {
                let new_body = request.body_base64.take();
                if changed && !change.is_empty() {
                    self.apply_change(&change)?;
                }
                self.replace_request_body(&mut body, new_body, sent_body)?;
                Ok(Ok(body))
            }
            RequestOutcome::Respond { request, response } => Ok(Err((request, response))),
            RequestOutcome::Failed { request, failure } => {
                self.sent = Some(request);
                Err(Reject::Failed(failure))
            }
        }
    }

    /// Reads the request body into memory when a modifier wants it, up to `max_plugin_body`;
    /// returns it encoded for the view. A larger body is refused (413) before anything is
    /// forwarded.
    async fn read_request_body(
        &mut self,
        body: &mut RequestBody,
    ) -> Result<Option<String>, Reject> {
        let chain = &self.hooks.chain;
        if !chain.wants_body(ModifyRequest::NAME) {
            return Ok(None);
        }
        let limit = chain.max_body();
        let too_large = || {
            let message =
                format!("the request body is larger than max_plugin_body ({limit} bytes)");
            Reject::Error(Kind::BodyTooLarge, message)
        };
        if body.size_hint().lower() > limit as u64 {
            return Err(too_large());
        }
        let bytes = match read_limited(body, limit).await {
            Ok(LimitedRead::Complete(bytes)) => bytes,
            Ok(LimitedRead::Over(_)) => return Err(too_large()),
            Err(e) => {
                let message = format!("cannot read the request body: {e}");
                return Err(Reject::Error(Kind::BadRequest, message));
            }
        };
        let encoded = encode_body(&bytes);
        *body = RequestBody::full(bytes);
        Ok(Some(encoded))
    }

    /// A body a modifier set (`body_base64` other than `sent`) replaces the forwarded body,
    /// with a matching `Content-Length`.
    fn replace_request_body(
        &mut self,
        body: &mut RequestBody,
        new: Option<String>,
        sent: Option<String>,
    ) -> Result<(), Reject> {
        let Some(encoded) = new else {
            return Ok(());
        };
        if Some(&encoded) == sent.as_ref() {
            return Ok(());
        }
        let bytes = decode_body(&encoded).map_err(|e| {
            let message = format!("a plugin set a request body_base64 that is not base64: {e}");
            Reject::Error(Kind::Internal, message)
        })?;
        let headers = &mut self.parts.headers;
        headers.remove(header::TRANSFER_ENCODING);
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
        *body = RequestBody::full(Bytes::from(bytes));
        Ok(())
    }
}
