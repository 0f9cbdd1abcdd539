//! The metrics pipeline: a cheap [`Metrics`] handle that records without ever waiting, bounded
//! buffers (one per kind of record), and one flusher task that delivers batches to every
//! [`MetricsExporter`] (metric plugins, and the loadbalancer plugin for upstream metrics).
//!
//! ```text
//! record_*() ─try_send─► buffer per kind (bounded; full → dropped += 1)
//!                          │  batch_size waiting, or flush_interval passed, or shutdown
//!                          ▼
//!                       flusher task ─► every exporter that wants the kind, concurrently
//! ```
//!
//! A batch never has more than `batch_size` records. The flusher waits for the exports of one
//! round before starting the next, so a slow exporter (each bounds its own calls with a
//! timeout) makes the buffers fill up and records get dropped instead of piling up in memory.
//!
//! The exporters can be replaced while the proxy serves ([`Metrics::set_exporters`], e.g. at a
//! reload adding or removing metric plugins or the access log): a pipeline created by
//! [`Metrics::new`] exists even with no exporter at all. Which kinds are recorded follows the
//! current exporters (one atomic flag per kind, read where records are made), so while nobody
//! wants request, upstream or event records the proxy takes its fast path; only
//! [`Metrics::disabled`] has no pipeline and can never get exporters.
//!
//! Every handle also carries the connection counters of the listeners ([`listener_stats`]),
//! which are kept whatever the exporters want and read at scrape time.

pub(crate) mod listener_stats;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use futures::future::BoxFuture;
use gatekeeper_rpc::metrics::{
    now_ms, EventMetric, PluginMetric, ProfilingMetric, RequestMetric, UpstreamMetric,
};
use gatekeeper_rpc::types::Object;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::task::JoinHandle;

pub use self::listener_stats::ListenerStats;
use self::listener_stats::{ListenerCounters, ListenerTable};

/// The kinds of metric records, one per metric hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricKind {
    /// [`EventMetric`] (`event_metric`).
    Event,
    /// [`ProfilingMetric`] (`profiling_metric`).
    Profile,
    /// [`PluginMetric`] (`plugin_metric`).
    Plugin,
    /// [`RequestMetric`] (`request_metric`).
    Request,
    /// [`UpstreamMetric`] (`upstream_metric`).
    Upstream,
}

impl MetricKind {
    /// Every kind.
    pub const ALL: [MetricKind; 5] = [
        MetricKind::Event,
        MetricKind::Profile,
        MetricKind::Plugin,
        MetricKind::Request,
        MetricKind::Upstream,
    ];

    /// This kind's bit in the set of wanted kinds.
    const fn bit(self) -> u8 {
        1 << self as u8
    }
}

/// The kinds whose records are made while a request is measured (see
/// [`Metrics::measures_requests`]).
const REQUEST_KINDS: u8 =
    MetricKind::Request.bit() | MetricKind::Upstream.bit() | MetricKind::Event.bit();

/// The set of kinds some of these exporters want, one bit per kind.
fn wanted_kinds(exporters: &[Arc<dyn MetricsExporter>]) -> u8 {
    MetricKind::ALL
        .into_iter()
        .filter(|kind| exporters.iter().any(|e| e.wants(*kind)))
        .fold(0, |set, kind| set | kind.bit())
}

/// The exporters, replaced by [`Metrics::set_exporters`] and read by the flusher every round.
type Exporters = Arc<ArcSwap<Vec<Arc<dyn MetricsExporter>>>>;

/// Where batches of metric records go: a metric plugin, or a loadbalancer plugin for upstream
/// metrics. Implemented by the gatekeeper binary on top of the plugin host.
///
/// Every method has a default that does nothing, and [`wants`](Self::wants) lets an exporter
/// say which kinds it takes (the flusher does not even copy a batch for an exporter that does
/// not want it). An export future should bound itself with a timeout and log its own errors.
pub trait MetricsExporter: Send + Sync + 'static {
    /// Whether this exporter takes records of this kind (default: all kinds).
    fn wants(&self, kind: MetricKind) -> bool {
        let _ = kind;
        true
    }
    /// `event_metric`: a batch of events, oldest first.
    fn export_events(&self, batch: Vec<EventMetric>) -> BoxFuture<'static, ()> {
        let _ = batch;
        Box::pin(async {})
    }
    /// `profiling_metric`: a batch of timings of internal operations, oldest first.
    fn export_profiles(&self, batch: Vec<ProfilingMetric>) -> BoxFuture<'static, ()> {
        let _ = batch;
        Box::pin(async {})
    }
    /// `plugin_metric`: a batch of plugin calls, oldest first.
    fn export_plugin_metrics(&self, batch: Vec<PluginMetric>) -> BoxFuture<'static, ()> {
        let _ = batch;
        Box::pin(async {})
    }
    /// `request_metric`: a batch of finished requests, oldest first.
    fn export_requests(&self, batch: Vec<RequestMetric>) -> BoxFuture<'static, ()> {
        let _ = batch;
        Box::pin(async {})
    }
    /// `upstream_metric`: a batch of backend outcomes, oldest first.
    fn export_upstream_metrics(&self, batch: Vec<UpstreamMetric>) -> BoxFuture<'static, ()> {
        let _ = batch;
        Box::pin(async {})
    }
}

