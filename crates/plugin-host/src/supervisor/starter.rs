//! Starting one plugin process: bind its own listening socket ([`ProcessSocket`], removed when
//! the process is gone), spawn it, wait for the handshake, `configure`, `start` and, for a process
//! that is to serve an instance at once, the caller's [`BeforeReady`] replay. A [`Running`]
//! process is what comes out: the supervisor of an instance publishes it, the standby pool keeps
//! it as a spare. Up to the answer to `start`, the start is bounded by [`start_limits`]: the
//! process may not be silent for `start_timeout`, nor start for longer than `start_max`; the
//! replay then has `start_timeout` of its own.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use gatekeeper_rpc::methods::{Configure, ConfigureParams, Empty, Start};
use gatekeeper_rpc::Peer;
use tokio::net::{UnixListener, UnixStream};
use tokio::process::Child;
use tokio::sync::mpsc;
use tokio::time::{sleep, timeout, Instant};
use tokio_util::sync::CancellationToken;

use crate::error::StartError;
use crate::instance::{BeforeReady, InstanceConnection};
use crate::manager::ManagerService;
use crate::process::{self, describe, kill, Spawned};
use crate::session::{self, Authenticated, SessionContext};
use crate::socket_dir::bind_socket;
use crate::spec::PluginSpec;
use crate::state::{Declared, Shared};

use super::start_watch::{start_limits, StartActivity};

/// The listening socket of one process; the file is removed when this is dropped.
#[derive(Debug)]
pub(crate) struct ProcessSocket {
    pub(crate) listener: UnixListener,
    pub(crate) path: PathBuf,
}

impl ProcessSocket {
    /// Binds a socket at `path` (mode 0600), replacing a stale file.
    pub(crate) fn bind(path: PathBuf) -> Result<ProcessSocket, StartError> {
        match bind_socket(&path) {
            Ok(listener) => Ok(ProcessSocket { listener, path }),
            Err(source) => Err(StartError::Bind { path, source }),
        }
    }
}

impl Drop for ProcessSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// One started process of a plugin.
pub(crate) struct Running {
    pub(crate) child: Child,
    pub(crate) pid: Option<u32>,
    pub(crate) control: Peer,
    pub(crate) hooks: Arc<Declared>,
    pub(crate) context: Arc<SessionContext>,
    pub(crate) authenticated: mpsc::UnboundedReceiver<Authenticated>,
    /// Connections authenticated during the start, not published yet.
    pub(crate) extra: Vec<Peer>,
    pub(crate) socket: ProcessSocket,
    /// Hook calls the process answered (see [`crate::state::Connections::calls`]).
    pub(crate) calls: Arc<AtomicU64>,
    /// When it became ready (for a spare: when it took over).
    pub(crate) ready_at: Instant,
}

impl Running {
    /// Whether the process is gone or its control connection closed.
    pub(crate) fn is_dead(&mut self) -> bool {
        self.control.is_closed() || !matches!(self.child.try_wait(), Ok(None))
    }

    /// Closes its connections and kills the process (a spare that is not needed, or died).
    pub(crate) async fn discard(mut self) -> String {
        self.control.close();
        for peer in &self.extra {
            peer.close();
        }
        self.authenticated.close();
        while let Ok(event) = self.authenticated.try_recv() {
            event.peer.close();
        }
        kill(&mut self.child).await
    }
}

/// Where a process starts: what the supervisor or the standby pool of one plugin needs.
pub(crate) struct Starter {
    pub(crate) plugin: Arc<Shared>,
    pub(crate) manager: Option<Arc<ManagerService>>,
    pub(crate) before_ready: Option<Arc<dyn BeforeReady>>,
    pub(crate) cancel: CancellationToken,
}

/// Which instance a replay is for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReplayFor {
    pub(crate) instance: usize,
    pub(crate) restarts: u64,
}

/// What a successful bring-up yields: the control connection, its hooks, extra connections.
type BroughtUp = (Peer, Arc<Declared>, Vec<Authenticated>);

impl Starter {
    /// Spawns a process listening on `socket` and brings it up (handshake, `configure`,
    /// `start`, and the replay if `replay` says for which instance), within the spec's start
    /// limits (see the module docs). `env_instance` is the instance number the process is told.
    pub(crate) async fn start(
        &self,
        spec: &PluginSpec,
        label: &Arc<str>,
        env_instance: usize,
        socket: ProcessSocket,
        replay: Option<ReplayFor>,
    ) -> Result<Running, StartError> {
        let (authenticated_tx, mut authenticated) = mpsc::unbounded_channel();
        self.plugin
            .busy_poll_us
            .store(spec.busy_poll_us, std::sync::atomic::Ordering::Relaxed);
        let context = Arc::new(SessionContext {
            name: self.plugin.name.clone(),
            label: label.clone(),
            plugin_type: spec.plugin_type,
            token: process::new_token(),
            manager: self.manager.clone(),
            config_status: self.plugin.config_status.clone(),
            events: authenticated_tx,
            busy_poll: spec.busy_poll(),
            busy_poll_stats: self.plugin.busy_poll.clone(),
            activity: Arc::new(StartActivity::new()),
        });
        let mut spawned = process::spawn(spec, label, env_instance, &socket.path, &context.token)?;
        let pid = spawned.child.id();
        let outcome = tokio::select! {
            biased;
            () = self.cancel.cancelled() => Err(StartError::ShutDown),
            outcome = self.bring_up(spec, &mut spawned, &socket, &context, &mut authenticated, pid, replay) => outcome,
        };
        match outcome {
            Ok((control, hooks, extra)) => Ok({
                // It read its config and started: whatever it rejected before is behind it.
                self.plugin.config_status.clear();
                Running {
                    child: spawned.child,
                    pid,
                    control,
                    hooks,
                    context,
                    authenticated,
                    extra: extra.into_iter().map(|a| a.peer).collect(),
                    socket,
                    calls: Arc::new(AtomicU64::new(0)),
                    ready_at: Instant::now(),
                }
            }),
            Err(e) => {
                authenticated.close();
                while let Ok(event) = authenticated.try_recv() {
                    event.peer.close();
                }
                let e = match e {
                    StartError::Exited { status, .. } => StartError::Exited {
                        status,
                        stderr: spawned.stderr_after_exit().await,
                    },
                    e => e,
                };
                kill(&mut spawned.child).await;
                Err(e)
            }
        }
    }

