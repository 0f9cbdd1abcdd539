//! The plugin's copy of the keys under the prefix, parsed, and the state it asks the proxy for.
//!
//! Every upstream and backend key is kept, good or bad: a backend whose upstream has no key (yet,
//! or any more) waits here and is pushed when its upstream appears; deleting an upstream key
//! removes the upstream from the proxy but keeps its backend keys for when it comes back.
//!
//! A bad value (see [`crate::keys`]), or one the proxy refused, is logged with its key and
//! skipped: the item keeps the last value the proxy accepted for it, if any (as a file that does
//! not check keeps static-upstreams' last good state), and has none otherwise. A refused last
//! value (it no longer fits, e.g. another upstream took its prefix) is dropped too. Deleting the
//! key, or a new value, clears it.

use std::collections::{BTreeMap, BTreeSet};

use gatekeeper_plugin_sdk::desired::{DesiredState, DesiredUpstream};
use gatekeeper_plugin_sdk::{Backend, Upstream};

use crate::keys::{parse_backend, parse_upstream, Item};

/// One key's value.
#[derive(Debug, Clone, PartialEq)]
enum Value<T> {
    /// Parsed, and not refused.
    Good(T),
    /// Bad or refused: why, and whether the last accepted value may stand in for it.
    Bad { reason: String, keep_last: bool },
}

impl<T: Clone> Value<T> {
    /// The value to push: this one, else the last accepted one when allowed.
    fn wanted(&self, last: Option<&T>) -> Option<T> {
        match self {
            Value::Good(value) => Some(value.clone()),
            Value::Bad { keep_last, .. } => last.filter(|_| *keep_last).cloned(),
        }
    }

    fn reject(&mut self, reason: String) {
        let keep_last = matches!(self, Value::Good(_));
        *self = Value::Bad { reason, keep_last };
    }
}

/// What one etcd event changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// A key this plugin reads.
    Item(Item),
    /// A key under the prefix that is neither an upstream nor a backend key (ignored).
    Unknown,
}

/// The keys under the prefix.
#[derive(Debug, Clone, Default)]
pub struct Mirror {
    prefix: String,
    upstreams: BTreeMap<String, Value<Upstream>>,
    /// By upstream id, then backend id.
    backends: BTreeMap<String, BTreeMap<String, Value<Backend>>>,
}

impl Mirror {
    /// An empty mirror of the keys under `prefix` (without a trailing `/`).
    pub fn new(prefix: &str) -> Self {
        Mirror {
            prefix: prefix.to_owned(),
            ..Mirror::default()
        }
    }

    /// The key of `item`.
    pub fn key(&self, item: &Item) -> String {
        item.key(&self.prefix)
    }

    /// Records a put; a bad value is logged with its key.
    pub fn put(&mut self, key: &str, bytes: &[u8]) -> Seen {
        let Some(item) = Item::parse(&self.prefix, key) else {
            tracing::warn!(key, "ignoring a key under the prefix that is neither PREFIX/upstreams/ID nor PREFIX/backends/UPSTREAM/ID");
            return Seen::Unknown;
        };
        let bad = |reason: String| {
            tracing::warn!(key, "bad value, skipped: {reason}");
            reason
        };
        match &item {
            Item::Upstream(id) => {
                let value = match parse_upstream(id, bytes) {
                    Ok(upstream) => Value::Good(upstream),
                    Err(reason) => Value::Bad {
                        reason: bad(reason),
                        keep_last: true,
                    },
                };
                self.upstreams.insert(id.clone(), value);
            }
            Item::Backend(upstream, id) => {
                let value = match parse_backend(id, bytes) {
                    Ok(backend) => Value::Good(backend),
                    Err(reason) => Value::Bad {
                        reason: bad(reason),
                        keep_last: true,
                    },
                };
                self.backends
                    .entry(upstream.clone())
                    .or_default()
                    .insert(id.clone(), value);
            }
        }
        Seen::Item(item)
    }

