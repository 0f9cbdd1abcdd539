//! Declared request parts: a plugin may say in its handshake (`parts`) which parts of the
//! request a hook needs ([`RequestPart`]); the proxy then sends only those
//! ([`PartialRequest`]), so neither end builds, writes or reads the rest. Only `modify_request`
//! takes parts; such a hook answers with a `patch`, a `response` or `{}` (a whole `request`
//! would lack what it was not sent, and is a bad result).
//!
//! `method` and `path` are always sent (every SDK and the schema require them); `body_base64`
//! follows `bodies` as without parts.

use std::borrow::Cow;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};

use crate::types::HttpRequest;

/// A request part a hook needs: `method`, `path` (with `prefix` and `prefixless_path`), `query`,
/// `host`, `headers` (all), `header:NAME` (that header's values, name case-insensitive),
/// `client` (`remote_addr` and `listener`), `context` or `upstream`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum RequestPart {
    /// The method (always sent).
    Method,
    /// `path`, `prefix` and `prefixless_path` (`path` is always sent).
    Path,
    /// The query string.
    Query,
    /// The Host.
    Host,
    /// Every header.
    Headers,
    /// The values of one header, the name lowercased.
    Header(String),
    /// `remote_addr` and `listener`.
    Client,
    /// The context.
    Context,
    /// The upstream id.
    Upstream,
}

impl TryFrom<String> for RequestPart {
    type Error = String;

    fn try_from(part: String) -> Result<Self, Self::Error> {
        Ok(match part.as_str() {
            "method" => RequestPart::Method,
            "path" => RequestPart::Path,
            "query" => RequestPart::Query,
            "host" => RequestPart::Host,
            "headers" => RequestPart::Headers,
            "client" => RequestPart::Client,
            "context" => RequestPart::Context,
            "upstream" => RequestPart::Upstream,
            _ => match part.strip_prefix("header:").filter(|name| !name.is_empty()) {
                Some(name) => RequestPart::Header(name.to_ascii_lowercase()),
                None => {
                    return Err(format!(
                        "unknown request part `{part}` (method, path, query, host, headers, \
                         header:NAME, client, context or upstream)"
                    ))
                }
            },
        })
    }
}

impl From<RequestPart> for String {
    fn from(part: RequestPart) -> String {
        match part {
            RequestPart::Method => "method".into(),
            RequestPart::Path => "path".into(),
            RequestPart::Query => "query".into(),
            RequestPart::Host => "host".into(),
            RequestPart::Headers => "headers".into(),
            RequestPart::Header(name) => format!("header:{name}"),
            RequestPart::Client => "client".into(),
            RequestPart::Context => "context".into(),
            RequestPart::Upstream => "upstream".into(),
        }
    }
}

impl JsonSchema for RequestPart {
    fn schema_name() -> Cow<'static, str> {
        "RequestPart".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A request part a hook needs: method, path, query, host, headers, \
                header:NAME (case-insensitive), client, context or upstream.",
            "type": "string"
        })
    }
}

/// A request as sent to a hook that declared its parts: only those members (and `method`,
/// `path`, and `body_base64` when present) are written.
#[derive(Debug, Clone, Copy)]
pub struct PartialRequest<'a> {
    /// The whole request.
    pub request: &'a HttpRequest,
    /// The parts to send.
    pub parts: &'a [RequestPart],
}

impl PartialRequest<'_> {
    fn has(&self, part: &RequestPart) -> bool {
        self.parts.contains(part)
    }

    /// Whether the header `name` is to be sent.
    fn sends_header(&self, name: &str) -> bool {
        self.has(&RequestPart::Headers)
            || self
                .parts
                .iter()
                .any(|p| matches!(p, RequestPart::Header(n) if n.eq_ignore_ascii_case(name)))
    }
}

/// The headers a [`PartialRequest`] sends, as a `[[name, value], …]` list.
struct SentHeaders<'a>(&'a PartialRequest<'a>);

