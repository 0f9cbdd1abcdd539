//! The running plugins, in the configured order: starting them (upstream plugins first, so
//! routes exist before the others and the first request), changing them to match a reloaded
//! configuration, and what the proxy gets from them (its hooks and metrics exporters).
//!
//! A reload never stops a plugin before its successor is ready (make before break):
//!
//! 1. [`PluginSet::reconcile`] launches the added plugins and, for each plugin whose process
//!    settings changed, a replacement under the same name next to the running one; a plugin
//!    whose only change is its failure policy keeps its processes;
//! 2. the caller swaps the proxy's hooks and exporters to the new set ([`PluginSet::hooks`],
//!    [`PluginSet::exporters`]);
//! 3. [`Retired::finish`] stops the removed and replaced plugins and removes the upstreams that
//!    an upstream plugin no longer declares.
//!
//! A plugin that does not start is left out (added) or keeps running with its old settings
//! (changed); the reload reports it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gatekeeper_plugin_host::{
    HostError, LaunchOptions, Manager, PluginEvent, PluginHandle, PluginHost, PluginSpec,
};
use gatekeeper_proxy::{
    DecisionCache, Hooks, MetricKind, Metrics, MetricsExporter, Plugin, Registry,
};
use gatekeeper_rpc::methods::PluginType;
use tokio::sync::mpsc::UnboundedSender;

use crate::config::PluginConfig;
use crate::wiring::feeds::{Follows, RegistryReplay};
use crate::wiring::hooks::PluginHook;
use crate::wiring::manager::RegistryManager;
use crate::wiring::metrics::PluginExporter;
use crate::wiring::MeteredPlugin;

/// The plugin host's spec of a configured plugin.
pub fn spec_of(setting: &PluginConfig) -> PluginSpec {
    setting.spec.clone()
}

/// One running plugin and the settings it runs with.
#[derive(Clone)]
pub struct RunningPlugin {
    /// Its settings.
    pub setting: PluginConfig,
    /// Its handle.
    pub handle: PluginHandle,
    /// Its cache of `modify_request` decisions: new with each process settings (a replacement
    /// starts empty), cleared when the plugin restarts.
    pub cache: Arc<DecisionCache>,
}

/// The running plugins and what launching one needs.
pub struct PluginSet {
    host: Arc<PluginHost>,
    registry: Arc<Registry>,
    manager: Arc<RegistryManager>,
    events: UnboundedSender<PluginEvent>,
    running: Vec<RunningPlugin>,
}

/// The running plugins' decision caches, by plugin name (for `ctl plugins`, `/metrics` and
/// `ctl restart-plugin`).
#[derive(Clone, Default)]
pub struct PluginCaches(Vec<(String, Arc<DecisionCache>)>);

impl PluginCaches {
    /// The cache of the plugin named `name`.
    pub fn of(&self, name: &str) -> Option<&DecisionCache> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, c)| &**c)
    }
}

/// What a reload changed in the plugin set.
#[derive(Debug, Default)]
pub struct Reconciled {
    /// Plugins started.
    pub added: Vec<String>,
    /// Plugins to stop (see [`Retired`]).
    pub removed: Vec<String>,
    /// Plugins restarted with new settings (a new process next to the old one).
    pub replaced: Vec<String>,
    /// Plugins whose failure policy changed (same processes).
    pub updated: Vec<String>,
    /// Whether the order of the plugins changed (modifiers are called in it).
    pub reordered: bool,
    /// Plugins that did not start with their new settings, with the reason.
    pub failed: Vec<(String, String)>,
}

impl Reconciled {
    /// Whether anything changed.
    pub fn changed(&self) -> bool {
        !(self.added.is_empty()
            && self.removed.is_empty()
            && self.replaced.is_empty()
            && self.updated.is_empty()
            && !self.reordered)
    }
}

/// Plugins a reload took out of service, to stop once the proxy no longer calls them.
#[must_use = "the retired plugins run until finish() stops them"]
pub struct Retired {
    host: Arc<PluginHost>,
    manager: Arc<RegistryManager>,
    stop: Vec<PluginHandle>,
    /// Upstream plugins whose upstreams added before a mark go (`u64::MAX`: all of them).
    sweeps: Vec<(String, u64)>,
}

impl Retired {
    /// Whether no plugin is to be stopped.
    pub fn is_empty(&self) -> bool {
        self.stop.is_empty()
    }

    /// Stops the retired plugins (all at once) and removes the upstreams their successors no
    /// longer declare.
    pub async fn finish(self) {
        let stops = self.stop.iter().map(|handle| async {
            if let Err(e) = self.host.stop(handle).await {
                tracing::debug!(plugin = handle.name(), error = %e, "retired plugin already gone");
            }
        });
        futures::future::join_all(stops).await;
        for (plugin, mark) in &self.sweeps {
            self.manager.sweep(plugin, *mark);
        }
    }
}

