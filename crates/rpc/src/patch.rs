//! Patch results: what a `modify_request` or `modify_response` hook returns instead of a whole
//! request or response when it changes only a few parts ([`RequestPatch`], [`ResponsePatch`]).
//!
//! A patch names only what changes, so neither end re-reads the whole request: the proxy
//! applies it to its own request (only the named headers are touched). Its shape is checked
//! when it is read: unknown keys, header names that are not HTTP tokens, header values with
//! control characters and statuses outside 100–999 make the whole result a bad result.
//!
//! Within one patch the header operations apply in this order: `remove_headers`, then
//! `set_headers`, then `append_headers`.

use std::borrow::Cow;
use std::collections::BTreeMap;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize};

use crate::types::{Headers, HttpRequest, HttpResponse, Object};

/// A header name in a patch: an HTTP token (RFC 9110 `tchar`s), stored lowercased.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FieldName(String);

impl FieldName {
    /// The lowercased name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether `c` may appear in a header name (RFC 9110 `tchar`).
fn is_token_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

impl TryFrom<String> for FieldName {
    type Error = String;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        if name.is_empty() || !name.bytes().all(is_token_char) {
            return Err(format!(
                "`{}` is not a valid header name",
                name.escape_debug()
            ));
        }
        Ok(FieldName(name.to_ascii_lowercase()))
    }
}

impl TryFrom<&str> for FieldName {
    type Error = String;

    fn try_from(name: &str) -> Result<Self, Self::Error> {
        FieldName::try_from(name.to_owned())
    }
}

impl From<FieldName> for String {
    fn from(name: FieldName) -> String {
        name.0
    }
}

impl JsonSchema for FieldName {
    fn schema_name() -> Cow<'static, str> {
        "FieldName".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A header name: an HTTP token (letters, digits and !#$%&'*+-.^_`|~), case-insensitive.",
            "type": "string"
        })
    }
}

/// A header value in a patch: no control characters other than horizontal tab.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FieldValue(String);

impl FieldValue {
    /// The value.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for FieldValue {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        if value
            .chars()
            .any(|c| (c.is_control() && c != '\t') || c == '\u{7f}')
        {
            return Err(format!(
                "`{}` is not a valid header value (control characters)",
                value.escape_debug()
            ));
        }
        Ok(FieldValue(value))
    }
}

impl TryFrom<&str> for FieldValue {
    type Error = String;

    fn try_from(value: &str) -> Result<Self, Self::Error> {
        FieldValue::try_from(value.to_owned())
    }
}

impl From<FieldValue> for String {
    fn from(value: FieldValue) -> String {
        value.0
    }
}

impl JsonSchema for FieldValue {
    fn schema_name() -> Cow<'static, str> {
        "FieldValue".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A header value: text without control characters (horizontal tab allowed).",
            "type": "string"
        })
    }
}

/// The new values of a header in `set_headers`: one string or an array of strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum FieldValues {
    /// One value.
    One(FieldValue),
    /// Several values, in order (an empty array removes the header).
    Many(Vec<FieldValue>),
}

impl FieldValues {
    /// The values, in order.
    pub fn as_slice(&self) -> &[FieldValue] {
        match self {
            FieldValues::One(value) => std::slice::from_ref(value),
            FieldValues::Many(values) => values,
        }
    }
}

/// A status set by a [`ResponsePatch`]: 100 to 999.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "u16", into = "u16")]
pub struct PatchStatus(u16);

impl PatchStatus {
    /// The status code.
    pub fn get(self) -> u16 {
        self.0
    }
}

impl TryFrom<u16> for PatchStatus {
    type Error = String;

    fn try_from(status: u16) -> Result<Self, Self::Error> {
        if (100..=999).contains(&status) {
            Ok(PatchStatus(status))
        } else {
            Err(format!("{status} is not a status from 100 to 999"))
        }
    }
}

impl From<PatchStatus> for u16 {
    fn from(status: PatchStatus) -> u16 {
        status.0
    }
}

impl JsonSchema for PatchStatus {
    fn schema_name() -> Cow<'static, str> {
        "PatchStatus".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A status code from 100 to 999.",
            "type": "integer",
            "minimum": 100,
            "maximum": 999
        })
    }
}

/// Reads a present key as `Some` (so that `null` is `Some(None)`, and absent is `None`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    deserializer: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(deserializer).map(Some)
}

/// The header operations of a request or response patch, borrowed from it.
#[derive(Debug, Clone, Copy)]
pub struct HeaderOps<'a> {
    /// `set_headers`.
    pub set: &'a BTreeMap<FieldName, FieldValues>,
    /// `append_headers`.
    pub append: &'a [(FieldName, FieldValue)],
    /// `remove_headers`.
    pub remove: &'a [FieldName],
}

