//! Checking a plugin's config without running it ([`check_plugin`]): the plugin is spawned as
//! for a start (its own private socket directory, a fresh token), its handshake is checked, and
//! it gets `configure` with `check: true` (read and check everything, act on nothing), then
//! `stop`; the process is given the spec's stop timeout to exit and is killed after it. The
//! plugin's error answer, or why it could not be brought that far, is the outcome.

use std::path::PathBuf;
use std::sync::Arc;

use gatekeeper_rpc::methods::{Configure, ConfigureParams, Empty, Stop};
use gatekeeper_rpc::{CallError, Peer};
use tokio::sync::mpsc;
use tokio::time::{sleep_until, timeout, Instant};

use crate::config_status::ConfigStatus;
use crate::error::StartError;
use crate::process::{self, describe, kill, Spawned};
use crate::session::{Authenticated, SessionContext};
use crate::socket_dir::SocketDir;
use crate::spec::PluginSpec;
use crate::supervisor::start_watch::StartActivity;
use crate::supervisor::starter::{accept, handshaken, ProcessSocket};

/// Why a plugin's config did not pass [`check_plugin`].
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The plugin answered `configure` (with `check: true`) with an error: its config is bad.
    #[error("plugin {plugin}: {message}")]
    Rejected {
        /// The plugin's name.
        plugin: String,
        /// The plugin's message (what is wrong, with file, line and key where it gave them).
        message: String,
    },
    /// The plugin could not be brought as far as answering `configure`: it could not be run,
    /// exited (with its last stderr lines), broke the protocol or took too long.
    #[error("plugin {plugin}: {source}")]
    Start {
        /// The plugin's name.
        plugin: String,
        /// What went wrong.
        #[source]
        source: StartError,
    },
    /// The private socket directory could not be created.
    #[error("plugin {plugin}: could not create a socket directory under {}: {source}", root.display())]
    SocketDir {
        /// The plugin's name.
        plugin: String,
        /// Where it was to be created.
        root: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

/// Checks one plugin's config without running it: spawn, handshake, `configure` with
/// `check: true`, `stop`, wait for the exit (kill after the spec's `stop_timeout`). Bounded by
/// the spec's `start_timeout` up to the answer to `configure`, then by its `stop_timeout`.
/// `socket_root` is where the private socket directory is made (as for
/// [`crate::PluginHost::new`]).
pub async fn check_plugin(
    spec: &PluginSpec,
    socket_root: Option<PathBuf>,
) -> Result<(), CheckError> {
    let plugin = spec.name.clone();
    let dir = SocketDir::create(socket_root).map_err(|(root, source)| CheckError::SocketDir {
        plugin: plugin.clone(),
        root,
        source,
    })?;
    let start_error = |source| CheckError::Start {
        plugin: plugin.clone(),
        source,
    };
    let socket = ProcessSocket::bind(dir.path().join("check.sock")).map_err(start_error)?;
    let label: Arc<str> = Arc::from(spec.name.as_str());
    let (authenticated_tx, mut authenticated) = mpsc::unbounded_channel();
    let context = Arc::new(SessionContext {
        name: label.clone(),
        label: label.clone(),
        plugin_type: spec.plugin_type,
        token: process::new_token(),
        manager: None,
        config_status: Arc::new(ConfigStatus::default()),
        events: authenticated_tx,
        busy_poll: spec.busy_poll(),
        busy_poll_stats: Arc::default(),
        activity: Arc::new(StartActivity::new()),
    });
    let mut spawned =
        process::spawn(spec, &label, 0, &socket.path, &context.token).map_err(start_error)?;
    let deadline = Instant::now() + spec.start_timeout;
    let outcome = tokio::select! {
        () = sleep_until(deadline) => Err(StartError::Timeout(spec.start_timeout)),
        outcome = configure_checking(spec, &mut spawned, &socket, &context, &mut authenticated) => outcome,
    };
    let outcome = match outcome {
        Ok(checked) => {
            stop(spec, &checked.control, &mut spawned).await;
            checked.outcome
        }
        Err(StartError::Exited { status, .. }) => Err(StartError::Exited {
            status,
            stderr: spawned.stderr_after_exit().await,
        }),
        Err(e) => Err(e),
    };
    authenticated.close();
    while let Ok(event) = authenticated.try_recv() {
        event.peer.close();
    }
    kill(&mut spawned.child).await;
    match outcome {
        Ok(()) => Ok(()),
        Err(StartError::Configure(CallError::Remote { error, .. })) => Err(CheckError::Rejected {
            plugin,
            message: error.message().to_owned(),
        }),
        Err(source) => Err(CheckError::Start { plugin, source }),
    }
}

/// Waits for the plugin's handshake, then sends `configure` with `check: true`; returns the
/// control connection with the plugin's answer.
async fn configure_checking(
    spec: &PluginSpec,
    spawned: &mut Spawned,
    socket: &ProcessSocket,
    context: &Arc<SessionContext>,
    authenticated: &mut mpsc::UnboundedReceiver<Authenticated>,
) -> Result<Checked, StartError> {
    let first = handshaken(spec, &mut spawned.child, socket, context, authenticated).await?;
    let child = &mut spawned.child;
    let control = first.peer;
    let params = ConfigureParams {
        config: spec.config.clone(),
        check: true,
    };
    let call = control.request::<Configure>(&params, spec.start_timeout);
    tokio::pin!(call);
    loop {
        tokio::select! {
            answer = &mut call => {
                let outcome = answer.map(drop).map_err(StartError::Configure);
                return Ok(Checked { control: control.clone(), outcome });
            }
            status = child.wait() => return Err(StartError::Exited { status: describe(status), stderr: Vec::new() }),
            accepted = socket.listener.accept() => accept(accepted.map(|(s, _)| s), context, spec.start_timeout).await,
            Some(event) = authenticated.recv() => event.peer.close(),
        }
    }
}

/// A plugin that answered `configure`: its connection and its answer.
struct Checked {
    control: Peer,
    outcome: Result<(), StartError>,
}

/// `stop`, then up to the stop timeout for the process to exit (the caller kills it after).
async fn stop(spec: &PluginSpec, control: &Peer, spawned: &mut Spawned) {
    let limit = spec.stop_timeout;
    if let Err(e) = control.request::<Stop>(&Empty {}, limit).await {
        tracing::debug!(plugin = %spec.name, error = %e, "`stop` after a config check failed");
    }
    if timeout(limit, spawned.child.wait()).await.is_err() {
        tracing::debug!(plugin = %spec.name, "plugin did not exit after `stop` following its config check; killing it");
    }
    control.close();
}
