//! Sending one request to an upstream's backends: [`forward_with_retry`], shared by the fast
//! path and the full path.
//!
//! For each attempt it takes a connection slot of the backend (when the upstream sets
//! `max_connections_per_backend`; waiting at most the connect timeout, then
//! [`ForwardError::Busy`]), then sends with the upstream's protocol and connect timeout. When the
//! connect fails (nothing reached the backend) and the request is idempotent and bodiless, it is
//! sent once more to another backend of the upstream, picked by the built-in balancer. The
//! upstream's `timeout_ms` bounds the whole: slot waits, connects and both attempts, up to the
//! response headers.
//!
//! Every attempt counts for the backend's passive health ([`crate::health::record`]) and is
//! reported ([`Attempt`]: the backend, whether the connect failed, the status
//! or error), for metrics and for anything that tracks backend health.

use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderMap};
use http::{Method, Request, Response, Uri, Version};
use hyper::body::{Body, Incoming};
use tokio::time::Instant;

use crate::balancer::Balancer;
use crate::body::RequestBody;
use crate::forward::{BackendClient, ForwardError};
use crate::metrics::Metrics;
use crate::registry::{BackendEntry, InFlight, UpstreamEntry};

/// Attempts per request at most: the first and one retry.
const MAX_ATTEMPTS: usize = 2;

/// What a request is sent with: the client, the built-in balancer (for the retry) and the
/// upstream's limits.
pub(crate) struct Sending<'a> {
    /// The backend clients.
    pub(crate) client: &'a BackendClient,
    /// Picks the backend of a retry.
    pub(crate) balancer: &'a dyn Balancer,
    /// The upstream, with its protocol and backends.
    pub(crate) upstream: &'a UpstreamEntry,
    /// Time allowed until the response headers, over every attempt.
    pub(crate) timeout: Duration,
    /// Time allowed for a new connection, and for a connection slot.
    pub(crate) connect_timeout: Duration,
    /// Where backend health changes are reported.
    pub(crate) metrics: &'a Metrics,
}

/// One try of a request on one backend.
#[derive(Debug)]
pub(crate) struct Attempt {
    /// The backend tried.
    pub(crate) backend: Arc<BackendEntry>,
    /// From sending to the response headers or the error.
    pub(crate) elapsed: Duration,
    /// The backend's status, or the error's metric name (`unreachable`, `timeout`, `failed`).
    pub(crate) outcome: Result<u16, &'static str>,
    /// Whether no connection could be made (nothing reached the backend).
    pub(crate) connect_failed: bool,
}

/// The attempts of one request, in order (one or two; none when no connection slot was free).
#[derive(Debug, Default)]
pub(crate) struct Attempts([Option<Attempt>; MAX_ATTEMPTS]);

impl Attempts {
    fn push(&mut self, attempt: Attempt) {
        if let Some(free) = self.0.iter_mut().find(|a| a.is_none()) {
            *free = Some(attempt);
        }
    }

    /// The attempts in the order they were made.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Attempt> {
        self.0.iter().flatten()
    }
}

/// The outcome of [`forward_with_retry`].
pub(crate) struct Forwarded {
    /// The response (its body streams) with the guard that keeps the backend's in-flight count
    /// and connection slot until the body ends; or why there is none.
    pub(crate) result: Result<(Response<Incoming>, InFlight), ForwardError>,
    /// Every attempt made.
    pub(crate) attempts: Attempts,
    /// The backend that answered, or the last one that was tried or waited for.
    pub(crate) backend: Arc<BackendEntry>,
}

/// What is needed to send a bodiless request again.
struct RetryCopy {
    method: Method,
    version: Version,
    headers: HeaderMap,
}

impl RetryCopy {
    /// A copy of `request` when it may be retried: an idempotent method, no body, and another
    /// backend to retry on.
    fn of(request: &Request<RequestBody>, upstream: &UpstreamEntry) -> Option<Self> {
        let retryable =
            upstream.backends.len() > 1 && is_idempotent(request.method()) && !has_body(request);
        retryable.then(|| RetryCopy {
            method: request.method().clone(),
            version: request.version(),
            headers: request.headers().clone(),
        })
    }

    fn request(&self, uri: Uri) -> Request<RequestBody> {
        let mut request = Request::new(RequestBody::empty());
        *request.method_mut() = self.method.clone();
        *request.uri_mut() = uri;
        *request.version_mut() = self.version;
        *request.headers_mut() = self.headers.clone();
        request
    }
}

/// GET, HEAD, OPTIONS, PUT, DELETE and TRACE.
fn is_idempotent(method: &Method) -> bool {
    [
        Method::GET,
        Method::HEAD,
        Method::OPTIONS,
        Method::PUT,
        Method::DELETE,
        Method::TRACE,
    ]
    .contains(method)
}

