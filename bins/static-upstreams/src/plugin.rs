//! The plugin: `configure` loads the file named by the config key `file`, `start` pushes every
//! upstream and backend in it in one `apply_batch` ([`crate::push`]), then watches the file and
//! pushes each new version the same way ([`crate::watch`]).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use gatekeeper_plugin_sdk::{HookError, Manager, Object, Plugin, UpstreamPlugin};

use crate::file::{self, BackendIds, StaticUpstream};
use crate::push::push;
use crate::watch::{self, Reloader};

/// The config key naming the upstreams file (gatekeeper's `--upstream-file`). A relative path is
/// relative to gatekeeper's working directory, which the plugin inherits.
pub const FILE_KEY: &str = "file";

/// The config key choosing backend ids: `url` (default) or `index` (see [`BackendIds`]).
/// Spelt `backend-ids` too, as gatekeeper's flag `--upstream-backend-ids` gives it.
pub const BACKEND_IDS_KEY: &str = "backend_ids";

/// What `configure` read.
#[derive(Debug, Clone)]
struct Loaded {
    path: PathBuf,
    ids: BackendIds,
    upstreams: Vec<StaticUpstream>,
    /// The file's text the upstreams were read from.
    text: String,
}

/// Serves the upstreams of one YAML file.
#[derive(Debug, Default)]
pub struct StaticUpstreams {
    /// The parsed file, once configured.
    loaded: Mutex<Option<Loaded>>,
}

impl StaticUpstreams {
    fn loaded(&self) -> Option<Loaded> {
        self.loaded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The `backend_ids` config value.
fn backend_ids(config: &Object) -> Result<BackendIds, HookError> {
    match config
        .get(BACKEND_IDS_KEY)
        .or_else(|| config.get("backend-ids"))
    {
        None | Some(serde_json::Value::Null) => Ok(BackendIds::default()),
        Some(serde_json::Value::String(name)) => BackendIds::from_name(name).ok_or_else(|| {
            HookError::invalid_params(format!(
                "config key `{BACKEND_IDS_KEY}` must be `url` or `index`, got `{name}`"
            ))
        }),
        Some(other) => Err(HookError::invalid_params(format!(
            "config key `{BACKEND_IDS_KEY}` must be `url` or `index`, got {other}"
        ))),
    }
}

/// The file named by the config, read, parsed and checked; errors say `FILE:LINE: KEY: message`.
fn read_config(config: &Object) -> Result<Loaded, HookError> {
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
    let ids = backend_ids(config)?;
    let path = Path::new(path);
    let invalid = |e: file::LoadError| HookError::invalid_params(e.to_string());
    let text = file::read(path).map_err(invalid)?;
    let upstreams = file::check(path, &text, ids).map_err(invalid)?;
    Ok(Loaded {
        path: PathBuf::from(path),
        ids,
        upstreams,
        text,
    })
}

impl Plugin for StaticUpstreams {
    /// Reads, parses and checks the file now, so a bad file fails `configure` with its line.
    async fn configure(&self, config: Object) -> Result<(), HookError> {
        let loaded = read_config(&config)?;
        tracing::info!(file = %loaded.path.display(), upstreams = loaded.upstreams.len(), "loaded upstreams file");
        *self.loaded.lock().unwrap_or_else(PoisonError::into_inner) = Some(loaded);
        Ok(())
    }

    /// `gatekeeper check`: reads, parses and checks the file, and keeps nothing.
    async fn check(&self, config: Object) -> Result<(), HookError> {
        read_config(&config).map(drop)
    }
}

impl UpstreamPlugin for StaticUpstreams {
    /// Pushes every upstream and backend in one `apply_batch` with `replace: true`: the proxy
    /// applies all of it or, refusing an item, none of it (that fails `start` with the refused
    /// items). An upstream or backend that the proxy still holds with other content (this plugin
    /// restarted after the file changed) is replaced, and what it added before that the file no
    /// longer has is removed, in the same batch. Then starts watching the file (a watch that
    /// cannot be set up is logged, and the plugin goes on serving what it pushed).
    async fn start_upstreams(&self, manager: Manager) -> Result<(), HookError> {
        let Loaded {
            path,
            ids,
            upstreams,
            text,
        } = self
            .loaded()
            .ok_or_else(|| HookError::unavailable("`start` before a successful `configure`"))?;
        let applied = file::desired(upstreams);
        let result = push(&manager, &applied)
            .await
            .map_err(|e| HookError::new(e.code(), e.to_string()))?;
        tracing::info!(
            upstreams = applied.len(),
            ?result,
            "pushed every upstream and backend in one batch"
        );
        let shown = path.display().to_string();
        if let Err(e) = watch::spawn(Reloader::new(path, ids, manager, applied, text)) {
            tracing::error!(file = %shown, "cannot watch the upstreams file, changes will not be applied: {e}");
        }
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
        assert!(err.message().contains("bad.yml:3: a.timeout: "), "{err}");
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
        assert_eq!(plugin.loaded().map(|l| l.upstreams.len()), Some(2));
    }

    #[tokio::test]
    async fn backend_ids_are_configurable() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/original-static-upstreams.yml");
        let plugin = StaticUpstreams::default();
        let mut with_index = config(json!(path.to_string_lossy()));
        with_index.insert(BACKEND_IDS_KEY.into(), json!("index"));
        plugin.configure(with_index).await.unwrap();
        let loaded = plugin.loaded().unwrap();
        assert_eq!(loaded.ids, BackendIds::Index);
        assert_eq!(loaded.upstreams[0].backends[1].id, "1");

        let mut dashed = config(json!(path.to_string_lossy()));
        dashed.insert("backend-ids".into(), json!("index"));
        plugin.configure(dashed).await.unwrap();
        assert_eq!(plugin.loaded().unwrap().ids, BackendIds::Index);

        let mut bad = config(json!(path.to_string_lossy()));
        bad.insert(BACKEND_IDS_KEY.into(), json!("position"));
        let err = plugin.configure(bad).await.unwrap_err();
        assert!(err.message().contains(BACKEND_IDS_KEY), "{err}");
    }
}
