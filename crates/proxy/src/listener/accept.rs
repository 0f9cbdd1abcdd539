//! A listener's accept loop: one task per connection, at most `max_connections` connections at
//! once over all listeners, and the drain of the listener's connections when it stops. With
//! `max_connections_per_client`, a connection over its client's limit is closed as soon as it
//! is accepted (before it takes a place under `max_connections`, and before anything is read
//! from it; see [`crate::client_limits`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use gatekeeper_rpc::metrics::events;
use gatekeeper_rpc::types::Object;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::connection::{serve_connection, stopped, ListenerContext, Protocols};
use crate::client_limits::{ClientKey, ClientLimits, ConnectionPermit};
use crate::metrics::listener_stats::ListenerCounters;
use crate::metrics::Metrics;
use crate::service::Shared;

/// What the accept loops of every listener share while the proxy serves.
pub(crate) struct Serving {
    /// The request path.
    pub(crate) shared: Arc<Shared>,
    /// How connections are served.
    pub(crate) protocols: Arc<Protocols>,
    /// One permit per open connection, over all listeners.
    pub(crate) limit: Arc<Semaphore>,
    /// How long a stopped listener's connections may finish.
    pub(crate) grace: Duration,
}

/// Accepts connections and serves at most `max_connections` at once over all listeners. At the
/// limit, each listener holds one accepted connection unserved until another one closes, and
/// the next ones wait in the kernel's listen backlog.
///
/// `shutdown` turns true when this listener is to stop (shutdown, or removed by a reload); its
/// connections watch it too, and get `serving.grace` to finish. `closed` is told once the
/// listening socket is closed.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    context: Arc<ListenerContext>,
    serving: Arc<Serving>,
    mut shutdown: watch::Receiver<bool>,
    closed: oneshot::Sender<()>,
) {
    let name = context.name.clone();
    let (metrics, limit, grace) = (&serving.shared.metrics, &serving.limit, serving.grace);
    let address = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    listener_event(metrics, events::LISTENER_STARTED, &name, &address);
    // The listener's connection counters exist (at 0) from its start.
    let counters = metrics.listener_counters(&name);
    let limits = &serving.shared.client_limits;
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
                let client = match &limits.connections {
                    None => None,
                    Some(limiter) => match limiter.open(ClientKey::of(remote.ip())) {
                        Some(client) => Some(Box::new(client)),
                        None => {
                            // Closed unread: the client sees the connection end (FIN, or RST
                            // if it had sent bytes already).
                            drop(stream);
                            refused_connection(limits, &counters, &name, remote);
                            continue;
                        }
                    },
                };
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
                let permit = ConnectionPermit {
                    _global: permit,
                    _client: client,
                };
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
    listener_event(metrics, events::LISTENER_STOPPED, &name, &address);
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

/// Counts (and at most once per interval logs) a connection refused for its client's limit.
fn refused_connection(
    limits: &ClientLimits,
    counters: &ListenerCounters,
    listener: &str,
    remote: SocketAddr,
) {
    counters.client_limited_connection();
    if let Some(refused) = limits
        .connections_refused
        .refused(std::time::Instant::now())
    {
        tracing::warn!(
            listener,
            client = %remote.ip(),
            refused,
            "connections over max_connections_per_client closed at accept (count since the last such line; see gatekeeper_client_limited_total)"
        );
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
