//! Forwarding to backends: the pooled keep-alive clients (HTTP/1.1, and plaintext HTTP/2 for
//! upstreams whose `backend_protocol` is `h2c`), hop-by-hop header removal, the backend URI,
//! conversions between hyper headers and the plugin view, and the upstream timeout. Connection
//! limits and retries are in [`crate::retry`].

use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName};
use http::uri::{PathAndQuery, Scheme, Uri};
use http::{Request, Response};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::body::RequestBody;
use crate::connect::{with_connect_timeout, TimedConnector};
use crate::metrics::Metrics;
use crate::registry::BackendEntry;

pub use crate::upstream_settings::BackendProtocol;

/// One pooled client; bodies are streamed.
type PooledClient = Client<TimedConnector, RequestBody>;

/// The backend clients: pooled keep-alive connections, one pool per protocol.
#[derive(Debug, Clone)]
pub(crate) struct BackendClient {
    http1: PooledClient,
    h2c: PooledClient,
}

/// hyper's smallest HTTP/1 read buffer limit (it panics below).
const HYPER_MIN_BUF_SIZE: usize = 8192;

/// How long an idle pooled backend connection is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Idle connections kept per backend (host:port) and protocol; more are closed when they
/// become idle.
pub(crate) const POOL_MAX_IDLE_PER_BACKEND: usize = 256;

impl BackendClient {
    /// Builds the clients (TCP_NODELAY, at most [`POOL_MAX_IDLE_PER_BACKEND`] idle connections
    /// per backend, closed after 90s idle). Connects are bounded by `connect_timeout` unless the
    /// request states its own ([`BackendClient::request`]); new connections record their connect
    /// time while `metrics` wants request records (checked at every connect, see
    /// [`crate::connect`]).
    ///
    /// A backend response head over `max_header_bytes` (HTTP/1: request line and headers;
    /// h2c: the header list) is an error, answered 502 like any broken response.
    pub(crate) fn new(
        metrics: Metrics,
        connect_timeout: Duration,
        max_header_bytes: usize,
    ) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.enforce_http(true);
        let connector = TimedConnector::new(connector, metrics, connect_timeout);
        // hyper's smallest read buffer is 8 KiB; its default (about 400 KiB) would let a backend
        // send a head six times the size gatekeeper accepts from clients.
        let max_buf = max_header_bytes.max(HYPER_MIN_BUF_SIZE);
        let max_list = u32::try_from(max_header_bytes).unwrap_or(u32::MAX);
        let build = |http2: bool| {
            Client::builder(TokioExecutor::new())
                .http1_max_buf_size(max_buf)
                .http2_max_header_list_size(max_list)
                .pool_idle_timeout(POOL_IDLE_TIMEOUT)
                .pool_max_idle_per_host(POOL_MAX_IDLE_PER_BACKEND)
                .pool_timer(TokioTimer::new())
                .timer(TokioTimer::new())
                .http2_only(http2)
                .build(connector.clone())
        };
        BackendClient {
            http1: build(false),
            h2c: build(true),
        }
    }

    /// Sends `request` with `protocol` and waits for the response headers, connecting (when no
    /// pooled connection is free) within `connect_timeout`: a slower connect is
    /// [`ForwardError::Unreachable`]. The caller bounds the whole wait; the body streams.
    pub(crate) async fn request(
        &self,
        protocol: BackendProtocol,
        request: Request<RequestBody>,
        connect_timeout: Duration,
    ) -> Result<Response<hyper::body::Incoming>, ForwardError> {
        let client = match protocol {
            BackendProtocol::Http1 => &self.http1,
            BackendProtocol::H2c => &self.h2c,
        };
        match with_connect_timeout(connect_timeout, client.request(request)).await {
            Ok(response) => Ok(response),
            Err(e) if e.is_connect() => Err(ForwardError::Unreachable(describe(&e))),
            Err(e) => Err(ForwardError::Failed(describe(&e))),
        }
    }
}

/// Headers that apply to one connection only and are never forwarded.
static HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Removes hop-by-hop headers: the standard ones and every header named in `Connection`; and
/// `Content-Length` next to `Transfer-Encoding` (the message was framed by the coding, so the
/// length is wrong by definition: RFC 9112, 6.3, says a sender must remove it before forwarding).
///
/// Every request and response passes here and most carry none of them, or only
/// `Connection: keep-alive`: one pass over the names (cheap comparisons of standard names)
/// finds those present, and only they are removed (a removal hashes the name; removing each
/// standard name cost about 2,500 of gatekeeper's 51,000 instructions per proxied request).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if !headers.keys().any(|name| HOP_BY_HOP.contains(name)) {
        return;
    }
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    let present: Vec<HeaderName> = headers
        .keys()
        .filter(|name| HOP_BY_HOP.contains(name) || listed.contains(name))
        .cloned()
        .collect();
    if present.contains(&header::TRANSFER_ENCODING) {
        headers.remove(header::CONTENT_LENGTH);
    }
    for name in present {
        headers.remove(name);
    }
}

