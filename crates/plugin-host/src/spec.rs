//! [`PluginSpec`]: which command runs a plugin, its config, and every timeout of its lifecycle.

use std::path::PathBuf;
use std::time::Duration;

use gatekeeper_rpc::methods::PluginType;
use gatekeeper_rpc::types::Object;

/// Everything the host needs to run one plugin.
#[derive(Debug, Clone)]
pub struct PluginSpec {
    /// The plugin's name, unique within one host; used in logs and sent in the environment.
    pub name: String,
    /// The plugin's type; decides which hooks it may declare and whether it may call the manager.
    pub plugin_type: PluginType,
    /// The executable to run (looked up in `PATH` if it has no slash).
    pub command: PathBuf,
    /// Arguments passed to the command.
    pub args: Vec<String>,
    /// The config map sent in `configure` (after every start).
    pub config: Object,
    /// How many processes of the plugin run side by side, each with its own socket, token and
    /// supervision; hook calls are spread over the ready ones. Default 1 (0 counts as 1).
    pub instances: usize,
    /// Timeout of each hook call made through [`crate::PluginHandle::call`]. Default 1 s.
    pub hook_timeout: Duration,
    /// Time between two `heartbeat` calls. Default 5 s.
    pub heartbeat_interval: Duration,
    /// A process whose hook calls time out this many times in a row is taken as hung and
    /// restarted, without waiting for its heartbeats to go unanswered (0: never). Default 5.
    pub restart_after_timeouts: u32,
    /// Time a `heartbeat` may take before it counts as missed. Default 2 s.
    pub heartbeat_timeout: Duration,
    /// The plugin is restarted once this many consecutive heartbeats are missed (at least 1).
    /// Default 2.
    pub missed_heartbeats_allowed: u32,
    /// Time allowed from spawning the process to a successful `start` (spawn, handshake,
    /// `configure`, `start`). Default 10 s.
    pub start_timeout: Duration,
    /// Time allowed for `stop` to be answered, then again for the process to exit, before it is
    /// killed. Default 3 s.
    pub stop_timeout: Duration,
    /// First delay before a restart. Default 100 ms.
    pub restart_backoff_min: Duration,
    /// Largest delay before a restart (the delay doubles on each consecutive restart, and goes
    /// back to the minimum once the plugin ran healthy for 30 s). Default 10 s.
    pub restart_backoff_max: Duration,
}

impl PluginSpec {
    /// A spec with no arguments, an empty config and the default timeouts.
    pub fn new(
        name: impl Into<String>,
        plugin_type: PluginType,
        command: impl Into<PathBuf>,
    ) -> Self {
        PluginSpec {
            name: name.into(),
            plugin_type,
            command: command.into(),
            args: Vec::new(),
            config: Object::new(),
            instances: 1,
            hook_timeout: Duration::from_secs(1),
            heartbeat_interval: Duration::from_secs(5),
            restart_after_timeouts: 5,
            heartbeat_timeout: Duration::from_secs(2),
            missed_heartbeats_allowed: 2,
            start_timeout: Duration::from_secs(10),
            stop_timeout: Duration::from_secs(3),
            restart_backoff_min: Duration::from_millis(100),
            restart_backoff_max: Duration::from_secs(10),
        }
    }

    /// Sets the arguments (builder style).
    pub fn with_args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args = args.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the config map (builder style).
    pub fn with_config(mut self, config: Object) -> Self {
        self.config = config;
        self
    }

    /// Sets the number of processes (builder style).
    pub fn with_instances(mut self, instances: usize) -> Self {
        self.instances = instances;
        self
    }
}
