//! Starting and stopping: plugins first (so routes exist), then the listeners; on SIGTERM or
//! SIGINT, stop accepting, drain, stop the plugins.

use std::sync::Arc;

use anyhow::{Context, Result};
use gatekeeper_plugin_host::{Manager, PluginHost, PluginSpec};
use gatekeeper_proxy::{ListenerConfig, Modifier, Proxy, ProxyConfig, Registry};
use gatekeeper_rpc::methods::PluginType;

use crate::config::{PluginSetting, Settings};
use crate::wiring::{PluginModifier, RegistryManager};

fn spec_of(setting: &PluginSetting) -> PluginSpec {
    let mut spec = PluginSpec::new(&setting.name, setting.plugin_type, &setting.command)
        .with_args(setting.args.clone())
        .with_config(setting.config.clone());
    if let Some(timeout) = setting.hook_timeout {
        spec.hook_timeout = timeout;
    }
    if let Some(interval) = setting.heartbeat_interval {
        spec.heartbeat_interval = interval;
    }
    spec
}

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
        header_read_timeout: settings.header_read_timeout,
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
}

/// Runs gatekeeper until a shutdown signal.
pub async fn run(settings: Settings) -> Result<()> {
    let registry = Arc::new(Registry::new());
    let manager: Arc<dyn Manager> = Arc::new(RegistryManager::new(registry.clone()));
    let host = PluginHost::new(settings.socket_dir.clone())
        .context("cannot create the plugin socket directory")?;

    // Start every plugin at once; wait for all before serving so routes exist from the first request.
    let launches = settings.plugins.iter().map(|setting| {
        let manager = (setting.plugin_type == PluginType::Upstream).then(|| manager.clone());
        host.launch(spec_of(setting), manager)
    });
    let launched = futures::future::join_all(launches).await;
    let mut modifiers: Vec<Arc<dyn Modifier>> = Vec::new();
    let mut failure = None;
    for (setting, outcome) in settings.plugins.iter().zip(launched) {
        match outcome {
            Ok(handle) if setting.plugin_type == PluginType::Modifier => {
                modifiers.push(Arc::new(PluginModifier::new(handle, setting.failure)));
            }
            Ok(_) => {}
            Err(e) => {
                failure.get_or_insert_with(|| {
                    anyhow::Error::new(e)
                        .context(format!("plugin `{}` did not start", setting.name))
                });
            }
        }
    }
    if let Some(error) = failure {
        host.shutdown().await;
        return Err(error);
    }

    let bound = match Proxy::new(proxy_config(&settings), registry, modifiers)
        .bind()
        .await
    {
        Ok(bound) => bound,
        Err(e) => {
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
    tracing::info!(listeners = %listeners.join(","), plugins = settings.plugins.len(), "gatekeeper ready");

    bound.serve(shutdown_signal()).await;
    host.shutdown().await;
    tracing::info!("gatekeeper stopped");
    Ok(())
}
