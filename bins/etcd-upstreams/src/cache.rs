//! The optional cache file (config key `cache_file`): the last state gatekeeper accepted from
//! this plugin, written after each push, and pushed at start when etcd cannot be reached, so a
//! gatekeeper (or a plugin process) restarted during an etcd outage serves the last known state
//! instead of none. Once etcd answers, its content replaces the cached one (one `replace: true`
//! batch: only the difference is applied).
//!
//! The file is JSON, `{"revision": R, "upstreams": [{"upstream": {…}, "backends": [{…}]}]}`,
//! written to a temporary file next to it and renamed over it, so a reader never sees half of
//! one. `revision` is the etcd revision the state was read at (shown in the log).

use std::path::Path;

use gatekeeper_plugin_sdk::desired::{DesiredState, DesiredUpstream};
use gatekeeper_plugin_sdk::{Backend, Upstream};
use serde::{Deserialize, Serialize};

/// One upstream and its backends, as the file stores them.
#[derive(Debug, Serialize, Deserialize)]
struct CachedUpstream {
    upstream: Upstream,
    backends: Vec<Backend>,
}

/// The file's content.
#[derive(Debug, Serialize, Deserialize)]
struct CacheFile {
    revision: i64,
    upstreams: Vec<CachedUpstream>,
}

/// Writes `state` (read at `revision`) to `path`, atomically.
pub fn save(path: &Path, state: &DesiredState, revision: i64) -> Result<(), String> {
    let file = CacheFile {
        revision,
        upstreams: state
            .upstreams()
            .map(|desired| CachedUpstream {
                upstream: desired.upstream().clone(),
                backends: desired.backends().cloned().collect(),
            })
            .collect(),
    };
    let text = serde_json::to_vec(&file).map_err(|e| e.to_string())?;
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    std::fs::write(&temporary, text)
        .and_then(|()| std::fs::rename(&temporary, path))
        .map_err(|e| format!("cannot write the cache file `{}`: {e}", path.display()))
}

/// Reads the state saved at `path`, with its revision.
pub fn load(path: &Path) -> Result<(DesiredState, i64), String> {
    let text = std::fs::read(path)
        .map_err(|e| format!("cannot read the cache file `{}`: {e}", path.display()))?;
    let file: CacheFile = serde_json::from_slice(&text)
        .map_err(|e| format!("the cache file `{}` is not valid: {e}", path.display()))?;
    let state = file
        .upstreams
        .into_iter()
        .map(|cached| DesiredUpstream::with_backends(cached.upstream, cached.backends))
        .collect();
    Ok((state, file.revision))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::state;

    #[test]
    fn a_saved_state_loads_back() {
        let dir = std::env::temp_dir().join(format!("etcd-upstreams-cache-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cache.json");
        let saved = state(&[
            ("a", "a", &[("1", "http://a:1"), ("2", "http://a:2")]),
            ("b", "b", &[]),
        ]);
        save(&path, &saved, 42).unwrap();
        assert_eq!(load(&path).unwrap(), (saved, 42));
        std::fs::write(&path, "{").unwrap();
        assert!(load(&path).unwrap_err().contains("is not valid"));
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(load(&path).unwrap_err().contains("cannot read"));
    }
}
