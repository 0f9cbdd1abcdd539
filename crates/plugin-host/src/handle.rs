//! [`PluginHandle`]: what callers hold to call one plugin. Cheap to clone and lock-free on the
//! call path: the plugin's current connections are one atomic pointer ([`ArcSwapOption`]) that the
//! supervisor swaps on every (re)start; while the plugin is down the pointer is empty and calls
//! fail at once with [`PluginCallError::Unavailable`].

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use gatekeeper_rpc::methods::{Configure, Heartbeat, PluginType, Start, Stop};
use gatekeeper_rpc::{CallError, Method, Peer};

use crate::error::PluginCallError;

/// Where a plugin is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PluginStatus {
    /// Being spawned, handshaken, configured and started for the first time.
    Starting,
    /// Started and answering calls.
    Ready,
    /// Down: waiting for the backoff or starting again.
    Restarting,
    /// Stopped for good (host shut down, or the first start failed).
    Stopped,
}

impl PluginStatus {
    fn from_u8(value: u8) -> PluginStatus {
        match value {
            0 => PluginStatus::Starting,
            1 => PluginStatus::Ready,
            2 => PluginStatus::Restarting,
            _ => PluginStatus::Stopped,
        }
    }

    fn as_u8(self) -> u8 {
        match self {
            PluginStatus::Starting => 0,
            PluginStatus::Ready => 1,
            PluginStatus::Restarting => 2,
            PluginStatus::Stopped => 3,
        }
    }
}

/// A snapshot of a plugin's state, for admin and status pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginState {
    /// Where the plugin is in its lifecycle.
    pub status: PluginStatus,
    /// The process id of the current process, if one is running.
    pub pid: Option<u32>,
    /// How many times the plugin was restarted.
    pub restarts: u64,
}

/// The authenticated connections of one running process of a plugin.
#[derive(Debug)]
pub(crate) struct Connections {
    /// Every authenticated connection, the control connection first. Hook calls go round-robin.
    pub(crate) peers: Vec<Peer>,
    /// The hooks declared in the control connection's handshake.
    pub(crate) hooks: HashSet<String>,
}

/// State shared by a plugin's handles and its supervisor.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) name: Arc<str>,
    pub(crate) plugin_type: PluginType,
    pub(crate) hook_timeout: Duration,
    pub(crate) socket_path: PathBuf,
    /// `Some` exactly while the plugin is ready.
    pub(crate) connections: ArcSwapOption<Connections>,
    next_peer: AtomicUsize,
    status: AtomicU8,
    /// 0 when no process runs.
    pid: AtomicU32,
    restarts: AtomicU64,
}

impl Shared {
    pub(crate) fn new(
        name: &str,
        plugin_type: PluginType,
        hook_timeout: Duration,
        socket_path: PathBuf,
    ) -> Shared {
        Shared {
            name: Arc::from(name),
            plugin_type,
            hook_timeout,
            socket_path,
            connections: ArcSwapOption::empty(),
            next_peer: AtomicUsize::new(0),
            status: AtomicU8::new(PluginStatus::Starting.as_u8()),
            pid: AtomicU32::new(0),
            restarts: AtomicU64::new(0),
        }
    }

    pub(crate) fn set_status(&self, status: PluginStatus) {
        self.status.store(status.as_u8(), Ordering::Release);
    }

    pub(crate) fn status(&self) -> PluginStatus {
        PluginStatus::from_u8(self.status.load(Ordering::Acquire))
    }

    pub(crate) fn set_pid(&self, pid: Option<u32>) {
        self.pid.store(pid.unwrap_or(0), Ordering::Release);
    }

    pub(crate) fn count_restart(&self) {
        self.restarts.fetch_add(1, Ordering::AcqRel);
    }

    pub(crate) fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Acquire)
    }
}

/// A handle on one launched plugin. Cheap to clone; all clones see the same plugin.
#[derive(Debug, Clone)]
pub struct PluginHandle {
    pub(crate) shared: Arc<Shared>,
}

/// Methods every plugin answers, whatever hooks it declared.
const LIFECYCLE: [&str; 4] = [Configure::NAME, Start::NAME, Heartbeat::NAME, Stop::NAME];

impl PluginHandle {
    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The plugin's type.
    pub fn plugin_type(&self) -> PluginType {
        self.shared.plugin_type
    }

    /// Whether the running plugin declared `hook` in its handshake (false while it is down).
    pub fn has_hook(&self, hook: &str) -> bool {
        self.shared
            .connections
            .load()
            .as_ref()
            .is_some_and(|c| c.hooks.contains(hook))
    }

    /// Whether the plugin is started and answering calls.
    pub fn is_ready(&self) -> bool {
        self.shared.connections.load().is_some()
    }

    /// How many times the plugin was restarted.
    pub fn restarts(&self) -> u64 {
        self.shared.restarts()
    }

    /// The process id of the current process, if one is running.
    pub fn pid(&self) -> Option<u32> {
        match self.shared.pid.load(Ordering::Acquire) {
            0 => None,
            pid => Some(pid),
        }
    }

    /// A snapshot of the plugin's state.
    pub fn state(&self) -> PluginState {
        PluginState {
            status: self.shared.status(),
            pid: self.pid(),
            restarts: self.restarts(),
        }
    }

    /// The path of the plugin's listening socket.
    pub fn socket_path(&self) -> &Path {
        &self.shared.socket_path
    }

    /// Calls a method on the plugin with the spec's hook timeout.
    ///
    /// Hooks (every method but the lifecycle ones) must have been declared in the handshake.
    /// Fails at once with [`PluginCallError::Unavailable`] while the plugin is not ready. When the
    /// plugin opened several connections, calls are spread over them round-robin.
    pub async fn call<M: Method>(&self, params: &M::Params) -> Result<M::Result, PluginCallError> {
        let unavailable = || PluginCallError::Unavailable {
            plugin: self.shared.name.clone(),
        };
        let Some(connections) = self.shared.connections.load_full() else {
            return Err(unavailable());
        };
        if !LIFECYCLE.contains(&M::NAME) && !connections.hooks.contains(M::NAME) {
            return Err(PluginCallError::NotDeclared {
                plugin: self.shared.name.clone(),
                hook: M::NAME,
            });
        }
        let peer = self.pick(&connections).ok_or_else(unavailable)?;
        let timeout = self.shared.hook_timeout;
        peer.request::<M>(params, timeout)
            .await
            .map_err(|source| match source {
                CallError::Timeout { .. } => PluginCallError::Timeout {
                    plugin: self.shared.name.clone(),
                    hook: M::NAME,
                    timeout,
                },
                source => PluginCallError::Failed {
                    plugin: self.shared.name.clone(),
                    source,
                },
            })
    }

    /// The next open connection, round-robin.
    fn pick<'a>(&self, connections: &'a Connections) -> Option<&'a Peer> {
        let count = connections.peers.len();
        if count == 1 {
            return connections.peers.first().filter(|p| !p.is_closed());
        }
        let start = self.shared.next_peer.fetch_add(1, Ordering::Relaxed);
        (0..count)
            .filter_map(|i| connections.peers.get((start + i) % count))
            .find(|p| !p.is_closed())
    }
}
