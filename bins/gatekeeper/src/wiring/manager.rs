//! The proxy's [`Registry`], changed by upstream plugins through the manager methods, and who
//! added which upstream: when a reload removes an upstream plugin, or restarts one with new
//! settings, the upstreams it no longer declares are removed ([`RegistryManager::mark`],
//! [`RegistryManager::sweep`]). The same mark and sweep follows a crash: when an upstream
//! plugin's process is started again ([`Manager::restarting`]), what it does not push again
//! during its `start` is removed once that start is done ([`Manager::restarted`]).
//!
//! `apply_batch` applies a plugin's batch as one registry batch (see `batch`): all or none, with
//! the ownership recorded only for a batch that applied.

mod batch;
#[cfg(test)]
mod batch_tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use gatekeeper_plugin_host::Manager;
use gatekeeper_proxy::{Registry, RegistryError};
use gatekeeper_rpc::error::error_object;
use gatekeeper_rpc::methods::{
    batch_refused_error, AddBackendParams, AddUpstreamParams, ApplyBatchParams, ApplyBatchResult,
    RemoveBackendParams, RemoveUpstreamParams,
};
use gatekeeper_rpc::ErrorObject;

/// Serves the registry to upstream plugins.
pub struct RegistryManager {
    registry: Arc<Registry>,
    owners: Mutex<Owners>,
    /// Plugin → the mark taken when its process was started again after going down, swept
    /// once that process finished `start`.
    restart_marks: Mutex<HashMap<String, u64>>,
    /// Held while a batch is planned from a snapshot and applied, so two batches do not plan
    /// from the same snapshot.
    batches: Mutex<()>,
}

/// Which plugin added each upstream last, and when (in that plugin's marks).
#[derive(Default)]
struct Owners {
    /// Upstream id → (plugin, the plugin's mark when it added the upstream).
    upstreams: HashMap<String, (String, u64)>,
    /// Plugin → its current mark.
    marks: HashMap<String, u64>,
}

impl Owners {
    /// The plugin that added upstream `id` last.
    fn owner(&self, id: &str) -> Option<&str> {
        self.upstreams.get(id).map(|(owner, _)| owner.as_str())
    }

    /// Whether `plugin` added upstream `id` before its current mark (it is declaring it again
    /// after a restart with new settings).
    fn redeclares(&self, plugin: &str, id: &str) -> bool {
        let mark = self.marks.get(plugin).copied().unwrap_or(0);
        self.upstreams
            .get(id)
            .is_some_and(|(owner, added)| owner == plugin && *added < mark)
    }

    /// Records that `plugin` added upstream `id` now.
    fn added(&mut self, plugin: &str, id: String) {
        let mark = self.marks.get(plugin).copied().unwrap_or(0);
        self.upstreams.insert(id, (plugin.to_owned(), mark));
    }
}

impl RegistryManager {
    /// Serves `registry` to upstream plugins.
    pub fn new(registry: Arc<Registry>) -> Self {
        RegistryManager {
            registry,
            owners: Mutex::new(Owners::default()),
            restart_marks: Mutex::new(HashMap::new()),
            batches: Mutex::new(()),
        }
    }

    fn owners(&self) -> MutexGuard<'_, Owners> {
        self.owners.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn restart_marks(&self) -> MutexGuard<'_, HashMap<String, u64>> {
        self.restart_marks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a new mark for `plugin`: the upstreams it adds from now on carry it. Returns the
    /// mark, for [`sweep`](Self::sweep).
    pub fn mark(&self, plugin: &str) -> u64 {
        let mut owners = self.owners();
        let mark = owners.marks.entry(plugin.to_owned()).or_insert(0);
        *mark += 1;
        *mark
    }

    /// Removes from the registry the upstreams `plugin` added last before `mark` (and has not
    /// added again since); `u64::MAX` removes every upstream it added. Returns their ids.
    pub fn sweep(&self, plugin: &str, mark: u64) -> Vec<String> {
        let stale: Vec<String> = {
            let mut owners = self.owners();
            let stale: Vec<String> = owners
                .upstreams
                .iter()
                .filter(|(_, (owner, added))| owner == plugin && *added < mark)
                .map(|(id, _)| id.clone())
                .collect();
            for id in &stale {
                owners.upstreams.remove(id);
            }
            if mark == u64::MAX {
                owners.marks.remove(plugin);
            }
            stale
        };
        for id in &stale {
            // Gone already is fine: someone removed it meanwhile.
            let _ = self.registry.remove_upstream(id);
            tracing::info!(plugin, upstream = %id, "upstream removed: its plugin no longer declares it");
        }
        stale
    }
}

