//! Conversions between hyper's header maps and responses and the plugins' views (headers as
//! name/value pairs, [`HttpResponse`]; the request view itself is built by the pipeline's
//! `Exchange::request_view`), and the proxy's own error answers.

use bytes::Bytes;
use gatekeeper_rpc::types::{decode_body, Headers, HttpResponse};
use http::header::{HeaderName, HeaderValue};
use http::{header, HeaderMap, Response, StatusCode};

use crate::body::ProxyBody;
use crate::forward::strip_hop_by_hop;

/// The plugin view of headers: lower-case names, values decoded lossily as UTF-8.
pub(crate) fn headers_to_view(headers: &HeaderMap) -> Headers {
    headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_string(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// Builds a header map from a plugin's header list, skipping (with a warning) names and values
/// that are not valid HTTP, then removes hop-by-hop headers.
pub(crate) fn headers_from_view(headers: &Headers) -> HeaderMap {
    let mut map = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let name = match HeaderName::from_bytes(name.as_bytes()) {
            Ok(n) => n,
            Err(_) => {
                tracing::warn!(header = %name.escape_debug(), "plugin sent an invalid header name; skipped");
                continue;
            }
        };
        match HeaderValue::from_str(value) {
            Ok(v) => {
                map.append(name, v);
            }
            Err(_) => {
                tracing::warn!(header = %name, "plugin sent an invalid header value; skipped")
            }
        }
    }
    strip_hop_by_hop(&mut map);
    map
}

/// The kinds of errors the proxy answers itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    NoRoute,
    NoBackend,
    BackendUnreachable,
    Timeout,
    BadRequest,
    Internal,
    /// A request body over `max_plugin_body` that a plugin wanted.
    BodyTooLarge,
}

impl Kind {
    pub(crate) fn status(self) -> u16 {
        match self {
            Kind::NoRoute => 404,
            Kind::NoBackend => 503,
            Kind::BackendUnreachable => 502,
            Kind::Timeout => 504,
            Kind::BadRequest => 400,
            Kind::Internal => 500,
            Kind::BodyTooLarge => 413,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::NoRoute => "no_route",
            Kind::NoBackend => "no_backend",
            Kind::BackendUnreachable => "backend_unreachable",
            Kind::Timeout => "timeout",
            Kind::BadRequest => "bad_request",
            Kind::Internal => "internal",
            Kind::BodyTooLarge => "body_too_large",
        }
    }

    pub(crate) fn body(self) -> &'static str {
        match self {
            Kind::NoRoute => "no route",
            Kind::NoBackend => "no backend available",
            Kind::BackendUnreachable => "backend unreachable",
            Kind::Timeout => "backend timeout",
            Kind::BadRequest => "bad request",
            Kind::Internal => "internal error",
            Kind::BodyTooLarge => "payload too large",
        }
    }
}

/// A plain-text error response built without plugins.
pub(crate) fn plain(kind: Kind) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::full(format!("{}\n", kind.body())));
    *response.status_mut() =
        StatusCode::from_u16(kind.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// A status a plugin may answer with: 200–599 (1xx are not final responses).
pub(crate) fn valid_status(status: u16) -> Option<StatusCode> {
    if (200..=599).contains(&status) {
        StatusCode::from_u16(status).ok()
    } else {
        None
    }
}

/// The body a plugin set on a response: `body` (text) wins over `body_base64`; empty when
/// neither is set; `None` (logged) when `body_base64` is not valid base64.
fn body_from_view(view: HttpResponse) -> Option<Bytes> {
    match (view.body, view.body_base64) {
        (Some(text), _) => Some(Bytes::from(text)),
        (None, Some(encoded)) => match decode_body(&encoded) {
            Ok(bytes) => Some(Bytes::from(bytes)),
            Err(error) => {
                tracing::warn!(%error, "a plugin set a body_base64 that is not valid base64");
                None
            }
        },
        (None, None) => Some(Bytes::new()),
    }
}

/// Builds a response whose body is the view's body (empty when it has none); `None` when the
/// status or the body is invalid.
pub(crate) fn response_from_view(view: HttpResponse) -> Option<Response<ProxyBody>> {
    let status = valid_status(view.status)?;
    let mut headers = headers_from_view(&view.headers);
    headers.remove(header::CONTENT_LENGTH);
    let mut response = Response::new(ProxyBody::full(body_from_view(view)?));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    Some(response)
}

/// A plain-text response view with this status and body (a newline is appended).
pub(crate) fn text_response(status: u16, body: &str) -> HttpResponse {
    let headers = vec![("content-type".into(), "text/plain; charset=utf-8".into())];
    let mut response = HttpResponse::new(status, headers);
    response.body = Some(format!("{body}\n"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_plugin_headers_skipped() {
        let view = vec![
            ("x-ok".to_string(), "1".to_string()),
            ("bad name".to_string(), "1".to_string()),
            ("x-bad-value".to_string(), "a\nb".to_string()),
            ("upgrade".to_string(), "h2c".to_string()),
        ];
        let map = headers_from_view(&view);
        assert_eq!(map.len(), 1);
        assert_eq!(map["x-ok"], "1");
    }
}
