//! The params, result and error data of `apply_batch`: many manager changes as one call.
//!
//! Each change is an object with one key, a manager method's name, whose value is that method's
//! params. A change that does not parse makes the whole call an invalid-params error naming its
//! index; a change the registry refuses makes it an error whose `data` ([`ApplyBatchRefused`])
//! lists every refused change ([`batch_refused_error`]).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::{error_object, ErrorObject};
use crate::params::{
    AddBackendParams, AddUpstreamParams, RemoveBackendParams, RemoveUpstreamParams,
};
use crate::types::{Backend, Upstream};

/// Params of `apply_batch`: many manager changes applied as one, all or none.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
pub struct ApplyBatchParams {
    /// The changes, applied in order. A change that does not parse is an invalid-params error
    /// naming its index (`change 3: …`).
    #[serde(deserialize_with = "batch_changes::deserialize")]
    pub changes: Vec<BatchChange>,
    /// `true`: the batch is the calling plugin's whole desired state. Only `add_upstream` and
    /// `add_backend` changes are allowed; the proxy removes the upstreams this plugin added that
    /// are not in the batch, and the backends of the batch's upstreams that it does not list,
    /// and replaces those whose content changed. Absent means `false`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replace: bool,
}

/// One change of an `apply_batch`: an object with exactly one key, a manager method's name,
/// whose value is that method's params (e.g. `{"remove_upstream": {"id": "web"}}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BatchChange {
    /// As `add_upstream`.
    AddUpstream(AddUpstreamParams),
    /// As `remove_upstream`.
    RemoveUpstream(RemoveUpstreamParams),
    /// As `add_backend`.
    AddBackend(AddBackendParams),
    /// As `remove_backend`.
    RemoveBackend(RemoveBackendParams),
}

/// The manager methods a [`BatchChange`] may stand for, in the protocol table's order.
pub const MANAGER_CHANGE_METHODS: [&str; 4] = [
    "add_upstream",
    "remove_upstream",
    "add_backend",
    "remove_backend",
];

impl BatchChange {
    /// `{"add_upstream": {"upstream": …}}`.
    pub fn add_upstream(upstream: Upstream) -> Self {
        BatchChange::AddUpstream(AddUpstreamParams { upstream })
    }

    /// `{"remove_upstream": {"id": …}}`.
    pub fn remove_upstream(id: impl Into<String>) -> Self {
        BatchChange::RemoveUpstream(RemoveUpstreamParams { id: id.into() })
    }

    /// `{"add_backend": {"upstream_id": …, "backend": …}}`.
    pub fn add_backend(upstream_id: impl Into<String>, backend: Backend) -> Self {
        BatchChange::AddBackend(AddBackendParams {
            upstream_id: upstream_id.into(),
            backend,
        })
    }

    /// `{"remove_backend": {"upstream_id": …, "backend_id": …}}`.
    pub fn remove_backend(upstream_id: impl Into<String>, backend_id: impl Into<String>) -> Self {
        BatchChange::RemoveBackend(RemoveBackendParams {
            upstream_id: upstream_id.into(),
            backend_id: backend_id.into(),
        })
    }

    /// The manager method this change stands for (its key on the wire).
    pub fn method(&self) -> &'static str {
        match self {
            BatchChange::AddUpstream(_) => "add_upstream",
            BatchChange::RemoveUpstream(_) => "remove_upstream",
            BatchChange::AddBackend(_) => "add_backend",
            BatchChange::RemoveBackend(_) => "remove_backend",
        }
    }
}

/// For logs: ``add_upstream `api` ``, ``remove_upstream `api` ``,
/// ``add_backend `b1` (http://10.0.0.1:80) to `api` ``, ``remove_backend `b1` from `api` ``.
impl std::fmt::Display for BatchChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BatchChange::AddUpstream(p) => write!(f, "add_upstream `{}`", p.upstream.id),
            BatchChange::RemoveUpstream(p) => write!(f, "remove_upstream `{}`", p.id),
            BatchChange::AddBackend(p) => write!(
                f,
                "add_backend `{}` ({}) to `{}`",
                p.backend.id, p.backend.address, p.upstream_id
            ),
            BatchChange::RemoveBackend(p) => write!(
                f,
                "remove_backend `{}` from `{}`",
                p.backend_id, p.upstream_id
            ),
        }
    }
}

