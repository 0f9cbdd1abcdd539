//! The state a plugin's handles share with its supervisors: per instance, the published
//! connections (one atomic pointer, empty while the instance is down, with the process's
//! answered-call counter), status, pid, current socket, restart and recycle counts; per plugin, the round-robin cursor and the call counters. Everything is atomics, so the
//! call path takes no lock.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use gatekeeper_rpc::busy_poll::BusyPollStats;
use gatekeeper_rpc::methods::PluginType;
use gatekeeper_rpc::parts::RequestPart;
use gatekeeper_rpc::Peer;

use crate::config_status::ConfigStatus;
use crate::handle::PluginStatus;
use gatekeeper_rpc::warnings::RateLimitedWarning;

/// What a plugin declared in its handshake: its hooks, which of them want the body, and which
/// must not be sent twice.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Declared {
    /// The hooks it implements (valid for its type).
    pub(crate) hooks: HookSet,
    /// The declared hooks that want the body (valid for its type).
    pub(crate) bodies: HookSet,
    /// The declared hooks not to retry after a crash or a stall (valid for its type).
    pub(crate) no_retry: HookSet,
    /// The request parts a declared hook needs (`parts`; only `modify_request` takes them).
    pub(crate) parts: Vec<(String, Arc<[RequestPart]>)>,
}

/// A few hook names. Asked on every request (whether a plugin has a hook, wants its body), so
/// a short list compared by value: a plugin declares a handful at most, and hashing a name
/// (SipHash) cost more than comparing them all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct HookSet(Vec<String>);

impl HookSet {
    /// Whether `hook` is in the set.
    pub(crate) fn contains(&self, hook: &str) -> bool {
        self.0.iter().any(|name| name == hook)
    }

    /// Adds `hook` unless it is there already.
    pub(crate) fn insert(&mut self, hook: String) {
        if !self.contains(&hook) {
            self.0.push(hook);
        }
    }
}

impl FromIterator<String> for HookSet {
    fn from_iter<I: IntoIterator<Item = String>>(hooks: I) -> Self {
        let mut set = HookSet::default();
        for hook in hooks {
            set.insert(hook);
        }
        set
    }
}

impl Declared {
    /// Whether `hook` was declared.
    pub(crate) fn contains(&self, hook: &str) -> bool {
        self.hooks.contains(hook)
    }

    /// Whether `hook` was declared and wants the body.
    pub(crate) fn wants_body(&self, hook: &str) -> bool {
        self.bodies.contains(hook) && self.hooks.contains(hook)
    }

    /// The request parts `hook` needs, when it declared them (else it gets the whole request).
    pub(crate) fn parts(&self, hook: &str) -> Option<Arc<[RequestPart]>> {
        self.parts
            .iter()
            .find(|(name, _)| name == hook)
            .map(|(_, parts)| parts.clone())
    }

    /// Whether a call of `hook` may be sent a second time (to another process, after the first
    /// died with it or stalled): not if the plugin declared it `no_retry`.
    pub(crate) fn may_retry(&self, hook: &str) -> bool {
        !self.no_retry.contains(hook)
    }
}

/// The authenticated connections of one running process of a plugin instance.
#[derive(Debug)]
pub(crate) struct Connections {
    /// Every authenticated connection, the control connection first. Hook calls go round-robin.
    pub(crate) peers: Vec<Peer>,
    /// The hooks declared in the control connection's handshake.
    pub(crate) hooks: Arc<Declared>,
    /// Hook calls this process answered (the handle counts them; `recycle_after` reads them).
    /// Shared by every `Connections` published for the same process.
    pub(crate) calls: Arc<AtomicU64>,
}

/// One instance (one supervised process) of a plugin.
#[derive(Debug)]
pub(crate) struct Instance {
    pub(crate) index: usize,
    /// `name` for a plugin with one instance, `name#index` otherwise: for logs and connections.
    pub(crate) label: Arc<str>,
    /// The instance's base socket path: its first process listens there, later ones next to it
    /// (see [`crate::socket_dir::generation_path`]).
    pub(crate) socket_path: PathBuf,
    /// The listening socket of the current process (the base path while none runs).
    pub(crate) current_socket: ArcSwap<PathBuf>,
    /// `Some` exactly while the instance is ready.
    pub(crate) connections: ArcSwapOption<Connections>,
    /// The hooks of the last process that became ready, kept while the instance is down so the
    /// caller still applies the plugin's failure policy to them instead of skipping the plugin.
    pub(crate) declared: ArcSwapOption<Declared>,
    pub(crate) next_peer: AtomicUsize,
    /// Hook calls in a row that timed out; reset by any answer.
    pub(crate) consecutive_timeouts: AtomicU32,
    /// Hook calls in a row answered with a result of the wrong shape; reset by a good answer.
    pub(crate) consecutive_bad_results: AtomicU32,
    /// Woken by [`crate::PluginHandle::restart`]: the supervisor restarts the running process.
    pub(crate) restart_requested: tokio::sync::Notify,
    /// Set with each restart request and cleared when a process starts, so that a wake-up left
    /// over from a request made before the process went down for another reason is ignored.
    pub(crate) restart_pending: std::sync::atomic::AtomicBool,
    /// Processes of this instance replaced make-before-break.
    pub(crate) recycles: AtomicU64,
    status: AtomicU8,
    /// 0 when no process runs.
    pid: AtomicU32,
    restarts: AtomicU64,
}

