//! Which listeners a proxy has, before and while it serves. [`ListenerControl`] owns the set
//! of listeners (configured name and address, bound socket, TLS setup) and reconciles it to a
//! new configured set ([`ListenerControl::apply`], what a configuration reload asks for):
//! unchanged listeners keep their socket and connections, added ones are bound and start,
//! removed ones close and drain, changed ones are rebound. The accept loops themselves (and the
//! drain of one listener's connections) are `server`'s.
//!
//! Every listener's accept loop runs as its own task in a set that
//! [`BoundProxy::serve`](crate::BoundProxy::serve) owns; `apply` hands the loops of new
//! listeners to it over a channel, and stops a listener through the listener's own stop signal
//! (the one its connections watch for a graceful close). When `serve`'s shutdown fires, every
//! listener gets that signal and `serve` waits for all loops, removed ones still draining
//! included.
//!
//! Rebind order (so that a failed reload changes as little as possible):
//!
//! 1. certificate files of every TLS listener of the new set are loaded; a bad file changes
//!    nothing;
//! 2. listeners on addresses that no removed or changed listener holds are bound; a failure
//!    (address in use) changes nothing;
//! 3. the removed or changed listeners holding an address still needed are closed, and those
//!    addresses bound; if one fails, the closed listeners are bound again at their old
//!    addresses (their connections drain anyway) and the error says which came back;
//! 4. commit: kept TLS listeners get their new certificates, new and rebound listeners start,
//!    removed ones (and the old sockets of rebound ones) stop accepting and drain.
//!
//! Listeners whose socket came from systemd (socket activation) are never closed or rebound
//! here: they keep their socket (and their TLS-ness) and the changes say so in a warning.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tokio::task::JoinSet;

use crate::connection::Protocols;
use crate::server::{accept_loop, Bound, Serving};
use crate::service::Shared;
use crate::tls::{CertificateSwap, TlsError, TlsListener};
use crate::{ListenerConfig, TlsCertificate};

/// What [`ListenerControl::apply`] did. Names are listener names, in configured order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListenerChanges {
    /// New listeners, bound and accepting.
    pub added: Vec<String>,
    /// Listeners no longer configured: closed at once, their open connections drain in the
    /// background (asked to close after their in-flight request, closed after the shutdown
    /// grace period).
    pub removed: Vec<String>,
    /// Listeners whose address or TLS-ness changed: bound anew; the old socket's connections
    /// drain like a removed listener's.
    pub rebound: Vec<String>,
    /// Listeners that keep their socket and open connections (TLS ones serve the new
    /// certificate files to new handshakes).
    pub kept: Vec<String>,
    /// How many certificates the TLS listeners of the new set serve, every one read again from
    /// its files.
    pub certificates_reloaded: usize,
    /// What was not applied as configured (listeners with a socket from systemd), one sentence
    /// each.
    pub warnings: Vec<String>,
}

impl ListenerChanges {
    /// Whether no listener was added, removed or rebound (certificates are re-read anyway).
    pub fn same_listeners(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.rebound.is_empty()
    }
}

/// Why [`ListenerControl::apply`] did not apply a listener set. Every variant but
/// [`ListenerError::Rebind`] means nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    /// The new set has no listeners.
    #[error("no listeners configured")]
    NoListeners,
    /// Two listeners of the new set have the same name.
    #[error("duplicate listener name `{0}`")]
    DuplicateListener(String),
    /// A certificate or key of the new set cannot be used, or certificates are given for a
    /// listener that is not in the set.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A new address could not be bound; nothing changed.
    #[error("cannot listen on {addr} (listener `{name}`): {source}; the listeners did not change")]
    Bind {
        /// The listener.
        name: String,
        /// The address.
        addr: SocketAddr,
        /// The cause (e.g. address in use).
        #[source]
        source: std::io::Error,
    },
    /// An address given up by a removed or changed listener could not be bound after that
    /// listener was closed. The listeners closed for it were bound again at their old address
    /// (`restored`: they serve again, their previous connections drain) or could not be
    /// (`lost`: they no longer serve until the next successful reload or a restart). Nothing
    /// else changed.
    #[error(
        "cannot listen on {addr} (listener `{name}`): {source}; the old listeners stay, {}",
        describe_restore(restored, lost)
    )]
    Rebind {
        /// The listener.
        name: String,
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
        /// Listeners closed to free an address and bound again at their old address.
        restored: Vec<String>,
        /// Listeners closed to free an address that could not be bound again.
        lost: Vec<String>,
    },
    /// The proxy is shutting down (or stopped serving); nothing changed.
    #[error("the proxy is shutting down; the listeners were not changed")]
    ShuttingDown,
}

