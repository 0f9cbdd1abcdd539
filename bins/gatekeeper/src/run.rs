//! Starting and stopping: plugins first (so routes exist), then the listeners (or the sockets
//! systemd passed); then systemd is told `READY=1`. SIGHUP reloads (see `reload`); on SIGTERM or
//! SIGINT, stop accepting, drain up to `shutdown_grace`, flush metrics, stop the plugins.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use gatekeeper_plugin_host::{LaunchOptions, Manager, PluginHandle, PluginHost, PluginSpec};
use gatekeeper_proxy::forwarded::ForwardedConfig;
use gatekeeper_proxy::{
    ListenerConfig, LoadBalancerHook, MetricKind, Metrics, MetricsConfig, MetricsExporter,
    Modifier, Proxy, ProxyConfig, Registry, RouterHook,
};
use gatekeeper_rpc::methods::PluginType;
use gatekeeper_rpc::metrics::events;
use gatekeeper_rpc::types::Object;
use serde_json::json;

use crate::config::{PluginSetting, Settings};
use crate::reload::Reloader;
use crate::wiring::access_log::AccessLog;
use crate::wiring::feeds::{follow_plugins, follow_registry, Follows, RegistryReplay};
use crate::wiring::hooks::PluginHook;
use crate::wiring::manager::RegistryManager;
use crate::wiring::metrics::PluginExporter;
use crate::wiring::{failure_policy, MeteredPlugin};
use crate::{activation, notify};

/// The plugin host's spec of a configured plugin.
pub fn spec_of(setting: &PluginSetting) -> PluginSpec {
    let mut spec = PluginSpec::new(&setting.name, setting.plugin_type, &setting.command)
        .with_args(setting.args.clone())
        .with_config(setting.config.clone())
        .with_instances(setting.instances);
    if let Some(timeout) = setting.hook_timeout {
        spec.hook_timeout = timeout;
    }
    if let Some(interval) = setting.heartbeat_interval {
        spec.heartbeat_interval = interval;
    }
    if let Some(limit) = setting.restart_after_timeouts {
        spec.restart_after_timeouts = limit;
    }
    spec
}

// Every field is set today; the default stays for fields added later.
#[allow(clippy::needless_update)]
fn proxy_config(settings: &Settings) -> ProxyConfig {
    ProxyConfig {
        listeners: settings
            .listeners
            .iter()
            .map(|l| ListenerConfig {
                name: l.name.clone(),
                addr: l.addr,
            })
            .collect(),
        default_timeout: settings.default_timeout,
        connect_timeout: settings.connect_timeout,
        header_read_timeout: settings.header_read_timeout,
        passive_health_failures: settings.passive_health.failures,
        passive_health_cooldown: settings.passive_health.cooldown,
        tls: settings.tls_certificates(),
        keepalive_idle: settings.keepalive_idle,
        max_header_bytes: settings.max_header_bytes,
        max_connections: settings.max_connections,
        max_plugin_body: settings.max_plugin_body,
        forwarded: ForwardedConfig {
            mode: settings.forwarded_headers,
            via: settings.via.clone(),
        },
        shutdown_grace: settings.shutdown_grace,
        ..ProxyConfig::default()
    }
}

/// Resolves when the process receives SIGTERM or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop gatekeeper with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
    notify::stopping();
}

fn object(value: serde_json::Value) -> Object {
    value.as_object().cloned().unwrap_or_default()
}

/// The plugins, started, each with its setting and how long its start took.
struct Launched {
    plugins: Vec<(PluginSetting, PluginHandle, Duration)>,
}

impl Launched {
    fn of_type(
        &self,
        plugin_type: PluginType,
    ) -> impl Iterator<Item = &(PluginSetting, PluginHandle, Duration)> {
        self.plugins
            .iter()
            .filter(move |(setting, _, _)| setting.plugin_type == plugin_type)
    }
}

