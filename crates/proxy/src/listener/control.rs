//! [`ListenerControl`]: the proxy's set of listeners (configured name and address, bound
//! socket, TLS setup), and the one way it changes: [`ListenerControl::apply`] computes the plan
//! ([`super::plan`]) from the present set to the wanted one and executes it. Startup is the
//! same execution from an empty set (with the sockets systemd passed). The order of execution
//! is in the [module doc](super).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;

mod execute;

use super::accept::{accept_loop, Serving};
use super::connection::ListenerContext;
use super::plan::{self, ListenerChanges};
use super::ListenerError;
use crate::tls::TlsListener;
use crate::{ListenerConfig, TlsCertificate};

/// A listener's accept loop, running.
struct Accepting {
    /// Set to true to stop accepting and drain the listener's connections.
    stop: watch::Sender<bool>,
    /// Completes once the listening socket is closed.
    closed: oneshot::Receiver<()>,
}

/// Where a listener's socket is.
enum Socket {
    /// Bound, waiting for `serve`.
    Waiting(TcpListener),
    /// Owned by its accept loop.
    Accepting(Accepting),
    /// Closed at shutdown.
    Closed,
}

impl Socket {
    /// Stops accepting: closes a waiting socket now, or tells the accept loop, whose
    /// connections then drain; the receiver completes once the socket is closed.
    fn stop(self) -> Option<oneshot::Receiver<()>> {
        match self {
            Socket::Accepting(accepting) => {
                accepting.stop.send_replace(true);
                Some(accepting.closed)
            }
            Socket::Waiting(_) | Socket::Closed => None,
        }
    }
}

/// One listener of the set.
struct Entry {
    /// As configured (the address may have port 0).
    config: ListenerConfig,
    /// The bound address.
    local: SocketAddr,
    tls: Option<TlsListener>,
    /// Whether the socket came from systemd.
    adopted: bool,
    socket: Socket,
}

impl Entry {
    /// What the plan knows of this listener.
    fn present(&self) -> plan::Present {
        plan::Present {
            name: self.config.name.clone(),
            addr: self.config.addr,
            local: self.local,
            tls: self.tls.is_some(),
            adopted: self.adopted,
        }
    }
}

/// Starts accept loops in the task set of the running `serve`.
struct Spawner {
    serving: Arc<Serving>,
    tasks: mpsc::UnboundedSender<BoxFuture<'static, ()>>,
}

impl Spawner {
    fn start(&self, name: &str, listener: TcpListener, tls: Option<&TlsListener>) -> Accepting {
        let (stop, shutdown) = watch::channel(false);
        let (closed_tx, closed) = oneshot::channel();
        let context = Arc::new(ListenerContext {
            name: Arc::from(name),
            tls: tls.cloned(),
            shared: self.serving.shared.clone(),
            protocols: self.serving.protocols.clone(),
        });
        let accepting = accept_loop(listener, context, self.serving.clone(), shutdown, closed_tx);
        // If `serve` is gone, the loop is dropped with its socket: `closed` reports it.
        let _ = self.tasks.send(accepting.boxed());
        Accepting { stop, closed }
    }
}

enum Phase {
    /// `serve` has not started: sockets wait.
    Bound,
    /// `serve` runs: new listeners start at once.
    Serving(Spawner),
    /// `serve` is shutting down or gone.
    Stopped,
}

struct State {
    /// In configured order (listeners with a systemd socket no longer configured last).
    entries: Vec<Entry>,
    phase: Phase,
}

impl State {
    fn start_or_wait(
        &self,
        name: &str,
        listener: TcpListener,
        tls: Option<&TlsListener>,
    ) -> Socket {
        match &self.phase {
            Phase::Serving(spawner) => Socket::Accepting(spawner.start(name, listener, tls)),
            Phase::Bound | Phase::Stopped => Socket::Waiting(listener),
        }
    }
}

struct Inner {
    state: Mutex<State>,
    /// One `apply` at a time.
    applying: tokio::sync::Mutex<()>,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Adds, removes and changes the listeners of a bound proxy, before or while it serves; from
/// [`BoundProxy::listener_control`](crate::BoundProxy::listener_control). Clones share the
/// listeners. Changes made before [`BoundProxy::serve`](crate::BoundProxy::serve) are bound at
/// once and accept when serving starts; once `serve`'s shutdown has fired, [`apply`] fails with
/// [`ListenerError::ShuttingDown`].
///
/// [`apply`]: ListenerControl::apply
#[derive(Clone)]
pub struct ListenerControl {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ListenerControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerControl")
            .field("listeners", &self.local_addrs())
            .finish_non_exhaustive()
    }
}