/// Reads `changes` one by one, so that a change that does not parse is reported with its index.
mod batch_changes {
    use std::fmt;

    use serde::de::{Deserializer, Error, SeqAccess, Visitor};

    use super::BatchChange;

    struct Changes;

    impl<'de> Visitor<'de> for Changes {
        type Value = Vec<BatchChange>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an array of changes")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut changes = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
            loop {
                match seq.next_element::<BatchChange>() {
                    Ok(Some(change)) => changes.push(change),
                    Ok(None) => return Ok(changes),
                    Err(e) => {
                        return Err(A::Error::custom(format!("change {}: {e}", changes.len())))
                    }
                }
            }
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<BatchChange>, D::Error> {
        deserializer.deserialize_seq(Changes)
    }
}

/// Result of `apply_batch`: what the batch changed, in counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ApplyBatchResult {
    /// Upstreams added (a replaced upstream counts here and in `upstreams_removed`).
    pub upstreams_added: u64,
    /// Upstreams removed, with their backends (those are not counted in `backends_removed`).
    pub upstreams_removed: u64,
    /// Backends added.
    pub backends_added: u64,
    /// Backends removed by `remove_backend` changes (or, with `replace`, because the batch no
    /// longer lists them).
    pub backends_removed: u64,
    /// Adds of an upstream or backend that was already there with the same content.
    pub unchanged: u64,
}

/// One refused change of an `apply_batch`, in the error's `data.refused`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RefusedChange {
    /// Its position in `changes` (from 0).
    pub index: usize,
    /// Its error code (e.g. `UNKNOWN_UPSTREAM`, `CONFLICT`, `INVALID_VALUE`).
    pub code: i32,
    /// Why it was refused.
    pub message: String,
}

/// The `data` of a refused `apply_batch`'s error: nothing of the batch was applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ApplyBatchRefused {
    /// How many changes the batch had.
    pub total: usize,
    /// The refused changes in batch order (at least one; the first 100 at most).
    pub refused: Vec<RefusedChange>,
}

impl ApplyBatchRefused {
    /// The refused changes an `apply_batch` error carries in its `data`, if it has them (a
    /// malformed batch's invalid-params error has none).
    pub fn from_error(error: &ErrorObject) -> Option<Self> {
        serde_json::from_str(error.data()?.get()).ok()
    }
}

