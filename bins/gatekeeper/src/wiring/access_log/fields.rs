//! The fields an access log line can hold (`access_log_fields`), their names, and how each is
//! written: as a JSON value (`json` format) or as a `key=value` pair (`text` format).

use std::fmt::Write as _;

use gatekeeper_rpc::metrics::RequestMetric;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One field of an access log line; its name is the JSON key and the text format's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessLogField {
    /// Arrival time, RFC 3339 UTC with milliseconds.
    Time,
    /// The client's IP address.
    Client,
    /// The request method (`-` when hyper refused a malformed head).
    Method,
    /// The Host.
    Host,
    /// The path as received.
    Path,
    /// The query string, without `?`.
    Query,
    /// The HTTP version (`HTTP/1.1`, …); `protocol` is accepted for it too.
    #[serde(alias = "protocol")]
    Version,
    /// The status sent to the client (499: none was, the request was cut).
    Status,
    /// Request body bytes received.
    BytesIn,
    /// Response body bytes sent.
    BytesOut,
    /// From arrival until the response body was sent, microseconds.
    DurationUs,
    /// The listener's name.
    Listener,
    /// The upstream's id.
    Upstream,
    /// The backend's id.
    Backend,
    /// Time to open the connection to the backend, microseconds (0: a pooled one).
    UpstreamConnectUs,
    /// Time from sending to the backend until its response head, microseconds.
    UpstreamResponseUs,
    /// The request's `X-Request-Id`.
    RequestId,
    /// The `User-Agent`.
    UserAgent,
    /// The `Referer`.
    Referer,
    /// The TLS server name the client asked for.
    Sni,
    /// The TLS version of the client connection.
    TlsVersion,
    /// The TLS cipher suite of the client connection.
    TlsCipher,
    /// The proxy's error kind (`no_route`, `malformed_request`, `grace_cut`, …).
    Error,
    /// Times the request was sent again to another backend.
    Retries,
}

/// The fields of a line when `access_log_fields` is not set.
pub const DEFAULT_FIELDS: [AccessLogField; 18] = {
    use AccessLogField::*;
    [
        Time, Client, Method, Host, Path, Query, Version, Status, BytesIn, BytesOut, DurationUs,
        Listener, Upstream, Backend, Error, RequestId, UserAgent, Referer,
    ]
};

/// RFC 3339 UTC with milliseconds.
fn rfc3339(time_ms: u64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(time_ms);
    humantime::format_rfc3339_millis(time).to_string()
}

impl AccessLogField {
    /// The field's name (as in `access_log_fields`).
    pub fn name(self) -> &'static str {
        use AccessLogField::*;
        match self {
            Time => "time",
            Client => "client",
            Method => "method",
            Host => "host",
            Path => "path",
            Query => "query",
            Version => "version",
            Status => "status",
            BytesIn => "bytes_in",
            BytesOut => "bytes_out",
            DurationUs => "duration_us",
            Listener => "listener",
            Upstream => "upstream",
            Backend => "backend",
            UpstreamConnectUs => "upstream_connect_us",
            UpstreamResponseUs => "upstream_response_us",
            RequestId => "request_id",
            UserAgent => "user_agent",
            Referer => "referer",
            Sni => "sni",
            TlsVersion => "tls_version",
            TlsCipher => "tls_cipher",
            Error => "error",
            Retries => "retries",
        }
    }

    /// The field's value in this record (`Null` when the record has none).
    pub fn value(self, r: &RequestMetric) -> Value {
        use AccessLogField::*;
        let text = |v: &Option<String>| v.as_deref().map_or(Value::Null, Value::from);
        match self {
            Time => rfc3339(r.time_ms).into(),
            Client => text(&r.client),
            Method => r.method.as_str().into(),
            Host => r.host.as_str().into(),
            Path => r.path.as_str().into(),
            Query => text(&r.query),
            Version => text(&r.version),
            Status => r.status.into(),
            BytesIn => r.bytes_in.into(),
            BytesOut => r.bytes_out.into(),
            DurationUs => r.phases.total_us.into(),
            Listener => r.listener.as_str().into(),
            Upstream => text(&r.upstream),
            Backend => text(&r.backend),
            UpstreamConnectUs => r.phases.upstream_connect_us.into(),
            UpstreamResponseUs => r.phases.upstream_response_us.into(),
            RequestId => text(&r.request_id),
            UserAgent => text(&r.user_agent),
            Referer => text(&r.referer),
            Sni => text(&r.sni),
            TlsVersion => text(&r.tls_version),
            TlsCipher => text(&r.tls_cipher),
            Error => text(&r.error),
            Retries => r.retries.into(),
        }
    }

    /// Whether a JSON line leaves the field out when it has no value (instead of `null`).
    fn omitted_when_empty(self) -> bool {
        matches!(self, AccessLogField::Query | AccessLogField::Error)
    }
}

