//! The full request path ([`Flow`]), used when modifiers, a router or loadbalancer plugin, or
//! metrics are configured:
//!
//! 1. **route**: the router plugin if there is one and it is available (else, or when it fails
//!    open, the built-in router);
//! 2. **modify_request** hooks, in order (each may change the request or answer it);
//! 3. **pick a backend**: the loadbalancer plugin if there is one and it is available (else, or
//!    when it fails open, the upstream's built-in balancer);
//! 4. **forward** (counted as in flight on the backend, holding one of its connection slots
//!    when it has a limit, until the response body ends; retried once on another backend after
//!    a connect failure, see [`crate::retry`]);
//! 5. **modify_response** hooks; any error goes through **modify_error_response** instead.
//!
//! The plugin view of the request is built lazily, the first time a plugin needs it. When
//! metrics are on, every phase is timed into a [`RequestRecord`] that the response body
//! finishes.
//!
//! A flow calls the hooks of the one snapshot ([`ActiveHooks`]) loaded when its request arrived,
//! from route to `modify_response` / `modify_error_response`, even if the hooks are replaced
//! meanwhile; whether it is measured is likewise decided once, when it starts.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use gatekeeper_rpc::methods::{
    GetBackend, GetBackendParams, Method as _, ModifyErrorResponse, ModifyRequest, ModifyResponse,
    RouteRequest, RouteRequestParams, RouteRequestResult,
};
use gatekeeper_rpc::metrics::{ModifierPhase, Phases};
use gatekeeper_rpc::types::{HttpRequest, HttpResponse, ProxyError};
use http::request::Parts;
use http::{Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;

use crate::body::{ProxyBody, RequestBody};
use crate::connect::ConnectTime;
use crate::forward::{
    backend_uri, client_backend_uri, headers_from_view, headers_to_view, strip_hop_by_hop,
};
use crate::hooks::ActiveHooks;
use crate::metrics::micros;
use crate::modifier::RequestOutcome;
use crate::port::policy::HookFailure;
use crate::port::HookError;
use crate::registry::{BackendEntry, Snapshot, UpstreamEntry};
use crate::retry::forward_with_retry;
use crate::router;
use crate::service::{forward_error_kind, Shared};
use crate::timing::RequestRecord;
use crate::upgrade::{self, UpgradeRequest};
use crate::view::{
    build_view, plain, prefixless, request_host, response_from_view, text_response, valid_status,
    Kind,
};

mod bodies;

/// Why a request is answered without (further) forwarding.
enum Reject {
    /// The proxy answers with an error of this kind.
    Error(Kind, String),
    /// A fail-closed plugin failed.
    Failed(HookFailure),
}

/// One request on the full path.
pub(crate) struct Flow<'a> {
    shared: &'a Shared,
    /// The hooks this request uses from start to end.
    hooks: &'a ActiveHooks,
    listener: &'a str,
    remote: SocketAddr,
    snapshot: Arc<Snapshot>,
    parts: Parts,
    /// The plugin view, once a plugin needed it.
    view: Option<HttpRequest>,
    /// The upstream, once routed.
    upstream: Option<Arc<UpstreamEntry>>,
    /// Bytes of `/prefix` the built-in router matched.
    strip: Option<usize>,
    /// Whether the backend path and query come from the view (a plugin routed or changed it).
    path_from_view: bool,
    /// Whether a plugin returned a changed request (method and headers come from the view).
    changed: bool,
    record: Option<Box<RequestRecord>>,
    /// The protocol switch the client asked for, if any.
    upgrade: Option<UpgradeRequest>,
}

impl<'a> Flow<'a> {
    /// A flow calling `hooks`, timed into a metrics record when `measure`.
    pub(crate) fn new(
        shared: &'a Shared,
        hooks: &'a ActiveHooks,
        measure: bool,
        listener: &'a str,
        remote: SocketAddr,
        parts: Parts,
    ) -> Self {
        let record =
            measure.then(|| RequestRecord::start(&shared.metrics, listener, remote, &parts));
        Flow {
            shared,
            hooks,
            listener,
            remote,
            snapshot: shared.registry.snapshot(),
            parts,
            view: None,
            upstream: None,
            strip: None,
            path_from_view: false,
            changed: false,
            record,
            upgrade: None,
        }
    }

    /// Passes an upgrade request on to the backend (see [`crate::upgrade`]).
    pub(crate) fn with_upgrade(mut self, upgrade: Option<UpgradeRequest>) -> Self {
        self.upgrade = upgrade;
        self
    }

