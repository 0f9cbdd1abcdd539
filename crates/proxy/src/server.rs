//! Listeners and connections: binding, the accept loops (one task per connection, HTTP/1.1 with
//! keep-alive and a header read timeout), and graceful shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use gatekeeper_rpc::metrics::events;
use gatekeeper_rpc::types::Object;

use crate::forward::new_client;
use crate::forwarded::ForwardedHeaders;
use crate::metrics::Metrics;
use crate::modifier::Chain;
use crate::service::Shared;
use crate::{Proxy, ProxyError};

/// The proxy with all its listeners bound, ready to serve.
pub struct BoundProxy {
    listeners: Vec<(Arc<str>, TcpListener)>,
    shared: Arc<Shared>,
    header_read_timeout: Duration,
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
    if config.listeners.is_empty() {
        return Err(ProxyError::NoListeners);
    }
    let mut listeners: Vec<(Arc<str>, TcpListener)> = Vec::with_capacity(config.listeners.len());
    for l in &config.listeners {
        if listeners.iter().any(|(name, _)| **name == *l.name) {
            return Err(ProxyError::DuplicateListener(l.name.clone()));
        }
        let listener = TcpListener::bind(l.addr)
            .await
            .map_err(|source| ProxyError::Bind {
                name: l.name.clone(),
                addr: l.addr,
                source,
            })?;
        listeners.push((Arc::from(l.name.as_str()), listener));
    }
    let forwarded = ForwardedHeaders::new(&config.forwarded)?;
    Ok(BoundProxy {
        listeners,
        shared: Arc::new(
            Shared::new(
                proxy.registry,
                Chain::new(proxy.modifiers),
                proxy.balancer,
                proxy.router,
                proxy.loadbalancer,
                proxy.metrics.clone(),
                new_client(Shared::wants_connect_time(&proxy.metrics)),
                config.default_timeout,
            )
            .with_forwarded(forwarded),
        ),
        header_read_timeout: config.header_read_timeout,
        shutdown_grace: config.shutdown_grace,
    })
}

impl BoundProxy {
    /// The bound addresses, in the order of the configured listeners (useful with port 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|(_, l)| l.local_addr().ok())
            .collect()
    }

    /// The bound address of the named listener.
    pub fn local_addr(&self, name: &str) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|(n, _)| **n == *name)
            .and_then(|(_, l)| l.local_addr().ok())
    }

    /// Serves until `shutdown` completes; then stops accepting, asks open connections to close
    /// after their in-flight request, and waits for them up to the shutdown grace period before
    /// dropping the rest.
    pub async fn serve(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let (tx, rx) = watch::channel(false);
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(self.header_read_timeout)
            .keep_alive(true);
        let loops = self.listeners.into_iter().map(|(name, listener)| {
            accept_loop(
                name,
                listener,
                self.shared.clone(),
                builder.clone(),
                rx.clone(),
                self.shutdown_grace,
            )
        });
        let all = futures::future::join_all(loops);
        tokio::pin!(all);
        tokio::select! {
            _ = &mut all => return,
            _ = shutdown => {}
        }
        tracing::info!("shutting down: no longer accepting connections");
        let _ = tx.send(true);
        all.await;
    }
}

/// Completes when shutdown is requested (or the sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

async fn accept_loop(
    name: Arc<str>,
    listener: TcpListener,
    shared: Arc<Shared>,
    builder: http1::Builder,
    mut shutdown: watch::Receiver<bool>,
    grace: Duration,
) {
    let address = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    listener_event(&shared.metrics, events::LISTENER_STARTED, &name, &address);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = stopped(&mut shutdown) => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, remote)) => {
                    let _ = stream.set_nodelay(true);
                    connections.spawn(serve_connection(
                        stream,
                        remote,
                        name.clone(),
                        shared.clone(),
                        builder.clone(),
                        shutdown.clone(),
                    ));
                }
                Err(e) => {
                    // Typically EMFILE: back off a little instead of spinning.
                    tracing::warn!(listener = %name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
    drop(listener);
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

async fn serve_connection(
    stream: tokio::net::TcpStream,
    remote: SocketAddr,
    listener: Arc<str>,
    shared: Arc<Shared>,
    builder: http1::Builder,
    mut shutdown: watch::Receiver<bool>,
) {
    let service = service_fn(move |request| {
        let shared = shared.clone();
        let listener = listener.clone();
        async move { Ok::<_, Infallible>(shared.handle(&listener, remote, false, request).await) }
    });
    let conn = builder
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        _ = stopped(&mut shutdown) => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%remote, error = %e, "connection ended with an error");
    }
}
