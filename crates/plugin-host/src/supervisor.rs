//! The supervisor: one task per plugin that starts it (spawn, wait for the handshake, `configure`,
//! `start`), publishes its connections to the [`crate::PluginHandle`]s, sends heartbeats, accepts
//! the extra connections the plugin opens, and restarts it with exponential backoff when it exits,
//! closes its control connection or misses too many heartbeats. On shutdown it sends `stop`, waits
//! for the process to exit and kills it if it does not.
//!
//! The control connection is the first one that completes its handshake: lifecycle calls go over
//! it and its closing means the plugin is down. Extra connections only carry hook calls.

use std::collections::HashSet;
use std::fmt;
use std::io;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use gatekeeper_rpc::methods::{Configure, ConfigureParams, Empty, Heartbeat, Start, Stop};
use gatekeeper_rpc::peer::CloseReason;
use gatekeeper_rpc::{Peer, PeerConfig};
use tokio::net::{UnixListener, UnixStream};
use tokio::process::Child;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep, sleep_until, timeout, Instant};
use tokio_util::sync::CancellationToken;

use crate::error::StartError;
use crate::handle::{Connections, PluginStatus, Shared};
use crate::manager::ManagerService;
use crate::process;
use crate::session::{Authenticated, Session, SessionContext};
use crate::spec::PluginSpec;

/// After running healthy this long, the restart backoff goes back to its minimum.
pub(crate) const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(30);
/// How long a process whose connection closed gets to exit by itself before it is killed.
const EXIT_GRACE: Duration = Duration::from_millis(100);
/// Upper bound on waiting for a killed process to be reaped.
const REAP_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a running plugin went down.
enum Ended {
    Shutdown,
    Exited(String),
    Closed(CloseReason),
    Heartbeats(u32),
}

impl fmt::Display for Ended {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ended::Shutdown => f.write_str("host shutting down"),
            Ended::Exited(status) => write!(f, "process exited ({status})"),
            Ended::Closed(reason) => write!(f, "control connection closed ({reason:?})"),
            Ended::Heartbeats(n) => write!(f, "{n} consecutive heartbeats missed"),
        }
    }
}

/// One started process of the plugin.
struct Running {
    child: Child,
    control: Peer,
    hooks: HashSet<String>,
    context: Arc<SessionContext>,
    events: mpsc::UnboundedReceiver<Authenticated>,
}

/// Supervises one plugin; see the module docs.
pub(crate) struct Supervisor {
    pub(crate) spec: PluginSpec,
    pub(crate) shared: Arc<Shared>,
    pub(crate) listener: UnixListener,
    pub(crate) manager: Option<Arc<ManagerService>>,
    pub(crate) cancel: CancellationToken,
}

impl Supervisor {
    /// Runs the plugin until shutdown. The outcome of the first start is sent on `first`; if it
    /// failed (or nobody waits for it any more), the task ends there.
    pub(crate) async fn run(self, first: oneshot::Sender<Result<(), StartError>>) {
        let mut running = match self.start().await {
            Ok(running) => running,
            Err(e) => {
                self.shared.set_status(PluginStatus::Stopped);
                let _ = first.send(Err(e));
                return;
            }
        };
        if first.send(Ok(())).is_err() {
            // The launch was abandoned.
            self.stop(running).await;
            return;
        }
        let mut backoff = self.spec.restart_backoff_min;
        loop {
            let ready_at = Instant::now();
            let ended = self.supervise(&mut running).await;
            if let Ended::Shutdown = ended {
                self.stop(running).await;
                return;
            }
            self.bring_down(running, ended).await;
            if ready_at.elapsed() >= BACKOFF_RESET_AFTER {
                backoff = self.spec.restart_backoff_min;
            }
            running = loop {
                tokio::select! {
                    biased;
                    () = self.cancel.cancelled() => {
                        self.shared.set_status(PluginStatus::Stopped);
                        return;
                    }
                    () = sleep(backoff) => {}
                }
                backoff = backoff.saturating_mul(2).min(self.spec.restart_backoff_max);
                self.shared.count_restart();
                tracing::info!(plugin = %self.spec.name, restarts = self.shared.restarts(), "restarting plugin");
                match self.start().await {
                    Ok(running) => break running,
                    Err(StartError::ShutDown) => {
                        self.shared.set_status(PluginStatus::Stopped);
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(plugin = %self.spec.name, error = %e, next_attempt_in = ?backoff, "plugin restart failed");
                    }
                }
            };
        }
    }

