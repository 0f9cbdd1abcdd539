//! The request lifecycle: route, `modify_request`, pick a backend, forward, `modify_response`,
//! and error responses (through `modify_error_response`).
//!
//! With no modifiers configured the proxy takes a fast path that never builds the plugin view of
//! a request or response (no JSON-related work at all).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use gatekeeper_rpc::methods::{Method as _, ModifyErrorResponse, ModifyResponse};
use gatekeeper_rpc::types::{HttpRequest, HttpResponse, ProxyError};
use http::request::Parts;
use http::{header, Method, Request, Response, StatusCode, Version};
use http_body_util::{Either, Full};
use hyper::body::Incoming;

use crate::balancer::Balancer;
use crate::forward::{
    backend_uri, forward, headers_from_view, headers_to_view, strip_hop_by_hop, BackendClient,
    ForwardError,
};
use crate::modifier::{text_response, Chain, HookFailure, RequestOutcome};
use crate::registry::{Registry, Snapshot, UpstreamEntry};
use crate::router;

/// The body of responses the proxy sends: a backend's streamed body, or a body the proxy or a
/// plugin produced.
pub type ProxyBody = Either<Incoming, Full<Bytes>>;

/// The kinds of errors the proxy answers itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    NoRoute,
    NoBackend,
    BackendUnreachable,
    Timeout,
    BadRequest,
    Internal,
}

impl Kind {
    fn status(self) -> u16 {
        match self {
            Kind::NoRoute => 404,
            Kind::NoBackend => 503,
            Kind::BackendUnreachable => 502,
            Kind::Timeout => 504,
            Kind::BadRequest => 400,
            Kind::Internal => 500,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Kind::NoRoute => "no_route",
            Kind::NoBackend => "no_backend",
            Kind::BackendUnreachable => "backend_unreachable",
            Kind::Timeout => "timeout",
            Kind::BadRequest => "bad_request",
            Kind::Internal => "internal",
        }
    }

    fn body(self) -> &'static str {
        match self {
            Kind::NoRoute => "no route",
            Kind::NoBackend => "no backend available",
            Kind::BackendUnreachable => "backend unreachable",
            Kind::Timeout => "backend timeout",
            Kind::BadRequest => "bad request",
            Kind::Internal => "internal error",
        }
    }
}

fn forward_error_kind(e: &ForwardError) -> Kind {
    match e {
        ForwardError::Unreachable(_) | ForwardError::Failed(_) => Kind::BackendUnreachable,
        ForwardError::Timeout(_) => Kind::Timeout,
    }
}

/// A plain-text error response built without plugins.
fn plain(kind: Kind) -> Response<ProxyBody> {
    plain_status(kind.status(), kind.body())
}

fn plain_status(status: u16, body: &str) -> Response<ProxyBody> {
    let mut response = Response::new(Either::Right(Full::new(Bytes::from(format!("{body}\n")))));
    *response.status_mut() =
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// A status a plugin may answer with: 200–599 (1xx are not final responses).
fn valid_status(status: u16) -> Option<StatusCode> {
    if (200..=599).contains(&status) {
        StatusCode::from_u16(status).ok()
    } else {
        None
    }
}

/// Builds a response whose body is the view's body (empty when `None`).
fn response_from_view(view: HttpResponse) -> Option<Response<ProxyBody>> {
    let status = valid_status(view.status)?;
    let mut headers = headers_from_view(&view.headers);
    headers.remove(header::CONTENT_LENGTH);
    let body = Full::new(Bytes::from(view.body.unwrap_or_default()));
    let mut response = Response::new(Either::Right(body));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    Some(response)
}

/// The Host header, or the authority of an absolute-form request URI.
fn request_host(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()))
}

/// The upstream a request was routed to, and the length of the stripped `/prefix`, if any.
struct Routed {
    upstream: Arc<UpstreamEntry>,
    strip: Option<usize>,
}

fn prefixless(path: &str, strip: Option<usize>) -> &str {
    match strip {
        Some(n) => path.get(n..).filter(|p| !p.is_empty()).unwrap_or("/"),
        None => path,
    }
}

