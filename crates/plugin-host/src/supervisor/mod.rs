//! The supervisor: one task per plugin instance that starts its process (up to `start_attempts`
//! times at launch; see [`starter`]), publishes its connections to the [`crate::PluginHandle`]s,
//! sends heartbeats, accepts the extra connections the plugin opens, and replaces the process
//! when it goes down. Each step is reported as a [`PluginEventKind`].
//!
//! Restart policy, per instance: a process that dies (exits, closes its control connection, breaks
//! the protocol, misses heartbeats, or is taken as hung) after it was ready for `healthy_after` is
//! replaced at once (status `Restarting`); one that dies sooner is in a crash loop and waits a
//! backoff first (status `Backoff`; from `restart_backoff_min`, doubling up to
//! `restart_backoff_max`, back to the minimum once a process runs `healthy_after`). A failed
//! restart counts as a quick death. With `standby`, a ready spare from the plugin's
//! [`standby`] pool takes over at once instead (after the caller's replay). A process past
//! `max_memory` or `recycle_after` is replaced make-before-break ([`recycle`]). Upstream
//! plugins' managers hear `restarting`/`restarted` around each restart. On shutdown the
//! supervisor sends `stop`, waits for the process to exit and kills it if it does not.
//!
//! The control connection is the first one that completes its handshake: lifecycle calls go over
//! it and its closing means the process is down. Extra connections only carry hook calls. Each
//! process listens on its own socket (the instance's base path for its first process).

pub(crate) mod recycle;
pub(crate) mod standby;
pub(crate) mod start_watch;
pub(crate) mod starter;

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use gatekeeper_rpc::methods::{Empty, Heartbeat, Stop};
use gatekeeper_rpc::peer::CloseReason;
use gatekeeper_rpc::Peer;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::{sleep, timeout, Instant};

use crate::error::StartError;
use crate::events::{EventSink, PluginEventKind};
use crate::handle::PluginStatus;
use crate::process::{describe, kill};
use crate::session::Authenticated;
use crate::socket_dir::generation_path;
use crate::spec::PluginSpec;
use crate::state::{Connections, Instance};

use standby::Standby;
use starter::{accept, ProcessSocket, ReplayFor, Running, Starter};

/// How long a process whose connection closed gets to exit by itself before it is killed.
const EXIT_GRACE: Duration = Duration::from_millis(100);

/// A request to restart an instance with new settings (see [`crate::PluginHost::reconfigure`]):
/// the running process is stopped (`stop`), then one with `spec` is started; `done` gets the
/// outcome of that start.
pub(crate) struct Respawn {
    pub(crate) spec: Arc<PluginSpec>,
    pub(crate) done: oneshot::Sender<Result<(), String>>,
}

/// Why the first start of an instance failed, after how many attempts.
pub(crate) type FirstStart = Result<(), (StartError, u32)>;

/// Why a running process stopped serving.
enum Ended {
    Shutdown,
    Respawn(Respawn),
    Exited(String),
    Closed(CloseReason),
    Heartbeats(u32),
    /// [`crate::PluginHandle::restart`] asked for it.
    RestartRequested,
    /// Past `max_memory` or `recycle_after`: the text says which.
    Recycle(String),
}