    /// Handles the request; the response body finishes the metrics record.
    pub(crate) async fn run(mut self, body: Incoming) -> Response<ProxyBody> {
        let counter = self.record.as_ref().map(|r| r.bytes_in.clone());
        let mut response = self.lifecycle(RequestBody::new(body, counter)).await;
        if let Some(mut record) = self.record.take() {
            record.status = response.status().as_u16();
            record.upstream = self.upstream.as_ref().map(|u| u.upstream.id.clone());
            response.body_mut().set_record(record);
        }
        response
    }

    fn now(&self) -> Option<Instant> {
        self.record.is_some().then(Instant::now)
    }

    fn phase(&mut self, started: Option<Instant>, set: impl FnOnce(&mut Phases, u64)) {
        if let (Some(record), Some(started)) = (&mut self.record, started) {
            set(&mut record.phases, micros(started.elapsed()));
        }
    }

    /// The view (built now if needed) and where modifier hooks record their latency.
    fn for_hooks(&mut self) -> (&mut HttpRequest, Option<&mut Vec<ModifierPhase>>) {
        let Flow {
            view,
            parts,
            listener,
            remote,
            upstream,
            strip,
            record,
            ..
        } = self;
        let view = view.get_or_insert_with(|| {
            build_view(parts, listener, *remote, upstream.as_deref(), *strip)
        });
        (view, record.as_mut().map(|r| &mut r.phases.modifiers))
    }

    async fn lifecycle(&mut self, body: RequestBody) -> Response<ProxyBody> {
        if self.parts.method == Method::CONNECT {
            let reject = Reject::Error(Kind::BadRequest, "CONNECT is not supported".into());
            return self.reject(reject).await;
        }
        let started = self.now();
        let routed = self.route().await;
        self.phase(started, |p, us| p.router_us = us);
        if let Err(reject) = routed {
            return self.reject(reject).await;
        }
        let hooks = self.hooks;
        let mut body = body;
        let sent_body = match self.read_request_body(&mut body).await {
            Ok(sent) => sent,
            Err(reject) => return self.reject(reject).await,
        };
        if hooks.chain.has_hook(ModifyRequest::NAME) {
            let (view, phases) = self.for_hooks();
            let view = std::mem::take(view);
            match hooks.chain.modify_request(view, phases).await {
                RequestOutcome::Forward { request, changed } => {
                    self.view = Some(request);
                    self.changed |= changed;
                }
                RequestOutcome::Respond { request, response } => {
                    self.view = Some(request);
                    return self.respond(response).await;
                }
                RequestOutcome::Failed { request, failure } => {
                    self.view = Some(request);
                    return self.reject(Reject::Failed(failure)).await;
                }
            }
        }
        if self.changed {
            if let Err(reject) = self.apply_view() {
                return self.reject(reject).await;
            }
        }
        if let Err(reject) = self.replace_request_body(&mut body, sent_body) {
            return self.reject(reject).await;
        }
        let Some(upstream) = self.upstream.clone() else {
            let reject = Reject::Error(Kind::Internal, "request was not routed".into());
            return self.reject(reject).await;
        };
        let started = self.now();
        let picked = self.pick_backend(&upstream).await;
        self.phase(started, |p, us| p.loadbalancer_us = us);
        match picked {
            Ok(backend) => self.forward(upstream, backend, body).await,
            Err(reject) => self.reject(reject).await,
        }
    }

    /// Routes with the router plugin (when available and it succeeds) or the built-in router.
    async fn route(&mut self) -> Result<(), Reject> {
        if let Some(router) = &self.hooks.router {
            let params = RouteRequestParams {
                request: self.for_hooks().0.clone(),
            };
            let routed = router
                .call::<RouteRequest>(&params)
                .await
                .map_err(Reject::Failed)?;
            if let Some(result) = routed {
                return self.apply_route(router.name(), result);
            }
        }
        let routed = router::route(
            &self.snapshot,
            self.listener,
            self.parts.uri.path(),
            request_host(&self.parts),
        )
        .map(|m| (m.upstream, m.prefix.map(|p| p.len() + 1)));
        let Some((upstream, strip)) = routed else {
            let message = "no upstream matches the request".to_string();
            return Err(Reject::Error(Kind::NoRoute, message));
        };
        if let Some(view) = &mut self.view {
            let path = self.parts.uri.path();
            view.upstream = Some(upstream.upstream.id.clone());
            view.prefix = strip.and_then(|n| path.get(1..n)).map(str::to_string);
            view.prefixless_path = prefixless(path, strip).to_string();
        }
        self.upstream = Some(upstream);
        self.strip = strip;
        Ok(())
    }