impl HeaderOps<'_> {
    /// Whether they change no header.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.append.is_empty() && self.remove.is_empty()
    }

    /// Applies the operations to a header list: removals, then replacements (at the end),
    /// then appends.
    pub fn apply(&self, headers: &mut Headers) {
        for name in self.remove {
            headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name.as_str()));
        }
        for (name, values) in self.set {
            headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name.as_str()));
            headers.extend(
                values
                    .as_slice()
                    .iter()
                    .map(|v| (name.as_str().to_owned(), v.as_str().to_owned())),
            );
        }
        headers.extend(
            self.append
                .iter()
                .map(|(n, v)| (n.as_str().to_owned(), v.as_str().to_owned())),
        );
    }
}

/// Header operations that turn the header list `sent` into `returned`, up to the order of
/// headers of different names: each header whose values differ is set (or removed). A name or
/// value that is not valid HTTP is left out (the caller's check then finds the difference).
fn headers_between(
    sent: &Headers,
    returned: &Headers,
) -> (BTreeMap<FieldName, FieldValues>, Vec<FieldName>) {
    let values_of = |headers: &Headers, name: &str| -> Vec<String> {
        headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
            .collect()
    };
    let (mut set, mut remove) = (BTreeMap::new(), Vec::new());
    let mut seen: Vec<String> = Vec::new();
    for (name, _) in sent.iter().chain(returned) {
        let lower = name.to_ascii_lowercase();
        if seen.contains(&lower) {
            continue;
        }
        seen.push(lower.clone());
        let (old, new) = (values_of(sent, &lower), values_of(returned, &lower));
        if old == new {
            continue;
        }
        let Ok(field) = FieldName::try_from(lower) else {
            continue;
        };
        if new.is_empty() {
            remove.push(field);
        } else if let Ok(values) = new.into_iter().map(FieldValue::try_from).collect() {
            let values: Vec<FieldValue> = values;
            let values = match <[FieldValue; 1]>::try_from(values) {
                Ok([one]) => FieldValues::One(one),
                Err(many) => FieldValues::Many(many),
            };
            set.insert(field, values);
        }
    }
    (set, remove)
}

/// A `modify_request` result's `patch`: the changes to make to the request; every field is
/// optional and absent means "unchanged". Example:
/// `{"patch": {"set_headers": {"x-user": "alice"}, "context": {"user": "alice"}}}`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestPatch {
    /// Headers whose values are replaced: name → the new value or values (all earlier values
    /// of that header go; `[]` removes it).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set_headers: BTreeMap<FieldName, FieldValues>,
    /// Headers added after the existing values, as `[name, value]` pairs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub append_headers: Vec<(FieldName, FieldValue)>,
    /// Names of headers removed (every value).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove_headers: Vec<FieldName>,
    /// The new method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// The new path (as in the request's `path`; what the backend receives is
    /// `prefixless_path`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The new query string without `?`; `null` removes it.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub query: Option<Option<String>>,
    /// The new path the backend receives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefixless_path: Option<String>,
    /// The id of the upstream to send the request to instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
    /// Context changes: key → new value; `null` removes the key.
    #[serde(default, skip_serializing_if = "Object::is_empty")]
    pub context: Object,
}

