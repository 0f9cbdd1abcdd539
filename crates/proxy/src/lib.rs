//! gatekeeper's HTTP side: listeners, the request pipeline, the registry snapshot, the
//! built-in router and load balancers, the backend client pool, and the metrics pipeline.
//!
//! The proxy does not know how plugins run: it calls them through traits the gatekeeper binary
//! implements on top of the plugin host (the plugin port [`Plugin`] for modifiers, router and
//! loadbalancer plugins, and [`MetricsExporter`]); upstream plugins change the [`Registry`]
//! through its methods, and router and loadbalancer plugins follow it through
//! [`Registry::subscribe`].
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
mod connect;
mod connection;
pub mod forward;
pub mod forwarded;
pub mod health;
mod hooks;
mod listeners;
pub mod metrics;
pub mod modifier;
mod pipeline;
pub mod port;
pub mod registry;
mod request_checks;
mod retry;
pub mod router;
mod server;
pub mod service;
mod timing;
mod tls;
mod upgrade;
mod view;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use balancer::{Balancer, BalancerKind, BuiltinBalancer, RandomBalancer};
pub use forwarded::{ForwardedConfig, ForwardedMode, HostHeader};
pub use hooks::{Hooks, HooksSwitch, ReplacedHooks};
pub use listeners::{ListenerChanges, ListenerControl, ListenerError};
pub use metrics::{MetricKind, Metrics, MetricsConfig, MetricsExporter};
pub use modifier::DEFAULT_MAX_PLUGIN_BODY;
pub use port::policy::HookFailure;
pub use port::warnings::WARNING_INTERVAL;
pub use port::{FailurePolicy, HookError, Parsed, Plugin, RawCall};
pub use registry::{Registry, RegistryChange, RegistryError, Snapshot};
pub use server::BoundProxy;
pub use tls::{check_certificates, TlsCertificate, TlsError};

/// A named listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    /// The listener's name (upstreams' `protocols` refer to it; plugins see it).
    pub name: String,
    /// The address to bind.
    pub addr: SocketAddr,
}

/// The proxy's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    /// The listeners (plain HTTP/1.1, or TLS with HTTP/1.1 and HTTP/2 when `tls` has
    /// certificates for them).
    pub listeners: Vec<ListenerConfig>,
    /// Certificates of the TLS listeners (several for one listener: chosen by SNI, the first
    /// is the default). Default: none.
    pub tls: Vec<TlsCertificate>,
    /// Time allowed for a backend to answer with headers when the upstream sets no
    /// `timeout_ms` (default 30s).
    pub default_timeout: Duration,
    /// Time allowed to open a backend connection (and to wait for a connection slot) when the
    /// upstream sets no `connect_timeout_ms` (default 5s).
    pub connect_timeout: Duration,
    /// Time allowed for a client to send a request's head, from its first byte (for a
    /// connection's first request: from the connection's start; on TLS listeners the handshake
    /// gets this time too). Late heads are answered with 408 (default 10s).
    pub header_read_timeout: Duration,
    /// A client connection with no request in flight for this long is closed (default 60s).
    pub keepalive_idle: Duration,
    /// Largest request head (request line and headers) in bytes; larger ones get 431
    /// (default 64 KiB).
    pub max_header_bytes: usize,
    /// Client connections served at once over all listeners (default 10000). At the limit, each
    /// listener holds one more accepted connection until one closes; the next ones wait in the
    /// kernel's listen backlog.
    pub max_connections: usize,
    /// How long in-flight connections may finish after shutdown is requested (default 10s).
    pub shutdown_grace: Duration,
    /// Forwarding failures in a row that eject a backend (passive health) when its upstream's
    /// `passive_health` sets none (default 3; 0 disables).
    pub passive_health_failures: u32,
    /// How long an ejected backend gets no new requests when its upstream's `passive_health`
    /// sets no `cooldown_ms` (default 10s).
    pub passive_health_cooldown: Duration,
    /// The largest body sent to a modifier that wants bodies (default 1 MiB,
    /// [`DEFAULT_MAX_PLUGIN_BODY`]): a larger request body is answered with 413, a larger
    /// response body streams past the plugins (`body_omitted`).
    pub max_plugin_body: usize,
    /// The `X-Forwarded-*` and `Via` headers added to forwarded requests (default: append,
    /// `Via: 1.1 gatekeeper`).
    pub forwarded: ForwardedConfig,
}

impl Default for ProxyConfig {
    fn default() -> Self {
        ProxyConfig {
            listeners: Vec::new(),
            tls: Vec::new(),
            default_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            header_read_timeout: Duration::from_secs(10),
            keepalive_idle: Duration::from_secs(60),
            max_header_bytes: 64 * 1024,
            max_connections: 10_000,
            shutdown_grace: Duration::from_secs(10),
            passive_health_failures: health::DEFAULT_PASSIVE_FAILURES,
            passive_health_cooldown: health::DEFAULT_PASSIVE_COOLDOWN,
            max_plugin_body: DEFAULT_MAX_PLUGIN_BODY,
            forwarded: ForwardedConfig::default(),
        }
    }
}

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
        server::bind(self).await
    }
}