/// Settings of the metrics pipeline: config keys `metrics_batch_size`, `metrics_flush_interval`
/// and `metrics_buffer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct MetricsConfig {
    /// The most records sent in one call; a batch is sent as soon as this many of a kind are
    /// waiting (default 100; 1 to 100 000).
    #[serde(rename = "metrics_batch_size")]
    pub batch_size: usize,
    /// Records waiting this long are sent even if fewer than `batch_size` (default 1s; more
    /// than 0).
    #[serde(rename = "metrics_flush_interval", with = "crate::config::duration")]
    pub flush_interval: Duration,
    /// Records of each kind buffered at most; more are dropped and counted (default 10 000;
    /// 1 to 10 000 000).
    #[serde(rename = "metrics_buffer")]
    pub buffer: usize,
}

impl MetricsConfig {
    /// Checks every value; the error names the first bad key.
    pub fn validate(&self) -> Result<(), crate::ConfigError> {
        use crate::ConfigError;
        let range = |key, value, max| {
            if (1..=max).contains(&value) {
                return Ok(());
            }
            Err(ConfigError::OutOfRange {
                key,
                value,
                min: 1,
                max,
                note: "",
            })
        };
        range("metrics_batch_size", self.batch_size, 100_000)?;
        if self.flush_interval.is_zero() {
            return Err(ConfigError::Zero("metrics_flush_interval"));
        }
        range("metrics_buffer", self.buffer, 10_000_000)
    }
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            batch_size: 100,
            flush_interval: Duration::from_secs(1),
            buffer: 10_000,
        }
    }
}

/// One bounded buffer.
struct Queue<T> {
    tx: mpsc::Sender<T>,
    kind: MetricKind,
}