/// The error a refused `apply_batch` answers with: the first refused change's code, a message
/// saying how many were refused and the first one's reason, and `data` listing them all.
/// `refused` must not be empty (an empty list gives an `INTERNAL_ERROR`).
pub fn batch_refused_error(total: usize, refused: Vec<RefusedChange>) -> ErrorObject {
    let Some(first) = refused.first() else {
        return error_object(
            crate::error::codes::INTERNAL_ERROR,
            "apply_batch refused without a reason",
        );
    };
    let message = format!(
        "{} of {total} changes refused, nothing applied; change {}: {}",
        refused.len(),
        first.index,
        first.message
    );
    let code = first.code;
    ErrorObject::owned(code, message, Some(ApplyBatchRefused { total, refused }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    fn parse(params: serde_json::Value) -> Result<ApplyBatchParams, String> {
        serde_json::from_value(params).map_err(|e| e.to_string())
    }

    #[test]
    fn changes_are_objects_with_one_manager_method_key() {
        let params = parse(json!({"changes": [
            {"add_upstream": {"upstream": {"id": "web", "prefixes": ["web"]}}},
            {"add_backend": {"upstream_id": "web", "backend": {"id": "a", "address": "http://127.0.0.1:1"}}},
            {"remove_backend": {"upstream_id": "web", "backend_id": "a"}},
            {"remove_upstream": {"id": "web"}},
        ]}))
        .unwrap();
        assert!(!params.replace);
        let methods: Vec<&str> = params.changes.iter().map(BatchChange::method).collect();
        assert_eq!(
            methods,
            [
                "add_upstream",
                "add_backend",
                "remove_backend",
                "remove_upstream"
            ]
        );
        let shown: Vec<String> = params.changes.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "add_upstream `web`",
                "add_backend `a` (http://127.0.0.1:1) to `web`",
                "remove_backend `a` from `web`",
                "remove_upstream `web`"
            ]
        );
        // What is sent reads back the same.
        let again = parse(serde_json::to_value(&params).unwrap()).unwrap();
        assert_eq!(again, params);
        assert!(
            parse(json!({"changes": [], "replace": true}))
                .unwrap()
                .replace
        );
    }

    #[test]
    fn a_malformed_change_is_named_by_its_index() {
        let ok = json!({"remove_upstream": {"id": "x"}});
        for bad in [
            json!({}),
            json!({"remove_upstream": {"id": "x"}, "add_upstream": {"upstream": {"id": "y"}}}),
            json!({"route_request": {}}),
            json!({"apply_batch": {"changes": []}}),
            json!({"remove_upstream": {"name": "x"}}),
            json!("remove_upstream"),
        ] {
            let error = parse(json!({"changes": [ok, ok, bad]})).unwrap_err();
            assert!(error.starts_with("change 2: "), "{bad}: {error}");
        }
        assert!(parse(json!({})).is_err());
    }

    /// 10,000 upstreams with 10 backends each (ids and addresses as static-upstreams makes
    /// them: the id is the URL) fit in one `apply_batch` line, with room to spare.
    #[test]
    fn a_batch_of_100_000_backends_fits_in_one_line() {
        let mut changes = Vec::new();
        for u in 0..10_000 {
            let id = format!("service-{u:05}");
            let upstream = serde_json::from_value(json!({
                "id": id, "prefixes": [id], "timeout_ms": 5000
            }))
            .unwrap();
            changes.push(BatchChange::add_upstream(upstream));
            for b in 0..10 {
                let address = format!("http://10.{}.{}.{b}:8080", u / 256, u % 256);
                changes.push(BatchChange::add_backend(
                    &id,
                    Backend {
                        id: address.clone(),
                        address,
                        weight: None,
                        extra: Default::default(),
                    },
                ));
            }
        }
        let params = ApplyBatchParams {
            changes,
            replace: true,
        };
        let line = serde_json::to_vec(
            &json!({"jsonrpc": "2.0", "id": 1, "method": "apply_batch", "params": params}),
        )
        .unwrap();
        // 13.3 MiB (14.0 MB) of the 16 MiB limit; short backend ids (`"0"`…) save about 2 MiB.
        assert!(
            line.len() < crate::framing::DEFAULT_MAX_LINE_BYTES,
            "{} bytes",
            line.len()
        );
    }

    #[test]
    fn a_refusal_carries_every_refused_change() {
        let refused = vec![
            RefusedChange {
                index: 1,
                code: -32010,
                message: "unknown upstream `x`".into(),
            },
            RefusedChange {
                index: 4,
                code: -32011,
                message: "conflict".into(),
            },
        ];
        let error = batch_refused_error(7, refused.clone());
        assert_eq!(error.code(), -32010);
        assert_eq!(
            error.message(),
            "2 of 7 changes refused, nothing applied; change 1: unknown upstream `x`"
        );
        let data: ApplyBatchRefused = serde_json::from_str(error.data().unwrap().get()).unwrap();
        assert_eq!(data, ApplyBatchRefused { total: 7, refused });
        assert_eq!(batch_refused_error(1, vec![]).code(), -32603);
    }
}
