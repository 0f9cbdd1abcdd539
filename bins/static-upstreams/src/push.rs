//! Pushing a version of the file to the proxy: one `apply_batch` with `replace: true` holding
//! every upstream and backend, so the proxy applies the whole version or none of it (and removes
//! what this plugin added that the version no longer has), and a refusal described by the items
//! the proxy refused.

use gatekeeper_plugin_sdk::desired::DesiredState;
use gatekeeper_plugin_sdk::{ApplyBatchRefused, ApplyBatchResult, BatchChange, CallError, Manager};

/// Why a push failed.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The proxy refused the batch (nothing of it was applied).
    #[error("{message}")]
    Refused {
        /// The proxy's error code (the first refused change's).
        code: i32,
        /// The refused items and why.
        message: String,
    },
    /// The call did not get an answer (timeout, closed connection); a later push may succeed.
    #[error("{0}")]
    NotAnswered(CallError),
}

impl PushError {
    /// The JSON-RPC code to fail `start` with.
    pub fn code(&self) -> i32 {
        match self {
            PushError::Refused { code, .. } => *code,
            PushError::NotAnswered(_) => gatekeeper_plugin_sdk::codes::INTERNAL_ERROR,
        }
    }
}

/// Pushes `state` as the plugin's whole state ([`DesiredState::whole_batch`]: each upstream by
/// id, then its backends in file order).
pub async fn push(manager: &Manager, state: &DesiredState) -> Result<ApplyBatchResult, PushError> {
    let changes = state.whole_batch();
    match manager.apply_batch(changes.clone(), true).await {
        Ok(result) => Ok(result),
        Err(CallError::Remote { error, .. }) => Err(PushError::Refused {
            code: error.code(),
            message: describe_refusal(&changes, &error),
        }),
        Err(other) => Err(PushError::NotAnswered(other)),
    }
}

/// How many refused changes a description names.
const NAMED: usize = 3;

/// `gatekeeper refused N of M changes, nothing applied: add_backend `b` to `api`: reason; …`.
fn describe_refusal(
    changes: &[BatchChange],
    error: &gatekeeper_plugin_sdk::rpc::ErrorObject,
) -> String {
    let Some(data) = ApplyBatchRefused::from_error(error) else {
        return format!("gatekeeper refused the upstreams: {}", error.message());
    };
    let named: Vec<String> = data
        .refused
        .iter()
        .take(NAMED)
        .map(|r| match changes.get(r.index) {
            Some(change) => format!("{}: {}", describe(change), r.message),
            None => format!("change {}: {}", r.index, r.message),
        })
        .collect();
    let more = data.refused.len().saturating_sub(NAMED);
    let more = if more > 0 {
        format!("; and {more} more")
    } else {
        String::new()
    };
    format!(
        "gatekeeper refused {} of {} changes, nothing applied (the last good state keeps serving): {}{more}",
        data.refused.len(),
        data.total,
        named.join("; ")
    )
}

/// A change as a log line names it.
fn describe(change: &BatchChange) -> String {
    match change {
        BatchChange::AddUpstream(p) => format!("upstream `{}`", p.upstream.id),
        BatchChange::AddBackend(p) => format!(
            "backend `{}` of upstream `{}`",
            p.backend.address, p.upstream_id
        ),
        BatchChange::RemoveUpstream(p) => format!("removing upstream `{}`", p.id),
        BatchChange::RemoveBackend(p) => format!(
            "removing backend `{}` of upstream `{}`",
            p.backend_id, p.upstream_id
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file::{desired, parse, BackendIds};
    use gatekeeper_plugin_sdk::rpc::methods::{batch_refused_error, RefusedChange};

    fn state(yaml: &str) -> DesiredState {
        desired(parse(yaml, BackendIds::Url).unwrap())
    }

    fn state_by_index(yaml: &str) -> DesiredState {
        desired(parse(yaml, BackendIds::Index).unwrap())
    }

    fn changes(old: &DesiredState, new: &DesiredState) -> Vec<String> {
        old.changes_to(new)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn a_duplicate_url_added_or_removed_touches_only_its_copy() {
        let twice = state("api:\n  backends: [http://a:1, http://a:1]\n");
        let once = state("api:\n  backends: [http://a:1]\n");
        assert_eq!(
            changes(&once, &twice),
            ["add_backend `http://a:1#2` (http://a:1) to `api`"]
        );
        assert_eq!(
            changes(&twice, &once),
            ["remove_backend `http://a:1#2` from `api`"]
        );
    }

    #[test]
    fn with_index_ids_a_changed_address_is_removed_then_added() {
        let old = state_by_index("api:\n  backends: [http://a:1, http://b:1]\n");
        let new = state_by_index("api:\n  backends: [http://a:1, http://c:1]\n");
        assert_eq!(
            changes(&old, &new),
            [
                "remove_backend `1` from `api`",
                "add_backend `1` (http://c:1) to `api`"
            ]
        );
    }

    #[test]
    fn reordered_backends_change_nothing_but_push_in_file_order() {
        let api = "api:\n  prefixes: [api]\n  backends: [http://a:1, http://b:1]\n";
        let reordered = "api:\n  prefixes: [api]\n  backends: [http://b:1, http://a:1]\n";
        assert!(changes(&state(api), &state(reordered)).is_empty());
        let pushed: Vec<String> = state(reordered)
            .whole_batch()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            pushed,
            [
                "add_upstream `api`",
                "add_backend `http://b:1` (http://b:1) to `api`",
                "add_backend `http://a:1` (http://a:1) to `api`"
            ]
        );
    }

    #[test]
    fn the_whole_state_is_each_upstream_then_its_backends() {
        let state =
            state("b:\n  backends: [http://b:1]\na:\n  backends: [http://a:1, http://a:2]\n");
        let methods: Vec<String> = state
            .whole_batch()
            .iter()
            .map(|c| format!("{} {}", c.method(), describe(c)))
            .collect();
        assert_eq!(
            methods,
            [
                "add_upstream upstream `a`",
                "add_backend backend `http://a:1` of upstream `a`",
                "add_backend backend `http://a:2` of upstream `a`",
                "add_upstream upstream `b`",
                "add_backend backend `http://b:1` of upstream `b`",
            ]
        );
    }

    #[test]
    fn a_refusal_names_the_refused_items() {
        let state = state("a:\n  backends: [http://a:1, https://a:2]\n");
        let changes = state.whole_batch();
        let refused = (0..5)
            .map(|index| RefusedChange {
                index: if index == 0 { 2 } else { 10 + index },
                code: -32012,
                message: format!("reason {index}"),
            })
            .collect();
        let message = describe_refusal(&changes, &batch_refused_error(3, refused));
        assert_eq!(
            message,
            "gatekeeper refused 5 of 3 changes, nothing applied (the last good state keeps serving): \
             backend `https://a:2` of upstream `a`: reason 0; change 11: reason 1; change 12: reason 2; and 2 more"
        );
        let plain = gatekeeper_plugin_sdk::rpc::error::error_object(-32602, "bad params");
        assert_eq!(
            describe_refusal(&changes, &plain),
            "gatekeeper refused the upstreams: bad params"
        );
    }
}