/// Starts the plugins in two waves and waits for all, so routes exist from the first request:
/// first the upstream plugins (their `start` fills the registry), then every other plugin at
/// once (a router or loadbalancer plugin is then handed the full registry before it is ready).
async fn launch_plugins(
    settings: &Settings,
    host: &PluginHost,
    registry: &Arc<Registry>,
    events: tokio::sync::mpsc::UnboundedSender<gatekeeper_plugin_host::PluginEvent>,
) -> Result<Launched> {
    let manager: Arc<dyn Manager> = Arc::new(RegistryManager::new(registry.clone()));
    let launch = |setting: &PluginSetting| {
        let mut options = LaunchOptions::default().with_events(events.clone());
        match setting.plugin_type {
            PluginType::Upstream => options = options.with_manager(manager.clone()),
            PluginType::Router => {
                options = options.with_before_ready(Arc::new(RegistryReplay::new(
                    registry.clone(),
                    Follows::Upstreams,
                )))
            }
            PluginType::Loadbalancer => {
                options = options.with_before_ready(Arc::new(RegistryReplay::new(
                    registry.clone(),
                    Follows::Backends,
                )))
            }
            PluginType::Modifier | PluginType::Metric => {}
        }
        let started = Instant::now();
        let launch = host.launch(spec_of(setting), options);
        async move { launch.await.map(|handle| (handle, started.elapsed())) }
    };
    let mut plugins = Vec::new();
    for upstream_wave in [true, false] {
        let wave: Vec<&PluginSetting> = settings
            .plugins
            .iter()
            .filter(|s| (s.plugin_type == PluginType::Upstream) == upstream_wave)
            .collect();
        let outcomes = futures::future::join_all(wave.iter().map(|s| launch(s))).await;
        for (setting, outcome) in wave.into_iter().zip(outcomes) {
            // The error names the plugin and the step that failed.
            let (handle, took) = outcome?;
            plugins.push((setting.clone(), handle, took));
        }
    }
    // Keep the configured order (modifiers are called in it).
    plugins.sort_by_key(|(setting, _, _)| {
        settings
            .plugins
            .iter()
            .position(|s| s.name == setting.name)
            .unwrap_or(usize::MAX)
    });
    Ok(Launched { plugins })
}

/// Metric plugins get every kind they declared; loadbalancer and upstream plugins the upstream
/// metrics, if they declared `upstream_metric`.
fn metrics_of(
    settings: &Settings,
    launched: &Launched,
    access_log: Option<AccessLog>,
    prometheus: Option<Arc<dyn MetricsExporter>>,
) -> Metrics {
    let mut exporters: Vec<Arc<dyn MetricsExporter>> = prometheus.into_iter().collect();
    if let Some(access_log) = access_log {
        exporters.push(Arc::new(access_log));
    }
    for (setting, handle, _) in &launched.plugins {
        let kinds: &[MetricKind] = match setting.plugin_type {
            PluginType::Metric => &MetricKind::ALL,
            PluginType::Loadbalancer | PluginType::Upstream => &[MetricKind::Upstream],
            PluginType::Modifier | PluginType::Router => &[],
        };
        if let Some(exporter) = PluginExporter::new(handle.clone(), kinds) {
            exporters.push(Arc::new(exporter));
        }
    }
    // Even without exporters: a reload can add some (`Metrics::set_exporters`); until then
    // nothing is recorded and requests take the fast path.
    Metrics::new(
        MetricsConfig {
            batch_size: settings.metrics.batch_size,
            flush_interval: settings.metrics.flush_interval,
            buffer: settings.metrics.buffer,
        },
        exporters,
    )
}