fn describe_restore(restored: &[String], lost: &[String]) -> String {
    let mut parts = Vec::new();
    if !restored.is_empty() {
        parts.push(format!(
            "listeners closed to free the address and bound again: {}",
            restored.join(", ")
        ));
    }
    if !lost.is_empty() {
        parts.push(format!(
            "listeners closed to free the address that could NOT be bound again (not serving): {}",
            lost.join(", ")
        ));
    }
    match parts.is_empty() {
        true => "no listener was closed".into(),
        false => parts.join("; "),
    }
}

/// What every accept loop shares, from [`BoundProxy::serve`](crate::BoundProxy::serve).
pub(crate) struct ServingParts {
    pub(crate) shared: Arc<Shared>,
    pub(crate) protocols: Arc<Protocols>,
    pub(crate) limit: Arc<Semaphore>,
    pub(crate) grace: Duration,
}

/// Starts accept loops in the task set of the running `serve`.
struct Spawner {
    parts: ServingParts,
    tasks: mpsc::UnboundedSender<BoxFuture<'static, ()>>,
}

impl Spawner {
    fn start(&self, bound: Bound) -> Accepting {
        let (stop, shutdown) = watch::channel(false);
        let (closed_tx, closed) = oneshot::channel();
        let serving = Serving {
            shared: self.parts.shared.clone(),
            protocols: self.parts.protocols.clone(),
            limit: self.parts.limit.clone(),
            shutdown,
            grace: self.parts.grace,
            closed: closed_tx,
        };
        // If `serve` is gone, the loop is dropped with its socket: `closed` reports it.
        let _ = self.tasks.send(accept_loop(bound, serving).boxed());
        Accepting { stop, closed }
    }
}

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
    Waiting(Bound),
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

