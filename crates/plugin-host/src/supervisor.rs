//! The supervisor: one task per plugin instance that starts it (spawn, wait for the handshake,
//! `configure`, `start`, the caller's [`BeforeReady`] replay), publishes its connections to the
//! [`crate::PluginHandle`]s, sends heartbeats, accepts the extra connections the plugin opens,
//! and restarts it with exponential backoff when it exits, closes its control connection (a
//! protocol violation closes it too) or misses too many heartbeats. On shutdown it sends `stop`,
//! waits for the process to exit and kills it if it does not. Each step is reported as a
//! [`PluginEventKind`].
//!
//! The control connection is the first one that completes its handshake: lifecycle calls go over
//! it and its closing means the instance is down. Extra connections only carry hook calls.

use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use gatekeeper_rpc::methods::{Configure, ConfigureParams, Empty, Heartbeat, Start, Stop};
use gatekeeper_rpc::peer::CloseReason;
use gatekeeper_rpc::Peer;
use tokio::net::{UnixListener, UnixStream};
use tokio::process::Child;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep, sleep_until, timeout, Instant};
use tokio_util::sync::CancellationToken;

use crate::error::StartError;
use crate::events::{EventSink, PluginEventKind};
use crate::handle::PluginStatus;
use crate::instance::{BeforeReady, InstanceConnection};
use crate::manager::ManagerService;
use crate::process::{self, describe, kill};
use crate::session::{self, Authenticated, SessionContext};
use crate::spec::PluginSpec;
use crate::state::{Connections, Declared, Instance, Shared};

/// After running healthy this long, the restart backoff goes back to its minimum.
pub(crate) const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(30);
/// How long a process whose connection closed gets to exit by itself before it is killed.
const EXIT_GRACE: Duration = Duration::from_millis(100);

/// A request to restart an instance with new settings (see [`crate::PluginHost::reconfigure`]):
/// the running process is stopped (`stop`), then one with `spec` is started; `done` gets the
/// outcome of that start.
pub(crate) struct Respawn {
    pub(crate) spec: Arc<PluginSpec>,
    pub(crate) done: oneshot::Sender<Result<(), String>>,
}

/// Why a running instance went down.
enum Ended {
    Shutdown,
    Respawn(Respawn),
    Exited(String),
    Closed(CloseReason),
    Heartbeats(u32),
    /// [`crate::PluginHandle::restart`] asked for it.
    RestartRequested,
}

impl fmt::Display for Ended {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ended::Shutdown => f.write_str("host shutting down"),
            Ended::Respawn(_) => f.write_str("restarting with new settings"),
            Ended::Exited(status) => write!(f, "process exited ({status})"),
            Ended::Closed(reason) => write!(f, "control connection closed ({reason})"),
            Ended::Heartbeats(n) => write!(f, "{n} consecutive heartbeats missed"),
            Ended::RestartRequested => f.write_str("restart requested"),
        }
    }
}

