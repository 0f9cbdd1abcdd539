//! The body parts of the [`Flow`]: reading a request or response body into memory for the
//! modifiers that want it (up to `max_plugin_body`), and forwarding a body a plugin replaced.
//! Nothing here runs unless some modifier declared it wants a body.

use std::time::Duration;

use bytes::Bytes;
use gatekeeper_rpc::methods::{Method as _, ModifyRequest, ModifyResponse};
use gatekeeper_rpc::types::{decode_body, encode_body, HttpResponse};
use http::header::{self, HeaderValue};
use hyper::body::Body as _;

use super::{Flow, Reject};
use crate::body::{read_limited, LimitedRead, ProxyBody, RequestBody};
use crate::view::Kind;

impl Flow<'_> {
    /// Reads the request body into memory (and the view's `body_base64`) when a modifier wants
    /// it, up to `max_plugin_body`; returns what the view got. A larger body is refused (413)
    /// before anything is forwarded.
    pub(super) async fn read_request_body(
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
        self.for_hooks().0.body_base64 = Some(encoded.clone());
        Ok(Some(encoded))
    }

    /// Takes the request body out of the view after `modify_request`: a plugin that replaced
    /// it (`body_base64` other than `sent`) replaces the forwarded body, with a matching
    /// `Content-Length`.
    pub(super) fn replace_request_body(
        &mut self,
        body: &mut RequestBody,
        sent: Option<String>,
    ) -> Result<(), Reject> {
        let Some(encoded) = self.view.as_mut().and_then(|v| v.body_base64.take()) else {
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

    /// Reads a backend's response body into memory (and `view.body_base64`) when a modifier
    /// wants it and it is at most `max_plugin_body`; a larger one streams on, with
    /// `view.body_omitted` set. Reading it takes at most the upstream's `timeout`.
    pub(super) async fn read_response_body(
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