    /// Records a delete.
    pub fn delete(&mut self, key: &str) -> Seen {
        let Some(item) = Item::parse(&self.prefix, key) else {
            return Seen::Unknown;
        };
        match &item {
            Item::Upstream(id) => {
                self.upstreams.remove(id);
            }
            Item::Backend(upstream, id) => {
                if let Some(backends) = self.backends.get_mut(upstream) {
                    backends.remove(id);
                    if backends.is_empty() {
                        self.backends.remove(upstream);
                    }
                }
            }
        }
        Seen::Item(item)
    }

    /// Marks an item's current value as refused by the proxy (logged with its key). Returns
    /// whether the item was there.
    pub fn reject(&mut self, item: &Item, reason: &str) -> bool {
        let key = self.key(item);
        let value = match item {
            Item::Upstream(id) => self.upstreams.get_mut(id).map(|v| v.reject(reason.into())),
            Item::Backend(upstream, id) => self
                .backends
                .get_mut(upstream)
                .and_then(|b| b.get_mut(id))
                .map(|v| v.reject(reason.into())),
        };
        if value.is_some() {
            tracing::warn!(key, "value refused by gatekeeper, skipped: {reason}");
        }
        value.is_some()
    }

    /// The state to push: each upstream whose key has a good value (or a last accepted one, see
    /// the module docs), with its backends likewise. `applied` is what the proxy has.
    pub fn desired(&self, applied: &DesiredState) -> DesiredState {
        let mut state = DesiredState::new();
        for (id, value) in &self.upstreams {
            let last = applied.get(id);
            let Some(upstream) = value.wanted(last.map(DesiredUpstream::upstream)) else {
                continue;
            };
            let backends =
                self.backends
                    .get(id)
                    .into_iter()
                    .flatten()
                    .filter_map(|(backend_id, value)| {
                        value.wanted(last.and_then(|e| e.backend(backend_id)))
                    });
            state.insert(DesiredUpstream::with_backends(upstream, backends));
        }
        state
    }

    /// The bad and refused values, as `(key, reason)`, in key order.
    pub fn bad_values(&self) -> Vec<(String, String)> {
        let mut bad = Vec::new();
        for (id, value) in &self.upstreams {
            if let Value::Bad { reason, .. } = value {
                bad.push((self.key(&Item::Upstream(id.clone())), reason.clone()));
            }
        }
        for (upstream, backends) in &self.backends {
            for (id, value) in backends {
                if let Value::Bad { reason, .. } = value {
                    let item = Item::Backend(upstream.clone(), id.clone());
                    bad.push((self.key(&item), reason.clone()));
                }
            }
        }
        bad
    }

    /// How many backend keys wait for their upstream's key.
    pub fn waiting_backends(&self) -> usize {
        self.waiting().map(|(_, backends)| backends.len()).sum()
    }

    /// The backend keys that wait for their upstream's key, with that key.
    pub fn waiting_keys(&self) -> BTreeSet<(String, String)> {
        self.waiting()
            .flat_map(|(upstream, backends)| {
                let upstream_key = self.key(&Item::Upstream(upstream.clone()));
                backends.keys().map(move |id| {
                    let key = self.key(&Item::Backend(upstream.clone(), id.clone()));
                    (key, upstream_key.clone())
                })
            })
            .collect()
    }

