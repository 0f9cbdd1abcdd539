//! Pushing what etcd holds to the proxy: the whole state in one `apply_batch` with
//! `replace: true` after a (re)load, the difference since the last accepted push otherwise.
//!
//! A refused batch changes nothing in the proxy; its error lists the refused changes by index.
//! Their keys are marked refused in the [`Mirror`] (logged with the key) and the batch is sent
//! again without them, so one bad value never holds back the others.

use gatekeeper_plugin_sdk::desired::DesiredState;
use gatekeeper_plugin_sdk::{ApplyBatchRefused, BatchChange, CallError, Manager};

use crate::keys::Item;
use crate::mirror::Mirror;

/// How many times a push is sent again without refused items before giving up (until the next
/// change).
const ATTEMPTS: usize = 5;

/// Pushes to the proxy and remembers what it accepted.
#[derive(Debug)]
pub struct Pusher {
    manager: Manager,
    /// What the proxy has from this plugin (as far as this process knows).
    applied: DesiredState,
    /// Whether the next push must be the whole state (`replace: true`).
    full: bool,
}

/// Why a push did not reach the proxy.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The proxy did not answer (timeout, closed connection): try again later.
    #[error("gatekeeper did not answer: {0}")]
    NotAnswered(CallError),
    /// The proxy refused the batch in a way no item explains, or kept refusing.
    #[error("gatekeeper refused the upstreams: {0}")]
    Refused(String),
}

impl Pusher {
    /// A pusher whose first push is the whole state.
    pub fn new(manager: Manager) -> Self {
        Pusher {
            manager,
            applied: DesiredState::new(),
            full: true,
        }
    }

    /// The manager (for `config_status`).
    pub fn manager(&self) -> &Manager {
        &self.manager
    }

    /// How many upstreams the proxy has from this plugin.
    pub fn upstreams(&self) -> usize {
        self.applied.len()
    }

    /// What the proxy has from this plugin.
    pub fn applied(&self) -> &DesiredState {
        &self.applied
    }

    /// Pushes a saved state whole (the cache file's, see [`crate::cache`]), as is.
    pub async fn push_saved(&mut self, state: DesiredState) -> Result<(), PushError> {
        match self.manager.apply_batch(state.whole_batch(), true).await {
            Ok(_) => {
                self.applied = state;
                Ok(())
            }
            Err(CallError::Remote { error, .. }) => {
                Err(PushError::Refused(error.message().to_owned()))
            }
            Err(other) => Err(PushError::NotAnswered(other)),
        }
    }

    /// Makes the next push send the whole state (after a reload from etcd).
    pub fn push_whole_next(&mut self) {
        self.full = true;
    }

    /// Pushes what `mirror` asks for (nothing when it is what the proxy has). Returns whether
    /// a batch was applied.
    pub async fn push(&mut self, mirror: &mut Mirror) -> Result<bool, PushError> {
        let mut last_refusal = String::new();
        for _ in 0..ATTEMPTS {
            let desired = mirror.desired(&self.applied);
            let changes = if self.full {
                desired.whole_batch()
            } else {
                self.applied.changes_to(&desired)
            };
            if changes.is_empty() && !self.full {
                return Ok(false);
            }
            match self.manager.apply_batch(changes.clone(), self.full).await {
                Ok(result) => {
                    tracing::info!(
                        whole = self.full,
                        changes = changes.len(),
                        upstreams = desired.len(),
                        waiting_backends = mirror.waiting_backends(),
                        ?result,
                        "pushed the upstreams from etcd"
                    );
                    self.applied = desired;
                    self.full = false;
                    return Ok(true);
                }
                Err(CallError::Remote { error, .. }) => {
                    let refused = ApplyBatchRefused::from_error(&error)
                        .map(|r| refused_items(&changes, &r))
                        .unwrap_or_default();
                    let mut marked = 0;
                    for (item, reason) in &refused {
                        if mirror.reject(item, reason) {
                            marked += 1;
                        }
                    }
                    last_refusal = error.message().to_owned();
                    if marked == 0 {
                        if self.full {
                            return Err(PushError::Refused(last_refusal));
                        }
                        // The proxy's state is not what this process thinks: declare it whole.
                        tracing::warn!("gatekeeper refused a change no key explains ({last_refusal}); pushing the whole state");
                        self.full = true;
                    }
                }
                Err(other) => {
                    self.full = true;
                    return Err(PushError::NotAnswered(other));
                }
            }
        }
        Err(PushError::Refused(format!(
            "still refused after {ATTEMPTS} attempts: {last_refusal}"
        )))
    }
}