    /// Applies a router plugin's decision.
    fn apply_route(&mut self, plugin: &str, result: RouteRequestResult) -> Result<(), Reject> {
        let Some(id) = result.upstream else {
            let message = format!("router `{plugin}` found no upstream");
            return Err(Reject::Error(Kind::NoRoute, message));
        };
        let Some(upstream) = self.snapshot.upstream(&id).cloned() else {
            let message = format!("router `{plugin}` chose the unknown upstream `{id}`");
            return Err(Reject::Error(Kind::NoRoute, message));
        };
        if let Some(request) = result.request {
            self.view = Some(request);
            self.changed = true;
        }
        let path = result
            .prefixless_path
            .unwrap_or_else(|| self.parts.uri.path().to_string());
        let view = self.for_hooks().0;
        view.upstream = Some(id);
        view.prefixless_path = path;
        self.upstream = Some(upstream);
        self.path_from_view = true;
        Ok(())
    }

    /// Takes method, headers and upstream from a view a plugin changed.
    fn apply_view(&mut self) -> Result<(), Reject> {
        let Some(request) = &self.view else {
            return Ok(());
        };
        self.path_from_view = true;
        match Method::from_bytes(request.method.as_bytes()) {
            Ok(m) => self.parts.method = m,
            Err(_) => {
                let method = request.method.escape_debug();
                let message = format!("a plugin set the invalid method `{method}`");
                return Err(Reject::Error(Kind::Internal, message));
            }
        }
        self.parts.headers = headers_from_view(&request.headers);
        let current = self.upstream.as_ref().map(|u| u.upstream.id.as_str());
        if let Some(id) = request
            .upstream
            .as_deref()
            .filter(|id| Some(*id) != current)
        {
            match self.snapshot.upstream(id) {
                Some(u) => self.upstream = Some(u.clone()),
                None => {
                    let message = format!("a plugin chose the unknown upstream `{id}`");
                    return Err(Reject::Error(Kind::NoRoute, message));
                }
            }
        }
        Ok(())
    }

    /// Picks the backend with the loadbalancer plugin (when available and it succeeds) or the
    /// built-in balancer.
    async fn pick_backend(
        &mut self,
        upstream: &Arc<UpstreamEntry>,
    ) -> Result<Arc<BackendEntry>, Reject> {
        let id = &upstream.upstream.id;
        if let Some(lb) = &self.hooks.loadbalancer {
            let params = GetBackendParams {
                upstream_id: id.clone(),
                request: self.for_hooks().0.clone(),
            };
            let picked = lb.call::<GetBackend>(&params).await;
            match picked.map_err(Reject::Failed)?.map(|r| r.backend_id) {
                Some(None) => {
                    let message = format!("loadbalancer `{}` found no backend", lb.name());
                    return Err(Reject::Error(Kind::NoBackend, message));
                }
                Some(Some(backend)) => match upstream.backend(&backend) {
                    Some(b) => return Ok(b.clone()),
                    None => {
                        let error = HookError::BadResult {
                            what: format!(
                                "chose the unknown backend `{backend}` of upstream `{id}`"
                            ),
                        };
                        lb.failed(GetBackend::NAME, error).map_err(Reject::Failed)?;
                    }
                },
                None => {}
            }
        }
        self.shared.balancer.pick(upstream).ok_or_else(|| {
            Reject::Error(Kind::NoBackend, format!("upstream `{id}` has no backends"))
        })
    }