/// One listener.
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
    fn start_or_wait(&self, bound: Bound) -> Socket {
        match &self.phase {
            Phase::Serving(spawner) => Socket::Accepting(spawner.start(bound)),
            Phase::Bound | Phase::Stopped => Socket::Waiting(bound),
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

/// The listener set as `apply` saw it when it started.
struct Current {
    name: String,
    config_addr: SocketAddr,
    local: SocketAddr,
    tls: Option<TlsListener>,
    adopted: bool,
}

/// What `apply` does with one listener of the new set.
enum Plan {
    /// Keeps the socket; swaps in the certificates, if any.
    Keep(Option<CertificateSwap>),
    /// A new socket (`None` until bound).
    Bind {
        tls: Option<TlsListener>,
        socket: Option<TcpListener>,
    },
}

/// Whether listening on `a` keeps `b` from being bound (same port, same or wildcard IP).
fn overlaps(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

/// The certificates given for the listener `name`.
pub(crate) fn certificates_of(tls: &[TlsCertificate], name: &str) -> Vec<TlsCertificate> {
    tls.iter().filter(|c| c.listener == name).cloned().collect()
}

/// What every listener set must satisfy (at bind and at each `apply`): some listeners, unique
/// names, certificates only for them.
pub(crate) fn check(
    listeners: &[ListenerConfig],
    tls: &[TlsCertificate],
) -> Result<(), ListenerError> {
    if listeners.is_empty() {
        return Err(ListenerError::NoListeners);
    }
    for (i, l) in listeners.iter().enumerate() {
        if listeners[..i].iter().any(|o| o.name == l.name) {
            return Err(ListenerError::DuplicateListener(l.name.clone()));
        }
    }
    if let Some(unknown) = tls
        .iter()
        .find(|c| !listeners.iter().any(|l| l.name == c.listener))
    {
        return Err(TlsError::UnknownListener(unknown.listener.clone()).into());
    }
    Ok(())
}

impl ListenerControl {
    /// The listeners `bind` made, with their configuration (same order).
    pub(crate) fn new(configs: Vec<ListenerConfig>, bound: Vec<Bound>) -> Self {
        let entries = configs
            .into_iter()
            .zip(bound)
            .map(|(config, bound)| Entry {
                local: bound.listener.local_addr().unwrap_or(config.addr),
                config,
                tls: bound.tls.clone(),
                adopted: bound.adopted,
                socket: Socket::Waiting(bound),
            })
            .collect();
        ListenerControl {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    entries,
                    phase: Phase::Bound,
                }),
                applying: tokio::sync::Mutex::new(()),
            }),
        }
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
        let _one_at_a_time = self.inner.applying.lock().await;
        check(&listeners, &tls)?;
        let current: Vec<Current> = {
            let state = self.inner.lock();
            if matches!(state.phase, Phase::Stopped) {
                return Err(ListenerError::ShuttingDown);
            }
            state
                .entries
                .iter()
                .map(|e| Current {
                    name: e.config.name.clone(),
                    config_addr: e.config.addr,
                    local: e.local,
                    tls: e.tls.clone(),
                    adopted: e.adopted,
                })
                .collect()
        };
        let mut changes = ListenerChanges::default();
        let mut plans = self.plan(&listeners, &tls, &current, &mut changes)?;
        for c in &current {
            if !listeners.iter().any(|l| l.name == c.name) {
                match c.adopted {
                    true => changes.warnings.push(format!(
                        "listener `{}` is no longer configured but keeps serving on {} (its socket was passed by systemd) until a restart",
                        c.name, c.local
                    )),
                    false => changes.removed.push(c.name.clone()),
                }
            }
        }
        // The addresses given up by removed and rebound listeners.
        let leaving: Vec<(&str, SocketAddr)> = current
            .iter()
            .filter(|c| {
                !c.adopted
                    && (changes.removed.contains(&c.name) || changes.rebound.contains(&c.name))
            })
            .map(|c| (c.name.as_str(), c.local))
            .collect();

        // Bind the addresses nobody leaving holds: a failure changes nothing.
        for (l, plan) in listeners.iter().zip(plans.iter_mut()) {
            if let Plan::Bind { socket, .. } = plan {
                if !leaving.iter().any(|(_, held)| overlaps(*held, l.addr)) {
                    *socket = Some(TcpListener::bind(l.addr).await.map_err(|source| {
                        ListenerError::Bind {
                            name: l.name.clone(),
                            addr: l.addr,
                            source,
                        }
                    })?);
                }
            }
        }

        // Close the listeners holding an address still needed, then bind those.
        let needed: Vec<SocketAddr> = listeners
            .iter()
            .zip(&plans)
            .filter(|(_, plan)| matches!(plan, Plan::Bind { socket: None, .. }))
            .map(|(l, _)| l.addr)
            .collect();
        if !needed.is_empty() {
            let releasing: Vec<&str> = leaving
                .iter()
                .filter(|(_, held)| needed.iter().any(|n| overlaps(*held, *n)))
                .map(|(name, _)| *name)
                .collect();
            let released = self.release(&releasing).await?;
            let mut failed = None;
            for (l, plan) in listeners.iter().zip(plans.iter_mut()) {
                if let Plan::Bind {
                    socket: socket @ None,
                    ..
                } = plan
                {
                    match TcpListener::bind(l.addr).await {
                        Ok(listener) => *socket = Some(listener),
                        Err(source) => {
                            failed = Some((l.name.clone(), l.addr, source));
                            break;
                        }
                    }
                }
            }
            if let Some((name, addr, source)) = failed {
                // The new sockets may hold the old addresses: close them first.
                drop(plans);
                let (restored, lost) = self.restore(released).await;
                return Err(ListenerError::Rebind {
                    name,
                    addr,
                    source,
                    restored,
                    lost,
                });
            }
        }

        let closing = self.commit(listeners, plans)?;
        for closed in closing {
            let _ = closed.await;
        }
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

    /// Decides what to do with each listener of the new set and loads its certificates.
    fn plan(
        &self,
        listeners: &[ListenerConfig],
        tls: &[TlsCertificate],
        current: &[Current],
        changes: &mut ListenerChanges,
    ) -> Result<Vec<Plan>, ListenerError> {
        let mut plans = Vec::with_capacity(listeners.len());
        for l in listeners {
            let files = certificates_of(tls, &l.name);
            let wants_tls = !files.is_empty();
            let plan = match current.iter().find(|c| c.name == l.name) {
                Some(old) if old.adopted => {
                    if l.addr != old.config_addr {
                        changes.warnings.push(format!(
                            "listener `{}` keeps the socket passed by systemd ({}); the configured address {} is not bound",
                            l.name, old.local, l.addr
                        ));
                    }
                    let swap = match (&old.tls, wants_tls) {
                        (Some(old_tls), true) => Some(old_tls.prepare(files)?),
                        (Some(_), false) => {
                            changes.warnings.push(format!(
                                "listener `{}` keeps serving TLS with its old certificates (its socket was passed by systemd; turning TLS off needs a restart)",
                                l.name
                            ));
                            None
                        }
                        (None, true) => {
                            TlsListener::new(&l.name, files)?;
                            changes.warnings.push(format!(
                                "listener `{}` keeps serving plain HTTP (its socket was passed by systemd; turning TLS on needs a restart)",
                                l.name
                            ));
                            None
                        }
                        (None, false) => None,
                    };
                    changes.kept.push(l.name.clone());
                    Plan::Keep(swap)
                }
                Some(old) if old.config_addr == l.addr && old.tls.is_some() == wants_tls => {
                    let swap = match &old.tls {
                        Some(old_tls) => Some(old_tls.prepare(files)?),
                        None => None,
                    };
                    changes.kept.push(l.name.clone());
                    Plan::Keep(swap)
                }
                old => {
                    let tls = match wants_tls {
                        true => Some(TlsListener::new(&l.name, files)?),
                        false => None,
                    };
                    match old {
                        Some(_) => changes.rebound.push(l.name.clone()),
                        None => changes.added.push(l.name.clone()),
                    }
                    Plan::Bind { tls, socket: None }
                }
            };
            changes.certificates_reloaded += match &plan {
                Plan::Keep(swap) => swap.as_ref().map_or(0, CertificateSwap::len),
                Plan::Bind { tls, .. } => tls.as_ref().map_or(0, TlsListener::certificate_count),
            };
            plans.push(plan);
        }
        Ok(plans)
    }

    /// Takes the listeners `names` out of the set and closes their sockets (their connections
    /// drain); returns them with their positions, for [`restore`](Self::restore).
    async fn release(&self, names: &[&str]) -> Result<Vec<(usize, Entry)>, ListenerError> {
        let mut released = Vec::new();
        let mut closing = Vec::new();
        {
            let mut state = self.inner.lock();
            if matches!(state.phase, Phase::Stopped) {
                return Err(ListenerError::ShuttingDown);
            }
            let mut staying = Vec::with_capacity(state.entries.len());
            for (index, mut entry) in std::mem::take(&mut state.entries).into_iter().enumerate() {
                match names.contains(&entry.config.name.as_str()) {
                    true => {
                        tracing::info!(listener = %entry.config.name, address = %entry.local, "closing the listener to free its address");
                        closing.extend(std::mem::replace(&mut entry.socket, Socket::Closed).stop());
                        released.push((index, entry));
                    }
                    false => staying.push(entry),
                }
            }
            state.entries = staying;
        }
        for closed in closing {
            let _ = closed.await;
        }
        Ok(released)
    }

    /// Binds released listeners again at their old address and puts them back; returns the
    /// names restored and the names that could not be bound.
    async fn restore(&self, released: Vec<(usize, Entry)>) -> (Vec<String>, Vec<String>) {
        let mut restored = Vec::new();
        let mut lost = Vec::new();
        for (index, mut entry) in released {
            let name = entry.config.name.clone();
            match TcpListener::bind(entry.local).await {
                Ok(listener) => {
                    let bound = Bound {
                        name: Arc::from(name.as_str()),
                        listener,
                        tls: entry.tls.clone(),
                        adopted: false,
                    };
                    let mut state = self.inner.lock();
                    entry.socket = state.start_or_wait(bound);
                    let index = index.min(state.entries.len());
                    state.entries.insert(index, entry);
                    restored.push(name);
                }
                Err(error) => {
                    tracing::error!(listener = %name, address = %entry.local, %error, "cannot bind the listener's old address again: it no longer serves");
                    lost.push(name);
                }
            }
        }
        (restored, lost)
    }

    /// Makes the new set current: swaps certificates, starts new sockets, stops the rest.
    /// Returns what completes once the stopped sockets are closed.
    fn commit(
        &self,
        listeners: Vec<ListenerConfig>,
        plans: Vec<Plan>,
    ) -> Result<Vec<oneshot::Receiver<()>>, ListenerError> {
        let mut state = self.inner.lock();
        if matches!(state.phase, Phase::Stopped) {
            return Err(ListenerError::ShuttingDown);
        }
        let mut old = std::mem::take(&mut state.entries);
        let mut entries = Vec::with_capacity(listeners.len());
        let mut closing = Vec::new();
        for (l, plan) in listeners.into_iter().zip(plans) {
            let previous = old
                .iter()
                .position(|e| e.config.name == l.name)
                .map(|i| old.remove(i));
            match (plan, previous) {
                (Plan::Keep(swap), Some(mut entry)) => {
                    if let Some(swap) = swap {
                        swap.apply();
                    }
                    if !entry.adopted {
                        entry.config = l;
                    }
                    entries.push(entry);
                }
                (
                    Plan::Bind {
                        tls,
                        socket: Some(listener),
                    },
                    previous,
                ) => {
                    if let Some(previous) = previous {
                        closing.extend(previous.socket.stop());
                    }
                    let local = listener.local_addr().unwrap_or(l.addr);
                    let bound = Bound {
                        name: Arc::from(l.name.as_str()),
                        listener,
                        tls: tls.clone(),
                        adopted: false,
                    };
                    entries.push(Entry {
                        config: l,
                        local,
                        tls,
                        adopted: false,
                        socket: state.start_or_wait(bound),
                    });
                }
                // Not reached: kept listeners stay in the set while `apply` runs (one at a
                // time), and every new socket is bound before the commit.
                (_, previous) => {
                    tracing::error!(listener = %l.name, "listener lost while applying the listener set");
                    if let Some(previous) = previous {
                        closing.extend(previous.socket.stop());
                    }
                }
            }
        }
        for entry in old {
            match entry.adopted {
                true => entries.push(entry),
                false => closing.extend(entry.socket.stop()),
            }
        }
        state.entries = entries;
        Ok(closing)
    }

    /// Runs every listener's accept loop (those added later too) until `shutdown` completes,
    /// then stops them all and waits until their connections are drained.
    pub(crate) async fn serve(
        &self,
        parts: ServingParts,
        shutdown: impl Future<Output = ()> + Send,
    ) {
        let (tasks_tx, mut tasks_rx) = mpsc::unbounded_channel();
        let spawner = Spawner {
            parts,
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
                    Socket::Waiting(bound) => Socket::Accepting(spawner.start(bound)),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    #[test]
    fn overlapping_addresses() {
        assert!(overlaps(addr("127.0.0.1:8080"), addr("127.0.0.1:8080")));
        assert!(overlaps(addr("0.0.0.0:8080"), addr("127.0.0.1:8080")));
        assert!(overlaps(addr("127.0.0.1:8080"), addr("[::]:8080")));
        assert!(!overlaps(addr("127.0.0.1:8080"), addr("127.0.0.2:8080")));
        assert!(!overlaps(addr("127.0.0.1:8080"), addr("127.0.0.1:8081")));
        assert!(!overlaps(addr("127.0.0.1:0"), addr("127.0.0.1:0")));
    }

    #[test]
    fn checks_like_bind() {
        let l = |name: &str| ListenerConfig {
            name: name.into(),
            addr: addr("127.0.0.1:0"),
        };
        assert!(matches!(check(&[], &[]), Err(ListenerError::NoListeners)));
        assert!(matches!(
            check(&[l("a"), l("a")], &[]),
            Err(ListenerError::DuplicateListener(name)) if name == "a"
        ));
        let cert = TlsCertificate {
            listener: "b".into(),
            cert: "c.pem".into(),
            key: "k.pem".into(),
        };
        assert!(matches!(
            check(&[l("a")], &[cert]),
            Err(ListenerError::Tls(TlsError::UnknownListener(name))) if name == "b"
        ));
        assert!(check(&[l("a"), l("b")], &[]).is_ok());
    }
}
