//! Conversions between hyper's responses and the plugins' response view ([`HttpResponse`]),
//! the pieces of the request view that come from hyper's parts (host, prefixless path; the
//! request view itself is built by the pipeline's `Exchange::request_view`), and the proxy's own
//! error answers.

use bytes::Bytes;
use gatekeeper_rpc::types::{decode_body, HttpResponse};
use http::request::Parts;
use http::{header, Response, StatusCode};

use crate::body::ProxyBody;
use crate::forward::headers_from_view;

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

/// The Host header, or the authority of an absolute-form request URI.
pub(crate) fn request_host(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()))
}

/// The path without the first `strip` bytes (`/prefix`); `/` when nothing remains.
pub(crate) fn prefixless(path: &str, strip: Option<usize>) -> &str {
    match strip {
        Some(n) => path.get(n..).filter(|p| !p.is_empty()).unwrap_or("/"),
        None => path,
    }
}

/// A plain-text response view with this status and body (a newline is appended).
pub(crate) fn text_response(status: u16, body: &str) -> HttpResponse {
    let headers = vec![("content-type".into(), "text/plain; charset=utf-8".into())];
    let mut response = HttpResponse::new(status, headers);
    response.body = Some(format!("{body}\n"));
    response
}