impl Instance {
    pub(crate) fn new(index: usize, label: Arc<str>, socket_path: PathBuf) -> Instance {
        Instance {
            index,
            label,
            current_socket: ArcSwap::from_pointee(socket_path.clone()),
            socket_path,
            connections: ArcSwapOption::empty(),
            declared: ArcSwapOption::empty(),
            next_peer: AtomicUsize::new(0),
            consecutive_timeouts: AtomicU32::new(0),
            consecutive_bad_results: AtomicU32::new(0),
            restart_requested: tokio::sync::Notify::new(),
            restart_pending: std::sync::atomic::AtomicBool::new(false),
            recycles: AtomicU64::new(0),
            status: AtomicU8::new(status_to_u8(PluginStatus::Starting)),
            pid: AtomicU32::new(0),
            restarts: AtomicU64::new(0),
        }
    }

    pub(crate) fn set_status(&self, status: PluginStatus) {
        self.status.store(status_to_u8(status), Ordering::Release);
    }

    pub(crate) fn status(&self) -> PluginStatus {
        status_from_u8(self.status.load(Ordering::Acquire))
    }

    pub(crate) fn set_pid(&self, pid: Option<u32>) {
        self.pid.store(pid.unwrap_or(0), Ordering::Release);
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        match self.pid.load(Ordering::Acquire) {
            0 => None,
            pid => Some(pid),
        }
    }

    /// The listening socket of the current process, or the base path while none runs.
    pub(crate) fn current_socket_path(&self) -> PathBuf {
        self.current_socket.load().as_ref().clone()
    }

    pub(crate) fn count_restart(&self) -> u64 {
        self.restarts.fetch_add(1, Ordering::AcqRel) + 1
    }

    pub(crate) fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Acquire)
    }
}

/// State shared by a plugin's handles and its supervisors.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) name: Arc<str>,
    pub(crate) plugin_type: PluginType,
    pub(crate) hook_timeout: Duration,
    /// See [`crate::PluginSpec::restart_after_timeouts`].
    pub(crate) restart_after_timeouts: u32,
    /// See [`crate::PluginSpec::restart_after_errors`].
    pub(crate) restart_after_errors: u32,
    /// At least one.
    pub(crate) instances: Vec<Arc<Instance>>,
    pub(crate) next_instance: AtomicUsize,
    pub(crate) calls: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) timeouts: AtomicU64,
    pub(crate) bad_results: AtomicU64,
    pub(crate) retries: AtomicU64,
    /// Spare processes ready right now (`standby`).
    pub(crate) standby_ready: AtomicUsize,
    /// Woken (all waiters) whenever an instance becomes ready: calls that found no ready
    /// instance wait on it, within their timeout, while an instance is restarting.
    pub(crate) became_ready: tokio::sync::Notify,
    /// Time spent in calls, all together, in microseconds.
    pub(crate) latency_us: AtomicU64,
    /// The warning about results of the wrong shape, at most one per interval.
    pub(crate) bad_result_warning: RateLimitedWarning,
    /// The warning about stalled (hung) calls, at most one per interval.
    pub(crate) hung_warning: RateLimitedWarning,
    /// The config state the plugin last reported with `config_status`.
    pub(crate) config_status: Arc<ConfigStatus>,
    /// The `busy_poll_us` its last started process runs with.
    pub(crate) busy_poll_us: AtomicU32,
    /// How the busy-poll spins of all its connections ended.
    pub(crate) busy_poll: Arc<BusyPollStats>,
}

impl Shared {
    pub(crate) fn new(
        name: &str,
        plugin_type: PluginType,
        hook_timeout: Duration,
        restart_after_timeouts: u32,
        restart_after_errors: u32,
        instances: Vec<Arc<Instance>>,
    ) -> Shared {
        Shared {
            name: Arc::from(name),
            plugin_type,
            hook_timeout,
            restart_after_timeouts,
            restart_after_errors,
            instances,
            next_instance: AtomicUsize::new(0),
            calls: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            bad_results: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            standby_ready: AtomicUsize::new(0),
            became_ready: tokio::sync::Notify::new(),
            latency_us: AtomicU64::new(0),
            bad_result_warning: RateLimitedWarning::default(),
            hung_warning: RateLimitedWarning::default(),
            config_status: Arc::new(ConfigStatus::default()),
            busy_poll_us: AtomicU32::new(0),
            busy_poll: Arc::default(),
        }
    }
}

fn status_from_u8(value: u8) -> PluginStatus {
    match value {
        0 => PluginStatus::Starting,
        1 => PluginStatus::Ready,
        2 => PluginStatus::Restarting,
        3 => PluginStatus::Backoff,
        _ => PluginStatus::Stopped,
    }
}

fn status_to_u8(status: PluginStatus) -> u8 {
    match status {
        PluginStatus::Starting => 0,
        PluginStatus::Ready => 1,
        PluginStatus::Restarting => 2,
        PluginStatus::Backoff => 3,
        PluginStatus::Stopped => 4,
    }
}
