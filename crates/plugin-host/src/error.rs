//! The errors of this crate: [`HostError`] (creating the host, launching a plugin),
//! [`StartError`] (why one start of a plugin failed) and [`PluginCallError`] (why a call through a
//! [`crate::PluginHandle`] did not produce a result).

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gatekeeper_rpc::{CallError, ErrorObject};

/// Why the host could not be created or a plugin could not be launched.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The private socket directory could not be created.
    #[error("could not create the plugin socket directory under {}: {source}", root.display())]
    SocketDir {
        /// The directory it was to be created in.
        root: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The plugin's listening socket could not be bound.
    #[error("could not bind the socket of plugin `{plugin}` at {}: {source}", path.display())]
    Bind {
        /// The plugin's name.
        plugin: String,
        /// The socket path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A plugin with this name was already launched on this host.
    #[error("a plugin named `{0}` is already launched")]
    DuplicateName(String),
    /// The host was shut down.
    #[error("the plugin host is shut down")]
    ShutDown,
    /// No plugin with this name runs on this host.
    #[error("no plugin named `{0}` is running")]
    UnknownPlugin(String),
    /// A plugin cannot be restarted with these settings (its type or number of instances
    /// changed), or an instance did not start with them.
    #[error("plugin `{plugin}` was not restarted with its new settings: {reason}")]
    Reconfigure {
        /// The plugin's name.
        plugin: String,
        /// What went wrong.
        reason: String,
    },
    /// The plugin's first start failed, `attempts` times in a row (`start_attempts`).
    #[error("plugin `{plugin}` failed to start ({attempts} attempt{s}): {source}", s = if *attempts == 1 { "" } else { "s" })]
    Start {
        /// The plugin's name.
        plugin: String,
        /// How many starts were tried.
        attempts: u32,
        /// What went wrong the last time.
        #[source]
        source: StartError,
    },
}

/// Why one start of a plugin (spawn, handshake, `configure`, `start`) failed.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The command could not be run (e.g. it does not exist or is not executable).
    #[error("could not run `{}`: {source}", command.display())]
    Spawn {
        /// The command.
        command: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A step of the start with its own bound (the before-ready replay) took longer than the
    /// spec's `start_timeout`.
    #[error("not started within {0:?}")]
    Timeout(Duration),
    /// The process made no call (a manager call, `config_status`) for the spec's
    /// `start_timeout` while starting (from its spawn, or its last call).
    #[error("no manager call (nor any other call) from the plugin for {} during start (start_timeout)", humantime::format_duration(*.0))]
    Silent(Duration),
    /// The start still ran after the spec's `start_max`, though the plugin kept calling.
    #[error("start still running after {} (start_max)", humantime::format_duration(*.0))]
    StillStarting(Duration),
    /// The process exited before it was ready.
    #[error(
        "the process exited before it was ready ({status}){}",
        stderr_lines(stderr)
    )]
    Exited {
        /// The exit status, as text.
        status: String,
        /// Its last lines on stderr (up to 10), oldest first.
        stderr: Vec<String>,
    },
    /// The process's listening socket could not be bound.
    #[error("could not bind the plugin socket at {}: {source}", path.display())]
    Bind {
        /// The socket path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The plugin's connection closed before it was ready.
    #[error("the connection closed before the plugin was ready")]
    Closed,
    /// `configure` failed.
    #[error("{0}")]
    Configure(#[source] CallError),
    /// `start` failed.
    #[error("{0}")]
    Start(#[source] CallError),
    /// The caller's [`crate::BeforeReady`] hook failed.
    #[error("the before-ready replay failed: {0}")]
    BeforeReady(#[source] CallError),
    /// The host is shutting down.
    #[error("the host is shutting down")]
    ShutDown,
}

/// The last stderr lines of a process for an error message: empty without any.
fn stderr_lines(lines: &[String]) -> String {
    if lines.is_empty() {
        String::new()
    } else {
        format!("; its last stderr lines: {}", lines.join(" | "))
    }
}

/// Why a call through a [`crate::PluginHandle`] did not produce a result.
#[derive(Debug, thiserror::Error)]
pub enum PluginCallError {
    /// The plugin is not running or not ready (starting, restarting or stopped). Returned at
    /// once, without waiting for a restart.
    #[error("plugin `{plugin}` is not available")]
    Unavailable {
        /// The plugin's name.
        plugin: Arc<str>,
    },
    /// The plugin did not declare this hook in its handshake.
    #[error("plugin `{plugin}` did not declare the hook `{hook}`")]
    NotDeclared {
        /// The plugin's name.
        plugin: Arc<str>,
        /// The hook.
        hook: &'static str,
    },
    /// The plugin did not answer within the hook timeout.
    #[error("plugin `{plugin}`: `{hook}` timed out after {timeout:?}")]
    Timeout {
        /// The plugin's name.
        plugin: Arc<str>,
        /// The hook.
        hook: &'static str,
        /// The timeout that elapsed.
        timeout: Duration,
    },
    /// The plugin answered with an error, with a result of the wrong shape, or the connection
    /// closed before the answer.
    #[error("plugin `{plugin}`: {source}")]
    Failed {
        /// The plugin's name.
        plugin: Arc<str>,
        /// The underlying call error.
        #[source]
        source: CallError,
    },
}

impl PluginCallError {
    /// The JSON-RPC error the plugin answered with, if that is why the call failed.
    pub fn remote_error(&self) -> Option<&ErrorObject> {
        match self {
            PluginCallError::Failed {
                source: CallError::Remote { error, .. },
                ..
            } => Some(error),
            _ => None,
        }
    }
}
