//! What the proxy measures about one request while metrics are enabled: [`RequestRecord`],
//! started when the request arrives, filled in by the lifecycle, and finished by the response
//! body ([`ProxyBody`](crate::body::ProxyBody)) when it has been sent or dropped.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use gatekeeper_rpc::metrics::{events, now_ms, Phases, RequestMetric, UpstreamMetric};
use gatekeeper_rpc::types::Object;
use http::request::Parts;
use serde_json::Value;

use crate::metrics::{micros, MetricKind, Metrics};
use crate::router::request_host;

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
    /// Request body bytes, counted by [`RequestBody`](crate::body::RequestBody).
    pub(crate) bytes_in: Arc<AtomicU64>,
}

impl RequestRecord {
    /// Starts measuring a request that just arrived (and records `request_accepted`).
    pub(crate) fn start(
        metrics: &Metrics,
        listener: &str,
        remote: SocketAddr,
        parts: &Parts,
    ) -> Box<Self> {
        let record = RequestRecord {
            metrics: metrics.clone(),
            start: Instant::now(),
            time_ms: now_ms(),
            listener: listener.to_string(),
            method: parts.method.as_str().to_string(),
            host: request_host(parts).unwrap_or_default().to_string(),
            path: parts.uri.path().to_string(),
            client: remote.ip().to_string(),
            query: parts.uri.query().map(str::to_string),
            version: format!("{:?}", parts.version),
            phases: Phases::default(),
            upstream: None,
            backend: None,
            error: None,
            status: 0,
            bytes_in: Arc::default(),
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
        });
    }
}
