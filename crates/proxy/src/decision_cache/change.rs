//! A cached `modify_request` decision and how it is replayed: unchanged, the same direct
//! answer, or the *changes* a modifier made to the request ([`RequestChange`], computed by
//! comparing the request sent with the one returned) applied to another request, never the
//! old request's other parts.
//!
//! A [`RequestChange`] is also how the proxy applies what a `modify_request` hook returned,
//! whether a whole request (compared with the one sent) or a patch: to the view the next hook
//! sees ([`RequestChange::apply`]) and to hyper's request parts (the pipeline's
//! `Exchange::apply_change`), touching only the headers it names.

use std::collections::BTreeMap;

use gatekeeper_rpc::patch::{FieldName, FieldValue, FieldValues, RequestPatch};
use gatekeeper_rpc::types::{HttpRequest, HttpResponse};
use serde_json::Value;

/// What a modifier decided, in a form that can be replayed on another request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Decision {
    /// `{}`: the request goes on unchanged.
    Unchanged,
    /// A direct answer (e.g. a 401).
    Respond(HttpResponse),
    /// The changes the returned request made.
    Change(RequestChange),
}

/// One header operation of a [`RequestChange`], names lowercased.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum HeaderChange {
    /// Every value of the header is replaced by these (none: the header is removed).
    Set(String, Vec<String>),
    /// A value is added after the existing ones.
    Append(String, String),
}

impl HeaderChange {
    /// The operations of a patch's header members, in the order they apply: removals, then
    /// replacements, then appends.
    pub(crate) fn of_patch(
        remove: &[FieldName],
        set: &BTreeMap<FieldName, FieldValues>,
        append: &[(FieldName, FieldValue)],
    ) -> Vec<HeaderChange> {
        let mut headers: Vec<HeaderChange> = remove
            .iter()
            .map(|name| HeaderChange::Set(name.as_str().to_owned(), Vec::new()))
            .collect();
        headers.extend(set.iter().map(|(name, values)| {
            let values = values.as_slice().iter().map(|v| v.as_str().to_owned());
            HeaderChange::Set(name.as_str().to_owned(), values.collect())
        }));
        headers.extend(
            append
                .iter()
                .map(|(n, v)| HeaderChange::Append(n.as_str().to_owned(), v.as_str().to_owned())),
        );
        headers
    }
}

/// The changes a modifier made to a request: each field is `Some` when it changed; header
/// and context changes apply in order.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct RequestChange {
    pub(crate) method: Option<String>,
    pub(crate) host: Option<String>,
    pub(crate) path: Option<String>,
    pub(crate) prefixless_path: Option<String>,
    pub(crate) query: Option<Option<String>>,
    pub(crate) upstream: Option<Option<String>>,
    /// Header operations, in order.
    pub(crate) headers: Vec<HeaderChange>,
    /// Context keys set (`Some`) or removed (`None`), in order.
    pub(crate) context: Vec<(String, Option<Value>)>,
    pub(crate) body_base64: Option<String>,
}

/// `new` if it differs from `old`.
fn changed<T: PartialEq + Clone>(old: &T, new: &T) -> Option<T> {
    (old != new).then(|| new.clone())
}

/// The values of a header, in order (name compared case-insensitively).
fn values_of(headers: &[(String, String)], name: &str) -> Vec<String> {
    headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
        .collect()
}

impl RequestChange {
    /// What changed from `sent` to `returned`.
    pub(crate) fn between(sent: &HttpRequest, returned: &HttpRequest) -> Self {
        let mut names: Vec<String> = Vec::new();
        for (name, _) in sent.headers.iter().chain(&returned.headers) {
            let lower = name.to_ascii_lowercase();
            if !names.contains(&lower) {
                names.push(lower);
            }
        }
        let headers = names
            .into_iter()
            .filter_map(|name| {
                let new = values_of(&returned.headers, &name);
                (values_of(&sent.headers, &name) != new).then_some(HeaderChange::Set(name, new))
            })
            .collect();
        let mut context: Vec<(String, Option<Value>)> = returned
            .context
            .iter()
            .filter(|(key, value)| sent.context.get(*key) != Some(*value))
            .map(|(key, value)| (key.clone(), Some(value.clone())))
            .collect();
        context.extend(
            sent.context
                .keys()
                .filter(|key| !returned.context.contains_key(*key))
                .map(|key| (key.clone(), None)),
        );
        let body_base64 = match &returned.body_base64 {
            Some(body) if sent.body_base64.as_ref() != Some(body) => Some(body.clone()),
            _ => None,
        };
        RequestChange {
            method: changed(&sent.method, &returned.method),
            host: changed(&sent.host, &returned.host),
            path: changed(&sent.path, &returned.path),
            prefixless_path: changed(&sent.prefixless_path, &returned.prefixless_path),
            query: changed(&sent.query, &returned.query),
            upstream: changed(&sent.upstream, &returned.upstream),
            headers,
            context,
            body_base64,
        }
    }

    /// The changes a patch makes (removals, then replacements, then appends).
    pub(crate) fn of_patch(patch: &RequestPatch) -> Self {
        let headers = HeaderChange::of_patch(
            &patch.remove_headers,
            &patch.set_headers,
            &patch.append_headers,
        );
        let context = patch
            .context
            .iter()
            .map(|(key, value)| (key.clone(), (!value.is_null()).then(|| value.clone())))
            .collect();
        RequestChange {
            method: patch.method.clone(),
            host: None,
            path: patch.path.clone(),
            prefixless_path: patch.prefixless_path.clone(),
            query: patch.query.clone(),
            upstream: patch.upstream.clone().map(Some),
            headers,
            context,
            body_base64: None,
        }
    }