impl Serialize for SentHeaders<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(
            self.0
                .request
                .headers
                .iter()
                .filter(|(name, _)| self.0.sends_header(name)),
        )
    }
}

impl Serialize for PartialRequest<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let request = self.request;
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("method", &request.method)?;
        map.serialize_entry("path", &request.path)?;
        if self.has(&RequestPart::Path) {
            if let Some(prefix) = &request.prefix {
                map.serialize_entry("prefix", prefix)?;
            }
            map.serialize_entry("prefixless_path", &request.prefixless_path)?;
        }
        if self.has(&RequestPart::Query) {
            if let Some(query) = &request.query {
                map.serialize_entry("query", query)?;
            }
        }
        if self.has(&RequestPart::Host) {
            map.serialize_entry("host", &request.host)?;
        }
        let any_header = self
            .parts
            .iter()
            .any(|p| matches!(p, RequestPart::Headers | RequestPart::Header(_)));
        if any_header {
            map.serialize_entry("headers", &SentHeaders(self))?;
        }
        if self.has(&RequestPart::Client) {
            map.serialize_entry("listener", &request.listener)?;
            map.serialize_entry("remote_addr", &request.remote_addr)?;
        }
        if self.has(&RequestPart::Context) {
            map.serialize_entry("context", &request.context)?;
        }
        if self.has(&RequestPart::Upstream) {
            if let Some(upstream) = &request.upstream {
                map.serialize_entry("upstream", upstream)?;
            }
        }
        if let Some(body) = &request.body_base64 {
            map.serialize_entry("body_base64", body)?;
        }
        map.end()
    }
}

/// The params of `modify_request` for a hook that declared its parts.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct PartialModifyRequestParams<'a> {
    /// The request, with only the declared parts.
    pub request: PartialRequest<'a>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn parts_read_and_write_as_strings() {
        let parts: Vec<RequestPart> =
            serde_json::from_value(json!(["method", "header:Authorization", "context"])).unwrap();
        assert_eq!(parts[1], RequestPart::Header("authorization".into()));
        assert_eq!(
            serde_json::to_value(&parts).unwrap(),
            json!(["method", "header:authorization", "context"])
        );
        for bad in ["body", "header:", "headers:x", ""] {
            assert!(
                serde_json::from_value::<RequestPart>(json!(bad)).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_partial_request_writes_only_its_parts() {
        let mut request = HttpRequest {
            listener: "http".into(),
            remote_addr: "127.0.0.1:1".into(),
            method: "GET".into(),
            host: "h".into(),
            path: "/api/x".into(),
            prefix: Some("api".into()),
            prefixless_path: "/x".into(),
            query: Some("q=1".into()),
            headers: vec![
                ("authorization".into(), "t".into()),
                ("accept".into(), "*/*".into()),
                ("Authorization".into(), "u".into()),
            ],
            upstream: Some("api".into()),
            ..HttpRequest::default()
        };
        request.context.insert("k".into(), json!(1));
        let parts = [
            RequestPart::Header("authorization".into()),
            RequestPart::Context,
        ];
        let sent = PartialModifyRequestParams {
            request: PartialRequest {
                request: &request,
                parts: &parts,
            },
        };
        assert_eq!(
            serde_json::to_value(sent).unwrap(),
            json!({"request": {"method": "GET", "path": "/api/x",
                "headers": [["authorization", "t"], ["Authorization", "u"]],
                "context": {"k": 1}}})
        );
        let all = [
            RequestPart::Path,
            RequestPart::Query,
            RequestPart::Host,
            RequestPart::Headers,
            RequestPart::Client,
            RequestPart::Context,
            RequestPart::Upstream,
        ];
        let whole = PartialRequest {
            request: &request,
            parts: &all,
        };
        let back: HttpRequest =
            serde_json::from_value(serde_json::to_value(whole).unwrap()).unwrap();
        assert_eq!(back, request, "every part is the whole request");
    }
}