impl<T> Queue<T> {
    fn push(&self, record: T, shared: &Inner) {
        if !shared.wants(self.kind) {
            return;
        }
        if shared.closed.load(Ordering::Relaxed) || self.tx.try_send(record).is_err() {
            shared.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // Permits in use = records waiting (approximately, under concurrency).
        if self.tx.max_capacity() - self.tx.capacity() >= shared.batch_size {
            shared.wake.notify_one();
        }
    }
}

struct Inner {
    events: Queue<EventMetric>,
    profiles: Queue<ProfilingMetric>,
    plugins: Queue<PluginMetric>,
    requests: Queue<RequestMetric>,
    upstreams: Queue<UpstreamMetric>,
    /// The kinds the current exporters want, one bit per kind ([`MetricKind::bit`]).
    wanted: AtomicU8,
    /// The current exporters (shared with the flusher).
    exporters: Exporters,
    /// Held while exporters are replaced, so that `wanted` always matches `exporters`.
    replacing: Mutex<()>,
    batch_size: usize,
    dropped: AtomicU64,
    closed: AtomicBool,
    wake: Arc<Notify>,
    stop: Mutex<Option<oneshot::Sender<()>>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Inner {
    fn wants(&self, kind: MetricKind) -> bool {
        self.wanted.load(Ordering::Acquire) & kind.bit() != 0
    }
}

/// The handle used to record metrics: cheap to clone, and recording never waits.
///
/// Dropping every handle without [`shutdown`](Self::shutdown) still makes the flusher send what
/// is buffered, in the background.
#[derive(Clone, Default)]
pub struct Metrics {
    inner: Option<Arc<Inner>>,
    /// The listeners' connection counters (kept even when disabled).
    listeners: Arc<ListenerTable>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("enabled", &self.is_enabled())
            .field("dropped", &self.dropped())
            .finish()
    }
}

/// A buffer for one kind (tokio allocates a channel's slots as they fill, so the buffer of a
/// kind nobody wants costs next to nothing).
fn queue<T>(buffer: usize, kind: MetricKind) -> (Queue<T>, mpsc::Receiver<T>) {
    let (tx, rx) = mpsc::channel(buffer);
    (Queue { tx, kind }, rx)
}

impl Metrics {
    /// A pipeline delivering to these exporters, with its flusher task spawned on the current
    /// Tokio runtime (call it from within one). With no exporters it records nothing until
    /// [`set_exporters`](Self::set_exporters) gives it some.
    ///
    /// # Panics
    ///
    /// When called outside a Tokio runtime (spawning the flusher task fails).
    pub fn new(config: MetricsConfig, exporters: Vec<Arc<dyn MetricsExporter>>) -> Self {
        let batch_size = config.batch_size.max(1);
        let buffer = config.buffer.max(1);
        let (events, events_rx) = queue(buffer, MetricKind::Event);
        let (profiles, profiles_rx) = queue(buffer, MetricKind::Profile);
        let (plugins, plugins_rx) = queue(buffer, MetricKind::Plugin);
        let (requests, requests_rx) = queue(buffer, MetricKind::Request);
        let (upstreams, upstreams_rx) = queue(buffer, MetricKind::Upstream);
        let wake = Arc::new(Notify::new());
        let (stop_tx, stop_rx) = oneshot::channel();
        let wanted = AtomicU8::new(wanted_kinds(&exporters));
        let exporters: Exporters = Arc::new(ArcSwap::from_pointee(exporters));
        let flusher = Flusher {
            exporters: exporters.clone(),
            batch_size,
            events: events_rx,
            profiles: profiles_rx,
            plugins: plugins_rx,
            requests: requests_rx,
            upstreams: upstreams_rx,
        };
        let interval = config.flush_interval.max(Duration::from_millis(1));
        let task = tokio::spawn(flusher.run(wake.clone(), stop_rx, interval));
        Metrics {
            listeners: Arc::default(),
            inner: Some(Arc::new(Inner {
                events,
                profiles,
                plugins,
                requests,
                upstreams,
                wanted,
                exporters,
                replacing: Mutex::new(()),
                batch_size,
                dropped: AtomicU64::new(0),
                closed: AtomicBool::new(false),
                wake,
                stop: Mutex::new(Some(stop_tx)),
                task: Mutex::new(Some(task)),
            })),
        }
    }

    /// A handle that records nothing (no task, no buffers), and never will:
    /// [`set_exporters`](Self::set_exporters) does nothing on it.
    pub fn disabled() -> Self {
        Metrics::default()
    }

    /// The connection counters of listener `name`.
    pub(crate) fn listener_counters(&self, name: &str) -> Arc<ListenerCounters> {
        self.listeners.counters(name)
    }

    /// The connection counters of every listener that accepted a connection, by name.
    pub fn listener_stats(&self) -> Vec<(String, ListenerStats)> {
        self.listeners.stats()
    }

    /// Replaces the exporters while the pipeline runs (e.g. at a reload). The flusher delivers
    /// to the new list from its next round on, including the records already buffered (records
    /// of a kind no new exporter wants are discarded then); a round already under way finishes
    /// with the old list. Kinds the new exporters want are recorded from now on, the others no
    /// longer. Does nothing on a [`disabled`](Self::disabled) handle.
    pub fn set_exporters(&self, exporters: Vec<Arc<dyn MetricsExporter>>) {
        let Some(inner) = &self.inner else {
            if !exporters.is_empty() {
                tracing::warn!("metrics pipeline disabled: new exporters ignored");
            }
            return;
        };
        let _replacing = inner.replacing.lock().unwrap_or_else(|e| e.into_inner());
        let wanted = wanted_kinds(&exporters);
        // The list first: a record made because of the new flags is delivered to the new list.
        inner.exporters.store(Arc::new(exporters));
        inner.wanted.store(wanted, Ordering::Release);
    }

    /// Whether records go anywhere now: some exporter wants some kind (false when disabled or
    /// without exporters). It changes with [`set_exporters`](Self::set_exporters).
    pub fn is_enabled(&self) -> bool {
        self.inner
            .as_ref()
            .is_some_and(|i| i.wanted.load(Ordering::Acquire) != 0)
    }