    /// Whether it changes nothing.
    pub(crate) fn is_empty(&self) -> bool {
        *self == RequestChange::default()
    }

    /// Adds the changes of a later modifier: its fields win, its header and context changes
    /// apply after these.
    pub(crate) fn then(&mut self, later: RequestChange) {
        fn newer<T>(current: &mut Option<T>, later: Option<T>) {
            if later.is_some() {
                *current = later;
            }
        }
        newer(&mut self.method, later.method);
        newer(&mut self.host, later.host);
        newer(&mut self.path, later.path);
        newer(&mut self.prefixless_path, later.prefixless_path);
        newer(&mut self.query, later.query);
        newer(&mut self.upstream, later.upstream);
        newer(&mut self.body_base64, later.body_base64);
        self.headers.extend(later.headers);
        self.context.extend(later.context);
    }

    /// Applies the changes to `request`; its other parts stay as they are.
    pub(crate) fn apply(&self, request: &mut HttpRequest) {
        let set = |target: &mut String, value: &Option<String>| {
            if let Some(value) = value {
                target.clone_from(value);
            }
        };
        set(&mut request.method, &self.method);
        set(&mut request.host, &self.host);
        set(&mut request.path, &self.path);
        set(&mut request.prefixless_path, &self.prefixless_path);
        if let Some(query) = &self.query {
            request.query.clone_from(query);
        }
        if let Some(upstream) = &self.upstream {
            request.upstream.clone_from(upstream);
        }
        for change in &self.headers {
            match change {
                HeaderChange::Set(name, values) => {
                    request
                        .headers
                        .retain(|(n, _)| !n.eq_ignore_ascii_case(name));
                    request
                        .headers
                        .extend(values.iter().map(|v| (name.clone(), v.clone())));
                }
                HeaderChange::Append(name, value) => {
                    request.headers.push((name.clone(), value.clone()));
                }
            }
        }
        for (key, value) in &self.context {
            match value {
                Some(value) => {
                    request.context.insert(key.clone(), value.clone());
                }
                None => {
                    request.context.remove(key);
                }
            }
        }
        if let Some(body) = &self.body_base64 {
            request.body_base64 = Some(body.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn request(path: &str, headers: &[(&str, &str)]) -> HttpRequest {
        HttpRequest {
            method: "GET".into(),
            path: path.into(),
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            ..HttpRequest::default()
        }
    }

    #[test]
    fn a_change_replays_only_what_the_modifier_changed() {
        let mut sent = request("/a", &[("authorization", "t1"), ("x-drop", "1")]);
        sent.context.insert("gone".into(), json!(1));
        let mut returned = sent.clone();
        returned.headers.retain(|(n, _)| n != "x-drop");
        returned.headers.push(("x-user".into(), "alice".into()));
        returned.context.remove("gone");
        returned.context.insert("user".into(), json!("alice"));
        returned.query = Some("v=1".into());
        let change = RequestChange::between(&sent, &returned);

        let mut other = request(
            "/b",
            &[("authorization", "t1"), ("X-Drop", "2"), ("x-keep", "k")],
        );
        other.context.insert("gone".into(), json!(2));
        change.apply(&mut other);
        assert_eq!(other.path, "/b", "the old request's path is not replayed");
        assert_eq!(other.query.as_deref(), Some("v=1"));
        assert_eq!(
            other.headers,
            vec![
                ("authorization".to_owned(), "t1".to_owned()),
                ("x-keep".to_owned(), "k".to_owned()),
                ("x-user".to_owned(), "alice".to_owned()),
            ]
        );
        assert_eq!(other.context.get("user"), Some(&json!("alice")));
        assert!(!other.context.contains_key("gone"));
    }

    #[test]
    fn an_identical_request_is_an_empty_change() {
        let sent = request("/a", &[("a", "1"), ("a", "2")]);
        let change = RequestChange::between(&sent, &sent.clone());
        assert_eq!(change, RequestChange::default());
        let mut other = request("/b", &[("A", "3")]);
        let before = other.clone();
        change.apply(&mut other);
        assert_eq!(other, before);
    }

    #[test]
    fn a_patch_replays_as_its_operations_and_changes_compose_in_order() {
        let patch: RequestPatch = serde_json::from_value(json!({
            "remove_headers": ["x-drop"],
            "set_headers": {"x-user": "alice"},
            "append_headers": [["x-trace", "t"]],
            "context": {"user": "alice", "gone": null},
            "upstream": "api"
        }))
        .unwrap();
        let mut change = RequestChange::of_patch(&patch);
        let mut later = RequestChange::default();
        later
            .headers
            .push(HeaderChange::Set("x-user".into(), vec!["bob".into()]));
        later.upstream = Some(Some("other".into()));
        change.then(later);

        let mut other = request("/b", &[("x-drop", "1"), ("x-trace", "s")]);
        other.context.insert("gone".into(), json!(2));
        change.apply(&mut other);
        assert_eq!(
            other.headers,
            vec![
                ("x-trace".to_owned(), "s".to_owned()),
                ("x-trace".to_owned(), "t".to_owned()),
                ("x-user".to_owned(), "bob".to_owned()),
            ]
        );
        assert_eq!(other.context.get("user"), Some(&json!("alice")));
        assert!(!other.context.contains_key("gone"));
        assert_eq!(
            other.upstream.as_deref(),
            Some("other"),
            "the later change wins"
        );
    }
}
