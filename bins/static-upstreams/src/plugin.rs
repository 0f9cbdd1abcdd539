//! The plugin: `configure` loads the file named by the config key `file`, `start` pushes every
//! upstream and backend in it through the manager.

use std::path::Path;
use std::sync::{Mutex, PoisonError};

use gatekeeper_plugin_sdk::{HookError, Manager, Object, Plugin, UpstreamPlugin};

use crate::file::{self, StaticUpstream};

/// The config key naming the upstreams file (gatekeeper's `--upstream-file`). A relative path is
/// relative to gatekeeper's working directory, which the plugin inherits.
pub const FILE_KEY: &str = "file";

/// Serves the upstreams of one YAML file.
#[derive(Debug, Default)]
pub struct StaticUpstreams {
    /// The parsed file, once configured.
    upstreams: Mutex<Option<Vec<StaticUpstream>>>,
}

impl StaticUpstreams {
    fn loaded(&self) -> Option<Vec<StaticUpstream>> {
        self.upstreams
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Plugin for StaticUpstreams {
    /// Reads and parses the file now, so a bad file fails `configure` with its line.
    async fn configure(&self, config: Object) -> Result<(), HookError> {
        let path = match config.get(FILE_KEY) {
            Some(serde_json::Value::String(path)) if !path.is_empty() => path,
            Some(other) => {
                return Err(HookError::invalid_params(format!(
                    "config key `{FILE_KEY}` must be a file path, got {other}"
                )))
            }
            None => {
                return Err(HookError::invalid_params(format!(
                    "config key `{FILE_KEY}` (the upstreams YAML file) is required"
                )))
            }
        };
        let upstreams =
            file::load(Path::new(path)).map_err(|e| HookError::invalid_params(format!("{e:#}")))?;
        tracing::info!(file = %path, upstreams = upstreams.len(), "loaded upstreams file");
        *self
            .upstreams
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(upstreams);
        Ok(())
    }
}

impl UpstreamPlugin for StaticUpstreams {
    /// Pushes every upstream, then its backends; the first error the proxy returns fails `start`.
    async fn start_upstreams(&self, manager: Manager) -> Result<(), HookError> {
        let upstreams = self
            .loaded()
            .ok_or_else(|| HookError::unavailable("`start` before a successful `configure`"))?;
        let mut backends = 0;
        for StaticUpstream {
            upstream,
            backends: list,
        } in upstreams
        {
            let id = upstream.id.clone();
            manager.add_upstream(upstream).await?;
            for backend in list {
                manager.add_backend(id.as_str(), backend).await?;
                backends += 1;
            }
        }
        tracing::info!(backends, "pushed every upstream and backend");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(value: serde_json::Value) -> Object {
        let mut config = Object::new();
        config.insert(FILE_KEY.into(), value);
        config
    }

    #[tokio::test]
    async fn configure_requires_a_file() {
        let plugin = StaticUpstreams::default();
        let err = plugin.configure(Object::new()).await.unwrap_err();
        assert!(err.message().contains("`file`"), "{err}");
        let err = plugin.configure(config(json!(3))).await.unwrap_err();
        assert!(err.message().contains("must be a file path"), "{err}");
    }

    #[tokio::test]
    async fn configure_reports_a_bad_file_with_its_line() {
        let dir =
            std::env::temp_dir().join(format!("static-upstreams-plugin-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.yml");
        std::fs::write(&path, "a:\n  name: a\n  timeout: later\n").unwrap();
        let plugin = StaticUpstreams::default();
        let err = plugin
            .configure(config(json!(path.to_string_lossy())))
            .await
            .unwrap_err();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(err.code(), gatekeeper_plugin_sdk::codes::INVALID_PARAMS);
        assert!(err.message().contains("line 3"), "{err}");
        assert!(plugin.loaded().is_none());
    }

    #[tokio::test]
    async fn configure_loads_a_good_file() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/original-static-upstreams.yml");
        let plugin = StaticUpstreams::default();
        plugin
            .configure(config(json!(path.to_string_lossy())))
            .await
            .unwrap();
        assert_eq!(plugin.loaded().map(|u| u.len()), Some(2));
    }
}