/// The plugin view of the client's request.
fn build_view(
    parts: &Parts,
    listener: &str,
    remote: SocketAddr,
    routed: Option<&Routed>,
) -> HttpRequest {
    let path = parts.uri.path();
    let strip = routed.and_then(|r| r.strip);
    HttpRequest {
        listener: listener.to_string(),
        remote_addr: remote.to_string(),
        method: parts.method.as_str().to_string(),
        host: request_host(parts).unwrap_or_default().to_string(),
        path: path.to_string(),
        prefix: strip.and_then(|n| path.get(1..n)).map(str::to_string),
        prefixless_path: prefixless(path, strip).to_string(),
        query: parts.uri.query().map(str::to_string),
        headers: headers_to_view(&parts.headers),
        upstream: routed.map(|r| r.upstream.upstream.id.clone()),
        context: Default::default(),
    }
}

/// Everything a request needs, shared by all connections.
pub(crate) struct Shared {
    pub(crate) registry: Arc<Registry>,
    pub(crate) chain: Chain,
    pub(crate) balancer: Arc<dyn Balancer>,
    pub(crate) client: BackendClient,
    pub(crate) default_timeout: Duration,
}

impl Shared {
    fn timeout(&self, upstream: &UpstreamEntry) -> Duration {
        match upstream.upstream.timeout_ms {
            Some(ms) if ms > 0 => Duration::from_millis(ms),
            _ => self.default_timeout,
        }
    }

    /// Handles one request.
    pub(crate) async fn handle(
        &self,
        listener: &str,
        remote: SocketAddr,
        request: Request<Incoming>,
    ) -> Response<ProxyBody> {
        let (mut parts, body) = request.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        let snapshot = self.registry.snapshot();
        let routed = if parts.method == Method::CONNECT {
            None
        } else {
            router::route(&snapshot, listener, parts.uri.path(), request_host(&parts)).map(|m| {
                Routed {
                    upstream: m.upstream,
                    strip: m.prefix.map(|p| p.len() + 1),
                }
            })
        };
        if self.chain.is_empty() {
            self.fast_path(parts, body, routed).await
        } else {
            self.plugin_path(&snapshot, parts, body, routed, listener, remote)
                .await
        }
    }

    /// The path without modifiers: no plugin views are built.
    async fn fast_path(
        &self,
        mut parts: Parts,
        body: Incoming,
        routed: Option<Routed>,
    ) -> Response<ProxyBody> {
        if parts.method == Method::CONNECT {
            return plain(Kind::BadRequest);
        }
        let Some(routed) = routed else {
            return plain(Kind::NoRoute);
        };
        let Some(backend) = self.balancer.pick(&routed.upstream) else {
            tracing::debug!(upstream = %routed.upstream.upstream.id, "no backend");
            return plain(Kind::NoBackend);
        };
        let original = routed
            .strip
            .is_none()
            .then(|| parts.uri.path_and_query())
            .flatten();
        let path = prefixless(parts.uri.path(), routed.strip);
        parts.uri = match backend_uri(&backend, path, parts.uri.query(), original) {
            Ok(uri) => uri,
            Err(e) => {
                tracing::debug!(error = %e, "cannot build backend uri");
                return plain(Kind::BadRequest);
            }
        };
        parts.version = Version::HTTP_11;
        let timeout = self.timeout(&routed.upstream);
        match forward(&self.client, Request::from_parts(parts, body), timeout).await {
            Ok(response) => {
                let (mut parts, body) = response.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                Response::from_parts(parts, Either::Left(body))
            }
            Err(e) => {
                tracing::warn!(upstream = %routed.upstream.upstream.id, backend = %backend.backend.id, error = %e, "forwarding failed");
                plain(forward_error_kind(&e))
            }
        }
    }

