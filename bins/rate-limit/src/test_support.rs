//! Builders the unit tests of several modules share: a config map and a request.

use gatekeeper_plugin_sdk::{HttpRequest, Object};
use serde_json::Value;

/// A config map of `pairs`.
pub fn config(pairs: &[(&str, Value)]) -> Object {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect()
}

/// A `GET /` from `remote_addr` with `headers`.
pub fn request(remote_addr: &str, headers: &[(&str, &str)]) -> HttpRequest {
    HttpRequest {
        remote_addr: remote_addr.into(),
        method: "GET".into(),
        path: "/".into(),
        headers: headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect(),
        ..HttpRequest::default()
    }
}