/// The next restart request; pending forever without a channel or once it is closed.
async fn next_respawn(respawns: &mut Option<mpsc::UnboundedReceiver<Respawn>>) -> Option<Respawn> {
    match respawns {
        Some(receiver) => match receiver.recv().await {
            Some(respawn) => Some(respawn),
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

/// One started process of the instance.
struct Running {
    child: Child,
    control: Peer,
    hooks: Arc<Declared>,
    context: Arc<SessionContext>,
    authenticated: mpsc::UnboundedReceiver<Authenticated>,
}

/// What a successful bring-up yields: the control connection, its hooks, extra connections.
type BroughtUp = (Peer, Arc<Declared>, Vec<Authenticated>);

/// Supervises one instance of a plugin; see the module docs.
pub(crate) struct Supervisor {
    pub(crate) spec: Arc<PluginSpec>,
    pub(crate) plugin: Arc<Shared>,
    pub(crate) instance: Arc<Instance>,
    pub(crate) listener: UnixListener,
    pub(crate) manager: Option<Arc<ManagerService>>,
    pub(crate) before_ready: Option<Arc<dyn BeforeReady>>,
    pub(crate) events: EventSink,
    pub(crate) cancel: CancellationToken,
    /// Requests to restart with new settings.
    pub(crate) respawns: Option<mpsc::UnboundedReceiver<Respawn>>,
}

impl Supervisor {
    /// Runs the instance until shutdown. The outcome of the first start is sent on `first`; if
    /// it failed (or nobody waits for it any more), the task ends there.
    pub(crate) async fn run(mut self, first: oneshot::Sender<Result<(), StartError>>) {
        let mut respawns = self.respawns.take();
        let mut running = match self.start().await {
            Ok(running) => running,
            Err(e) => {
                if !matches!(e, StartError::ShutDown) {
                    self.events.emit(PluginEventKind::Failed {
                        reason: format!("start failed: {e}"),
                    });
                }
                self.stopped();
                let _ = first.send(Err(e));
                return;
            }
        };
        self.events.emit(PluginEventKind::Started {
            pid: running.child.id(),
        });
        if first.send(Ok(())).is_err() {
            // The launch was abandoned.
            self.stop(running).await;
            return;
        }
        let mut backoff = self.spec.restart_backoff_min;
        loop {
            let ready_at = Instant::now();
            let ended = self.supervise(&mut running, &mut respawns).await;
            let mut wait = true;
            match ended {
                Ended::Shutdown => {
                    self.stop(running).await;
                    return;
                }
                Ended::Respawn(Respawn { spec, done }) => {
                    self.stop(running).await;
                    let previous = std::mem::replace(&mut self.spec, spec);
                    let restarts = self.instance.count_restart();
                    tracing::info!(plugin = %self.instance.label, restarts, "starting plugin with its new settings");
                    match self.start().await {
                        Ok(started) => {
                            self.events.emit(PluginEventKind::Restarted {
                                restarts,
                                pid: started.child.id(),
                            });
                            let _ = done.send(Ok(()));
                            running = started;
                            continue;
                        }
                        Err(StartError::ShutDown) => {
                            let _ = done.send(Err(StartError::ShutDown.to_string()));
                            return self.stopped();
                        }
                        Err(e) => {
                            tracing::warn!(plugin = %self.instance.label, error = %e, "plugin did not start with its new settings; going back to the previous ones");
                            self.spec = previous;
                            let _ = done.send(Err(e.to_string()));
                        }
                    }
                }
                Ended::RestartRequested => {
                    self.retire(running).await;
                    backoff = self.spec.restart_backoff_min;
                    wait = false;
                }
                ended => {
                    self.events.emit(PluginEventKind::Failed {
                        reason: ended.to_string(),
                    });
                    self.bring_down(running, ended).await;
                    if ready_at.elapsed() >= BACKOFF_RESET_AFTER {
                        backoff = self.spec.restart_backoff_min;
                    }
                    // A process that ran healthily is restarted at once; only a crash loop
                    // waits (in `Backoff`, when calls fail at once).
                    if ready_at.elapsed() >= self.spec.healthy_after {
                        wait = false;
                    }
                }
            }
            running = loop {
                if wait {
                    self.instance.set_status(PluginStatus::Backoff);
                    tokio::select! {
                        biased;
                        () = self.cancel.cancelled() => return self.stopped(),
                        () = sleep(backoff) => {}
                    }
                    self.instance.set_status(PluginStatus::Restarting);
                    backoff = backoff.saturating_mul(2).min(self.spec.restart_backoff_max);
                }
                wait = true;
                let restarts = self.instance.count_restart();
                tracing::info!(plugin = %self.instance.label, restarts, "restarting plugin");
                match self.start().await {
                    Ok(running) => {
                        self.events.emit(PluginEventKind::Restarted {
                            restarts,
                            pid: running.child.id(),
                        });
                        break running;
                    }
                    Err(StartError::ShutDown) => return self.stopped(),
                    Err(e) => {
                        tracing::warn!(plugin = %self.instance.label, error = %e, next_attempt_in = ?backoff, "plugin restart failed");
                        self.events.emit(PluginEventKind::Failed {
                            reason: format!("restart failed: {e}"),
                        });
                    }
                }
            };
        }
    }

    /// Marks the instance stopped for good.
    fn stopped(&self) {
        self.instance.set_status(PluginStatus::Stopped);
        self.events.emit(PluginEventKind::Stopped);
    }

    /// Spawns the process and brings it up to ready, within the spec's start timeout.
    async fn start(&self) -> Result<Running, StartError> {
        let (authenticated_tx, mut authenticated) = mpsc::unbounded_channel();
        let context = Arc::new(SessionContext {
            name: self.plugin.name.clone(),
            label: self.instance.label.clone(),
            plugin_type: self.spec.plugin_type,
            token: process::new_token(),
            manager: self.manager.clone(),
            events: authenticated_tx,
        });
        let deadline = Instant::now() + self.spec.start_timeout;
        let mut child = process::spawn(
            &self.spec,
            &self.instance.label,
            self.instance.index,
            &self.instance.socket_path,
            &context.token,
        )?;
        self.instance.set_pid(child.id());
        let outcome = tokio::select! {
            biased;
            () = self.cancel.cancelled() => Err(StartError::ShutDown),
            () = sleep_until(deadline) => Err(StartError::Timeout(self.spec.start_timeout)),
            outcome = self.bring_up(&mut child, &context, &mut authenticated) => outcome,
        };
        match outcome {
            Ok((control, hooks, extra)) => {
                let running = Running {
                    child,
                    control,
                    hooks,
                    context,
                    authenticated,
                };
                self.publish(&running, extra.into_iter().map(|a| a.peer));
                // A restart asked of an earlier process is done.
                self.instance
                    .restart_pending
                    .store(false, std::sync::atomic::Ordering::Release);
                self.instance.set_status(PluginStatus::Ready);
                tracing::info!(plugin = %self.instance.label, pid = ?running.child.id(), hooks = ?running.hooks.hooks, bodies = ?running.hooks.bodies, "plugin ready");
                Ok(running)
            }
            Err(e) => {
                authenticated.close();
                while let Ok(event) = authenticated.try_recv() {
                    event.peer.close();
                }
                kill(&mut child).await;
                self.instance.set_pid(None);
                Err(e)
            }
        }
    }

    /// Waits for the first authenticated connection, then calls `configure`, `start` and the
    /// before-ready replay on it. Returns it and any other connection authenticated meanwhile.
    async fn bring_up(
        &self,
        child: &mut Child,
        context: &Arc<SessionContext>,
        authenticated: &mut mpsc::UnboundedReceiver<Authenticated>,
    ) -> Result<BroughtUp, StartError> {
        let first = loop {
            tokio::select! {
                status = child.wait() => return Err(StartError::Exited { status: describe(status) }),
                accepted = self.listener.accept() => self.accept(accepted.map(|(s, _)| s), context).await,
                Some(event) = authenticated.recv() => break event,
            }
        };
        let control = first.peer;
        let hooks = Arc::new(first.hooks);
        let calls = self.initialize(&control, &hooks);
        tokio::pin!(calls);
        let mut extra = Vec::new();
        loop {
            tokio::select! {
                outcome = &mut calls => {
                    outcome?;
                    return Ok((control.clone(), hooks.clone(), extra));
                }
                accepted = self.listener.accept() => self.accept(accepted.map(|(s, _)| s), context).await,
                Some(event) = authenticated.recv() => extra.push(event),
            }
        }
    }

    /// `configure`, `start`, then the caller's before-ready replay.
    async fn initialize(&self, control: &Peer, hooks: &Arc<Declared>) -> Result<(), StartError> {
        let limit = self.spec.start_timeout;
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
        if let Some(before_ready) = &self.before_ready {
            let connection = InstanceConnection {
                plugin: self.plugin.name.clone(),
                plugin_type: self.spec.plugin_type,
                instance: self.instance.index,
                restarts: self.instance.restarts(),
                pid: self.instance.pid(),
                hooks: hooks.clone(),
                hook_timeout: self.spec.hook_timeout,
                peer: control.clone(),
            };
            before_ready
                .before_ready(connection)
                .await
                .map_err(StartError::BeforeReady)?;
        }
        Ok(())
    }

    /// Serves a new connection (see [`session::serve`]).
    async fn accept(&self, accepted: io::Result<UnixStream>, context: &Arc<SessionContext>) {
        match accepted {
            Ok(stream) => session::serve(stream, context, self.spec.start_timeout),
            Err(e) => {
                tracing::warn!(plugin = %self.instance.label, error = %e, "could not accept a plugin connection");
                // E.g. out of file descriptors: do not spin.
                sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// Makes the running instance callable: its control connection plus `extra` ones.
    fn publish(&self, running: &Running, extra: impl IntoIterator<Item = Peer>) {
        let peers = std::iter::once(running.control.clone())
            .chain(extra)
            .collect();
        self.instance.declared.store(Some(running.hooks.clone()));
        self.instance.connections.store(Some(Arc::new(Connections {
            peers,
            hooks: running.hooks.clone(),
        })));
        self.plugin.became_ready.notify_waiters();
    }

    /// Adds an extra authenticated connection to the published ones.
    fn add_connection(&self, hooks: &Arc<Declared>, event: Authenticated) {
        if event.hooks != **hooks {
            tracing::warn!(plugin = %self.instance.label, declared = ?event.hooks, used = ?hooks, "an extra connection declared other hooks than the first; using the first's");
        }
        let current = self.instance.connections.load_full();
        let mut peers: Vec<Peer> = current
            .map(|c| c.peers.iter().filter(|p| !p.is_closed()).cloned().collect())
            .unwrap_or_default();
        peers.push(event.peer);
        self.instance.connections.store(Some(Arc::new(Connections {
            peers,
            hooks: hooks.clone(),
        })));
    }

    /// Watches a ready instance until it goes down or the host shuts down.
    async fn supervise(
        &self,
        running: &mut Running,
        respawns: &mut Option<mpsc::UnboundedReceiver<Respawn>>,
    ) -> Ended {
        let Running {
            child,
            control,
            hooks,
            context,
            authenticated,
        } = running;
        let heartbeats = self.heartbeats(control);
        tokio::pin!(heartbeats);
        loop {
            tokio::select! {
                biased;
                () = self.cancel.cancelled() => return Ended::Shutdown,
                status = child.wait() => return Ended::Exited(describe(status)),
                reason = control.closed() => return Ended::Closed(reason),
                misses = &mut heartbeats => return Ended::Heartbeats(misses),
                () = self.instance.restart_requested.notified() => {
                    if self.instance.restart_pending.swap(false, std::sync::atomic::Ordering::AcqRel) {
                        return Ended::RestartRequested;
                    }
                }
                Some(respawn) = next_respawn(respawns) => return Ended::Respawn(respawn),
                accepted = self.listener.accept() => self.accept(accepted.map(|(s, _)| s), context).await,
                Some(event) = authenticated.recv() => self.add_connection(hooks, event),
            }
        }
    }

    /// Sends heartbeats on the control connection forever; returns the number of consecutive
    /// misses once it reaches the spec's limit.
    async fn heartbeats(&self, control: &Peer) -> u32 {
        let spec = &self.spec;
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
                    tracing::warn!(plugin = %self.instance.label, missed, allowed, error = %e, "missed heartbeat");
                    self.events
                        .emit(PluginEventKind::HeartbeatMissed { missed });
                    if missed >= allowed {
                        return missed;
                    }
                }
            }
        }
    }

    /// Takes an instance that went down out of service: no more calls, connections closed, the
    /// process killed if it still runs.
    async fn bring_down(&self, mut running: Running, ended: Ended) {
        self.unpublish(&mut running);
        self.instance.set_status(PluginStatus::Restarting);
        let status = match &ended {
            Ended::Exited(status) => status.clone(),
            _ => match timeout(EXIT_GRACE, running.child.wait()).await {
                Ok(status) => describe(status),
                Err(_) => kill(&mut running.child).await,
            },
        };
        self.instance.set_pid(None);
        tracing::warn!(plugin = %self.instance.label, reason = %ended, exit_status = %status, "plugin is down; it will be restarted");
    }

    /// Stops a running instance for a requested restart: out of service at once, then `stop`,
    /// wait for the exit (kill if needed).
    async fn retire(&self, mut running: Running) {
        if let Some(connections) = self.instance.connections.swap(None) {
            for peer in connections.peers.iter().skip(1) {
                peer.close();
            }
        }
        self.instance.set_status(PluginStatus::Restarting);
        let limit = self.spec.stop_timeout;
        if let Err(e) = running.control.request::<Stop>(&Empty {}, limit).await {
            tracing::debug!(plugin = %self.instance.label, error = %e, "`stop` failed");
        }
        let status = match timeout(limit, running.child.wait()).await {
            Ok(status) => describe(status),
            Err(_) => kill(&mut running.child).await,
        };
        self.unpublish(&mut running);
        self.instance.set_pid(None);
        tracing::info!(plugin = %self.instance.label, exit_status = %status, "plugin stopped for a requested restart");
    }

    /// Stops a running instance for good: `stop`, wait for the exit, kill if needed.
    async fn stop(&self, mut running: Running) {
        self.instance.connections.store(None);
        self.instance.set_status(PluginStatus::Stopped);
        let limit = self.spec.stop_timeout;
        if let Err(e) = running.control.request::<Stop>(&Empty {}, limit).await {
            tracing::debug!(plugin = %self.instance.label, error = %e, "`stop` failed");
        }
        let status = match timeout(limit, running.child.wait()).await {
            Ok(status) => describe(status),
            Err(_) => {
                tracing::warn!(plugin = %self.instance.label, timeout = ?limit, "plugin did not exit after `stop`; killing it");
                kill(&mut running.child).await
            }
        };
        self.unpublish(&mut running);
        self.instance.set_pid(None);
        self.events.emit(PluginEventKind::Stopped);
        tracing::info!(plugin = %self.instance.label, exit_status = %status, "plugin stopped");
    }

    /// Removes the published connections and closes every connection of this process.
    fn unpublish(&self, running: &mut Running) {
        if let Some(connections) = self.instance.connections.swap(None) {
            for peer in &connections.peers {
                peer.close();
            }
        }
        running.control.close();
        running.authenticated.close();
        while let Ok(event) = running.authenticated.try_recv() {
            event.peer.close();
        }
    }
}