    /// Whether some exporter takes records of this kind now (records of other kinds are
    /// discarded at once, without counting them as dropped). It changes with
    /// [`set_exporters`](Self::set_exporters).
    pub fn wants(&self, kind: MetricKind) -> bool {
        self.inner.as_ref().is_some_and(|i| i.wants(kind))
    }

    /// Whether requests are measured now: some exporter wants request, upstream or event
    /// records (one atomic load; the request path reads it once per request).
    pub(crate) fn measures_requests(&self) -> bool {
        self.inner
            .as_ref()
            .is_some_and(|i| i.wanted.load(Ordering::Acquire) & REQUEST_KINDS != 0)
    }

    /// Records lost because their buffer was full (or recorded after shutdown).
    pub fn dropped(&self) -> u64 {
        self.inner
            .as_ref()
            .map_or(0, |i| i.dropped.load(Ordering::Relaxed))
    }

    /// Records an event (one of [`gatekeeper_rpc::metrics::events`]) happening now.
    pub fn record_event(&self, name: impl Into<String>, attributes: Object) {
        if let Some(i) = &self.inner {
            if i.wants(MetricKind::Event) {
                let event = EventMetric {
                    time_ms: now_ms(),
                    name: name.into(),
                    attributes,
                };
                i.events.push(event, i);
            }
        }
    }

    /// Records how long an internal operation that just ended took.
    pub fn record_profile(&self, name: impl Into<String>, duration: Duration, attributes: Object) {
        if let Some(i) = &self.inner {
            if i.wants(MetricKind::Profile) {
                let profile = ProfilingMetric {
                    time_ms: now_ms(),
                    name: name.into(),
                    duration_us: micros(duration),
                    attributes,
                };
                i.profiles.push(profile, i);
            }
        }
    }

    /// Records a call to a plugin.
    pub fn record_plugin(&self, metric: PluginMetric) {
        if let Some(i) = &self.inner {
            i.plugins.push(metric, i);
        }
    }

    /// Records a finished request.
    pub fn record_request(&self, metric: RequestMetric) {
        if let Some(i) = &self.inner {
            i.requests.push(metric, i);
        }
    }

    /// Records the outcome of a request to a backend.
    pub fn record_upstream(&self, metric: UpstreamMetric) {
        if let Some(i) = &self.inner {
            i.upstreams.push(metric, i);
        }
    }