/// The etcd item an added upstream or backend comes from (`None` for a removal).
fn item_of(change: &BatchChange) -> Option<Item> {
    match change {
        BatchChange::AddUpstream(p) => Some(Item::Upstream(p.upstream.id.clone())),
        BatchChange::AddBackend(p) => {
            Some(Item::Backend(p.upstream_id.clone(), p.backend.id.clone()))
        }
        BatchChange::RemoveUpstream(_) | BatchChange::RemoveBackend(_) => None,
    }
}

/// The etcd items behind the refused changes of a batch, with the proxy's reason. A backend
/// refused in the same batch as its upstream is left out: it waits for its upstream rather than
/// being bad itself.
pub fn refused_items(changes: &[BatchChange], refused: &ApplyBatchRefused) -> Vec<(Item, String)> {
    let items: Vec<(Item, String)> = refused
        .refused
        .iter()
        .filter_map(|r| {
            let item = changes.get(r.index).and_then(item_of)?;
            Some((item, r.message.clone()))
        })
        .collect();
    let refused_upstreams: Vec<&String> = items
        .iter()
        .filter_map(|(item, _)| match item {
            Item::Upstream(id) => Some(id),
            Item::Backend(..) => None,
        })
        .collect();
    items
        .iter()
        .filter(|(item, _)| match item {
            Item::Backend(upstream, _) => !refused_upstreams.contains(&upstream),
            Item::Upstream(_) => true,
        })
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::state;
    use gatekeeper_plugin_sdk::rpc::methods::RefusedChange;

    fn refusal(indexes: &[usize]) -> ApplyBatchRefused {
        ApplyBatchRefused {
            total: 9,
            refused: indexes
                .iter()
                .map(|&index| RefusedChange {
                    index,
                    code: -32012,
                    message: format!("reason {index}"),
                })
                .collect(),
        }
    }

    #[test]
    fn refused_changes_name_their_items() {
        let s = state(&[
            ("a", "a", &[("1", "http://a:1")]),
            ("b", "b", &[("1", "ftp://b"), ("2", "http://b:2")]),
        ]);
        // +up a, +be a/1, +up b, +be b/1, +be b/2
        let changes = s.whole_batch();
        let items = refused_items(&changes, &refusal(&[3, 42]));
        assert_eq!(
            items,
            [(Item::Backend("b".into(), "1".into()), "reason 3".to_owned())]
        );
    }

    #[test]
    fn backends_of_a_refused_upstream_are_not_blamed() {
        let s = state(&[("a", "a", &[("1", "http://a:1")])]);
        let changes = s.whole_batch();
        let items = refused_items(&changes, &refusal(&[0, 1]));
        assert_eq!(items, [(Item::Upstream("a".into()), "reason 0".to_owned())]);
    }

    #[test]
    fn added_items_name_their_keys() {
        let s = state(&[("a", "a", &[("1", "http://a:1"), ("2", "http://a:2")])]);
        let changes = s.whole_batch();
        assert_eq!(item_of(&changes[0]), Some(Item::Upstream("a".into())));
        assert_eq!(
            item_of(&changes[2]),
            Some(Item::Backend("a".into(), "2".into()))
        );
        assert_eq!(item_of(&BatchChange::remove_upstream("a")), None);
        assert_eq!(item_of(&BatchChange::remove_backend("a", "1")), None);
    }

    #[test]
    fn removals_name_no_item() {
        let changes = vec![BatchChange::remove_upstream("a")];
        assert!(refused_items(&changes, &refusal(&[0])).is_empty());
    }
}
