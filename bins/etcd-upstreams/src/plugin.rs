//! The plugin: `configure` reads and checks the settings ([`crate::settings`]); `start` reads
//! etcd and pushes what it holds, then follows it on a task of its own ([`crate::follow`]).
//!
//! etcd unreachable at start does not fail `start`: gatekeeper starts and serves what it can,
//! the plugin logs a warning saying so, reports it (`ctl plugins`), and keeps trying in the
//! background; etcd's upstreams come as soon as it answers. Meanwhile the plugin serves the
//! state saved in its `cache_file` ([`crate::cache`]) if it has one, and none otherwise: without
//! a cache file, a gatekeeper or plugin process restarted while etcd is down has no upstreams
//! from etcd until it answers (gatekeeper drops what a restarted upstream plugin does not push
//! in `start`).

use std::sync::{Mutex, PoisonError};

use gatekeeper_plugin_sdk::{HookError, Manager, Object, Plugin, UpstreamPlugin};

use crate::follow::Follower;
use crate::push::Pusher;
use crate::settings::{self, Settings};

/// Serves the upstreams and backends under an etcd prefix.
#[derive(Debug, Default)]
pub struct EtcdUpstreams {
    /// The settings, once configured.
    settings: Mutex<Option<Settings>>,
}

impl Plugin for EtcdUpstreams {
    /// Checks the config (and reads the TLS files); does not reach etcd.
    async fn configure(&self, config: Object) -> Result<(), HookError> {
        let settings = settings::from_config(&config)?;
        tracing::info!(?settings, "configured");
        *self.settings.lock().unwrap_or_else(PoisonError::into_inner) = Some(settings);
        Ok(())
    }

    /// `gatekeeper check`: checks the config, reaches nothing.
    async fn check(&self, config: Object) -> Result<(), HookError> {
        settings::from_config(&config).map(drop)
    }
}

impl UpstreamPlugin for EtcdUpstreams {
    /// Reads the prefix and pushes it whole (within `dial_timeout` for reaching etcd), then
    /// follows it. See the module docs for etcd unreachable at start.
    async fn start_upstreams(&self, manager: Manager) -> Result<(), HookError> {
        let settings = self
            .settings
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| HookError::unavailable("`start` before a successful `configure`"))?;
        let endpoints = settings.endpoints_shown();
        let retry = settings.reconnect_max;
        let mut follower = Follower::new(settings, Pusher::new(manager));
        match follower.first_load().await {
            Ok(client) => {
                tokio::spawn(follower.run(Some(client)));
            }
            Err(error) => {
                tracing::warn!(
                    endpoints,
                    "etcd unreachable at start ({error}): retrying in the background (every {} at most) and pushing its upstreams as soon as etcd answers",
                    humantime::format_duration(retry)
                );
                follower.unreachable_at_start(&error).await;
                tokio::spawn(follower.run(None));
            }
        }
        Ok(())
    }
}
