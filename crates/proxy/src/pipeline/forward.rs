//! Phase 5, **forward**: runs once a backend is picked. Sends the request to it: the parts
//! get the backend's URI (its base path, then the backend path: the client's path without
//! the routed prefix, or the one a plugin set), HTTP/1.1, the upstream's `Host` rule, and the
//! upgrade headers when the client asked to switch protocols. The request is counted as in
//! flight on the backend (holding one of its connection slots when it has a limit) until the
//! response body ends, and retried once on another backend after a connect failure
//! ([`crate::retry`]).
//!
//! Answers: the backend's response head and streaming body (hop-by-hop headers stripped,
//! `Via` added), or, for `101 Switching Protocols`, the switched connection (no plugin sees
//! it). Errors: 502 `backend_unreachable`, 504 `timeout`, 503 `no_backend` (all slots busy).
//! When measured: the upstream, backend, connect and response latencies, one upstream record
//! per attempt.
//!
//! There is no plugin hook here.

use std::sync::Arc;

use http::{response, Request, Response, StatusCode, Version};

use super::{Exchange, Reject};
use crate::body::{ProxyBody, RequestBody};
use crate::connect::ConnectTime;
use crate::forward::{backend_uri, client_backend_uri, strip_hop_by_hop};
use crate::metrics::micros;
use crate::registry::{BackendEntry, UpstreamEntry};
use crate::retry::forward_with_retry;
use crate::service::forward_error_kind;
use crate::upgrade;
use crate::view::Kind;

/// What the backend answered.
pub(super) enum Forwarded {
    /// A response head and its streaming body.
    Response(response::Parts, ProxyBody),
    /// The connection switched protocols (finished: no plugin sees it).
    Switched(Response<ProxyBody>),
}

impl Exchange<'_> {
    /// Sends the request to `backend` (or, after a connect failure, another one).
    pub(super) async fn forward(
        &mut self,
        upstream: &Arc<UpstreamEntry>,
        backend: Arc<BackendEntry>,
        body: RequestBody,
    ) -> Result<Forwarded, Reject> {
        let shared = self.shared;
        if self.hooks.chain.has_response_hooks() {
            // Response and error hooks see the request once its parts are gone.
            self.sent = Some(self.request_view(None));
        }
        // The request id the backend gets, for the proxy's own error answers and the record.
        self.request_id = self.request_id();
        let mut parts = std::mem::replace(&mut self.parts, Request::new(()).into_parts().0);
        // The client's URI stays here: a retry aims it at another backend.
        let client_uri = std::mem::take(&mut parts.uri);
        let (backend_path, strip) = (self.backend_path.as_deref(), self.strip);
        let uri_for = |b: &BackendEntry| match backend_path {
            Some(path) => backend_uri(b, path, client_uri.query(), None),
            None => client_backend_uri(b, &client_uri, strip),
        };
        parts.uri = match uri_for(&backend) {
            Ok(uri) => uri,
            Err(e) => {
                let kind = if backend_path.is_some() {
                    Kind::Internal
                } else {
                    Kind::BadRequest
                };
                return Err(Reject::Error(kind, format!("invalid path: {e}")));
            }
        };
        parts.version = Version::HTTP_11;
        upstream.host_header.apply(&mut parts.headers, &backend);
        if let Some(upgrade) = &self.upgrade {
            upgrade.prepare(&mut parts.headers);
        }
        let started = self.now();
        let request = Request::from_parts(parts, body);
        let sending = shared.sending(upstream);
        let forwarded = forward_with_retry(&sending, backend, request, |b| uri_for(b).ok()).await;
        if let (Some(record), Some(started)) = (&mut self.record, started) {
            record.phases.upstream_response_us = micros(started.elapsed());
            record.upstream = Some(upstream.upstream.id.clone());
            record.backend = Some(forwarded.backend.backend.id.clone());
            if let Ok((response, _)) = &forwarded.result {
                record.phases.upstream_connect_us = response
                    .extensions()
                    .get::<ConnectTime>()
                    .map_or(0, ConnectTime::take);
            }
            let attempts = forwarded.attempts.iter().count();
            record.retries = u32::try_from(attempts.saturating_sub(1)).unwrap_or(u32::MAX);
            for attempt in forwarded.attempts.iter() {
                let latency = micros(attempt.elapsed);
                record.record_upstream(&attempt.backend.backend.id, latency, attempt.outcome);
            }
        }
        let (mut response, in_flight) = match forwarded.result {
            Ok(forwarded) => forwarded,
            Err(e) => {
                let backend = &forwarded.backend.backend.id;
                tracing::warn!(upstream = %upstream.upstream.id, %backend, error = %e, "forwarding failed");
                return Err(Reject::Error(forward_error_kind(&e), e.to_string()));
            }
        };
        let version = response.version();
        shared
            .forwarded
            .apply_response(response.headers_mut(), version);
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            return match upgrade::switch(self.upgrade.take(), response, in_flight, &shared.upgraded)
            {
                Some(switched) => Ok(Forwarded::Switched(switched)),
                None => {
                    let message = "backend switched protocols unasked".to_string();
                    Err(Reject::Error(Kind::BackendUnreachable, message))
                }
            };
        }
        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        Ok(Forwarded::Response(
            parts,
            ProxyBody::streamed(body, Some(in_flight)),
        ))
    }
}