impl fmt::Display for Ended {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ended::Shutdown => f.write_str("host shutting down"),
            Ended::Respawn(_) => f.write_str("restarting with new settings"),
            Ended::Exited(status) => write!(f, "process exited ({status})"),
            Ended::Closed(reason @ (CloseReason::Hung(_) | CloseReason::Failing(_))) => {
                write!(f, "{reason}")
            }
            Ended::Closed(reason) => write!(f, "control connection closed ({reason})"),
            Ended::Heartbeats(n) => write!(f, "{n} consecutive heartbeats missed"),
            Ended::RestartRequested => f.write_str("restart requested"),
            Ended::Recycle(reason) => write!(f, "recycled: {reason}"),
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

/// Supervises one instance of a plugin; see the module docs.
pub(crate) struct Supervisor {
    pub(crate) spec: Arc<PluginSpec>,
    pub(crate) starter: Arc<Starter>,
    pub(crate) instance: Arc<Instance>,
    pub(crate) events: EventSink,
    /// Requests to restart with new settings.
    pub(crate) respawns: Option<mpsc::UnboundedReceiver<Respawn>>,
    /// The plugin's spares, with `standby`.
    pub(crate) standby: Option<Standby>,
    /// Processes started so far (names their sockets).
    pub(crate) generation: u64,
    /// Replaced processes being let go.
    pub(crate) retiring: JoinSet<()>,
}

impl Supervisor {
    /// Runs the instance until shutdown. The outcome of the first start (after up to
    /// `start_attempts` attempts) is sent on `first`; if it failed (or nobody waits for it any
    /// more), the task ends there.
    pub(crate) async fn run(mut self, first: oneshot::Sender<FirstStart>) {
        let mut respawns = self.respawns.take();
        let mut running = match self.start_with_attempts(Some(&first)).await {
            Ok(running) => running,
            Err(failure) => {
                self.stopped();
                let _ = first.send(Err(failure));
                return;
            }
        };
        self.publish(&mut running);
        self.events
            .emit(PluginEventKind::Started { pid: running.pid });
        if first.send(Ok(())).is_err() {
            // The launch was abandoned.
            self.stop(running).await;
            return;
        }
        let mut backoff = self.spec.restart_backoff_min;
        let mut recycle_blocked_until = None;
        loop {
            // Forget the replaced processes already let go.
            while self.retiring.try_join_next().is_some() {}
            let ended = self
                .supervise(&mut running, &mut respawns, recycle_blocked_until)
                .await;
            match ended {
                Ended::Shutdown => {
                    self.stop(running).await;
                    return;
                }
                Ended::Respawn(respawn) => match self.respawn(running, respawn).await {
                    Some(next) => running = next,
                    None => return,
                },
                Ended::RestartRequested => {
                    self.retire(running).await;
                    backoff = self.spec.restart_backoff_min;
                    running = match self.restart(false, &mut backoff).await {
                        Some(next) => next,
                        None => return,
                    };
                }
                Ended::Recycle(reason) => match self.recycle(&mut running, &reason).await {
                    Ok(()) => recycle_blocked_until = None,
                    Err(StartError::ShutDown) => {
                        self.stop(running).await;
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(plugin = %self.instance.label, error = %e, %reason, "could not start a successor to recycle the plugin; keeping the running process");
                        recycle_blocked_until = Some(Instant::now() + backoff);
                        backoff = backoff.saturating_mul(2).min(self.spec.restart_backoff_max);
                    }
                },
                ended => {
                    let healthy = running.ready_at.elapsed() >= self.spec.healthy_after;
                    if healthy {
                        backoff = self.spec.restart_backoff_min;
                    }
                    self.events.emit(PluginEventKind::Failed {
                        reason: ended.to_string(),
                    });
                    self.bring_down(running, ended, healthy).await;
                    if let Some(next) = self.take_spare().await {
                        running = next;
                        continue;
                    }
                    running = match self.restart(!healthy, &mut backoff).await {
                        Some(next) => next,
                        None => return,
                    };
                }
            }
        }
    }

    /// Marks the instance stopped for good.
    fn stopped(&self) {
        self.instance.set_status(PluginStatus::Stopped);
        self.events.emit(PluginEventKind::Stopped);
    }

    /// Starts a process for this instance (with the replay), on a fresh socket.
    async fn start_process(&mut self) -> Result<Running, StartError> {
        let path = generation_path(&self.instance.socket_path, 'g', self.generation);
        self.generation += 1;
        let socket = ProcessSocket::bind(path)?;
        let replay = ReplayFor {
            instance: self.instance.index,
            restarts: self.instance.restarts(),
        };
        self.starter
            .start(
                &self.spec,
                &self.instance.label,
                self.instance.index,
                socket,
                Some(replay),
            )
            .await
    }

    /// Starts a process, trying up to `start_attempts` times with the restart backoff between
    /// attempts (at launch and with new settings). Stops early if `first`'s receiver is gone.
    async fn start_with_attempts(
        &mut self,
        first: Option<&oneshot::Sender<FirstStart>>,
    ) -> Result<Running, (StartError, u32)> {
        let attempts = self.spec.start_attempts.max(1);
        let mut backoff = self.spec.restart_backoff_min;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let error = match self.start_process().await {
                Ok(running) => return Ok(running),
                Err(StartError::ShutDown) => return Err((StartError::ShutDown, attempt)),
                Err(e) => e,
            };
            self.events.emit(PluginEventKind::Failed {
                reason: format!("start failed: {error}"),
            });
            if attempt >= attempts || first.is_some_and(|f| f.is_closed()) {
                return Err((error, attempt));
            }
            tracing::warn!(plugin = %self.instance.label, attempt, attempts, error = %error, next_attempt_in = ?backoff, "plugin did not start; trying again");
            tokio::select! {
                biased;
                () = self.starter.cancel.cancelled() => return Err((StartError::ShutDown, attempt)),
                () = sleep(backoff) => {}
            }
            backoff = backoff.saturating_mul(2).min(self.spec.restart_backoff_max);
        }
    }

