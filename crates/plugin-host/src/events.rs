//! Plugin lifecycle events ([`PluginEvent`]), for the caller's metrics and logs: an instance
//! started, went down, came back (restarted, or taken over by a spare), was recycled, missed a
//! heartbeat, stopped. They are sent on an unbounded
//! channel given in [`crate::LaunchOptions::events`], so sending never blocks a supervisor; the
//! events of one instance arrive in the order they happened.

use std::sync::Arc;

use tokio::sync::mpsc::UnboundedSender;

/// Something that happened to one instance of a plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginEvent {
    /// The plugin's name.
    pub plugin: String,
    /// Which instance (from 0; always 0 for a plugin with one instance).
    pub instance: usize,
    /// What happened.
    pub kind: PluginEventKind,
}

/// What happened to a plugin instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PluginEventKind {
    /// The first process of the instance is ready (handshake, `configure`, `start` and the
    /// before-ready replay done).
    Started {
        /// Its process id.
        pid: Option<u32>,
    },
    /// A restarted process of the instance is ready.
    Restarted {
        /// How many times the instance was restarted so far, this time included.
        restarts: u64,
        /// Its process id.
        pid: Option<u32>,
    },
    /// The instance went down (its process exited, its control connection closed, it broke the
    /// protocol or missed heartbeats), or a start attempt failed. A restart follows unless the
    /// host is shutting down or it was the first start.
    Failed {
        /// Why, for humans.
        reason: String,
    },
    /// A spare process (`standby`) took over the instance after its process went down: it is
    /// ready at once. Counted as a restart.
    TakenOver {
        /// How many times the instance was restarted so far, this time included.
        restarts: u64,
        /// The spare's process id.
        pid: Option<u32>,
    },
    /// The instance's process was replaced make-before-break (`max_memory`, `recycle_after`):
    /// its successor is ready and takes the calls; the old one is stopped once its calls are
    /// answered.
    Recycled {
        /// Why, for humans (e.g. `rss 300 MiB over max_memory 256 MiB`).
        reason: String,
        /// The successor's process id.
        pid: Option<u32>,
    },
    /// A heartbeat went unanswered.
    HeartbeatMissed {
        /// Consecutive misses so far.
        missed: u32,
    },
    /// The instance is stopped for good (host shut down, or its first start failed).
    Stopped,
}

/// Where one instance's supervisor sends its events.
#[derive(Debug, Clone)]
pub(crate) struct EventSink {
    pub(crate) events: Option<UnboundedSender<PluginEvent>>,
    pub(crate) plugin: Arc<str>,
    pub(crate) instance: usize,
}

impl EventSink {
    /// Sends an event if anyone listens; never blocks.
    pub(crate) fn emit(&self, kind: PluginEventKind) {
        if let Some(events) = &self.events {
            // A receiver that went away just stops getting events.
            let _ = events.send(PluginEvent {
                plugin: self.plugin.to_string(),
                instance: self.instance,
                kind,
            });
        }
    }
}
