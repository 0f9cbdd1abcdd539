//! gatekeeper's HTTP side: listeners, the request pipeline, the registry snapshot, the
//! built-in router and load balancers, the backend client pool, and the metrics pipeline.
//!
//! The proxy does not know how plugins run: it calls them through traits the gatekeeper binary
//! implements on top of the plugin host (the plugin port [`Plugin`] for modifiers, router and
//! loadbalancer plugins, and [`MetricsExporter`]); upstream plugins change the [`Registry`]
//! through its methods, and router and loadbalancer plugins follow it through
//! [`Registry::subscribe`].
//!
//! Its settings are [`ProxyConfig`] and [`MetricsConfig`] (see [`config`]): each reads its keys of
//! the config file, holds its defaults and checks its values.
//!
//! A serving proxy's plugins can change without a restart: [`BoundProxy::hooks_switch`] replaces
//! the modifiers, router and loadbalancer plugins as one snapshot ([`Hooks`]; each request keeps
//! the snapshot it started with), and [`Metrics::set_exporters`] replaces the metrics exporters.
//!
//! One request is one `Exchange` passing through the phases of the private `pipeline` module
//! (one file each under `src/pipeline/`):
//!
//! ```text
//! accept ─► request checks ─► route (router / router plugin) ─► modify request (modifier::Chain)
//!   ─► pick backend (balancer / loadbalancer plugin) ─► forward (forward, retry)
//!   ─► modify response  |  on error: modify error response  ─► respond ─► record (Metrics)
//! ```

pub mod balancer;
mod body;
mod client_limits;
pub mod config;
mod connect;
mod connection_info;
pub mod decision_cache;
pub mod forward;
pub mod forwarded;
#[doc(hidden)]
pub mod fuzzing;
pub mod health;
mod hooks;
mod listener;
pub mod metrics;
pub mod modifier;
mod pipeline;
pub mod port;
pub mod registry;
mod request_checks;
mod retry;
pub mod router;
pub mod service;
mod timing;
mod tls;
mod upgrade;
pub mod upstream_settings;
mod view;

use std::net::SocketAddr;
use std::sync::Arc;

pub use balancer::{Balancer, BalancerKind, BuiltinBalancer, RandomBalancer};
pub use config::{addresses_clash, ConfigError, FailureConfig, ListenerConfig, ProxyConfig};
pub use decision_cache::{DecisionCache, DecisionCacheStats};
pub use forwarded::{ForwardedConfig, ForwardedMode, HostHeader};
pub use gatekeeper_rpc::warnings::WARNING_INTERVAL;
pub use hooks::{Hooks, HooksSwitch, ReplacedHooks};
pub use listener::{BoundProxy, ListenerChanges, ListenerControl, ListenerError};
pub use metrics::{ListenerStats, MetricKind, Metrics, MetricsConfig, MetricsExporter};
pub use modifier::DEFAULT_MAX_PLUGIN_BODY;
pub use port::policy::HookFailure;
pub use port::{FailurePolicy, HookError, Parsed, Plugin, RawCall};
pub use registry::stored_form;
pub use registry::{
    BatchError, BatchSummary, RefusedOp, Registry, RegistryChange, RegistryError, RegistryOp,
    Snapshot,
};
pub use tls::client_cert::CLIENT_CERT_SUBJECT;
pub use tls::settings::{ClientAuth, TlsMinVersion, TlsSettingError, TlsSettings};
pub use tls::{check_certificates, TlsCertificate, TlsError};

/// Errors starting the proxy.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// A listener could not be bound.
    #[error("cannot listen on {addr} (listener `{name}`): {source}")]
    Bind {
        /// The listener name.
        name: String,
        /// The address.
        addr: SocketAddr,
        /// The cause (e.g. address in use).
        #[source]
        source: std::io::Error,
    },
    /// The listener set is invalid: none, two with one name, or certificates for a listener
    /// that is not configured ([`ListenerError::NoListeners`], [`ListenerError::DuplicateListener`],
    /// [`ListenerError::Tls`]).
    #[error(transparent)]
    Listeners(#[from] ListenerError),
    /// A TLS listener's certificate or key cannot be used.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The `via` setting is not a valid `Via` name.
    #[error(transparent)]
    InvalidVia(#[from] forwarded::InvalidVia),
}

/// The proxy, configured but not yet listening.
pub struct Proxy {
    config: ProxyConfig,
    registry: Arc<Registry>,
    /// The hooks requests start with.
    hooks: Hooks,
    balancer: Arc<dyn Balancer>,
    metrics: Metrics,
    /// Sockets bound by someone else (systemd socket activation), by listener name.
    sockets: Vec<(String, std::net::TcpListener)>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("config", &self.config)
            .field("hooks", &self.hooks)
            .field("metrics", &self.metrics)
            .finish_non_exhaustive()
    }
}

impl Proxy {
    /// A proxy reading upstreams from `registry` and calling `modifiers` in this order, with the
    /// built-in router and balancers ([`BuiltinBalancer`]) and metrics disabled.
    pub fn new(
        config: ProxyConfig,
        registry: Arc<Registry>,
        modifiers: Vec<Arc<dyn Plugin>>,
    ) -> Self {
        registry.set_passive_health_defaults(health::PassivePolicy {
            failures: config.passive_health_failures,
            cooldown: config.passive_health_cooldown,
        });
        Proxy {
            config,
            registry,
            hooks: Hooks {
                modifiers,
                router: None,
                loadbalancer: None,
            },
            balancer: Arc::new(BuiltinBalancer),
            metrics: Metrics::disabled(),
            sockets: Vec::new(),
        }
    }

    /// Replaces the built-in balancer (the one used without a loadbalancer plugin, or when it
    /// fails open) for every upstream.
    pub fn with_balancer(mut self, balancer: Arc<dyn Balancer>) -> Self {
        self.balancer = balancer;
        self
    }

    /// Starts with these hooks (modifiers, router and loadbalancer plugins) instead of those
    /// given so far; [`BoundProxy::hooks_switch`] replaces them while serving.
    pub fn with_hooks(mut self, hooks: Hooks) -> Self {
        self.hooks = hooks;
        self
    }

    /// Routes requests with a router plugin (see [`port`] for failures and availability).
    pub fn with_router(mut self, router: Arc<dyn Plugin>) -> Self {
        self.hooks.router = Some(router);
        self
    }

    /// Picks backends with a loadbalancer plugin (see [`port`] for failures and
    /// availability).
    pub fn with_loadbalancer(mut self, loadbalancer: Arc<dyn Plugin>) -> Self {
        self.hooks.loadbalancer = Some(loadbalancer);
        self
    }

    /// Records request, upstream and listener metrics into `metrics`. The caller keeps a clone
    /// and calls [`Metrics::shutdown`] after [`BoundProxy::serve`] returns.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    /// Serves the listener `name` on `socket`, already bound and listening (e.g. passed by
    /// systemd socket activation), instead of binding its configured address. A socket for a
    /// name that is not a configured listener is dropped when the proxy binds.
    pub fn with_listener_socket(
        mut self,
        name: impl Into<String>,
        socket: std::net::TcpListener,
    ) -> Self {
        self.sockets.push((name.into(), socket));
        self
    }

    /// Binds every listener, so that errors such as "address in use" surface before serving.
    pub async fn bind(self) -> Result<BoundProxy, ProxyError> {
        listener::bind(self).await
    }
}