    /// Restarts with new settings: `stop`, then start with the new spec (up to `start_attempts`
    /// times); if that fails, back to the previous spec, restarted like after a crash. `None`
    /// when the host shut down meanwhile.
    async fn respawn(&mut self, running: Running, respawn: Respawn) -> Option<Running> {
        let Respawn { spec, done } = respawn;
        self.stop(running).await;
        let previous = std::mem::replace(&mut self.spec, spec);
        let restarts = self.instance.count_restart();
        self.instance.set_status(PluginStatus::Restarting);
        tracing::info!(plugin = %self.instance.label, restarts, "starting plugin with its new settings");
        match self.start_with_attempts(None).await {
            Ok(mut started) => {
                self.publish(&mut started);
                self.events.emit(PluginEventKind::Restarted {
                    restarts,
                    pid: started.pid,
                });
                let _ = done.send(Ok(()));
                Some(started)
            }
            Err((StartError::ShutDown, _)) => {
                let _ = done.send(Err(StartError::ShutDown.to_string()));
                self.stopped();
                None
            }
            Err((e, attempts)) => {
                tracing::warn!(plugin = %self.instance.label, error = %e, attempts, "plugin did not start with its new settings; going back to the previous ones");
                self.spec = previous;
                let _ = done.send(Err(e.to_string()));
                let mut backoff = self.spec.restart_backoff_min;
                self.restart(false, &mut backoff).await
            }
        }
    }

    /// Starts a new process after the previous one went down: at once, or after `backoff` if
    /// `wait` (crash loop); each failed start waits the (doubled) backoff before the next.
    /// Returns `None` when the host shut down meanwhile.
    async fn restart(&mut self, mut wait: bool, backoff: &mut Duration) -> Option<Running> {
        loop {
            if wait {
                self.instance.set_status(PluginStatus::Backoff);
                tokio::select! {
                    biased;
                    () = self.starter.cancel.cancelled() => {
                        self.stopped();
                        return None;
                    }
                    () = sleep(*backoff) => {}
                }
                *backoff = backoff.saturating_mul(2).min(self.spec.restart_backoff_max);
            }
            wait = true;
            self.instance.set_status(PluginStatus::Restarting);
            let restarts = self.instance.count_restart();
            tracing::info!(plugin = %self.instance.label, restarts, "restarting plugin");
            if let Some(manager) = &self.starter.manager {
                manager.restarting();
            }
            match self.start_process().await {
                Ok(mut running) => {
                    if let Some(manager) = &self.starter.manager {
                        manager.restarted();
                    }
                    self.publish(&mut running);
                    self.events.emit(PluginEventKind::Restarted {
                        restarts,
                        pid: running.pid,
                    });
                    return Some(running);
                }
                Err(StartError::ShutDown) => {
                    self.stopped();
                    return None;
                }
                Err(e) => {
                    tracing::warn!(plugin = %self.instance.label, error = %e, next_attempt_in = ?backoff, "plugin restart failed");
                    self.events.emit(PluginEventKind::Failed {
                        reason: format!("restart failed: {e}"),
                    });
                }
            }
        }
    }

    /// Makes `running` the instance's callable process: its control connection plus the extra
    /// ones authenticated so far.
    fn publish(&self, running: &mut Running) {
        let mut peers = vec![running.control.clone()];
        peers.append(&mut running.extra);
        while let Ok(event) = running.authenticated.try_recv() {
            peers.push(event.peer);
        }
        self.instance.declared.store(Some(running.hooks.clone()));
        self.instance.connections.store(Some(Arc::new(Connections {
            peers,
            hooks: running.hooks.clone(),
            calls: running.calls.clone(),
        })));
        self.instance.set_pid(running.pid);
        self.instance
            .current_socket
            .store(Arc::new(running.socket.path.clone()));
        // A restart asked of an earlier process is done.
        self.instance
            .restart_pending
            .store(false, Ordering::Release);
        self.instance.set_status(PluginStatus::Ready);
        self.starter.plugin.became_ready.notify_waiters();
        tracing::info!(plugin = %self.instance.label, pid = running.pid, hooks = ?running.hooks.hooks, bodies = ?running.hooks.bodies, "plugin ready");
    }