impl RequestPatch {
    /// Its header operations.
    pub fn header_ops(&self) -> HeaderOps<'_> {
        HeaderOps {
            set: &self.set_headers,
            append: &self.append_headers,
            remove: &self.remove_headers,
        }
    }

    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        *self == RequestPatch::default()
    }

    /// Applies the patch to a request view.
    pub fn apply(&self, request: &mut HttpRequest) {
        self.header_ops().apply(&mut request.headers);
        if let Some(method) = &self.method {
            request.method.clone_from(method);
        }
        if let Some(path) = &self.path {
            request.path.clone_from(path);
        }
        if let Some(query) = &self.query {
            request.query.clone_from(query);
        }
        if let Some(path) = &self.prefixless_path {
            request.prefixless_path.clone_from(path);
        }
        if let Some(upstream) = &self.upstream {
            request.upstream = Some(upstream.clone());
        }
        for (key, value) in &self.context {
            if value.is_null() {
                request.context.remove(key);
            } else {
                request.context.insert(key.clone(), value.clone());
            }
        }
    }

    /// The patch that turns `sent` into `returned`, when a patch can say it: `None` when
    /// `returned` changed something a patch cannot carry (the body, the host, the listener,
    /// the client's address, the prefix, a header that is not valid HTTP, a context value set
    /// to `null`, the upstream removed); the whole request must be sent then.
    pub fn between(sent: &HttpRequest, returned: &HttpRequest) -> Option<Self> {
        let differs = |a: &String, b: &String| (a != b).then(|| b.clone());
        let mut context = Object::new();
        for (key, value) in &returned.context {
            if sent.context.get(key) != Some(value) {
                context.insert(key.clone(), value.clone());
            }
        }
        for key in sent.context.keys() {
            if !returned.context.contains_key(key) {
                context.insert(key.clone(), serde_json::Value::Null);
            }
        }
        let (set_headers, remove_headers) = headers_between(&sent.headers, &returned.headers);
        let patch = RequestPatch {
            set_headers,
            append_headers: Vec::new(),
            remove_headers,
            method: differs(&sent.method, &returned.method),
            path: differs(&sent.path, &returned.path),
            query: (sent.query != returned.query).then(|| returned.query.clone()),
            prefixless_path: differs(&sent.prefixless_path, &returned.prefixless_path),
            upstream: (sent.upstream != returned.upstream)
                .then(|| returned.upstream.clone())
                .flatten(),
            context,
        };
        let mut check = sent.clone();
        patch.apply(&mut check);
        let body_kept = returned.body_base64.is_none() || returned.body_base64 == sent.body_base64;
        check.body_base64.clone_from(&returned.body_base64);
        (body_kept && same_request(&check, returned)).then_some(patch)
    }
}

/// Whether two header lists hold the same values for every name (the order of headers of
/// different names aside).
fn same_headers(a: &Headers, b: &Headers) -> bool {
    fn sorted(headers: &Headers) -> Vec<(String, &str)> {
        let mut sorted: Vec<(String, &str)> = headers
            .iter()
            .map(|(n, v)| (n.to_ascii_lowercase(), v.as_str()))
            .collect();
        // Stable: the values of one name keep their order.
        sorted.sort_by(|x, y| x.0.cmp(&y.0));
        sorted
    }
    a.len() == b.len() && sorted(a) == sorted(b)
}

/// Whether two requests are the same, the order of headers of different names aside.
fn same_request(a: &HttpRequest, b: &HttpRequest) -> bool {
    same_headers(&a.headers, &b.headers)
        && HttpRequest {
            headers: Vec::new(),
            ..a.clone()
        } == HttpRequest {
            headers: Vec::new(),
            ..b.clone()
        }
}

/// A `modify_response` (or `modify_error_response`) result's `patch`: status and header
/// changes; the body stays. Example: `{"patch": {"status": 203, "remove_headers": ["server"]}}`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResponsePatch {
    /// Headers whose values are replaced: name → the new value or values (all earlier values
    /// of that header go; `[]` removes it).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set_headers: BTreeMap<FieldName, FieldValues>,
    /// Headers added after the existing values, as `[name, value]` pairs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub append_headers: Vec<(FieldName, FieldValue)>,
    /// Names of headers removed (every value).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove_headers: Vec<FieldName>,
    /// The new status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<PatchStatus>,
}

impl ResponsePatch {
    /// Its header operations.
    pub fn header_ops(&self) -> HeaderOps<'_> {
        HeaderOps {
            set: &self.set_headers,
            append: &self.append_headers,
            remove: &self.remove_headers,
        }
    }

    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        *self == ResponsePatch::default()
    }

    /// Applies the patch to a response view.
    pub fn apply(&self, response: &mut HttpResponse) {
        self.header_ops().apply(&mut response.headers);
        if let Some(status) = self.status {
            response.status = status.get();
        }
    }

    /// The patch that turns `sent` into `returned`, when a patch can say it: `None` when the
    /// body changed (or a header or status a patch cannot carry); the whole response must be
    /// sent then.
    pub fn between(sent: &HttpResponse, returned: &HttpResponse) -> Option<Self> {
        let status = (sent.status != returned.status)
            .then(|| PatchStatus::try_from(returned.status).ok())
            .flatten();
        let (set_headers, remove_headers) = headers_between(&sent.headers, &returned.headers);
        let patch = ResponsePatch {
            set_headers,
            append_headers: Vec::new(),
            remove_headers,
            status,
        };
        let mut check = sent.clone();
        patch.apply(&mut check);
        let same = check.status == returned.status
            && same_headers(&check.headers, &returned.headers)
            && (returned.body.is_none() || returned.body == sent.body)
            && (returned.body_base64.is_none() || returned.body_base64 == sent.body_base64);
        same.then_some(patch)
    }
}

#[cfg(test)]
mod tests;