/// Whether two plugin settings are the same.
fn same(a: &PluginConfig, b: &PluginConfig) -> bool {
    a == b
}

/// Whether two settings run the same processes (they differ at most in the failure policy).
fn same_processes(a: &PluginConfig, b: &PluginConfig) -> bool {
    same(
        a,
        &PluginConfig {
            failure: a.failure,
            ..b.clone()
        },
    )
}

impl PluginSet {
    /// No plugins yet; they will run on `host`, upstream plugins feeding `registry`.
    pub fn new(
        host: Arc<PluginHost>,
        registry: Arc<Registry>,
        events: UnboundedSender<PluginEvent>,
    ) -> Self {
        PluginSet {
            manager: Arc::new(RegistryManager::new(registry.clone())),
            host,
            registry,
            events,
            running: Vec::new(),
        }
    }

    /// The running plugins, in the configured order.
    pub fn running(&self) -> &[RunningPlugin] {
        &self.running
    }

    /// Their handles, in the configured order.
    pub fn handles(&self) -> Vec<PluginHandle> {
        self.running.iter().map(|p| p.handle.clone()).collect()
    }

    /// Their decision caches, by plugin name.
    pub fn caches(&self) -> PluginCaches {
        PluginCaches(
            self.running
                .iter()
                .map(|p| (p.setting.spec.name.clone(), p.cache.clone()))
                .collect(),
        )
    }

    fn options(&self, plugin_type: PluginType) -> LaunchOptions {
        let options = LaunchOptions::default().with_events(self.events.clone());
        let replay = |follows| Arc::new(RegistryReplay::new(self.registry.clone(), follows));
        match plugin_type {
            PluginType::Upstream => options.with_manager(self.manager.clone() as Arc<dyn Manager>),
            PluginType::Router => options.with_before_ready(replay(Follows::Upstreams)),
            PluginType::Loadbalancer => options.with_before_ready(replay(Follows::Backends)),
            PluginType::Modifier | PluginType::Metric => options,
        }
    }

    /// Starts every plugin, in two waves (upstream plugins, then all others at once), and
    /// returns how long each start took; the first failure is the error (the plugins started
    /// meanwhile keep running until the host shuts down).
    pub async fn start(
        &mut self,
        settings: &[PluginConfig],
    ) -> Result<Vec<(String, Duration)>, HostError> {
        let mut took = Vec::new();
        for upstream_wave in [true, false] {
            let wave: Vec<&PluginConfig> = settings
                .iter()
                .filter(|s| (s.spec.plugin_type == PluginType::Upstream) == upstream_wave)
                .collect();
            let launches = wave.iter().map(|setting| {
                let started = Instant::now();
                let launch = self
                    .host
                    .launch(spec_of(setting), self.options(setting.spec.plugin_type));
                async move { launch.await.map(|handle| (handle, started.elapsed())) }
            });
            let outcomes = futures::future::join_all(launches).await;
            for (setting, outcome) in wave.into_iter().zip(outcomes) {
                let (handle, elapsed) = outcome?;
                took.push((setting.spec.name.clone(), elapsed));
                self.running.push(RunningPlugin {
                    setting: setting.clone(),
                    handle,
                    cache: Arc::default(),
                });
            }
        }
        self.sort_as(settings);
        Ok(took)
    }

    /// Keeps the configured order (modifiers are called in it).
    fn sort_as(&mut self, settings: &[PluginConfig]) {
        self.running.sort_by_key(|p| {
            settings
                .iter()
                .position(|s| s.spec.name == p.setting.spec.name)
                .unwrap_or(usize::MAX)
        });
    }