/// One JSON object with these fields, in this order.
pub fn json_line(fields: &[AccessLogField], r: &RequestMetric, out: &mut String) {
    out.push('{');
    let mut first = true;
    for field in fields {
        let value = field.value(r);
        if value.is_null() && field.omitted_when_empty() {
            continue;
        }
        if !first {
            out.push(',');
        }
        first = false;
        let _ = write!(out, "\"{}\":{value}", field.name());
    }
    out.push_str("}\n");
}

/// One `key=value` line (logfmt): values with spaces, quotes, `=` or control characters are
/// quoted (JSON string escapes); a field without a value is `-`.
pub fn text_line(fields: &[AccessLogField], r: &RequestMetric, out: &mut String) {
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(field.name());
        out.push('=');
        match field.value(r) {
            Value::Null => out.push('-'),
            Value::String(s) if needs_quotes(&s) => {
                let _ = write!(out, "{}", Value::String(s));
            }
            Value::String(s) => out.push_str(&s),
            other => {
                let _ = write!(out, "{other}");
            }
        }
    }
    out.push('\n');
}

fn needs_quotes(s: &str) -> bool {
    s.is_empty()
        || s.chars()
            .any(|c| c == ' ' || c == '"' || c == '=' || c == '\\' || c.is_control())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn record() -> RequestMetric {
        RequestMetric {
            time_ms: 1_795_600_800_123,
            listener: "public".into(),
            method: "GET".into(),
            path: "/a b".into(),
            status: 502,
            user_agent: Some("curl/8".into()),
            request_id: Some("abc".into()),
            error: Some("backend_unreachable".into()),
            ..RequestMetric::default()
        }
    }

    #[test]
    fn a_json_line_has_the_chosen_fields_in_order() {
        use AccessLogField::*;
        let mut line = String::new();
        json_line(
            &[Status, RequestId, UserAgent, Sni, Query],
            &record(),
            &mut line,
        );
        assert_eq!(
            line,
            "{\"status\":502,\"request_id\":\"abc\",\"user_agent\":\"curl/8\",\"sni\":null}\n"
        );
    }

    #[test]
    fn a_text_line_quotes_what_needs_it() {
        use AccessLogField::*;
        let mut line = String::new();
        text_line(
            &[Time, Method, Path, Status, Referer, Error],
            &record(),
            &mut line,
        );
        assert_eq!(
            line,
            "time=2026-11-25T10:00:00.123Z method=GET path=\"/a b\" status=502 referer=- error=backend_unreachable\n"
        );
    }

    #[test]
    fn names_are_the_serde_names() {
        for field in DEFAULT_FIELDS {
            let name = serde_json::to_value(field).unwrap();
            assert_eq!(name, field.name());
        }
        let parsed: AccessLogField = serde_json::from_value("tls_cipher".into()).unwrap();
        assert_eq!(parsed, AccessLogField::TlsCipher);
        let parsed: AccessLogField = serde_json::from_value("protocol".into()).unwrap();
        assert_eq!(parsed, AccessLogField::Version);
    }
}
