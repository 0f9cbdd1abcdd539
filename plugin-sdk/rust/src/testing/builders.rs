//! Request and response builders for tests: what gatekeeper sends a hook, with the defaults
//! it fills in (the rules are shared by every SDK: `plugin-sdk/conformance/testhost.json`).
//!
//! ```
//! use gatekeeper_plugin_sdk::testing::{make_request, make_response};
//!
//! let request = make_request("POST", "/api/users?page=2")
//!     .header("X-Token", "secret")
//!     .cookie("session", "abc")
//!     .build();
//! assert_eq!(request.query.as_deref(), Some("page=2"));
//! assert_eq!(request.headers[0], ("host".to_owned(), "localhost".to_owned()));
//! let response = make_response(404).header("Content-Type", "text/plain").body("nope").build();
//! assert_eq!(response.body.as_deref(), Some("nope"));
//! ```

use gatekeeper_rpc::types::{HttpRequest, HttpResponse, Object, ProxyError};
use serde_json::Value;

/// The client address of a built request unless set.
pub const DEFAULT_REMOTE_ADDR: &str = "127.0.0.1:50000";
/// The listener of a built request unless set.
pub const DEFAULT_LISTENER: &str = "http-public";

/// Starts a request: `method` (upper-cased) and `path`, which may carry a query (`/a?x=1`).
pub fn make_request(method: &str, path: &str) -> RequestBuilder {
    RequestBuilder {
        method: method.to_ascii_uppercase(),
        path: path.to_owned(),
        host: None,
        headers: Vec::new(),
        cookies: Vec::new(),
        prefix: None,
        upstream: None,
        remote_addr: DEFAULT_REMOTE_ADDR.to_owned(),
        listener: DEFAULT_LISTENER.to_owned(),
        context: Object::new(),
        body: None,
    }
}

/// Starts a response with `status` and no headers.
pub fn make_response(status: u16) -> ResponseBuilder {
    ResponseBuilder {
        response: HttpResponse::new(status, Vec::new()),
    }
}

/// What went wrong, for `modify_error_response` (`kind` as in [`ProxyError`]).
pub fn make_error(kind: &str, message: &str) -> ProxyError {
    ProxyError {
        kind: kind.to_owned(),
        message: message.to_owned(),
    }
}

/// Builds an [`HttpRequest`] as gatekeeper sends it to `modify_request`, `route_request` and
/// `get_backend`; see [`make_request`].
#[derive(Debug, Clone)]
pub struct RequestBuilder {
    method: String,
    path: String,
    host: Option<String>,
    headers: Vec<(String, String)>,
    cookies: Vec<(String, String)>,
    prefix: Option<String>,
    upstream: Option<String>,
    remote_addr: String,
    listener: String,
    context: Object,
    body: Option<Vec<u8>>,
}

impl RequestBuilder {
    /// Adds a header (its name lower-cased; repeated names kept). A `Host` header sets the host
    /// unless [`host`](Self::host) does.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .push((name.to_ascii_lowercase(), value.to_owned()));
        self
    }

    /// The host (the first header, `host`); default: a `Host` header's, else `localhost`.
    pub fn host(mut self, host: &str) -> Self {
        self.host = Some(host.to_owned());
        self
    }

    /// Adds a cookie: all go in one `cookie` header after the others, in order.
    pub fn cookie(mut self, name: &str, value: &str) -> Self {
        self.cookies.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The matched prefix segment (`api`), cut from `prefixless_path`.
    pub fn prefix(mut self, prefix: &str) -> Self {
        self.prefix = Some(prefix.to_owned());
        self
    }

    /// The routed upstream's id.
    pub fn upstream(mut self, upstream: &str) -> Self {
        self.upstream = Some(upstream.to_owned());
        self
    }

    /// The client's `ip:port` (default [`DEFAULT_REMOTE_ADDR`]).
    pub fn remote_addr(mut self, remote_addr: &str) -> Self {
        self.remote_addr = remote_addr.to_owned();
        self
    }

    /// The listener's name (default [`DEFAULT_LISTENER`]).
    pub fn listener(mut self, listener: &str) -> Self {
        self.listener = listener.to_owned();
        self
    }

    /// Sets a context value, as an earlier plugin would have.
    pub fn context(mut self, key: &str, value: Value) -> Self {
        self.context.insert(key.to_owned(), value);
        self
    }

    /// The body, sent as `body_base64` (as to a plugin that asked for bodies).
    pub fn body(mut self, body: impl AsRef<[u8]>) -> Self {
        self.body = Some(body.as_ref().to_vec());
        self
    }

    /// The request.
    pub fn build(self) -> HttpRequest {
        let (path, query) = match self.path.split_once('?') {
            Some((path, query)) => (path.to_owned(), Some(query.to_owned())),
            None => (self.path.clone(), None),
        };
        let host = self
            .host
            .or_else(|| {
                self.headers
                    .iter()
                    .find(|(name, _)| name == "host")
                    .map(|(_, value)| value.clone())
            })
            .unwrap_or_else(|| "localhost".to_owned());
        let mut headers = vec![("host".to_owned(), host.clone())];
        headers.extend(self.headers.into_iter().filter(|(name, _)| name != "host"));
        if !self.cookies.is_empty() {
            let pairs: Vec<String> = self
                .cookies
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect();
            headers.push(("cookie".to_owned(), pairs.join("; ")));
        }
        let prefixless_path = match &self.prefix {
            Some(prefix) => {
                let cut = format!("/{prefix}");
                match path.strip_prefix(&cut) {
                    Some("") => "/".to_owned(),
                    Some(rest) if rest.starts_with('/') => rest.to_owned(),
                    _ => path.clone(),
                }
            }
            None => path.clone(),
        };
        let mut request = HttpRequest {
            listener: self.listener,
            remote_addr: self.remote_addr,
            method: self.method,
            host,
            path,
            prefix: self.prefix,
            prefixless_path,
            query,
            headers,
            upstream: self.upstream,
            context: self.context,
            ..HttpRequest::default()
        };
        if let Some(body) = self.body {
            request.set_body_bytes(&body);
        }
        request
    }
}

/// Builds an [`HttpResponse`] as gatekeeper sends it to `modify_response`; see
/// [`make_response`].
#[derive(Debug, Clone)]
pub struct ResponseBuilder {
    response: HttpResponse,
}

impl ResponseBuilder {
    /// Adds a header (its name lower-cased).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.response
            .headers
            .push((name.to_ascii_lowercase(), value.to_owned()));
        self
    }

    /// A text body (`body`; a backend's body is absent: it streams).
    pub fn body(mut self, body: &str) -> Self {
        self.response.body = Some(body.to_owned());
        self
    }

    /// A body as bytes, sent as `body_base64` (as to a plugin that asked for bodies).
    pub fn body_bytes(mut self, body: &[u8]) -> Self {
        self.response.set_body_bytes(body);
        self
    }

    /// The response.
    pub fn build(self) -> HttpResponse {
        self.response
    }
}