    /// Waits for the first authenticated connection, then calls `configure`, `start` and the
    /// replay on it. Returns it and any other connection authenticated meanwhile.
    #[allow(clippy::too_many_arguments)]
    async fn bring_up(
        &self,
        spec: &PluginSpec,
        spawned: &mut Spawned,
        socket: &ProcessSocket,
        context: &Arc<SessionContext>,
        authenticated: &mut mpsc::UnboundedReceiver<Authenticated>,
        pid: Option<u32>,
        replay: Option<ReplayFor>,
    ) -> Result<BroughtUp, StartError> {
        let first = tokio::select! {
            error = start_limits(spec, &context.activity) => return Err(error),
            first = handshaken(spec, &mut spawned.child, socket, context, authenticated) => first?,
        };
        let child = &mut spawned.child;
        let control = first.peer;
        let hooks = Arc::new(first.hooks);
        let calls = async {
            tokio::select! {
                error = start_limits(spec, &context.activity) => return Err(error),
                started = initialize(spec, &control) => started?,
            }
            if let Some(replay) = replay {
                self.replay(spec, &control, &hooks, pid, replay).await?;
            }
            Ok::<(), StartError>(())
        };
        tokio::pin!(calls);
        let mut extra = Vec::new();
        loop {
            tokio::select! {
                outcome = &mut calls => {
                    outcome?;
                    return Ok((control.clone(), hooks.clone(), extra));
                }
                status = child.wait() => return Err(StartError::Exited { status: describe(status), stderr: Vec::new() }),
                accepted = socket.listener.accept() => accept(accepted.map(|(s, _)| s), context, spec.start_timeout).await,
                Some(event) = authenticated.recv() => extra.push(event),
            }
        }
    }

    /// The caller's before-ready replay on `control` (nothing without one).
    pub(crate) async fn replay(
        &self,
        spec: &PluginSpec,
        control: &Peer,
        hooks: &Arc<Declared>,
        pid: Option<u32>,
        replay: ReplayFor,
    ) -> Result<(), StartError> {
        let Some(before_ready) = &self.before_ready else {
            return Ok(());
        };
        let connection = InstanceConnection {
            plugin: self.plugin.name.clone(),
            plugin_type: spec.plugin_type,
            instance: replay.instance,
            restarts: replay.restarts,
            pid,
            hooks: hooks.clone(),
            hook_timeout: spec.hook_timeout,
            peer: control.clone(),
        };
        match timeout(spec.start_timeout, before_ready.before_ready(connection)).await {
            Ok(outcome) => outcome.map_err(StartError::BeforeReady),
            Err(_) => Err(StartError::Timeout(spec.start_timeout)),
        }
    }
}

/// `configure`, then `start`; each call may last up to `start_max` (the caller ends it sooner
/// when the plugin is silent for `start_timeout`).
async fn initialize(spec: &PluginSpec, control: &Peer) -> Result<(), StartError> {
    let limit = spec.start_max.max(spec.start_timeout);
    let params = ConfigureParams {
        config: spec.config.clone(),
        check: false,
    };
    control
        .request::<Configure>(&params, limit)
        .await
        .map_err(StartError::Configure)?;
    control
        .request::<Start>(&Empty {}, limit)
        .await
        .map_err(StartError::Start)?;
    Ok(())
}

/// Serves the plugin's connections until its control connection has handshaken (and returns
/// it); an error when the process exits first. (The caller bounds the time.)
pub(crate) async fn handshaken(
    spec: &PluginSpec,
    child: &mut Child,
    socket: &ProcessSocket,
    context: &Arc<SessionContext>,
    authenticated: &mut mpsc::UnboundedReceiver<Authenticated>,
) -> Result<Authenticated, StartError> {
    loop {
        tokio::select! {
            status = child.wait() => return Err(StartError::Exited { status: describe(status), stderr: Vec::new() }),
            accepted = socket.listener.accept() => accept(accepted.map(|(s, _)| s), context, spec.start_timeout).await,
            Some(event) = authenticated.recv() => return Ok(event),
        }
    }
}

/// Serves a new connection (see [`session::serve`]).
pub(crate) async fn accept(
    accepted: io::Result<UnixStream>,
    context: &Arc<SessionContext>,
    handshake_limit: Duration,
) {
    match accepted {
        Ok(stream) => session::serve(stream, context, handshake_limit),
        Err(e) => {
            tracing::warn!(plugin = %context.label, error = %e, "could not accept a plugin connection");
            // E.g. out of file descriptors: do not spin.
            sleep(Duration::from_millis(50)).await;
        }
    }
}