    /// Spawns the process and brings it up to `start`, within the spec's start timeout.
    async fn start(&self) -> Result<Running, StartError> {
        let token = process::new_token();
        let (events_tx, mut events) = mpsc::unbounded_channel();
        let context = Arc::new(SessionContext {
            name: self.shared.name.clone(),
            plugin_type: self.spec.plugin_type,
            token,
            manager: self.manager.clone(),
            events: events_tx,
        });
        let deadline = Instant::now() + self.spec.start_timeout;
        let mut child = process::spawn(&self.spec, &self.shared.socket_path, &context.token)?;
        self.shared.set_pid(child.id());
        let outcome = tokio::select! {
            biased;
            () = self.cancel.cancelled() => Err(StartError::ShutDown),
            () = sleep_until(deadline) => Err(StartError::Timeout(self.spec.start_timeout)),
            outcome = self.bring_up(&mut child, &context, &mut events) => outcome,
        };
        match outcome {
            Ok((first, extra)) => {
                let running = Running {
                    child,
                    control: first.peer,
                    hooks: first.hooks,
                    context,
                    events,
                };
                self.publish(&running, extra.into_iter().map(|a| a.peer));
                self.shared.set_status(PluginStatus::Ready);
                tracing::info!(plugin = %self.spec.name, pid = ?running.child.id(), hooks = ?running.hooks, "plugin ready");
                Ok(running)
            }
            Err(e) => {
                events.close();
                while let Ok(event) = events.try_recv() {
                    event.peer.close();
                }
                kill(&mut child).await;
                self.shared.set_pid(None);
                Err(e)
            }
        }
    }

    /// Waits for the first authenticated connection, then calls `configure` and `start` on it.
    /// Returns it and any other connection authenticated meanwhile.
    async fn bring_up(
        &self,
        child: &mut Child,
        context: &Arc<SessionContext>,
        events: &mut mpsc::UnboundedReceiver<Authenticated>,
    ) -> Result<(Authenticated, Vec<Authenticated>), StartError> {
        let first = loop {
            tokio::select! {
                status = child.wait() => return Err(StartError::Exited { status: describe(status) }),
                accepted = self.listener.accept() => self.accept(accepted.map(|(s, _)| s), context).await,
                Some(event) = events.recv() => break event,
            }
        };
        let limit = self.spec.start_timeout;
        let control = first.peer.clone();
        let calls = async move {
            let params = ConfigureParams {
                config: self.spec.config.clone(),
            };
            control
                .request::<Configure>(&params, limit)
                .await
                .map_err(StartError::Configure)?;
            control
                .request::<Start>(&Empty {}, limit)
                .await
                .map_err(StartError::Start)?;
            Ok::<(), StartError>(())
        };
        tokio::pin!(calls);
        let mut extra = Vec::new();
        loop {
            tokio::select! {
                outcome = &mut calls => {
                    outcome?;
                    return Ok((first, extra));
                }
                accepted = self.listener.accept() => self.accept(accepted.map(|(s, _)| s), context).await,
                Some(event) = events.recv() => extra.push(event),
            }
        }
    }