/// Runs gatekeeper until a shutdown signal.
pub async fn run(settings: Settings) -> Result<()> {
    let startup = Instant::now();
    let access_log =
        AccessLog::open(settings.access_log, &settings.access_log_file).with_context(|| {
            format!(
                "access_log_file: cannot open {}",
                settings.access_log_file.display()
            )
        })?;
    let registry = Arc::new(Registry::new());
    let registry_changes = registry.subscribe();
    let operations = crate::admin::Operations::start(&settings, &registry).await?;
    let host = Arc::new(
        PluginHost::new(settings.socket_dir.clone())
            .context("cannot create the plugin socket directory")?,
    );
    let (plugin_events, plugin_events_rx) = tokio::sync::mpsc::unbounded_channel();

    let launched = match launch_plugins(&settings, &host, &registry, plugin_events).await {
        Ok(launched) => launched,
        Err(e) => {
            host.shutdown().await;
            return Err(e);
        }
    };
    let metrics = metrics_of(&settings, &launched, access_log, operations.exporter());
    for (setting, _, took) in &launched.plugins {
        metrics.record_profile(
            "plugin_start",
            *took,
            object(json!({ "plugin": setting.name })),
        );
    }
    tokio::spawn(follow_plugins(plugin_events_rx, metrics.clone()));
    tokio::spawn(follow_registry(registry_changes, metrics.clone()));

    let hook = |setting: &PluginSetting, handle: &PluginHandle| {
        Arc::new(PluginHook::new(
            MeteredPlugin::new(handle.clone(), metrics.clone()),
            failure_policy(setting.failure),
        ))
    };
    let modifiers: Vec<Arc<dyn Modifier>> = launched
        .of_type(PluginType::Modifier)
        .map(|(setting, handle, _)| hook(setting, handle) as Arc<dyn Modifier>)
        .collect();
    let mut proxy =
        Proxy::new(proxy_config(&settings), registry, modifiers).with_metrics(metrics.clone());
    if let Some((setting, handle, _)) = launched.of_type(PluginType::Router).next() {
        proxy = proxy.with_router(hook(setting, handle) as Arc<dyn RouterHook>);
    }
    if let Some((setting, handle, _)) = launched.of_type(PluginType::Loadbalancer).next() {
        proxy = proxy.with_loadbalancer(hook(setting, handle) as Arc<dyn LoadBalancerHook>);
    }
    for (listener, socket) in activation::passed_sockets(&settings.listeners) {
        proxy = proxy.with_listener_socket(listener, socket);
    }

    let bound = match proxy.bind().await {
        Ok(bound) => bound,
        Err(e) => {
            metrics.shutdown().await;
            host.shutdown().await;
            return Err(e.into());
        }
    };
    let listeners: Vec<String> = settings
        .listeners
        .iter()
        .zip(bound.local_addrs())
        .map(|(l, addr)| format!("{}={}", l.name, addr))
        .collect();
    metrics.record_profile("startup", startup.elapsed(), Object::new());
    metrics.record_event(
        events::APP_STARTED,
        object(json!({ "listeners": listeners })),
    );
    tracing::info!(listeners = %listeners.join(","), plugins = settings.plugins.len(), "gatekeeper ready");
    operations.ready(
        launched.plugins.iter().map(|(_, h, _)| h.clone()).collect(),
        settings
            .listeners
            .iter()
            .map(|l| l.name.clone())
            .zip(bound.local_addrs())
            .collect(),
        metrics.clone(),
    );
    notify::ready(&format!("serving on {}", listeners.join(", ")));
    let watchdog = notify::spawn_watchdog();

    let grace = settings.shutdown_grace;
    let reload = tokio::spawn(Reloader::new(settings, bound.tls_reloader(), host.clone()).run());
    let draining = operations.draining_flag();
    bound
        .serve(async move {
            shutdown_signal().await;
            draining.store(true, std::sync::atomic::Ordering::Relaxed);
        })
        .await;
    reload.abort();
    drop(operations);
    notify::status(&format!(
        "connections drained (grace {}); stopping the plugins",
        humantime::format_duration(grace)
    ));
    metrics.record_event(events::APP_STOPPED, Object::new());
    metrics.shutdown().await;
    if metrics.dropped() > 0 {
        tracing::warn!(
            dropped = metrics.dropped(),
            "metric records were dropped (buffers full)"
        );
    }
    host.shutdown().await;
    if let Some(watchdog) = watchdog {
        watchdog.abort();
    }
    tracing::info!("gatekeeper stopped");
    Ok(())
}
