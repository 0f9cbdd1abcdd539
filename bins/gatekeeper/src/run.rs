//! Starting and stopping: plugins first (so routes exist), then the listeners (or the sockets
//! systemd passed); then systemd is told `READY=1`. SIGHUP reloads (see `reload`); on SIGTERM or
//! SIGINT, stop accepting, drain up to `shutdown_grace`, flush metrics, stop the plugins.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use gatekeeper_plugin_host::PluginHost;
use gatekeeper_proxy::{Metrics, MetricsExporter, Proxy, Registry};
use gatekeeper_rpc::metrics::events;
use gatekeeper_rpc::types::Object;
use serde_json::json;

use crate::config::Settings;
use crate::plugins::PluginSet;
use crate::reload::{all_exporters, Reloader};
use crate::wiring::access_log::AccessLog;
use crate::wiring::feeds::{follow_plugins, follow_registry};
use crate::{activation, notify};

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

/// Runs gatekeeper until a shutdown signal.
pub async fn run(settings: Settings) -> Result<()> {
    let startup = Instant::now();
    // Taken first, before any plugin is spawned: taking them marks them close-on-exec, so no
    // plugin inherits a listening socket systemd passed (it could accept clients, or keep the
    // port after gatekeeper exits).
    let passed_sockets = activation::passed_sockets(&settings.proxy.listeners);
    let access_log = AccessLog::open(
        settings.access_log,
        &settings.access_log_fields,
        &settings.access_log_file,
    )
    .with_context(|| {
        format!(
            "access_log_file: cannot open {}",
            settings.access_log_file.display()
        )
    })?
    .map(Arc::new);
    let registry = Arc::new(Registry::new());
    let registry_changes = registry.subscribe();
    let operations = Arc::new(crate::admin::Operations::start(&settings, &registry).await?);
    let host = Arc::new(
        PluginHost::new(settings.host.socket_dir.clone())
            .context("cannot create the plugin socket directory")?,
    );
    let (plugin_events, plugin_events_rx) = tokio::sync::mpsc::unbounded_channel();

    let mut plugins = PluginSet::new(host.clone(), registry.clone(), plugin_events);
    let took = match plugins.start(&settings.plugins).await {
        Ok(took) => took,
        Err(e) => {
            host.shutdown().await;
            return Err(e.into());
        }
    };
    let fixed_exporters: Vec<Arc<dyn MetricsExporter>> =
        operations.exporter().into_iter().collect();
    let metrics = Metrics::new(
        settings.metrics,
        all_exporters(&fixed_exporters, &access_log, &plugins),
    );
    for (plugin, took) in took {
        metrics.record_profile("plugin_start", took, object(json!({ "plugin": plugin })));
    }
    tokio::spawn(follow_plugins(plugin_events_rx, metrics.clone()));
    tokio::spawn(follow_registry(registry_changes, metrics.clone()));

    let mut proxy = Proxy::new(settings.proxy.clone(), registry, Vec::new())
        .with_hooks(plugins.hooks(&metrics))
        .with_metrics(metrics.clone());
    for (listener, socket) in passed_sockets {
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
    let listeners = bound.listener_control();
    let addresses: Vec<String> = listeners
        .local_addrs()
        .iter()
        .map(|(name, addr)| format!("{name}={addr}"))
        .collect();
    metrics.record_profile("startup", startup.elapsed(), Object::new());
    metrics.record_event(
        events::APP_STARTED,
        object(json!({ "listeners": addresses })),
    );
    tracing::info!(listeners = %addresses.join(","), plugins = settings.plugins.len(), "gatekeeper ready");
    operations.ready(
        plugins.handles(),
        plugins.caches(),
        listeners.local_addrs(),
        metrics.clone(),
    );
    notify::ready(&format!("serving on {}", addresses.join(", ")));
    let watchdog = notify::spawn_watchdog();

    let grace = settings.proxy.shutdown_grace;
    let reloader = Reloader {
        running: settings,
        plugins,
        hooks: bound.hooks_switch(),
        listeners,
        metrics: metrics.clone(),
        fixed_exporters,
        access_log,
        operations: operations.clone(),
    };
    let reload = tokio::spawn(reloader.run());
    let draining = operations.draining_flag();
    bound
        .serve(async move {
            shutdown_signal().await;
            draining.store(true, std::sync::atomic::Ordering::Relaxed);
        })
        .await;
    reload.abort();
    // The reloader holds the other reference to the operations endpoints.
    let _ = reload.await;
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