/// Whether the request has (or may have) a body: data still to come, a `Content-Length` other
/// than 0, or a `Transfer-Encoding`.
fn has_body(request: &Request<RequestBody>) -> bool {
    let headers = request.headers();
    let length_not_zero = headers
        .get_all(header::CONTENT_LENGTH)
        .iter()
        .any(|v| v.as_bytes() != b"0");
    !request.body().is_end_stream()
        || length_not_zero
        || headers.contains_key(header::TRANSFER_ENCODING)
}

/// Another backend of the upstream than `failed`, by the built-in balancer (a few picks; then
/// the first other backend in id order).
fn pick_other(
    balancer: &dyn Balancer,
    upstream: &UpstreamEntry,
    failed: &BackendEntry,
) -> Option<Arc<BackendEntry>> {
    let other = |b: &Arc<BackendEntry>| b.backend.id != failed.backend.id;
    (0..3)
        .filter_map(|_| balancer.pick(upstream))
        .find(other)
        .or_else(|| upstream.backends.iter().find(|b| other(b)).cloned())
}

/// Sends `request` (its URI already aimed at `backend`) and retries once on another backend
/// after a connect failure, when the request allows it (see the module doc). `uri_for` aims the
/// request at the retry's backend; when it fails there is no retry.
pub(crate) async fn forward_with_retry(
    sending: &Sending<'_>,
    backend: Arc<BackendEntry>,
    request: Request<RequestBody>,
    uri_for: impl Fn(&BackendEntry) -> Option<Uri>,
) -> Forwarded {
    let deadline = Instant::now() + sending.timeout;
    let retry = RetryCopy::of(&request, sending.upstream);
    let mut attempts = Attempts::default();
    let (result, attempt) = attempt(sending, &backend, request, deadline).await;
    let Some(attempt) = attempt else {
        return Forwarded {
            result,
            attempts,
            backend,
        };
    };
    let connect_failed = attempt.connect_failed;
    attempts.push(attempt);
    let again = match (&result, retry) {
        (Err(_), Some(copy)) if connect_failed => {
            pick_other(sending.balancer, sending.upstream, &backend).and_then(|other| {
                let uri = uri_for(&other)?;
                let mut request = copy.request(uri);
                // A `host_header: backend` upstream names the retry's backend.
                sending
                    .upstream
                    .host_header
                    .apply(request.headers_mut(), &other);
                Some((other, request))
            })
        }
        _ => None,
    };
    let Some((other, request)) = again else {
        return Forwarded {
            result,
            attempts,
            backend,
        };
    };
    if let Err(e) = &result {
        tracing::debug!(upstream = %sending.upstream.upstream.id, backend = %backend.backend.id,
            retry = %other.backend.id, error = %e, "connect failed; retrying on another backend");
    }
    let (result, attempt) = self::attempt(sending, &other, request, deadline).await;
    if let Some(attempt) = attempt {
        attempts.push(attempt);
    }
    Forwarded {
        result,
        attempts,
        backend: other,
    }
}

/// One attempt: a connection slot (if the backend has a limit), then the request. The attempt
/// is `None` when no slot was free (nothing was sent).
async fn attempt(
    sending: &Sending<'_>,
    backend: &Arc<BackendEntry>,
    request: Request<RequestBody>,
    deadline: Instant,
) -> (
    Result<(Response<Incoming>, InFlight), ForwardError>,
    Option<Attempt>,
) {
    let mut in_flight = InFlight::new(backend.clone());
    if let Some(slots) = backend.connection_slots() {
        let waited = Instant::now();
        let wait = tokio::time::timeout(sending.connect_timeout, slots.clone().acquire_owned());
        match tokio::time::timeout_at(deadline, wait).await {
            Ok(Ok(Ok(slot))) => in_flight.hold(slot),
            Err(_) => return (Err(ForwardError::Timeout(sending.timeout)), None),
            // Timed out waiting (or, never in practice, the semaphore was closed).
            Ok(_) => {
                let busy = ForwardError::Busy {
                    backend: backend.backend.id.clone(),
                    limit: sending
                        .upstream
                        .upstream
                        .max_connections_per_backend
                        .unwrap_or_default() as usize,
                    waited: waited.elapsed(),
                };
                return (Err(busy), None);
            }
        }
    }
    let started = Instant::now();
    let sent = sending.client.request(
        sending.upstream.backend_protocol,
        request,
        sending.connect_timeout,
    );
    let result = match tokio::time::timeout_at(deadline, sent).await {
        Ok(result) => result,
        Err(_) => Err(ForwardError::Timeout(sending.timeout)),
    };
    crate::health::record(sending.metrics, sending.upstream, backend, &result);
    let attempt = Attempt {
        backend: backend.clone(),
        elapsed: started.elapsed(),
        outcome: match &result {
            Ok(response) => Ok(response.status().as_u16()),
            Err(e) => Err(e.metric_error()),
        },
        connect_failed: result.as_ref().is_err_and(ForwardError::is_connect_failure),
    };
    (result.map(|response| (response, in_flight)), Some(attempt))
}

#[cfg(test)]
mod tests;