    /// Adds an extra authenticated connection to the published ones.
    fn add_connection(&self, running: &Running, event: Authenticated) {
        let hooks = &running.hooks;
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
            calls: running.calls.clone(),
        })));
    }

    /// Watches a ready process until it goes down, is due for recycling, or the host shuts down.
    async fn supervise(
        &self,
        running: &mut Running,
        respawns: &mut Option<mpsc::UnboundedReceiver<Respawn>>,
        recycle_blocked_until: Option<Instant>,
    ) -> Ended {
        let heartbeats = self.heartbeats(running.control.clone());
        tokio::pin!(heartbeats);
        let mut recycle_checks = recycle::check_interval(&self.spec).map(|every| {
            let mut ticks = tokio::time::interval_at(Instant::now() + every, every);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks
        });
        loop {
            let recycle_tick = async {
                match recycle_checks.as_mut() {
                    Some(ticks) => ticks.tick().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = self.starter.cancel.cancelled() => return Ended::Shutdown,
                status = running.child.wait() => return Ended::Exited(describe(status)),
                reason = running.control.closed() => return Ended::Closed(reason),
                misses = &mut heartbeats => return Ended::Heartbeats(misses),
                () = self.instance.restart_requested.notified() => {
                    if self.instance.restart_pending.swap(false, Ordering::AcqRel) {
                        return Ended::RestartRequested;
                    }
                }
                Some(respawn) = next_respawn(respawns) => return Ended::Respawn(respawn),
                _ = recycle_tick => {
                    let blocked = recycle_blocked_until.is_some_and(|until| Instant::now() < until);
                    if !blocked {
                        if let Some(reason) = recycle::due(&self.spec, running) {
                            return Ended::Recycle(reason);
                        }
                    }
                }
                accepted = running.socket.listener.accept() => {
                    accept(accepted.map(|(s, _)| s), &running.context, self.spec.start_timeout).await;
                }
                Some(event) = running.authenticated.recv() => self.add_connection(running, event),
            }
        }
    }

    /// Sends heartbeats on the control connection forever; returns the number of consecutive
    /// misses once it reaches the spec's limit.
    async fn heartbeats(&self, control: Peer) -> u32 {
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

    /// Takes a process that went down out of service: no more calls, connections closed, the
    /// process killed if it still runs. One WARN line per crash.
    async fn bring_down(&self, mut running: Running, ended: Ended, healthy: bool) {
        self.unpublish(&mut running);
        // A crash loop waits (calls fail at once) unless a spare may take over now.
        let waits = !healthy && self.standby.is_none();
        self.instance.set_status(if waits {
            PluginStatus::Backoff
        } else {
            PluginStatus::Restarting
        });
        let status = match &ended {
            Ended::Exited(status) => status.clone(),
            _ => match timeout(EXIT_GRACE, running.child.wait()).await {
                Ok(status) => describe(status),
                Err(_) => kill(&mut running.child).await,
            },
        };
        self.instance.set_pid(None);
        self.instance
            .current_socket
            .store(Arc::new(self.instance.socket_path.clone()));
        let ran = running.ready_at.elapsed();
        if healthy {
            tracing::warn!(plugin = %self.instance.label, reason = %ended, exit_status = %status, "plugin is down; restarting it at once");
        } else {
            tracing::warn!(plugin = %self.instance.label, reason = %ended, exit_status = %status, ran = ?ran, "plugin is down soon after its start (crash loop); restarting it after a backoff");
        }
    }

    /// Stops a running process for a requested restart: out of service at once, then `stop`,
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

    /// Stops a running process for good: `stop`, wait for the exit, kill if needed; then waits
    /// for the replaced processes being let go.
    async fn stop(&mut self, mut running: Running) {
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
        while self.retiring.join_next().await.is_some() {}
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hung_process_is_reported_as_hung() {
        let hung = Ended::Closed(CloseReason::Hung("5 hook calls in a row timed out".into()));
        assert_eq!(hung.to_string(), "hung (5 hook calls in a row timed out)");
        let violation = Ended::Closed(CloseReason::ProtocolViolation("garbage".into()));
        assert_eq!(
            violation.to_string(),
            "control connection closed (protocol violation: garbage)"
        );
    }
}