    /// Forwards to the backend, then runs the `modify_response` hooks.
    async fn forward(
        &mut self,
        upstream: Arc<UpstreamEntry>,
        backend: Arc<BackendEntry>,
        body: RequestBody,
    ) -> Response<ProxyBody> {
        let (shared, hooks) = (self.shared, self.hooks);
        if !hooks.chain.is_empty() {
            // Response and error hooks need the view once the request's parts are gone.
            self.for_hooks();
        }
        let mut parts = std::mem::replace(&mut self.parts, Request::new(()).into_parts().0);
        // The client's URI stays here: a retry aims it at another backend.
        let client_uri = std::mem::take(&mut parts.uri);
        let (view, path_from_view, strip) = (&self.view, self.path_from_view, self.strip);
        let uri_for = |b: &BackendEntry| match (view, path_from_view) {
            (Some(v), true) => backend_uri(b, &v.prefixless_path, v.query.as_deref(), None),
            _ => client_backend_uri(b, &client_uri, strip),
        };
        parts.uri = match uri_for(&backend) {
            Ok(uri) => uri,
            Err(e) => {
                let kind = if path_from_view {
                    Kind::Internal
                } else {
                    Kind::BadRequest
                };
                return self
                    .reject(Reject::Error(kind, format!("invalid path: {e}")))
                    .await;
            }
        };
        parts.version = Version::HTTP_11;
        upstream.host_header.apply(&mut parts.headers, &backend);
        if let Some(upgrade) = &self.upgrade {
            upgrade.prepare(&mut parts.headers);
        }
        let started = self.now();
        let request = Request::from_parts(parts, body);
        let sending = shared.sending(&upstream);
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
                let reject = Reject::Error(forward_error_kind(&e), e.to_string());
                return self.reject(reject).await;
            }
        };
        let version = response.version();
        shared
            .forwarded
            .apply_response(response.headers_mut(), version);
        if response.status() == StatusCode::SWITCHING_PROTOCOLS {
            // The upgraded stream is not for plugins: modify_response does not run.
            return match upgrade::switch(self.upgrade.take(), response, in_flight, &shared.upgraded)
            {
                Some(switched) => switched,
                None => {
                    let message = "backend switched protocols unasked".to_string();
                    let reject = Reject::Error(Kind::BackendUnreachable, message);
                    self.reject(reject).await
                }
            };
        }
        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        let body = ProxyBody::streamed(body, Some(in_flight));
        if !hooks.chain.has_hook(ModifyResponse::NAME) {
            return Response::from_parts(parts, body);
        }
        let mut view = HttpResponse::new(parts.status.as_u16(), headers_to_view(&parts.headers));
        let body = match self
            .read_response_body(body, &mut view, shared.timeout(&upstream))
            .await
        {
            Ok(body) => body,
            Err(reject) => return self.reject(reject).await,
        };
        let sent_body = view.body_base64.clone();
        let (request, phases) = self.for_hooks();
        match hooks.chain.modify_response(request, view, phases).await {
            Err(failure) => self.reject(Reject::Failed(failure)).await,
            Ok((_, false)) => Response::from_parts(parts, body),
            Ok((new, true)) => {
                let Some(status) = valid_status(new.status) else {
                    let message = format!("a plugin set the invalid status {}", new.status);
                    return self.reject(Reject::Error(Kind::Internal, message)).await;
                };
                if new.body.is_some() || new.body_base64 != sent_body {
                    // The plugin's body replaces the backend's, which is dropped.
                    return response_from_view(new).unwrap_or_else(|| plain(Kind::Internal));
                }
                parts.status = status;
                parts.headers = headers_from_view(&new.headers);
                Response::from_parts(parts, body)
            }
        }
    }

    /// Answers with a response a plugin produced in `modify_request`, after `modify_response`.
    async fn respond(&mut self, response: HttpResponse) -> Response<ProxyBody> {
        let hooks = self.hooks;
        let response = if hooks.chain.has_hook(ModifyResponse::NAME) {
            let (request, phases) = self.for_hooks();
            match hooks.chain.modify_response(request, response, phases).await {
                Ok((response, _)) => response,
                Err(failure) => return self.reject(Reject::Failed(failure)).await,
            }
        } else {
            response
        };
        let status = response.status;
        match response_from_view(response) {
            Some(r) => r,
            None => {
                let message = format!("a plugin set the invalid status {status}");
                self.reject(Reject::Error(Kind::Internal, message)).await
            }
        }
    }

    /// Answers with an error, through the `modify_error_response` hooks.
    async fn reject(&mut self, reject: Reject) -> Response<ProxyBody> {
        let (response, error, kind) = match reject {
            Reject::Error(kind, message) => {
                tracing::debug!(kind = kind.as_str(), %message, "error response");
                let error = ProxyError {
                    kind: kind.as_str().to_string(),
                    message,
                };
                let response = text_response(kind.status(), kind.body());
                (response, error, kind.as_str())
            }
            Reject::Failed(failure) => (failure.response(), failure.proxy_error(), "plugin_failed"),
        };
        if let Some(record) = &mut self.record {
            record.error = Some(kind);
        }
        let hooks = self.hooks;
        let response = if hooks.chain.has_hook(ModifyErrorResponse::NAME) {
            let (request, phases) = self.for_hooks();
            hooks
                .chain
                .modify_error_response(request, response, &error, phases)
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
}
