//! Applying what the `modify_request` hooks changed ([`RequestChange`]) to hyper's request
//! parts: only the headers the change names are touched (the header map is not rebuilt), then
//! the method, path and query, backend path, context and upstream. Names and values that are
//! not valid HTTP are skipped with a warning, and hop-by-hop headers are removed, as from a
//! whole returned request.

use gatekeeper_rpc::types::Object;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method};

use super::{with_path_and_query, Exchange, Reject};
use crate::decision_cache::change::{HeaderChange, RequestChange};
use crate::forward::strip_hop_by_hop;
use crate::view::Kind;

/// A header name a plugin set, or `None` (with a warning) when it is not valid HTTP.
fn header_name(name: &str) -> Option<HeaderName> {
    let parsed = HeaderName::from_bytes(name.as_bytes()).ok();
    if parsed.is_none() {
        tracing::warn!(header = %name.escape_debug(), "plugin sent an invalid header name; skipped");
    }
    parsed
}

/// Appends a value a plugin set, skipped (with a warning) when it is not valid HTTP.
fn append_value(headers: &mut HeaderMap, name: &HeaderName, value: &str) {
    match HeaderValue::from_str(value) {
        Ok(value) => {
            headers.append(name.clone(), value);
        }
        Err(_) => tracing::warn!(header = %name, "plugin sent an invalid header value; skipped"),
    }
}

/// Applies header changes to a header map, then removes hop-by-hop headers.
pub(crate) fn apply_header_changes(headers: &mut HeaderMap, changes: &[HeaderChange]) {
    if changes.is_empty() {
        return;
    }
    for change in changes {
        match change {
            HeaderChange::Set(name, values) => {
                let Some(name) = header_name(name) else {
                    continue;
                };
                headers.remove(&name);
                for value in values {
                    append_value(headers, &name, value);
                }
            }
            HeaderChange::Append(name, value) => {
                if let Some(name) = header_name(name) {
                    append_value(headers, &name, value);
                }
            }
        }
    }
    strip_hop_by_hop(headers);
}

/// Applies context changes.
fn apply_context_changes(context: &mut Object, changes: &[(String, Option<serde_json::Value>)]) {
    for (key, value) in changes {
        match value {
            Some(value) => {
                context.insert(key.clone(), value.clone());
            }
            None => {
                context.remove(key);
            }
        }
    }
}

impl Exchange<'_> {
    /// Applies what the modifiers changed to the parts: headers, method, path and query, the
    /// backend path (`prefixless_path`), the context, and the upstream when it names another
    /// one. As with the view the hooks saw, a new `path` alone does not change the path the
    /// backend receives (`prefixless_path` does).
    pub(super) fn apply_change(&mut self, change: &RequestChange) -> Result<(), Reject> {
        if let Some(method) = &change.method {
            match Method::from_bytes(method.as_bytes()) {
                Ok(method) => self.parts.method = method,
                Err(_) => {
                    let method = method.escape_debug();
                    let message = format!("a plugin set the invalid method `{method}`");
                    return Err(Reject::Error(Kind::Internal, message));
                }
            }
        }
        apply_header_changes(&mut self.parts.headers, &change.headers);
        if change.path.is_some() || change.query.is_some() {
            let uri = &self.parts.uri;
            let path = change.path.as_deref().unwrap_or(uri.path());
            let query = match &change.query {
                Some(query) => query.as_deref(),
                None => uri.query(),
            };
            if path != uri.path() && self.backend_path.is_none() {
                // The backend keeps the path it had, as the view's `prefixless_path` did.
                self.backend_path = Some(self.backend_path().to_string());
            }
            if path != uri.path() || query != uri.query() {
                self.parts.uri = with_path_and_query(uri, path, query).map_err(|e| {
                    let message = format!("a plugin set an invalid path or query: {e}");
                    Reject::Error(Kind::Internal, message)
                })?;
            }
        }
        if let Some(prefixless_path) = &change.prefixless_path {
            self.backend_path = None;
            if prefixless_path != self.backend_path() {
                self.backend_path = Some(prefixless_path.clone());
            }
        }
        apply_context_changes(&mut self.context, &change.context);
        self.choose_upstream(change.upstream.as_ref().and_then(Option::as_deref))
    }
}