    /// Stops recording, sends everything buffered (in batches of at most `batch_size`), and
    /// waits for the flusher task to end. Later records are dropped (and counted). Safe to call
    /// more than once; only the first call waits for the final flush.
    pub async fn shutdown(&self) {
        let Some(inner) = &self.inner else {
            return;
        };
        inner.closed.store(true, Ordering::Relaxed);
        let stop = inner.stop.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(stop) = stop {
            let _ = stop.send(());
        }
        let task = inner.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(task) = task {
            if let Err(e) = task.await {
                tracing::warn!(error = %e, "metrics flusher task failed");
            }
        }
    }
}

/// A duration in whole microseconds (saturating).
pub(crate) fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// The flusher task's state: the receiving ends of the buffers and the exporters.
struct Flusher {
    /// Loaded at the start of every round.
    exporters: Exporters,
    batch_size: usize,
    events: mpsc::Receiver<EventMetric>,
    profiles: mpsc::Receiver<ProfilingMetric>,
    plugins: mpsc::Receiver<PluginMetric>,
    requests: mpsc::Receiver<RequestMetric>,
    upstreams: mpsc::Receiver<UpstreamMetric>,
}

/// Takes the waiting records as batches of `batch_size`; the last, smaller batch only when
/// `all` is set (on the interval and at shutdown). Takes only what is waiting when called.
fn take_batches<T>(rx: &mut mpsc::Receiver<T>, batch_size: usize, all: bool) -> Vec<Vec<T>> {
    let mut waiting = rx.len();
    let mut batches = Vec::new();
    while waiting >= batch_size || (all && waiting > 0) {
        let n = waiting.min(batch_size);
        let mut batch = Vec::with_capacity(n);
        while batch.len() < n {
            match rx.try_recv() {
                Ok(record) => batch.push(record),
                Err(_) => break,
            }
        }
        if batch.is_empty() {
            break;
        }
        waiting -= batch.len().min(waiting);
        batches.push(batch);
    }
    batches
}

type Export<T> = fn(&dyn MetricsExporter, Vec<T>) -> BoxFuture<'static, ()>;

/// The export calls of these batches to every exporter wanting `kind` (the last exporter gets
/// the batch itself, the others a copy).
fn exports<T: Clone>(
    exporters: &[Arc<dyn MetricsExporter>],
    kind: MetricKind,
    batches: Vec<Vec<T>>,
    export: Export<T>,
    out: &mut Vec<BoxFuture<'static, ()>>,
) {
    let wanting: Vec<&Arc<dyn MetricsExporter>> =
        exporters.iter().filter(|e| e.wants(kind)).collect();
    for batch in batches {
        if let Some((last, rest)) = wanting.split_last() {
            for e in rest {
                out.push(export(e.as_ref(), batch.clone()));
            }
            out.push(export(last.as_ref(), batch));
        }
    }
}

impl Flusher {
    async fn run(mut self, wake: Arc<Notify>, mut stop: oneshot::Receiver<()>, interval: Duration) {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                // Shutdown requested, or every handle dropped.
                _ = &mut stop => break,
                _ = wake.notified() => self.flush(false).await,
                _ = tick.tick() => self.flush(true).await,
            }
        }
        self.flush(true).await;
    }

    /// One round: collects the batches of every kind and exports them all concurrently.
    async fn flush(&mut self, all: bool) {
        let n = self.batch_size;
        let mut calls = Vec::new();
        let current = self.exporters.load_full();
        let ex = current.as_slice();
        let events = take_batches(&mut self.events, n, all);
        exports(
            ex,
            MetricKind::Event,
            events,
            |e, b| e.export_events(b),
            &mut calls,
        );
        let profiles = take_batches(&mut self.profiles, n, all);
        exports(
            ex,
            MetricKind::Profile,
            profiles,
            |e, b| e.export_profiles(b),
            &mut calls,
        );
        let plugins = take_batches(&mut self.plugins, n, all);
        exports(
            ex,
            MetricKind::Plugin,
            plugins,
            |e, b| e.export_plugin_metrics(b),
            &mut calls,
        );
        let requests = take_batches(&mut self.requests, n, all);
        exports(
            ex,
            MetricKind::Request,
            requests,
            |e, b| e.export_requests(b),
            &mut calls,
        );
        let upstreams = take_batches(&mut self.upstreams, n, all);
        exports(
            ex,
            MetricKind::Upstream,
            upstreams,
            |e, b| e.export_upstream_metrics(b),
            &mut calls,
        );
        if !calls.is_empty() {
            futures::future::join_all(calls).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn take_batches_respects_the_size() {
        let (tx, mut rx) = mpsc::channel(100);
        for i in 0..25 {
            tx.try_send(i).unwrap();
        }
        let b = take_batches(&mut rx, 10, false);
        assert_eq!(b.iter().map(Vec::len).collect::<Vec<_>>(), [10, 10]);
        let b = take_batches(&mut rx, 10, false);
        assert!(b.is_empty());
        let b = take_batches(&mut rx, 10, true);
        assert_eq!(b, [vec![20, 21, 22, 23, 24]]);
    }

    #[tokio::test]
    async fn disabled_records_nothing() {
        let m = Metrics::disabled();
        assert!(!m.is_enabled() && !m.wants(MetricKind::Event));
        m.record_event("x", Object::new());
        assert_eq!(m.dropped(), 0);
        m.shutdown().await;
        assert!(!Metrics::new(MetricsConfig::default(), vec![]).is_enabled());
    }

    /// Wants only the kinds given.
    struct Only(Vec<MetricKind>);

    impl MetricsExporter for Only {
        fn wants(&self, kind: MetricKind) -> bool {
            self.0.contains(&kind)
        }
    }

    #[tokio::test]
    async fn requests_are_measured_while_some_exporter_wants_their_records() {
        let m = Metrics::new(MetricsConfig::default(), vec![]);
        assert!(!m.is_enabled() && !m.measures_requests());
        for kind in [MetricKind::Request, MetricKind::Upstream, MetricKind::Event] {
            m.set_exporters(vec![Arc::new(Only(vec![kind]))]);
            assert!(m.measures_requests() && m.wants(kind), "{kind:?}");
        }
        m.set_exporters(vec![Arc::new(Only(vec![
            MetricKind::Profile,
            MetricKind::Plugin,
        ]))]);
        assert!(m.is_enabled() && !m.measures_requests());
        m.set_exporters(vec![]);
        assert!(!m.is_enabled() && !m.measures_requests());
        m.shutdown().await;
        assert!(!Metrics::disabled().measures_requests());
    }
}
