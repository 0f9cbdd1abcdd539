//! [`BoundProxy`]: the proxy with its listeners bound ([`bind`]), and serving until shutdown
//! (the accept loops, the active health checks, then the drain of connections and upgraded
//! connections).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::accept::Serving;
use super::connection::Protocols;
use super::plan::check;
use super::{ListenerControl, ListenerError};
use crate::client_limits::ClientLimits;
use crate::forward::BackendClient;
use crate::forwarded::ForwardedHeaders;
use crate::hooks::{HooksSwitch, SwappableHooks};
use crate::service::Shared;
use crate::{Proxy, ProxyError};

/// How long shutdown waits, after the last connection closed, for HTTP/2 streams to see it.
const STREAMS_AFTER_CUT: Duration = Duration::from_secs(1);

/// The proxy with all its listeners bound, ready to serve.
pub struct BoundProxy {
    listeners: ListenerControl,
    shared: Arc<Shared>,
    protocols: Arc<Protocols>,
    max_connections: usize,
    shutdown_grace: Duration,
}

impl std::fmt::Debug for BoundProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundProxy")
            .field("listeners", &self.local_addrs())
            .finish_non_exhaustive()
    }
}

/// Binds the proxy's listeners (the listener plan from an empty set) and builds what serving
/// shares. Errors are those of a failed start: [`ProxyError::Bind`] for an address, a
/// [`ProxyError::Tls`] for a certificate file.
pub(crate) async fn bind(proxy: Proxy) -> Result<BoundProxy, ProxyError> {
    let config = proxy.config;
    check(&config.listeners, &config.tls)?;
    let listeners =
        ListenerControl::start(config.listeners.clone(), config.tls.clone(), proxy.sockets)
            .await
            .map_err(|error| match error {
                ListenerError::Bind { name, addr, source } => {
                    ProxyError::Bind { name, addr, source }
                }
                ListenerError::Tls(error) => ProxyError::Tls(error),
                other => ProxyError::Listeners(other),
            })?;
    let forwarded = ForwardedHeaders::new(&config.forwarded)?;
    // Checked by `ProxyConfig::validate`; a config that skipped it sets none.
    let response_headers =
        crate::tls::settings::response_headers(&config.response_headers).unwrap_or_default();
    Ok(BoundProxy {
        listeners,
        shared: Arc::new(
            Shared::new(
                proxy.registry,
                SwappableHooks::new(proxy.hooks, config.max_plugin_body),
                proxy.balancer,
                proxy.metrics.clone(),
                BackendClient::new(
                    proxy.metrics.clone(),
                    config.connect_timeout,
                    config.max_header_bytes,
                ),
                config.default_timeout,
                config.connect_timeout,
            )
            .with_forwarded(forwarded)
            .with_response_headers(response_headers)
            .with_client_limits(ClientLimits::new(&config)),
        ),
        protocols: Arc::new(Protocols::new(&config)),
        max_connections: config.max_connections.clamp(1, Semaphore::MAX_PERMITS),
        shutdown_grace: config.shutdown_grace,
    })
}

impl BoundProxy {
    /// The bound addresses, in the order of the configured listeners (useful with port 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .local_addrs()
            .into_iter()
            .map(|(_, addr)| addr)
            .collect()
    }

    /// The bound address of the named listener.
    pub fn local_addr(&self, name: &str) -> Option<SocketAddr> {
        self.listeners
            .local_addrs()
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, addr)| addr)
    }

    /// A handle that adds, removes and changes listeners, before or while the proxy serves
    /// (see [`ListenerControl::apply`]).
    pub fn listener_control(&self) -> ListenerControl {
        self.listeners.clone()
    }

    /// A handle that replaces the modifiers, router and loadbalancer plugins while the proxy
    /// serves (see [`HooksSwitch::replace`]); the initial ones are those given to [`Proxy`].
    pub fn hooks_switch(&self) -> HooksSwitch {
        HooksSwitch::new(self.shared.hooks.clone())
    }

    /// Serves until `shutdown` completes; then stops accepting, asks open connections to close
    /// after their in-flight request, and waits for them up to the shutdown grace period before
    /// dropping the rest.
    /// Listeners added while serving (see [`ListenerControl::apply`]) are shut down the same
    /// way, and so are removed listeners still draining. Then upgraded (WebSocket) connections
    /// get what is left of the grace period to close. This returns once all are done (the
    /// upgraded connections still open then end when the runtime stops).
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let _health =
            crate::health::spawn_checker(self.shared.registry.clone(), self.shared.metrics.clone());
        let limit = Arc::new(Semaphore::new(self.max_connections));
        let serving = Serving {
            shared: self.shared.clone(),
            protocols: self.protocols.clone(),
            limit,
            grace: self.shutdown_grace,
        };
        // When shutdown began: upgraded connections get what is left of the grace period.
        let began = Arc::new(std::sync::OnceLock::new());
        let shutdown = {
            let began = began.clone();
            async move {
                shutdown.await;
                let _ = began.set(Instant::now());
            }
        };
        self.listeners.serve(serving, shutdown).await;
        // The cut connections' HTTP/2 streams end at their next poll; their records must be
        // in before the final flush.
        let streams = &self.protocols.http2_streams;
        streams.close();
        if tokio::time::timeout(STREAMS_AFTER_CUT, streams.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                open = streams.len(),
                "HTTP/2 streams still open after the cut"
            );
        }
        let upgraded = &self.shared.upgraded;
        upgraded.close();
        if !upgraded.is_empty() {
            let deadline = began.get().copied().unwrap_or_else(Instant::now) + self.shutdown_grace;
            tracing::info!(
                open = upgraded.len(),
                "waiting for upgraded connections to close"
            );
            if tokio::time::timeout_at(deadline, upgraded.wait())
                .await
                .is_err()
            {
                tracing::warn!(
                    open = upgraded.len(),
                    "shutdown grace period over: closing upgraded connections"
                );
            }
        }
    }
}