    /// Serves a new connection; closes it if it does not complete a handshake in time.
    async fn accept(&self, accepted: io::Result<UnixStream>, context: &Arc<SessionContext>) {
        let stream = match accepted {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(plugin = %self.spec.name, error = %e, "could not accept a plugin connection");
                // E.g. out of file descriptors: do not spin.
                sleep(Duration::from_millis(50)).await;
                return;
            }
        };
        let session = Arc::new(Session::new(context.clone()));
        let config = PeerConfig {
            name: self.spec.name.clone(),
            ..PeerConfig::default()
        };
        let peer = Peer::spawn(stream, session.clone(), config);
        let limit = self.spec.start_timeout;
        let name = self.shared.name.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = peer.closed() => {}
                () = sleep(limit) => {
                    if !session.is_authenticated() {
                        tracing::warn!(plugin = %name, "closing a connection that did not complete its handshake in time");
                        peer.close();
                    }
                }
            }
        });
    }

    /// Makes the running plugin callable: its control connection plus `extra` ones.
    fn publish(&self, running: &Running, extra: impl IntoIterator<Item = Peer>) {
        let peers = std::iter::once(running.control.clone())
            .chain(extra)
            .collect();
        self.shared.connections.store(Some(Arc::new(Connections {
            peers,
            hooks: running.hooks.clone(),
        })));
    }

    /// Adds an extra authenticated connection to the published ones.
    fn add_connection(&self, hooks: &HashSet<String>, event: Authenticated) {
        if &event.hooks != hooks {
            tracing::warn!(plugin = %self.spec.name, declared = ?event.hooks, used = ?hooks, "an extra connection declared other hooks than the first; using the first's");
        }
        let current = self.shared.connections.load_full();
        let mut peers: Vec<Peer> = current
            .map(|c| c.peers.iter().filter(|p| !p.is_closed()).cloned().collect())
            .unwrap_or_default();
        peers.push(event.peer);
        self.shared.connections.store(Some(Arc::new(Connections {
            peers,
            hooks: hooks.clone(),
        })));
    }

    /// Watches a ready plugin until it goes down or the host shuts down.
    async fn supervise(&self, running: &mut Running) -> Ended {
        let Running {
            child,
            control,
            hooks,
            context,
            events,
        } = running;
        let heartbeats = heartbeats(control, &self.spec);
        tokio::pin!(heartbeats);
        loop {
            tokio::select! {
                biased;
                () = self.cancel.cancelled() => return Ended::Shutdown,
                status = child.wait() => return Ended::Exited(describe(status)),
                reason = control.closed() => return Ended::Closed(reason),
                misses = &mut heartbeats => return Ended::Heartbeats(misses),
                accepted = self.listener.accept() => self.accept(accepted.map(|(s, _)| s), context).await,
                Some(event) = events.recv() => self.add_connection(hooks, event),
            }
        }
    }

    /// Takes a plugin that went down out of service: no more calls, connections closed, the
    /// process killed if it still runs.
    async fn bring_down(&self, mut running: Running, ended: Ended) {
        self.unpublish(&mut running);
        self.shared.set_status(PluginStatus::Restarting);
        let status = match &ended {
            Ended::Exited(status) => status.clone(),
            _ => match timeout(EXIT_GRACE, running.child.wait()).await {
                Ok(status) => describe(status),
                Err(_) => kill(&mut running.child).await,
            },
        };
        self.shared.set_pid(None);
        tracing::warn!(plugin = %self.spec.name, reason = %ended, exit_status = %status, "plugin is down; it will be restarted");
    }

    /// Stops a running plugin for good: `stop`, wait for the exit, kill if needed.
    async fn stop(&self, mut running: Running) {
        self.shared.connections.store(None);
        self.shared.set_status(PluginStatus::Stopped);
        let limit = self.spec.stop_timeout;
        if let Err(e) = running.control.request::<Stop>(&Empty {}, limit).await {
            tracing::debug!(plugin = %self.spec.name, error = %e, "`stop` failed");
        }
        let status = match timeout(limit, running.child.wait()).await {
            Ok(status) => describe(status),
            Err(_) => {
                tracing::warn!(plugin = %self.spec.name, timeout = ?limit, "plugin did not exit after `stop`; killing it");
                kill(&mut running.child).await
            }
        };
        self.unpublish(&mut running);
        self.shared.set_pid(None);
        tracing::info!(plugin = %self.spec.name, exit_status = %status, "plugin stopped");
    }

    /// Removes the published connections and closes every connection of this process.
    fn unpublish(&self, running: &mut Running) {
        if let Some(connections) = self.shared.connections.swap(None) {
            for peer in &connections.peers {
                peer.close();
            }
        }
        running.control.close();
        running.events.close();
        while let Ok(event) = running.events.try_recv() {
            event.peer.close();
        }
    }
}

/// Sends heartbeats on the control connection forever; returns the number of consecutive misses
/// once it reaches the spec's limit.
async fn heartbeats(control: &Peer, spec: &PluginSpec) -> u32 {
    let allowed = spec.missed_heartbeats_allowed.max(1);
    let mut missed = 0;
    let mut ticks = tokio::time::interval_at(
        Instant::now() + spec.heartbeat_interval,
        spec.heartbeat_interval.max(Duration::from_millis(1)),
    );
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match control
            .request::<Heartbeat>(&Empty {}, spec.heartbeat_timeout)
            .await
        {
            Ok(Empty {}) => missed = 0,
            Err(e) => {
                missed += 1;
                tracing::warn!(plugin = %spec.name, missed, allowed, error = %e, "missed heartbeat");
                if missed >= allowed {
                    return missed;
                }
            }
        }
    }
}

/// Kills a process and reaps it; returns its exit status as text.
async fn kill(child: &mut Child) -> String {
    if let Ok(Some(status)) = child.try_wait() {
        return status.to_string();
    }
    if let Err(e) = child.start_kill() {
        tracing::debug!(error = %e, "could not kill a plugin process");
    }
    match timeout(REAP_TIMEOUT, child.wait()).await {
        Ok(status) => describe(status),
        Err(_) => "unknown (not reaped after kill)".to_owned(),
    }
}

fn describe(status: io::Result<ExitStatus>) -> String {
    match status {
        Ok(status) => status.to_string(),
        Err(e) => format!("unknown ({e})"),
    }
}
