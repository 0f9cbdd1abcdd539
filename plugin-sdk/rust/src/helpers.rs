//! Reading a request's cookies ([`cookies`]) and query parameters ([`query_params`]); the rules
//! are shared by every SDK (`plugin-sdk/conformance/testhost.json`).

use indexmap::IndexMap;

use crate::Headers;

/// The cookies of a request's headers: every `cookie` header (HTTP/2 sends one per cookie),
/// split at `;`; names and values trimmed, quotes around a value removed; pieces without a
/// name or `=` skipped; the first of a repeated name wins.
///
/// ```
/// let headers = vec![("cookie".to_owned(), "a=1; b=2".to_owned())];
/// let cookies = gatekeeper_plugin_sdk::helpers::cookies(&headers);
/// assert_eq!(cookies.get("b").map(String::as_str), Some("2"));
/// ```
pub fn cookies(headers: &Headers) -> IndexMap<String, String> {
    let mut found = IndexMap::new();
    for (name, value) in headers {
        if !name.eq_ignore_ascii_case("cookie") {
            continue;
        }
        for piece in value.split(';') {
            let Some((key, text)) = piece.split_once('=') else {
                continue;
            };
            let (key, mut text) = (key.trim(), text.trim());
            if key.is_empty() {
                continue;
            }
            if text.len() >= 2 && text.starts_with('"') && text.ends_with('"') {
                text = &text[1..text.len() - 1];
            }
            found
                .entry(key.to_owned())
                .or_insert_with(|| text.to_owned());
        }
    }
    found
}

/// The parameters of a query string (without `?`): each name with its values in order;
/// percent-decoded, `+` read as a space; a name without `=` has the value `""`; empty pieces
/// skipped.
///
/// ```
/// let params = gatekeeper_plugin_sdk::helpers::query_params(Some("a=1&b=2&a=3"));
/// assert_eq!(params["a"], ["1", "3"]);
/// ```
pub fn query_params(query: Option<&str>) -> IndexMap<String, Vec<String>> {
    let mut params: IndexMap<String, Vec<String>> = IndexMap::new();
    for (name, value) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        params
            .entry(name.into_owned())
            .or_default()
            .push(value.into_owned());
    }
    params
}