    fn waiting(&self) -> impl Iterator<Item = (&String, &BTreeMap<String, Value<Backend>>)> {
        self.backends
            .iter()
            .filter(|(upstream, _)| !self.upstreams.contains_key(*upstream))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The changes from `old` to `new`, as logged.
    fn changes(old: &DesiredState, new: &DesiredState) -> Vec<String> {
        old.changes_to(new)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn mirror() -> Mirror {
        Mirror::new("/gk")
    }

    fn ids(state: &DesiredState) -> Vec<String> {
        state
            .upstreams()
            .flat_map(|e| {
                std::iter::once(e.id().to_owned()).chain(
                    e.backends()
                        .map(|b| format!("{}/{}={}", e.id(), b.id, b.address)),
                )
            })
            .collect()
    }

    #[test]
    fn a_backend_waits_for_its_upstream() {
        let mut m = mirror();
        m.put(
            "/gk/backends/api/b1",
            br#"{"address":"http://127.0.0.1:1"}"#,
        );
        assert!(m.desired(&DesiredState::new()).is_empty());
        assert_eq!(m.waiting_backends(), 1);
        let waiting: Vec<_> = m.waiting_keys().into_iter().collect();
        assert_eq!(
            waiting,
            [(
                "/gk/backends/api/b1".to_owned(),
                "/gk/upstreams/api".to_owned()
            )]
        );
        m.put("/gk/upstreams/api", br#"{"prefixes":["api"]}"#);
        assert_eq!(
            ids(&m.desired(&DesiredState::new())),
            ["api", "api/b1=http://127.0.0.1:1"]
        );
        assert_eq!(m.waiting_backends(), 0);
    }

    #[test]
    fn deleting_an_upstream_keeps_its_backends_for_its_return() {
        let mut m = mirror();
        m.put("/gk/upstreams/api", br#"{"prefixes":["api"]}"#);
        m.put(
            "/gk/backends/api/b1",
            br#"{"address":"http://127.0.0.1:1"}"#,
        );
        let before = m.desired(&DesiredState::new());
        m.delete("/gk/upstreams/api");
        let gone = m.desired(&before);
        assert_eq!(changes(&before, &gone), ["remove_upstream `api`"]);
        m.put("/gk/upstreams/api", br#"{"prefixes":["api"]}"#);
        assert_eq!(
            changes(&gone, &m.desired(&gone)),
            [
                "add_upstream `api`",
                "add_backend `b1` (http://127.0.0.1:1) to `api`"
            ]
        );
        m.delete("/gk/backends/api/b1");
        assert_eq!(m.waiting_backends(), 0);
        assert_eq!(ids(&m.desired(&DesiredState::new())), ["api"]);
    }

    #[test]
    fn a_bad_value_is_skipped_and_keeps_the_last_good_one() {
        let mut m = mirror();
        assert_eq!(
            m.put("/gk/upstreams/web", b"{oops"),
            Seen::Item(Item::Upstream("web".into()))
        );
        m.put("/gk/upstreams/api", br#"{"prefixes":["api"]}"#);
        let applied = m.desired(&DesiredState::new());
        assert_eq!(ids(&applied), ["api"]);
        assert_eq!(m.bad_values().len(), 1);
        assert!(m.bad_values()[0].0.ends_with("/upstreams/web"));

        // A bad new value of a good key: the last accepted value stays.
        m.put("/gk/upstreams/api", br#"{"prefixes":"api"}"#);
        assert_eq!(m.desired(&applied), applied);
        assert!(changes(&applied, &m.desired(&applied)).is_empty());
        // A good value again clears it.
        m.put("/gk/upstreams/api", br#"{"prefixes":["v2"]}"#);
        assert!(m.bad_values().iter().all(|(k, _)| !k.ends_with("/api")));
        assert_eq!(
            changes(&applied, &m.desired(&applied)),
            ["remove_upstream `api`", "add_upstream `api`"]
        );
    }

    #[test]
    fn a_refused_value_falls_back_once_then_drops() {
        let mut m = mirror();
        m.put("/gk/upstreams/api", br#"{"prefixes":["api"]}"#);
        m.put(
            "/gk/backends/api/b1",
            br#"{"address":"http://127.0.0.1:1"}"#,
        );
        let applied = m.desired(&DesiredState::new());
        m.put("/gk/backends/api/b1", br#"{"address":"ftp://x"}"#);
        let b1 = Item::Backend("api".into(), "b1".into());
        assert!(m.reject(&b1, "invalid address"));
        assert_eq!(m.desired(&applied), applied);
        assert!(m.reject(&b1, "still refused"));
        assert_eq!(ids(&m.desired(&applied)), ["api"]);
        assert!(!m.reject(&Item::Upstream("nope".into()), "x"));
        assert_eq!(m.bad_values()[0].1, "still refused");
    }

    #[test]
    fn unknown_keys_are_ignored() {
        let mut m = mirror();
        assert_eq!(m.put("/gk/else/x", b"{}"), Seen::Unknown);
        assert_eq!(m.delete("/gk/else/x"), Seen::Unknown);
        assert!(m.desired(&DesiredState::new()).is_empty());
        assert!(m.bad_values().is_empty());
    }
}