    /// The path with modifiers.
    async fn plugin_path(
        &self,
        snapshot: &Snapshot,
        mut parts: Parts,
        body: Incoming,
        routed: Option<Routed>,
        listener: &str,
        remote: SocketAddr,
    ) -> Response<ProxyBody> {
        let view = build_view(&parts, listener, remote, routed.as_ref());
        if parts.method == Method::CONNECT {
            return self
                .error(&view, Kind::BadRequest, "CONNECT is not supported".into())
                .await;
        }
        let Some(routed) = routed else {
            return self
                .error(
                    &view,
                    Kind::NoRoute,
                    "no upstream matches the request".into(),
                )
                .await;
        };
        let (request, changed) = match self.chain.modify_request(view).await {
            RequestOutcome::Forward { request, changed } => (request, changed),
            RequestOutcome::Respond { request, response } => {
                return self.respond(&request, response).await
            }
            RequestOutcome::Failed { request, failure } => {
                return self.fail(&request, failure).await
            }
        };
        let mut upstream = routed.upstream;
        if changed {
            match Method::from_bytes(request.method.as_bytes()) {
                Ok(m) => parts.method = m,
                Err(_) => {
                    let message = format!(
                        "a plugin set the invalid method `{}`",
                        request.method.escape_debug()
                    );
                    return self.error(&request, Kind::Internal, message).await;
                }
            }
            parts.headers = headers_from_view(&request.headers);
            if let Some(id) = request
                .upstream
                .as_deref()
                .filter(|id| *id != upstream.upstream.id)
            {
                match snapshot.upstream(id) {
                    Some(u) => upstream = u.clone(),
                    None => {
                        let message = format!("a plugin chose the unknown upstream `{id}`");
                        return self.error(&request, Kind::NoRoute, message).await;
                    }
                }
            }
        }
        let Some(backend) = self.balancer.pick(&upstream) else {
            let message = format!("upstream `{}` has no backends", upstream.upstream.id);
            return self.error(&request, Kind::NoBackend, message).await;
        };
        let original = (!changed && routed.strip.is_none())
            .then(|| parts.uri.path_and_query())
            .flatten();
        parts.uri = match backend_uri(
            &backend,
            &request.prefixless_path,
            request.query.as_deref(),
            original,
        ) {
            Ok(uri) => uri,
            Err(e) => {
                let kind = if changed {
                    Kind::Internal
                } else {
                    Kind::BadRequest
                };
                return self
                    .error(&request, kind, format!("invalid path: {e}"))
                    .await;
            }
        };
        parts.version = Version::HTTP_11;
        let timeout = self.timeout(&upstream);
        let response = match forward(&self.client, Request::from_parts(parts, body), timeout).await
        {
            Ok(response) => response,
            Err(e) => {
                tracing::warn!(upstream = %upstream.upstream.id, backend = %backend.backend.id, error = %e, "forwarding failed");
                return self
                    .error(&request, forward_error_kind(&e), e.to_string())
                    .await;
            }
        };
        let (mut parts, body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        if !self.chain.has_hook(ModifyResponse::NAME) {
            return Response::from_parts(parts, Either::Left(body));
        }
        let view = HttpResponse {
            status: parts.status.as_u16(),
            headers: headers_to_view(&parts.headers),
            body: None,
        };
        match self.chain.modify_response(&request, view).await {
            Err(failure) => self.fail(&request, failure).await,
            Ok((_, false)) => Response::from_parts(parts, Either::Left(body)),
            Ok((new, true)) => {
                let Some(status) = valid_status(new.status) else {
                    let message = format!("a plugin set the invalid status {}", new.status);
                    return self.error(&request, Kind::Internal, message).await;
                };
                if new.body.is_some() {
                    // The plugin's body replaces the backend's, which is dropped.
                    return response_from_view(new).unwrap_or_else(|| plain(Kind::Internal));
                }
                parts.status = status;
                parts.headers = headers_from_view(&new.headers);
                Response::from_parts(parts, Either::Left(body))
            }
        }
    }

    /// Answers with a response a plugin produced in `modify_request`, after `modify_response`.
    async fn respond(&self, request: &HttpRequest, response: HttpResponse) -> Response<ProxyBody> {
        let response = if self.chain.has_hook(ModifyResponse::NAME) {
            match self.chain.modify_response(request, response).await {
                Ok((response, _)) => response,
                Err(failure) => return self.fail(request, failure).await,
            }
        } else {
            response
        };
        let status = response.status;
        match response_from_view(response) {
            Some(r) => r,
            None => {
                let message = format!("a plugin set the invalid status {status}");
                self.error(request, Kind::Internal, message).await
            }
        }
    }

    /// Answers for a fail-closed plugin failure.
    async fn fail(&self, request: &HttpRequest, failure: HookFailure) -> Response<ProxyBody> {
        self.finish_error(request, failure.response(), failure.proxy_error())
            .await
    }

    /// Answers with an error of this kind.
    async fn error(
        &self,
        request: &HttpRequest,
        kind: Kind,
        message: String,
    ) -> Response<ProxyBody> {
        tracing::debug!(kind = kind.as_str(), %message, "error response");
        let error = ProxyError {
            kind: kind.as_str().to_string(),
            message,
        };
        self.finish_error(request, text_response(kind.status(), kind.body()), error)
            .await
    }

    /// Runs the `modify_error_response` hooks and builds the response.
    async fn finish_error(
        &self,
        request: &HttpRequest,
        response: HttpResponse,
        error: ProxyError,
    ) -> Response<ProxyBody> {
        let response = if self.chain.has_hook(ModifyErrorResponse::NAME) {
            self.chain
                .modify_error_response(request, response, &error)
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
