//! The request lifecycle's entry point: `Shared` holds what every request needs and picks
//! between two paths.
//!
//! Every request first passes [`check_request`](crate::request_checks) (Host rules: 400; a
//! transfer coding other than chunked: 501; the connection is then closed) and has the dot
//! segments removed from its path.
//!
//! Each request loads the current hooks snapshot once ([`Hooks`](crate::Hooks), swapped by a
//! [`HooksSwitch`](crate::HooksSwitch)) and reads once whether some metrics exporter wants
//! request, upstream or event records (exporters swapped by [`Metrics::set_exporters`]). Both
//! can change while the proxy serves; a request keeps what it saw when it arrived.
//!
//! - The **fast path** runs when the snapshot has no modifiers, no router or loadbalancer
//!   plugin, and no metrics exporter wants request, upstream or event records: built-in routing
//!   and balancing, no plugin views (no JSON-related work), no timing.
//! - Otherwise the **full path** (the private `lifecycle` module): route (router plugin or built-in),
//!   `modify_request`, pick a backend (loadbalancer plugin or built-in), forward,
//!   `modify_response`, error responses through `modify_error_response`, and metrics.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;
use http::{Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use tokio_util::task::TaskTracker;

use crate::balancer::Balancer;
pub use crate::body::ProxyBody;
use crate::body::RequestBody;
pub(crate) use crate::connection_info::ConnectionInfo;
use crate::forward::{client_backend_uri, strip_hop_by_hop, BackendClient, ForwardError};
use crate::forwarded::ForwardedHeaders;
use crate::hooks::SwappableHooks;
use crate::lifecycle::Flow;
use crate::metrics::Metrics;
use crate::registry::{BackendEntry, Registry, UpstreamEntry};
use crate::request_checks::check_request;
use crate::retry::{forward_with_retry, Sending};
use crate::router;
use crate::upgrade::{self, UpgradeRequest};
use crate::view::{plain, request_host, Kind};

pub(crate) fn forward_error_kind(e: &ForwardError) -> Kind {
    match e {
        ForwardError::Unreachable(_) | ForwardError::Failed(_) => Kind::BackendUnreachable,
        ForwardError::Timeout(_) => Kind::Timeout,
        ForwardError::Busy { .. } => Kind::NoBackend,
    }
}

/// Everything a request needs, shared by all connections.
pub(crate) struct Shared {
    pub(crate) registry: Arc<Registry>,
    /// The modifiers, router and loadbalancer plugins: one snapshot per request.
    pub(crate) hooks: Arc<SwappableHooks>,
    pub(crate) balancer: Arc<dyn Balancer>,
    pub(crate) metrics: Metrics,
    pub(crate) client: BackendClient,
    pub(crate) default_timeout: Duration,
    /// Connect timeout of upstreams that set no `connect_timeout_ms`.
    pub(crate) connect_timeout: Duration,
    /// The `X-Forwarded-*` and `Via` headers to add.
    pub(crate) forwarded: ForwardedHeaders,
    /// The upgraded (WebSocket) connections being spliced, waited for at shutdown.
    pub(crate) upgraded: TaskTracker,
}

impl Shared {
    /// Builds the shared state.
    pub(crate) fn new(
        registry: Arc<Registry>,
        hooks: SwappableHooks,
        balancer: Arc<dyn Balancer>,
        metrics: Metrics,
        client: BackendClient,
        default_timeout: Duration,
        connect_timeout: Duration,
    ) -> Self {
        Shared {
            registry,
            hooks: Arc::new(hooks),
            balancer,
            metrics,
            client,
            default_timeout,
            connect_timeout,
            forwarded: ForwardedHeaders::default(),
            upgraded: TaskTracker::new(),
        }
    }

    /// Sets the forwarding headers to add (default: [`crate::ForwardedConfig::default`]).
    pub(crate) fn with_forwarded(mut self, forwarded: ForwardedHeaders) -> Self {
        self.forwarded = forwarded;
        self
    }

    pub(crate) fn timeout(&self, upstream: &UpstreamEntry) -> Duration {
        match upstream.upstream.timeout_ms {
            Some(ms) if ms > 0 => Duration::from_millis(ms),
            _ => self.default_timeout,
        }
    }

    pub(crate) fn connect_timeout(&self, upstream: &UpstreamEntry) -> Duration {
        match upstream.upstream.connect_timeout_ms {
            Some(ms) if ms > 0 => Duration::from_millis(ms),
            _ => self.connect_timeout,
        }
    }

    /// How requests to `upstream` are sent (see [`forward_with_retry`]).
    pub(crate) fn sending<'a>(&'a self, upstream: &'a UpstreamEntry) -> Sending<'a> {
        Sending {
            client: &self.client,
            balancer: &*self.balancer,
            upstream,
            timeout: self.timeout(upstream),
            connect_timeout: self.connect_timeout(upstream),
            metrics: &self.metrics,
        }
    }

    /// Handles one request that arrived on `listener` (over TLS when `tls`).
    pub(crate) async fn handle(
        &self,
        connection: &ConnectionInfo,
        request: Request<Incoming>,
    ) -> Response<ProxyBody> {
        let (listener, remote): (&str, SocketAddr) = (&connection.listener, connection.remote);
        let (mut parts, body) = request.into_parts();
        if let Err(rejection) = check_request(&mut parts) {
            tracing::debug!(%remote, reason = rejection.reason(), "request refused");
            return rejection.response();
        }
        let upgrade = UpgradeRequest::detect(&mut parts);
        strip_hop_by_hop(&mut parts.headers);
        self.forwarded
            .apply(&mut parts, remote.ip(), connection.tls);
        let hooks = self.hooks.load();
        let measure = self.metrics.measures_requests();
        if hooks.is_empty() && !measure {
            drop(hooks);
            self.fast_path(parts, body, listener, upgrade).await
        } else {
            // The request keeps this snapshot until it is answered, across awaits.
            let hooks = arc_swap::Guard::into_inner(hooks);
            Flow::new(self, &hooks, measure, listener, remote, parts)
                .with_upgrade(upgrade)
                .run(body)
                .await
        }
    }

    /// The path without plugins or metrics: no plugin views are built, nothing is timed.
    async fn fast_path(
        &self,
        mut parts: Parts,
        body: Incoming,
        listener: &str,
        upgrade: Option<UpgradeRequest>,
    ) -> Response<ProxyBody> {
        if parts.method == Method::CONNECT {
            return plain(Kind::BadRequest);
        }
        let snapshot = self.registry.snapshot();
        let Some(routed) =
            router::route(&snapshot, listener, parts.uri.path(), request_host(&parts))
        else {
            return plain(Kind::NoRoute);
        };
        let upstream = routed.upstream;
        let strip = routed.prefix.map(|p| p.len() + 1);
        let Some(backend) = self.balancer.pick(&upstream) else {
            tracing::debug!(upstream = %upstream.upstream.id, "no backend");
            return plain(Kind::NoBackend);
        };
        // The client's URI stays here: a retry aims it at another backend.
        let client_uri = std::mem::take(&mut parts.uri);
        let uri_for = |b: &BackendEntry| client_backend_uri(b, &client_uri, strip);
        parts.uri = match uri_for(&backend) {
            Ok(uri) => uri,
            Err(e) => {
                tracing::debug!(error = %e, "cannot build backend uri");
                return plain(Kind::BadRequest);
            }
        };
        parts.version = Version::HTTP_11;
        upstream.host_header.apply(&mut parts.headers, &backend);
        if let Some(upgrade) = &upgrade {
            upgrade.prepare(&mut parts.headers);
        }
        let request = Request::from_parts(parts, RequestBody::new(body, None));
        let uri_for = |b: &BackendEntry| uri_for(b).ok();
        let forwarded =
            forward_with_retry(&self.sending(&upstream), backend, request, uri_for).await;
        match forwarded.result {
            Ok((mut response, in_flight)) => {
                let version = response.version();
                self.forwarded
                    .apply_response(response.headers_mut(), version);
                if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                    return upgrade::switch(upgrade, response, in_flight, &self.upgraded)
                        .unwrap_or_else(|| plain(Kind::BackendUnreachable));
                }
                let (mut parts, body) = response.into_parts();
                strip_hop_by_hop(&mut parts.headers);
                Response::from_parts(parts, ProxyBody::streamed(body, Some(in_flight)))
            }
            Err(e) => {
                tracing::warn!(upstream = %upstream.upstream.id, backend = %forwarded.backend.backend.id, error = %e, "forwarding failed");
                plain(forward_error_kind(&e))
            }
        }
    }
}
