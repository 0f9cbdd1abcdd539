//! `gatekeeper check`'s plugin check: once the config itself is valid, every configured plugin
//! is started the way startup starts it (private socket, token, handshake) and sent `configure`
//! with `check: true` (read and check its config and every file it names, act on nothing), then
//! `stop`. All plugins are checked at once, within a bound; each failure is one line,
//! `plugin NAME: message` (the plugin's own message, e.g. the upstreams file's line and key, or
//! why it could not be started). `gatekeeper check --no-plugins` skips this.

use std::time::Duration;

use futures::future::join_all;
use gatekeeper_plugin_host::check_plugin;

use crate::config::Settings;

/// Time on top of the slowest plugin's start and stop timeouts before the check gives up.
const MARGIN: Duration = Duration::from_secs(5);

/// Checks every plugin of `settings` in parallel; returns one message per plugin that failed
/// (`plugin NAME: message`), in the configured order.
pub fn check_plugins(settings: &Settings) -> Vec<String> {
    if settings.plugins.is_empty() {
        return Vec::new();
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return vec![format!("cannot check the plugins: no runtime: {e}")],
    };
    let limit = settings
        .plugins
        .iter()
        .map(|p| p.spec.start_timeout + p.spec.stop_timeout)
        .max()
        .unwrap_or_default()
        + MARGIN;
    let socket_root = settings.host.socket_dir.clone();
    runtime.block_on(async {
        let checks = settings.plugins.iter().map(|plugin| {
            let socket_root = socket_root.clone();
            async move {
                match tokio::time::timeout(limit, check_plugin(&plugin.spec, socket_root)).await {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(e.to_string()),
                    Err(_) => Some(format!(
                        "plugin {}: its config check did not finish within {limit:?}",
                        plugin.spec.name
                    )),
                }
            }
        });
        join_all(checks).await.into_iter().flatten().collect()
    })
}