fn refused(plugin: &str, error: RegistryError) -> ErrorObject {
    tracing::warn!(plugin, %error, "manager call refused");
    error_object(error.code(), error.to_string())
}

impl Manager for RegistryManager {
    fn restarting(&self, plugin: &str) {
        // The earliest pending mark stays: with several instances restarting at once, what one
        // of them pushed again must survive the sweep of the first one done (a start that
        // failed, then succeeded, leaves at worst what the failed one pushed, until the next).
        let mark = self.mark(plugin);
        self.restart_marks()
            .entry(plugin.to_owned())
            .or_insert(mark);
    }

    fn restarted(&self, plugin: &str) {
        let Some(mark) = self.restart_marks().remove(plugin) else {
            return;
        };
        let stale = self.sweep(plugin, mark);
        if !stale.is_empty() {
            tracing::info!(plugin, removed = stale.len(), "restarted upstream plugin did not push every upstream again: the others were removed");
        }
    }

    fn add_upstream(&self, plugin: &str, params: AddUpstreamParams) -> Result<(), ErrorObject> {
        let id = params.upstream.id.clone();
        if self.owners().redeclares(plugin, &id) {
            // The plugin restarted with new settings (a reload) and declares one of its
            // upstreams anew, maybe changed: the new declaration replaces the old one.
            if let Some(existing) = self.registry.snapshot().upstream(&id) {
                if existing.upstream != gatekeeper_proxy::stored_form(params.upstream.clone()) {
                    let _ = self.registry.remove_upstream(&id);
                }
            }
        }
        self.registry
            .add_upstream(params.upstream)
            .map_err(|e| refused(plugin, e))?;
        self.owners().added(plugin, id.clone());
        tracing::debug!(plugin, upstream = %id, "add_upstream");
        Ok(())
    }

    fn remove_upstream(
        &self,
        plugin: &str,
        params: RemoveUpstreamParams,
    ) -> Result<(), ErrorObject> {
        self.registry
            .remove_upstream(&params.id)
            .map_err(|e| refused(plugin, e))?;
        self.owners().upstreams.remove(&params.id);
        tracing::debug!(plugin, upstream = %params.id, "remove_upstream");
        Ok(())
    }

    fn add_backend(&self, plugin: &str, params: AddBackendParams) -> Result<(), ErrorObject> {
        let backend = params.backend.id.clone();
        self.registry
            .add_backend(&params.upstream_id, params.backend)
            .map_err(|e| refused(plugin, e))?;
        tracing::debug!(plugin, upstream = %params.upstream_id, %backend, "add_backend");
        Ok(())
    }

    fn remove_backend(&self, plugin: &str, params: RemoveBackendParams) -> Result<(), ErrorObject> {
        self.registry
            .remove_backend(&params.upstream_id, &params.backend_id)
            .map_err(|e| refused(plugin, e))?;
        tracing::debug!(plugin, upstream = %params.upstream_id, backend = %params.backend_id, "remove_backend");
        Ok(())
    }