/// The URI of the outgoing request: `http://{backend}{base_path}{path}[?query]`.
///
/// `original` is the client's path and query, reused without allocation when nothing needs to
/// change (no base path, no stripped prefix).
pub fn backend_uri(
    backend: &BackendEntry,
    path: &str,
    query: Option<&str>,
    original: Option<&PathAndQuery>,
) -> Result<Uri, http::Error> {
    let path_and_query = match original {
        Some(pq) if backend.base_path.is_empty() => pq.clone(),
        _ => {
            let mut s = String::with_capacity(
                backend.base_path.len() + path.len() + query.map_or(0, |q| q.len() + 1) + 1,
            );
            s.push_str(&backend.base_path);
            if !path.starts_with('/') {
                s.push('/');
            }
            s.push_str(path);
            if let Some(q) = query {
                s.push('?');
                s.push_str(q);
            }
            PathAndQuery::try_from(s)?
        }
    };
    Uri::builder()
        .scheme(Scheme::HTTP)
        .authority(backend.authority.clone())
        .path_and_query(path_and_query)
        .build()
}

/// The backend URI for the client's own request URI, without the `strip` bytes of the prefix the
/// built-in router matched (the client's path and query are reused as they are when nothing is
/// stripped and the backend has no base path).
pub(crate) fn client_backend_uri(
    backend: &BackendEntry,
    client_uri: &Uri,
    strip: Option<usize>,
) -> Result<Uri, http::Error> {
    let original = strip
        .is_none()
        .then(|| client_uri.path_and_query())
        .flatten();
    let path = crate::router::prefixless(client_uri.path(), strip);
    backend_uri(backend, path, client_uri.query(), original)
}

/// Why forwarding failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ForwardError {
    /// The backend could not be connected to.
    #[error("cannot connect to backend: {0}")]
    Unreachable(String),
    /// The backend did not answer with headers in time.
    #[error("backend did not answer within {0:?}")]
    Timeout(Duration),
    /// The connection failed after it was established (reset, garbage, early close).
    #[error("backend failed: {0}")]
    Failed(String),
    /// Every connection slot of the backend stayed in use for the whole wait.
    #[error("backend `{backend}` has all its {limit} connections in use (waited {waited:?})")]
    Busy {
        /// The backend id.
        backend: String,
        /// Its upstream's `max_connections_per_backend`.
        limit: usize,
        /// How long the request waited for a slot.
        waited: Duration,
    },
}

impl ForwardError {
    /// The `error` of the upstream metric: `unreachable`, `timeout`, `failed` or `busy`.
    pub(crate) fn metric_error(&self) -> &'static str {
        match self {
            ForwardError::Unreachable(_) => "unreachable",
            ForwardError::Timeout(_) => "timeout",
            ForwardError::Failed(_) => "failed",
            ForwardError::Busy { .. } => "busy",
        }
    }

    /// Whether no connection could be made: nothing reached the backend.
    pub(crate) fn is_connect_failure(&self) -> bool {
        matches!(self, ForwardError::Unreachable(_))
    }
}

/// Full error chain as one line.
fn describe(error: &dyn std::error::Error) -> String {
    let mut s = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        s.push_str(": ");
        s.push_str(&e.to_string());
        source = e.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use http::header::HeaderValue;

    use super::*;
    use gatekeeper_rpc::types::Backend;

    #[test]
    fn hop_by_hop_removed() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("keep-alive, X-Foo"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-foo", HeaderValue::from_static("1"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("x-bar", HeaderValue::from_static("2"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-bar"));
    }

    #[test]
    fn a_content_length_next_to_transfer_encoding_goes_with_it() {
        let mut framed_twice = HeaderMap::new();
        framed_twice.insert("content-length", HeaderValue::from_static("50"));
        framed_twice.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        strip_hop_by_hop(&mut framed_twice);
        assert!(framed_twice.is_empty());
        let mut length_only = HeaderMap::new();
        length_only.insert("content-length", HeaderValue::from_static("50"));
        length_only.insert("connection", HeaderValue::from_static("keep-alive"));
        strip_hop_by_hop(&mut length_only);
        assert_eq!(length_only["content-length"], "50");
    }

    #[test]
    fn hop_by_hop_removal_sees_every_value_and_leaves_other_headers() {
        let mut h = HeaderMap::new();
        h.append("connection", HeaderValue::from_static("close"));
        h.append("connection", HeaderValue::from_static("x-one"));
        h.append("x-one", HeaderValue::from_static("1"));
        h.append("x-one", HeaderValue::from_static("2"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        h.insert("x-two", HeaderValue::from_static("3"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.keys().collect::<Vec<_>>(), ["x-two"]);

        // Nothing hop-by-hop: nothing changes.
        let mut h = HeaderMap::new();
        h.insert("x-one", HeaderValue::from_static("1"));
        h.insert("host", HeaderValue::from_static("a"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn uri_with_base_path() {
        let b = BackendEntry::new(Backend {
            id: "b".into(),
            address: "http://127.0.0.1:9000/base".into(),
            weight: None,
            extra: Default::default(),
        })
        .unwrap();
        let uri = backend_uri(&b, "/x", Some("q=1"), None).unwrap();
        assert_eq!(uri.to_string(), "http://127.0.0.1:9000/base/x?q=1");
        let pq = PathAndQuery::from_static("/x?q=1");
        let uri = backend_uri(&b, "/x", Some("q=1"), Some(&pq)).unwrap();
        assert_eq!(uri.to_string(), "http://127.0.0.1:9000/base/x?q=1");
        assert!(backend_uri(&b, "/a b", None, None).is_err());
    }
}
