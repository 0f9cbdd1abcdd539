//! Runs gatekeeper's plugins: spawns each plugin process, owns the private socket directory and
//! the per-plugin listening sockets, checks each connection's handshake (token, protocol version,
//! declared hooks), drives the lifecycle (`configure`, `start`, `heartbeat`, `stop`), restarts a
//! plugin that exits or stops answering (with exponential backoff), forwards the plugin's
//! stdout/stderr to the log, and serves the manager methods to upstream plugins.
//!
//! It knows nothing about HTTP: callers get a [`PluginHandle`] per plugin and make typed calls
//! through it ([`PluginHandle::call`]); upstream plugins reach the proxy's registry through a
//! [`Manager`] the caller supplies.
//!
//! - [`spec`]: what to run and its timeouts ([`PluginSpec`]);
//! - [`host`]: the [`PluginHost`] (socket directory, launch, shutdown);
//! - [`handle`]: the [`PluginHandle`] callers use on the request path;
//! - [`manager`]: the [`Manager`] trait served to upstream plugins;
//! - [`error`]: the errors of this crate.

pub mod error;
pub mod handle;
pub mod host;
pub mod manager;
mod process;
mod session;
mod socket_dir;
pub mod spec;
mod supervisor;

pub use error::{HostError, PluginCallError, StartError};
pub use handle::{PluginHandle, PluginState, PluginStatus};
pub use host::PluginHost;
pub use manager::Manager;
pub use spec::PluginSpec;
