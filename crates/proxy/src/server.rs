//! Listeners: binding (with the TLS setup of TLS listeners), the accept loops (one task per
//! connection, at most `max_connections` at once over all listeners), certificate reloads, and
//! graceful shutdown. Serving one connection is the `connection` module's job; which listeners
//! exist while serving (added, removed, rebound on reload) is the `listeners` module's.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use gatekeeper_rpc::metrics::events;
use gatekeeper_rpc::types::Object;

use crate::connection::{serve_connection, stopped, ListenerContext, Protocols};
use crate::forward::BackendClient;
use crate::forwarded::ForwardedHeaders;
use crate::hooks::{HooksSwitch, SwappableHooks};
use crate::listeners::{certificates_of, check, ListenerControl, ServingParts};
use crate::metrics::Metrics;
use crate::service::Shared;
use crate::tls::TlsListener;
use crate::{Proxy, ProxyError};

/// One bound listener.
pub(crate) struct Bound {
    pub(crate) name: Arc<str>,
    pub(crate) listener: TcpListener,
    pub(crate) tls: Option<TlsListener>,
    /// Whether the socket was passed by systemd (socket activation) rather than bound here.
    pub(crate) adopted: bool,
}

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

pub(crate) async fn bind(proxy: Proxy) -> Result<BoundProxy, ProxyError> {
    let config = proxy.config;
    check(&config.listeners, &config.tls)?;
    // Certificates first: a bad file is reported before any port is taken.
    let mut tls = Vec::with_capacity(config.listeners.len());
    for l in &config.listeners {
        let files = certificates_of(&config.tls, &l.name);
        tls.push(match files.is_empty() {
            true => None,
            false => Some(TlsListener::new(&l.name, files)?),
        });
    }
    let mut sockets = proxy.sockets;
    let mut listeners = Vec::with_capacity(config.listeners.len());
    for (l, tls) in config.listeners.iter().zip(tls) {
        let given = sockets
            .iter()
            .position(|(name, _)| *name == l.name)
            .map(|i| sockets.swap_remove(i).1);
        let adopted = given.is_some();
        let listener = match given {
            Some(socket) => adopt(socket),
            None => TcpListener::bind(l.addr).await,
        }
        .map_err(|source| ProxyError::Bind {
            name: l.name.clone(),
            addr: l.addr,
            source,
        })?;
        listeners.push(Bound {
            name: Arc::from(l.name.as_str()),
            listener,
            tls,
            adopted,
        });
    }
    let forwarded = ForwardedHeaders::new(&config.forwarded)?;
    Ok(BoundProxy {
        listeners: ListenerControl::new(config.listeners.clone(), listeners),
        shared: Arc::new(
            Shared::new(
                proxy.registry,
                SwappableHooks::new(proxy.hooks, config.max_plugin_body),
                proxy.balancer,
                proxy.metrics.clone(),
                BackendClient::new(proxy.metrics.clone(), config.connect_timeout),
                config.default_timeout,
                config.connect_timeout,
            )
            .with_forwarded(forwarded),
        ),
        protocols: Arc::new(Protocols::new(&config)),
        max_connections: config.max_connections.clamp(1, Semaphore::MAX_PERMITS),
        shutdown_grace: config.shutdown_grace,
    })
}

/// A listening socket bound by someone else, made non-blocking for tokio.
fn adopt(socket: std::net::TcpListener) -> std::io::Result<TcpListener> {
    socket.set_nonblocking(true)?;
    TcpListener::from_std(socket)
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
        let parts = ServingParts {
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
        self.listeners.serve(parts, shutdown).await;
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

/// What an accept loop gets: what every accept loop shares, and its own stop signal.
pub(crate) struct Serving {
    pub(crate) shared: Arc<Shared>,
    pub(crate) protocols: Arc<Protocols>,
    /// One permit per open connection, over all listeners.
    pub(crate) limit: Arc<Semaphore>,
    /// Turns true when this listener is to stop (shutdown, or removed by a reconcile); its
    /// connections watch it too.
    pub(crate) shutdown: watch::Receiver<bool>,
    pub(crate) grace: Duration,
    /// Told once the listening socket is closed.
    pub(crate) closed: oneshot::Sender<()>,
}

/// Accepts connections and serves at most `max_connections` at once over all listeners. At the
/// limit, each listener holds one accepted connection unserved until another one closes, and
/// the next ones wait in the kernel's listen backlog.
pub(crate) async fn accept_loop(bound: Bound, serving: Serving) {
    let Bound {
        name,
        listener,
        tls,
        adopted: _,
    } = bound;
    let Serving {
        shared,
        protocols,
        limit,
        mut shutdown,
        grace,
        closed,
    } = serving;
    let context = Arc::new(ListenerContext {
        name: name.clone(),
        tls: tls.as_ref().map(|t| t.acceptor().clone()),
        shared: shared.clone(),
        protocols,
    });
    let address = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    listener_event(&shared.metrics, events::LISTENER_STARTED, &name, &address);
    let mut connections = JoinSet::new();
    'serving: loop {
        let accepted = loop {
            tokio::select! {
                _ = stopped(&mut shutdown) => break 'serving,
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
                accepted = listener.accept() => break accepted,
            }
        };
        match accepted {
            Ok((stream, remote)) => {
                tracing::trace!(listener = %name, %remote, "accepted");
                // At the limit, this connection waits here and the next ones in the backlog.
                let permit = loop {
                    tokio::select! {
                        _ = stopped(&mut shutdown) => break 'serving,
                        Some(_) = connections.join_next(), if !connections.is_empty() => {}
                        permit = limit.clone().acquire_owned() => match permit {
                            Ok(permit) => break permit,
                            Err(_) => break 'serving,
                        },
                    }
                };
                let _ = stream.set_nodelay(true);
                // The permit lives as long as the connection's byte stream, which an upgraded
                // (WebSocket) connection takes along when it leaves hyper.
                let serve =
                    serve_connection(stream, remote, context.clone(), permit, shutdown.clone());
                connections.spawn(serve);
            }
            Err(e) => {
                // Typically EMFILE: back off a little instead of spinning.
                tracing::warn!(listener = %name, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    drop(listener);
    let _ = closed.send(());
    listener_event(&shared.metrics, events::LISTENER_STOPPED, &name, &address);
    let deadline = Instant::now() + grace;
    while !connections.is_empty() {
        match tokio::time::timeout_at(deadline, connections.join_next()).await {
            Ok(_) => {}
            Err(_) => {
                tracing::warn!(listener = %name, open = connections.len(), "shutdown grace period over: closing connections");
                connections.abort_all();
                while connections.join_next().await.is_some() {}
            }
        }
    }
}

fn listener_event(metrics: &Metrics, event: &str, name: &str, address: &str) {
    if metrics.is_enabled() {
        let mut attributes = Object::new();
        attributes.insert("listener".into(), name.into());
        attributes.insert("address".into(), address.into());
        metrics.record_event(event, attributes);
    }
}