impl ListenerControl {
    /// Binds the listeners `listeners` with the certificates `tls`: the plan from an empty set.
    /// A socket in `given` (passed by systemd, by listener name) is used instead of binding the
    /// listener's address; one for a name not in `listeners` is dropped. Nothing is logged.
    pub(crate) async fn start(
        listeners: Vec<ListenerConfig>,
        tls: Vec<TlsCertificate>,
        given: Vec<(String, std::net::TcpListener)>,
    ) -> Result<Self, ListenerError> {
        let control = ListenerControl {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    entries: Vec::new(),
                    phase: Phase::Bound,
                }),
                applying: tokio::sync::Mutex::new(()),
            }),
        };
        control.reconcile(listeners, tls, given).await?;
        Ok(control)
    }

    /// The current listeners' names and bound addresses, in configured order (a listener
    /// with a socket from systemd that is no longer configured comes last).
    pub fn local_addrs(&self) -> Vec<(String, SocketAddr)> {
        self.inner
            .lock()
            .entries
            .iter()
            .map(|e| (e.config.name.clone(), e.local))
            .collect()
    }

    /// Reconciles the listeners to `listeners` (the full new set, in configured order) with
    /// the certificates `tls`, as a configuration reload asks for; see the module docs for the
    /// order. A listener with the same name, address and TLS-ness keeps its socket and open
    /// connections (a TLS one serves the certificates now in `tls`, re-read from their files);
    /// a removed listener stops accepting at once and its connections drain in the background
    /// like at shutdown; an added one starts accepting; a changed one (same name, other address
    /// or TLS-ness) is rebound. Returns once removed sockets are closed (not drained).
    ///
    /// Errors change nothing, except [`ListenerError::Rebind`] (see there). Certificate files
    /// are read on the calling task (briefly blocking). Calls are serialized.
    pub async fn apply(
        &self,
        listeners: Vec<ListenerConfig>,
        tls: Vec<TlsCertificate>,
    ) -> Result<ListenerChanges, ListenerError> {
        let changes = self.reconcile(listeners, tls, Vec::new()).await?;
        for name in &changes.added {
            tracing::info!(listener = %name, "listener added");
        }
        for name in &changes.rebound {
            tracing::info!(listener = %name, "listener rebound");
        }
        for name in &changes.removed {
            tracing::info!(listener = %name, "listener removed; its connections drain");
        }
        Ok(changes)
    }

    /// Runs every listener's accept loop (those added later too) until `shutdown` completes,
    /// then stops them all and waits until their connections are drained.
    pub(crate) async fn serve(&self, serving: Serving, shutdown: impl Future<Output = ()> + Send) {
        let (tasks_tx, mut tasks_rx) = mpsc::unbounded_channel();
        let spawner = Spawner {
            serving: Arc::new(serving),
            tasks: tasks_tx,
        };
        let _stopped = StopOnDrop(&self.inner);
        {
            let mut state = self.inner.lock();
            if !matches!(state.phase, Phase::Bound) {
                tracing::error!("the listeners are already served");
                return;
            }
            for entry in &mut state.entries {
                entry.socket = match std::mem::replace(&mut entry.socket, Socket::Closed) {
                    Socket::Waiting(listener) => Socket::Accepting(spawner.start(
                        &entry.config.name,
                        listener,
                        entry.tls.as_ref(),
                    )),
                    other => other,
                };
            }
            state.phase = Phase::Serving(spawner);
        }
        let mut tasks = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                Some(task) = tasks_rx.recv() => {
                    tasks.spawn(task);
                }
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        tracing::info!("shutting down: no longer accepting connections");
        {
            let mut state = self.inner.lock();
            // Dropping the spawner closes the channel once the loops already sent are taken.
            state.phase = Phase::Stopped;
            for entry in &mut state.entries {
                if let Socket::Accepting(accepting) = &entry.socket {
                    accepting.stop.send_replace(true);
                }
            }
        }
        while let Some(task) = tasks_rx.recv().await {
            tasks.spawn(task);
        }
        while tasks.join_next().await.is_some() {}
    }
}

/// Marks the listeners stopped when `serve` ends or is dropped, so that `apply` fails instead
/// of handing loops to nobody.
struct StopOnDrop<'a>(&'a Inner);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.lock().phase = Phase::Stopped;
    }
}