    /// Brings the set to `settings` (see the module docs); the old plugins keep running until
    /// the returned [`Retired::finish`].
    pub async fn reconcile(&mut self, settings: &[PluginConfig]) -> (Reconciled, Retired) {
        let mut report = Reconciled::default();
        let mut retired = Retired {
            host: self.host.clone(),
            manager: self.manager.clone(),
            stop: Vec::new(),
            sweeps: Vec::new(),
        };
        let old_order: Vec<String> = self
            .running
            .iter()
            .map(|p| p.setting.spec.name.clone())
            .collect();
        let mut next: Vec<RunningPlugin> = Vec::new();
        for upstream_wave in [true, false] {
            for setting in settings
                .iter()
                .filter(|s| (s.spec.plugin_type == PluginType::Upstream) == upstream_wave)
            {
                let running = self
                    .running
                    .iter()
                    .find(|p| p.setting.spec.name == setting.spec.name)
                    .cloned();
                match running {
                    None => match self.launch(setting).await {
                        Ok(handle) => {
                            report.added.push(setting.spec.name.clone());
                            next.push(RunningPlugin {
                                setting: setting.clone(),
                                handle,
                                cache: Arc::default(),
                            });
                        }
                        Err(e) => report
                            .failed
                            .push((setting.spec.name.clone(), e.to_string())),
                    },
                    Some(old) if same(&old.setting, setting) => next.push(old),
                    Some(old) if same_processes(&old.setting, setting) => {
                        report.updated.push(setting.spec.name.clone());
                        next.push(RunningPlugin {
                            setting: setting.clone(),
                            handle: old.handle,
                            cache: old.cache,
                        });
                    }
                    Some(old) => match self.replace(&old, setting, &mut retired).await {
                        Ok(handle) => {
                            report.replaced.push(setting.spec.name.clone());
                            next.push(RunningPlugin {
                                setting: setting.clone(),
                                handle,
                                cache: Arc::default(),
                            });
                        }
                        Err(e) => {
                            report
                                .failed
                                .push((setting.spec.name.clone(), e.to_string()));
                            next.push(old);
                        }
                    },
                }
            }
        }
        for old in &self.running {
            if !settings
                .iter()
                .any(|s| s.spec.name == old.setting.spec.name)
            {
                report.removed.push(old.setting.spec.name.clone());
                retired.stop.push(old.handle.clone());
                if old.setting.spec.plugin_type == PluginType::Upstream {
                    retired
                        .sweeps
                        .push((old.setting.spec.name.clone(), u64::MAX));
                }
            }
        }
        self.running = next;
        self.sort_as(settings);
        let kept = |order: &[String]| -> Vec<String> {
            order
                .iter()
                .filter(|n| {
                    old_order.contains(n) && self.running.iter().any(|p| &p.setting.spec.name == *n)
                })
                .cloned()
                .collect()
        };
        let new_order: Vec<String> = self
            .running
            .iter()
            .map(|p| p.setting.spec.name.clone())
            .collect();
        report.reordered = kept(&old_order) != kept(&new_order);
        (report, retired)
    }

    /// Launches a plugin that is not running yet.
    async fn launch(&self, setting: &PluginConfig) -> Result<PluginHandle, HostError> {
        self.host
            .launch(spec_of(setting), self.options(setting.spec.plugin_type))
            .await
    }

    /// Launches the successor of `old` with `setting` next to it, and retires `old`.
    async fn replace(
        &self,
        old: &RunningPlugin,
        setting: &PluginConfig,
        retired: &mut Retired,
    ) -> Result<PluginHandle, HostError> {
        let was_upstream = old.setting.spec.plugin_type == PluginType::Upstream;
        // The upstreams the successor declares from here on are its own; the others go.
        let mark = match (
            was_upstream,
            setting.spec.plugin_type == PluginType::Upstream,
        ) {
            (true, true) => Some(self.manager.mark(&setting.spec.name)),
            (true, false) => Some(u64::MAX),
            (false, _) => None,
        };
        let handle = self
            .host
            .launch_replacement(spec_of(setting), self.options(setting.spec.plugin_type))
            .await?;
        retired.stop.push(old.handle.clone());
        if let Some(mark) = mark {
            retired.sweeps.push((setting.spec.name.clone(), mark));
        }
        Ok(handle)
    }

    /// The proxy's hooks: the modifiers in the configured order, the first router and the
    /// first loadbalancer plugin, each calling through `metrics`.
    pub fn hooks(&self, metrics: &Metrics) -> Hooks {
        let hook = |p: &RunningPlugin| -> Arc<dyn Plugin> {
            Arc::new(PluginHook::new(
                MeteredPlugin::new(p.handle.clone(), metrics.clone()),
                p.setting.failure,
                p.cache.clone(),
            ))
        };
        let of_type = |t: PluginType| {
            self.running
                .iter()
                .filter(move |p| p.setting.spec.plugin_type == t)
        };
        Hooks {
            modifiers: of_type(PluginType::Modifier).map(hook).collect(),
            router: of_type(PluginType::Router).next().map(hook),
            loadbalancer: of_type(PluginType::Loadbalancer).next().map(hook),
        }
    }

    /// The plugins as metrics exporters: metric plugins get every kind they declared;
    /// loadbalancer and upstream plugins the upstream metrics, if they declared
    /// `upstream_metric`.
    pub fn exporters(&self) -> Vec<Arc<dyn MetricsExporter>> {
        let mut exporters: Vec<Arc<dyn MetricsExporter>> = Vec::new();
        for p in &self.running {
            let kinds: &[MetricKind] = match p.setting.spec.plugin_type {
                PluginType::Metric => &MetricKind::ALL,
                PluginType::Loadbalancer | PluginType::Upstream => &[MetricKind::Upstream],
                PluginType::Modifier | PluginType::Router => &[],
            };
            if let Some(exporter) = PluginExporter::new(p.handle.clone(), kinds) {
                exporters.push(Arc::new(exporter));
            }
        }
        exporters
    }
}
