//! What every request needs, shared by all connections: [`Shared`] (registry, hooks snapshot,
//! balancer, metrics, backend client, timeouts, forwarding headers). The pipeline's entry point,
//! `crate::pipeline::handle`, runs each request with it.
//!
//! Each request loads the current hooks snapshot once ([`Hooks`](crate::Hooks), swapped by a
//! [`HooksSwitch`](crate::HooksSwitch)) and reads once whether some metrics exporter wants
//! request, upstream or event records (exporters swapped by [`Metrics::set_exporters`]). Both
//! can change while the proxy serves; a request keeps what it saw when it arrived. With no
//! hooks and no such exporter, the pipeline builds no plugin views and times nothing.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::task::TaskTracker;

use crate::balancer::Balancer;
pub use crate::body::ProxyBody;
use crate::client_limits::ClientLimits;
use crate::forward::{BackendClient, ForwardError};
use crate::forwarded::ForwardedHeaders;
use crate::hooks::SwappableHooks;
use crate::metrics::Metrics;
use crate::registry::{Registry, UpstreamEntry};
use crate::retry::Sending;
use crate::tls::settings::ResponseHeaders;
use crate::view::Kind;

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
    /// Headers set on every response (`response_headers`).
    pub(crate) response_headers: ResponseHeaders,
    /// The per-client limits (connections, request rate); off by default.
    pub(crate) client_limits: ClientLimits,
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
            response_headers: ResponseHeaders::new(),
            client_limits: ClientLimits::default(),
        }
    }

    /// Sets the per-client limits (default: none).
    pub(crate) fn with_client_limits(mut self, limits: ClientLimits) -> Self {
        self.client_limits = limits;
        self
    }

    /// Sets the forwarding headers to add (default: [`crate::ForwardedConfig::default`]).
    pub(crate) fn with_forwarded(mut self, forwarded: ForwardedHeaders) -> Self {
        self.forwarded = forwarded;
        self
    }

    /// Sets the headers added to every response (default: none).
    pub(crate) fn with_response_headers(mut self, headers: ResponseHeaders) -> Self {
        self.response_headers = headers;
        self
    }

    pub(crate) fn timeout(&self, upstream: &UpstreamEntry) -> Duration {
        upstream.timeout.unwrap_or(self.default_timeout)
    }

    pub(crate) fn connect_timeout(&self, upstream: &UpstreamEntry) -> Duration {
        upstream.connect_timeout.unwrap_or(self.connect_timeout)
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
}
