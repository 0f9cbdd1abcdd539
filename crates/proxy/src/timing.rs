//! What the proxy measures about one request while metrics are enabled: [`RequestRecord`],
//! started when the request arrives, filled in by the lifecycle, and finished by the response
//! body ([`ProxyBody`](crate::body::ProxyBody)) when it has been sent or dropped.
//!
//! Requests refused before the pipeline runs are recorded here too: by the request checks
//! (a record started and finished with the refusal), and by hyper or the head timer on the
//! connection ([`record_refused`], with what the connection knows).
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use gatekeeper_rpc::metrics::{events, now_ms, Phases, RequestMetric, UpstreamMetric};
use gatekeeper_rpc::types::Object;
use http::header::{REFERER, USER_AGENT};
use http::request::Parts;
use http::{HeaderMap, HeaderName};
use serde_json::Value;

use crate::connection_info::ConnectionInfo;
use crate::metrics::{micros, MetricKind, Metrics};
use crate::router::request_host;

/// The request id header: recorded, and put on the proxy's own error answers.
pub(crate) const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A header's value as text, if present and visible ASCII.
fn header_text(headers: &HeaderMap, name: &HeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Records a request refused on the connection before any handler ran (hyper could not parse
/// it, or its head did not arrive in time): `status` and `error` kind, with what the
/// connection knows (no method or path: `-`).
pub(crate) fn record_refused(
    metrics: &Metrics,
    connection: &ConnectionInfo,
    status: u16,
    error: &'static str,
) {
    if !metrics.measures_requests() {
        return;
    }
    let record = RequestRecord {
        error: Some(error),
        status,
        ..RequestRecord::of_connection(metrics, connection, ["-".into(), "-".into(), "-".into()])
    };
    Box::new(record).finish(0);
}

/// The measurements of one request.
#[derive(Debug)]
pub(crate) struct RequestRecord {
    metrics: Metrics,
    start: Instant,
    time_ms: u64,
    listener: String,
    method: String,
    host: String,
    path: String,
    client: String,
    query: Option<String>,
    version: String,
    user_agent: Option<String>,
    referer: Option<String>,
    sni: Option<String>,
    tls_version: Option<&'static str>,
    tls_cipher: Option<&'static str>,
    /// Latencies so far (`total_us` is set by [`finish`](Self::finish)).
    pub(crate) phases: Phases,
    /// The upstream's id, once routed.
    pub(crate) upstream: Option<String>,
    /// The backend's id, once picked.
    pub(crate) backend: Option<String>,
    /// The proxy error kind, if the proxy answered with an error.
    pub(crate) error: Option<&'static str>,
    /// The status sent to the client.
    pub(crate) status: u16,
    /// The request's `X-Request-Id` (the client's or a plugin's).
    pub(crate) request_id: Option<String>,
    /// Times the request was sent again to another backend.
    pub(crate) retries: u32,
    /// Request body bytes, counted by [`RequestBody`](crate::body::RequestBody).
    pub(crate) bytes_in: Arc<AtomicU64>,
}

impl RequestRecord {
    /// A record started now with what the connection knows, and the request line's `method`,
    /// `path` and `version` (`-` when there is no request).
    fn of_connection(
        metrics: &Metrics,
        connection: &ConnectionInfo,
        [method, path, version]: [String; 3],
    ) -> Self {
        RequestRecord {
            metrics: metrics.clone(),
            start: Instant::now(),
            time_ms: now_ms(),
            listener: connection.listener.to_string(),
            method,
            host: String::new(),
            path,
            client: connection.remote.ip().to_string(),
            query: None,
            version,
            user_agent: None,
            referer: None,
            sni: connection.sni.as_deref().map(str::to_string),
            tls_version: connection.tls_version,
            tls_cipher: connection.tls_cipher,
            phases: Phases::default(),
            upstream: None,
            backend: None,
            error: None,
            status: 0,
            request_id: None,
            retries: 0,
            bytes_in: Arc::default(),
        }
    }

    /// Starts measuring a request that just arrived (and records `request_accepted`).
    pub(crate) fn start(
        metrics: &Metrics,
        connection: &ConnectionInfo,
        parts: &Parts,
    ) -> Box<Self> {
        let headers = &parts.headers;
        let request_line = [
            parts.method.as_str().to_string(),
            parts.uri.path().to_string(),
            format!("{:?}", parts.version),
        ];
        let record = RequestRecord {
            host: request_host(parts).unwrap_or_default().to_string(),
            query: parts.uri.query().map(str::to_string),
            user_agent: header_text(headers, &USER_AGENT),
            referer: header_text(headers, &REFERER),
            request_id: header_text(headers, &X_REQUEST_ID),
            ..RequestRecord::of_connection(metrics, connection, request_line)
        };
        if metrics.wants(MetricKind::Event) {
            let mut attributes = Object::new();
            attributes.insert("method".into(), record.method.clone().into());
            attributes.insert("path".into(), record.path.clone().into());
            metrics.record_event(events::REQUEST_ACCEPTED, attributes);
        }
        Box::new(record)
    }

    /// Records the outcome of one attempt on a backend.
    pub(crate) fn record_upstream(
        &self,
        backend: &str,
        latency_us: u64,
        outcome: Result<u16, &'static str>,
    ) {
        let Some(upstream) = &self.upstream else {
            return;
        };
        if self.metrics.wants(MetricKind::Upstream) {
            self.metrics.record_upstream(UpstreamMetric {
                time_ms: now_ms(),
                upstream: upstream.clone(),
                backend: backend.to_string(),
                latency_us,
                status: outcome.ok(),
                error: outcome.err().map(str::to_string),
            });
        }
    }

    /// The response body was dropped before its end (the client went away, or the shutdown
    /// grace period cut the connection, while it streamed): recorded with the error kind
    /// `response_cut` and the status already sent. Not for a HEAD request (whose body is never
    /// sent) or when an error kind is set already.
    pub(crate) fn response_cut(&mut self) {
        if self.error.is_none() && self.method != "HEAD" {
            self.error = Some("response_cut");
        }
    }

    /// Records the request (and `request_failed` when the proxy answered with an error of its
    /// own or the status is 5xx, else `request_succeeded`) once its response body has been sent
    /// (or dropped) after `bytes_out` bytes.
    pub(crate) fn finish(self: Box<Self>, bytes_out: u64) {
        let this = *self;
        let mut phases = this.phases;
        phases.total_us = micros(this.start.elapsed());
        let metrics = this.metrics;
        if metrics.wants(MetricKind::Event) {
            let mut attributes = Object::new();
            attributes.insert("status".into(), this.status.into());
            // Failed: the proxy answered with an error of its own (no route, timeout, a plugin
            // failing closed, ...) or the status is 5xx. A backend's own 404 is a success.
            let name = if this.error.is_none() && this.status < 500 {
                attributes.insert(
                    "upstream".into(),
                    this.upstream.clone().map_or(Value::Null, Value::from),
                );
                events::REQUEST_SUCCEEDED
            } else {
                attributes.insert("error".into(), this.error.map_or(Value::Null, Value::from));
                events::REQUEST_FAILED
            };
            metrics.record_event(name, attributes);
        }
        metrics.record_request(RequestMetric {
            time_ms: this.time_ms,
            listener: this.listener,
            method: this.method,
            host: this.host,
            path: this.path,
            status: this.status,
            upstream: this.upstream,
            backend: this.backend,
            bytes_in: this.bytes_in.load(Ordering::Relaxed),
            bytes_out,
            error: this.error.map(str::to_string),
            phases,
            client: Some(this.client),
            query: this.query,
            version: Some(this.version),
            request_id: this.request_id,
            user_agent: this.user_agent,
            referer: this.referer,
            sni: this.sni,
            tls_version: this.tls_version.map(str::to_string),
            tls_cipher: this.tls_cipher.map(str::to_string),
            retries: this.retries,
        });
    }
}