    fn apply_batch(
        &self,
        plugin: &str,
        params: ApplyBatchParams,
    ) -> Result<ApplyBatchResult, ErrorObject> {
        let _batch = self.batches.lock().unwrap_or_else(|e| e.into_inner());
        let snapshot = self.registry.snapshot();
        let mut plan = batch::plan(
            plugin,
            params.changes,
            params.replace,
            &snapshot,
            &self.owners(),
        )?;
        drop(snapshot);
        let ownership = plan.ownership();
        let total = plan.total;
        let summary = match self.registry.apply_batch(std::mem::take(&mut plan.ops)) {
            Ok(summary) => summary,
            Err(error) => {
                let refused = plan.refused(&error);
                if let Some(first) = refused.first() {
                    tracing::warn!(
                        plugin,
                        total,
                        refused = refused.len(),
                        first.index,
                        first.message,
                        "apply_batch refused: nothing applied"
                    );
                }
                return Err(batch_refused_error(total, refused));
            }
        };
        let mut owners = self.owners();
        for change in ownership {
            match change {
                batch::Ownership::Added(id) => owners.added(plugin, id),
                batch::Ownership::Removed(id) => {
                    owners.upstreams.remove(&id);
                }
            }
        }
        drop(owners);
        let count = |n: usize| n as u64;
        let result = ApplyBatchResult {
            upstreams_added: count(summary.upstreams_added),
            upstreams_removed: count(summary.upstreams_removed),
            backends_added: count(summary.backends_added),
            backends_removed: count(summary.backends_removed),
            unchanged: count(summary.unchanged),
        };
        tracing::info!(
            plugin,
            total,
            replace = params.replace,
            ?result,
            "apply_batch applied"
        );
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use gatekeeper_rpc::types::Upstream;

    fn add(manager: &RegistryManager, plugin: &str, id: &str) {
        let upstream: Upstream = serde_json::from_value(serde_json::json!({ "id": id })).unwrap();
        manager
            .add_upstream(plugin, AddUpstreamParams { upstream })
            .unwrap();
    }

    fn ids(registry: &Registry) -> Vec<String> {
        let mut ids: Vec<String> = registry
            .snapshot()
            .iter()
            .map(|u| u.upstream.id.clone())
            .collect();
        ids.sort();
        ids
    }

    #[test]
    fn sweep_removes_what_a_plugin_no_longer_declares() {
        let registry = Arc::new(Registry::new());
        let manager = RegistryManager::new(registry.clone());
        add(&manager, "files", "a");
        add(&manager, "files", "b");
        add(&manager, "consul", "c");
        // A restart with new settings re-declares `a` only.
        let mark = manager.mark("files");
        add(&manager, "files", "a");
        assert_eq!(manager.sweep("files", mark), ["b"]);
        assert_eq!(ids(&registry), ["a", "c"]);
        // After a mark, the plugin may declare one of its upstreams with other content.
        let mark = manager.mark("files");
        let changed: Upstream =
            serde_json::from_value(serde_json::json!({ "id": "a", "prefixes": ["new"] })).unwrap();
        manager
            .add_upstream("files", AddUpstreamParams { upstream: changed })
            .unwrap();
        assert_eq!(
            registry.snapshot().upstream("a").unwrap().upstream.prefixes,
            ["new"]
        );
        assert!(manager.sweep("files", mark).is_empty());
        // Without a new mark it is a conflict, as for any plugin.
        let again: Upstream =
            serde_json::from_value(serde_json::json!({ "id": "a", "prefixes": ["other"] }))
                .unwrap();
        assert!(manager
            .add_upstream("files", AddUpstreamParams { upstream: again })
            .is_err());
        // Removing the plugin removes all it added; the other plugin's upstream stays.
        assert_eq!(manager.sweep("files", u64::MAX), ["a"]);
        assert_eq!(ids(&registry), ["c"]);
        // An upstream another plugin added later belongs to that one.
        add(&manager, "files", "d");
        add(&manager, "consul", "d");
        assert!(manager.sweep("files", u64::MAX).is_empty());
        assert_eq!(ids(&registry), ["c", "d"]);
    }

    #[test]
    fn a_restart_after_a_crash_removes_what_is_not_pushed_again() {
        let registry = Arc::new(Registry::new());
        let manager = RegistryManager::new(registry.clone());
        add(&manager, "files", "a");
        add(&manager, "files", "b");
        add(&manager, "consul", "c");
        // The process crashed; the new one pushes `a` only during its start.
        manager.restarting("files");
        add(&manager, "files", "a");
        manager.restarted("files");
        assert_eq!(ids(&registry), ["a", "c"]);
        // A restart whose start failed before pushing anything, then one that pushes `d`:
        // `a` goes with the second one's sweep.
        manager.restarting("files");
        manager.restarting("files");
        add(&manager, "files", "d");
        manager.restarted("files");
        assert_eq!(ids(&registry), ["c", "d"]);
        // Two instances restarting at once: the first pushes `d` again, the second starts
        // restarting, the first is done: `d` stays (it was pushed since the restarts began).
        manager.restarting("files");
        add(&manager, "files", "d");
        manager.restarting("files");
        manager.restarted("files");
        assert_eq!(ids(&registry), ["c", "d"]);
        add(&manager, "files", "d");
        manager.restarted("files");
        assert_eq!(ids(&registry), ["c", "d"]);
        // `restarted` without `restarting` (the launch's first start) removes nothing.
        manager.restarted("files");
        assert_eq!(ids(&registry), ["c", "d"]);
    }
}
