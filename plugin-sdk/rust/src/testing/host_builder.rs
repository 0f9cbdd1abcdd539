//! [`HostBuilder`]: a test host's options, and the functions that start one per plugin type
//! ([`modifier`], [`router`], [`loadbalancer`], [`metric`], [`upstream`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use gatekeeper_rpc::methods::PluginType;
use gatekeeper_rpc::types::Object;
use gatekeeper_rpc::{Peer, PeerConfig, PROTOCOL_VERSION};
use serde_json::Value;
use tokio::io::DuplexStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::proxy::{self, ManagerAnswer};
use super::{TestHost, TestHostError, DEFAULT_TIMEOUT, MAX_LINE_BYTES, PIPE_BYTES, TOKEN};
use crate::env::PluginEnv;
use crate::error::ServeError;
use crate::{LoadBalancerPlugin, MetricPlugin, ModifierPlugin, RouterPlugin, UpstreamPlugin};

/// Options of a test host; start one with [`builder`].
pub struct HostBuilder {
    config: Object,
    check: bool,
    timeout: Duration,
    name: String,
    manager: Option<Arc<ManagerAnswer>>,
}

/// A test host with options: `testing::builder().config(json!({...})).modifier(plugin).await`.
pub fn builder() -> HostBuilder {
    HostBuilder {
        config: Object::new(),
        check: false,
        timeout: DEFAULT_TIMEOUT,
        name: "test".to_owned(),
        manager: None,
    }
}

macro_rules! host_fns {
    ($($(#[$doc:meta])* $name:ident: $plugin_trait:ident => $run:ident as $plugin_type:expr;)+) => {
        impl HostBuilder {
            $(
                $(#[$doc])*
                pub async fn $name<P: $plugin_trait>(self, plugin: P) -> Result<TestHost, TestHostError> {
                    self.start($plugin_type, move |io, env| {
                        tokio::spawn(async move { crate::$run(plugin, io, &env).await })
                    })
                    .await
                }
            )+
        }

        $(
            $(#[$doc])*
            ///
            /// With the config map `config` (a JSON object; anything else is an empty map).
            pub async fn $name<P: $plugin_trait>(plugin: P, config: Value) -> Result<TestHost, TestHostError> {
                builder().config(config).$name(plugin).await
            }
        )+
    };
}

host_fns! {
    /// Serves a modifier plugin in a test host: handshake, `configure`, `start`.
    modifier: ModifierPlugin => run_modifier as PluginType::Modifier;
    /// Serves a router plugin in a test host: handshake, `configure`, `start`.
    router: RouterPlugin => run_router as PluginType::Router;
    /// Serves a loadbalancer plugin in a test host: handshake, `configure`, `start`.
    loadbalancer: LoadBalancerPlugin => run_loadbalancer as PluginType::Loadbalancer;
    /// Serves a metric plugin in a test host: handshake, `configure`, `start`.
    metric: MetricPlugin => run_metric as PluginType::Metric;
    /// Serves an upstream plugin in a test host: handshake, `configure`, `start` (its manager
    /// calls answered and recorded).
    upstream: UpstreamPlugin => run_upstream as PluginType::Upstream;
}

impl HostBuilder {
    /// The config map `configure` sends (a JSON object; anything else is an empty map).
    pub fn config(mut self, config: Value) -> Self {
        self.config = match config {
            Value::Object(map) => map,
            _ => Object::new(),
        };
        self
    }

    /// Runs the lifecycle of `gatekeeper check` instead: `configure` with `check: true`, no
    /// `start`.
    pub fn check(mut self) -> Self {
        self.check = true;
        self
    }

    /// How long each step may take (default [`DEFAULT_TIMEOUT`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The plugin's name (default `test`).
    pub fn name(mut self, name: &str) -> Self {
        self.name = name.to_owned();
        self
    }

    /// Answers an upstream plugin's manager calls (default: accepts them all).
    pub fn manager(
        mut self,
        answer: impl Fn(&str, &Value) -> Result<Value, gatekeeper_rpc::ErrorObject>
            + Send
            + Sync
            + 'static,
    ) -> Self {
        self.manager = Some(Arc::new(answer));
        self
    }

    pub(super) async fn start(
        self,
        plugin_type: PluginType,
        serve: impl FnOnce(DuplexStream, PluginEnv) -> JoinHandle<Result<(), ServeError>>,
    ) -> Result<TestHost, TestHostError> {
        let (proxy_io, plugin_io) = tokio::io::duplex(PIPE_BYTES);
        let (handshake_tx, handshake_rx) = oneshot::channel();
        let recorded = Arc::new(Mutex::new(proxy::Recorded::default()));
        let handler = proxy::FakeProxy {
            plugin_type,
            name: self.name.clone(),
            token: TOKEN.to_owned(),
            recorded: recorded.clone(),
            handshake: Mutex::new(Some(handshake_tx)),
            manager: self.manager,
        };
        let peer = Peer::spawn(
            proxy_io,
            Arc::new(handler),
            PeerConfig {
                max_line_bytes: MAX_LINE_BYTES,
                name: "test-host".to_owned(),
                ..PeerConfig::default()
            },
        );
        let env = PluginEnv {
            socket: "/nonexistent/test-host.sock".into(),
            token: TOKEN.to_owned(),
            name: self.name,
            plugin_type,
            protocol_version: PROTOCOL_VERSION,
            max_line_bytes: MAX_LINE_BYTES,
            busy_poll: None,
        };
        let mut host = TestHost::new(peer, serve(plugin_io, env), recorded, self.timeout);
        if let Err(error) = host.begin(handshake_rx, self.config, self.check).await {
            let _ = host.end(false).await; // the error that ended it is `error`
            return Err(error);
        }
        Ok(host)
    }
}
