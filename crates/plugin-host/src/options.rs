//! The host's options: [`HostConfig`] (config key `socket_dir`), and [`LaunchOptions`], what the
//! caller plugs into a launched plugin besides its spec: the [`Manager`] served to upstream
//! plugins, the [`BeforeReady`] replay run on every (re)start, and the channel lifecycle
//! [`PluginEvent`]s go to.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::sync::mpsc::UnboundedSender;

use crate::events::PluginEvent;
use crate::instance::BeforeReady;
use crate::manager::Manager;

/// The host's settings ([`crate::PluginHost::new`] takes `socket_dir`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct HostConfig {
    /// The directory in which the private socket directory is created (default:
    /// `$XDG_RUNTIME_DIR`, else the system temp dir).
    pub socket_dir: Option<PathBuf>,
}

impl HostConfig {
    /// Checks the values (whether the directory exists is seen when the host starts).
    pub fn validate(&self) -> Result<(), crate::spec::ConfigError> {
        match &self.socket_dir {
            Some(dir) if dir.as_os_str().is_empty() => {
                Err(crate::spec::ConfigError::Empty("socket_dir"))
            }
            _ => Ok(()),
        }
    }
}

/// Options of [`crate::PluginHost::launch`]. `LaunchOptions::default()` plugs in nothing.
#[derive(Clone, Default)]
pub struct LaunchOptions {
    /// Serves `add_upstream` & co. to an upstream plugin; other plugin types, and upstream
    /// plugins launched without one, get `method not found` for those methods.
    pub manager: Option<Arc<dyn Manager>>,
    /// Runs on every start of every instance, after `start` succeeded and before the instance
    /// takes calls (e.g. to send a router plugin the current upstreams).
    pub before_ready: Option<Arc<dyn BeforeReady>>,
    /// Receives the plugin's lifecycle events.
    pub events: Option<UnboundedSender<PluginEvent>>,
}

impl LaunchOptions {
    /// Sets the manager (builder style).
    pub fn with_manager(mut self, manager: Arc<dyn Manager>) -> Self {
        self.manager = Some(manager);
        self
    }

    /// Sets the before-ready replay (builder style).
    pub fn with_before_ready(mut self, before_ready: Arc<dyn BeforeReady>) -> Self {
        self.before_ready = Some(before_ready);
        self
    }

    /// Sets the events channel (builder style).
    pub fn with_events(mut self, events: UnboundedSender<PluginEvent>) -> Self {
        self.events = Some(events);
        self
    }
}

impl std::fmt::Debug for LaunchOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LaunchOptions")
            .field("manager", &self.manager.is_some())
            .field("before_ready", &self.before_ready.is_some())
            .field("events", &self.events.is_some())
            .finish()
    }
}
