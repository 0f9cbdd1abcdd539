//! Runs gatekeeper's plugins: spawns each plugin's processes (one or more instances, plus
//! `standby` spares), owns the private socket directory and a listening socket per process,
//! checks each connection's handshake (token, protocol version, declared hooks), drives the
//! lifecycle (`configure`, `start`, the caller's before-ready replay, `heartbeat`, `stop`), and
//! supervises each instance on its own: a first start is tried `start_attempts` times; a process
//! that exits, stops answering, hangs or breaks the protocol is replaced at once if it ran
//! `healthy_after` (by a ready spare if there is one), after an exponential backoff if it is in a
//! crash loop; a process past `max_memory` or `recycle_after` is replaced make-before-break. It
//! forwards the plugins' stdout/stderr to the log (each line at the level it names, see
//! `plugin_log`), reports lifecycle events, and serves the
//! manager methods to upstream plugins (telling the manager around a restart).
//!
//! It knows nothing about HTTP: callers get a [`PluginHandle`] per plugin and make typed calls
//! through it ([`PluginHandle::call`]); upstream plugins reach the proxy's registry through a
//! [`Manager`] the caller supplies.
//!
//! - [`spec`]: what to run, how many instances, and its timeouts ([`PluginSpec`]);
//! - [`host`]: the [`PluginHost`] (socket directory, launch, shutdown);
//! - [`options`]: what the caller plugs into a launch ([`LaunchOptions`]);
//! - [`handle`]: the [`PluginHandle`] callers use on the request path;
//! - [`instance`]: the before-ready replay ([`BeforeReady`], [`InstanceConnection`]);
//! - [`check`]: checking a plugin's config without running it ([`check_plugin`]);
//! - [`events`]: lifecycle events ([`PluginEvent`]);
//! - [`manager`]: the [`Manager`] trait served to upstream plugins;
//! - [`error`]: the errors of this crate.

pub mod check;
mod config_status;
pub mod error;
pub mod events;
pub mod handle;
pub mod host;
pub mod instance;
pub mod manager;
pub mod options;
mod plugin_log;
mod process;
mod session;
mod socket_dir;
pub mod spec;
mod state;
mod supervisor;

pub use check::{check_plugin, CheckError};
pub use config_status::ConfigRejection;
pub use error::{HostError, PluginCallError, StartError};
pub use events::{PluginEvent, PluginEventKind};
pub use handle::{InstanceState, PluginHandle, PluginState, PluginStatus};
pub use host::PluginHost;
pub use instance::{BeforeReady, InstanceConnection};
pub use manager::Manager;
pub use options::LaunchOptions;
pub use spec::PluginSpec;
