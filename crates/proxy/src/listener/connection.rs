//! One client connection: HTTP/1.1 or HTTP/2 (by ALPN, after the TLS handshake of
//! `tls_connection` on TLS listeners; plain
//! listeners speak HTTP/1.1), the connection's timers, and graceful shutdown.
//!
//! HTTP/1 connections are driven by `http1`, which parks idle keep-alive connections without
//! their buffers and performs upgrades. The timers live in [`WatchedIo`] (`watched_io`), a
//! wrapper around the connection's byte stream that sees every read and knows (through
//! [`Activity`]) whether a request is in flight:
//!
//! - **request head**: from the first byte of a request (for the first request: from the
//!   connection's start) the whole head must arrive within `header_read_timeout`; otherwise the
//!   client gets `408 Request Timeout` (if it sent anything) and the connection is closed.
//! - **idle keep-alive**: a connection with no request in flight and no new bytes for
//!   `keepalive_idle` is closed. On HTTP/2 a connection is idle while it has no open stream.
//! - **buffer release**: a plain HTTP/1 connection idle for `keepalive_release_after` gives back
//!   hyper's state and buffers until the client sends again (`http1`).
//! - while a request is in flight, and after a protocol upgrade (`101`), neither timer runs.
//!
//! Recording: the connection is counted on its listener ([`ListenerCounters`]: open and
//! accepted connections, failed TLS handshakes, bytes read and written), and the requests
//! refused before any handler ran (hyper's own 400/414/431 answers to a malformed head, the
//! 408 of the head timer) are recorded as requests ([`record_refused`]).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use http::{header, HeaderValue, Request, StatusCode, Version};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_util::task::TaskTracker;

use crate::client_limits::ConnectionPermit;
use crate::connection_info::ConnectionInfo;
use crate::service::Shared;
use crate::timing::record_refused;
use crate::tls::client_cert::set_client_cert_header;
use crate::tls::TlsListener;
use crate::ProxyConfig;

use super::activity::{RequestGuard, TrackedBody};
use super::watched_io::ClientStream;
pub(super) use super::watched_io::WatchedIo;

/// The HTTP versions a connection can speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Protocol {
    Http1,
    Http2,
}

/// hyper's default HTTP/1 read buffer limit (8 KiB + 100 × 4 KiB), which also bounds a head.
const HYPER_DEFAULT_MAX_BUF: usize = 8192 + 4096 * 100;

/// How connections are served: the HTTP builders and the timers, shared by all connections.
pub(crate) struct Protocols {
    pub(super) http1: http1::Builder,
    http2: http2::Builder<StreamExecutor>,
    /// Every HTTP/2 stream's task (hyper runs each stream apart from its connection).
    pub(super) http2_streams: TaskTracker,
    pub(super) header_read_timeout: Duration,
    pub(super) keepalive_idle: Duration,
    pub(super) keepalive_release_after: Duration,
}

impl Protocols {
    pub(crate) fn new(config: &ProxyConfig) -> Self {
        let max_header_bytes = config.max_header_bytes.max(1);
        let mut http1 = http1::Builder::new();
        // The head timeout is WatchedIo's (hyper's would also close idle connections).
        http1
            .keep_alive(true)
            .header_read_timeout(None)
            .max_header_size(max_header_bytes);
        if max_header_bytes > HYPER_DEFAULT_MAX_BUF {
            http1.max_buf_size(max_header_bytes);
        }
        let http2_streams = TaskTracker::new();
        let mut http2 = http2::Builder::new(StreamExecutor(http2_streams.clone()));
        http2
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(max_header_bytes).unwrap_or(u32::MAX));
        Protocols {
            http1,
            http2,
            http2_streams,
            header_read_timeout: config.header_read_timeout,
            keepalive_idle: config.keepalive_idle,
            keepalive_release_after: config.keepalive_release_after,
        }
    }
}

/// Spawns hyper's HTTP/2 stream tasks where shutdown can wait for them: a stream whose
/// connection the grace period cut ends (and records its request as `grace_cut`) at its next
/// poll, which must come before the final metrics flush.
#[derive(Clone)]
struct StreamExecutor(TaskTracker);

impl<F> hyper::rt::Executor<F> for StreamExecutor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, stream: F) {
        self.0.spawn(stream);
    }
}

/// Completes when shutdown is requested (or the sender is gone).
pub(crate) async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// What the connections of one listener share.
pub(crate) struct ListenerContext {
    /// The listener's name.
    pub(crate) name: Arc<str>,
    /// The TLS setup of a TLS listener.
    pub(crate) tls: Option<TlsListener>,
    pub(crate) shared: Arc<Shared>,
    pub(crate) protocols: Arc<Protocols>,
}

/// Serves one accepted connection until it closes or shutdown asks it to.
pub(crate) async fn serve_connection(
    stream: TcpStream,
    remote: SocketAddr,
    context: Arc<ListenerContext>,
    permit: ConnectionPermit,
    shutdown: watch::Receiver<bool>,
) {
    let listener = context.name.clone();
    let (shared, protocols) = (context.shared.clone(), &context.protocols);
    let open = shared.metrics.listener_counters(&listener).open();
    let Some(tls) = context.tls.as_ref() else {
        let info = ConnectionInfo {
            listener,
            remote,
            remote_text: Arc::from(remote.to_string()),
            tls: false,
            sni: None,
            client_cert_subject: None,
            tls_version: None,
            tls_cipher: None,
            shutdown: shutdown.clone(),
            counters: open.shared_counters(),
        };
        let io = WatchedIo::new(stream, Protocol::Http1, permit, open, protocols);
        return serve_http(io, info, None, shared, protocols, shutdown).await;
    };
    // Boxed: the TLS handshake and stream make the connection's task about twice as large,
    // and plain connections should not carry that (measured with `-Zprint-type-sizes`).
    let connection = super::tls_connection::TlsConnection {
        stream,
        remote,
        listener,
        permit,
        open,
    };
    Box::pin(super::tls_connection::serve_tls(
        connection, tls, shared, protocols, shutdown,
    ))
    .await;
}

/// The status hyper answered a request it could not parse with, and the error kind recorded
/// for it; `None` when hyper sent no answer (not a parse error, or an HTTP/2 preface).
fn refused_by_hyper(error: &hyper::Error) -> Option<(u16, &'static str)> {
    if !error.is_parse() || error.is_parse_version_h2() {
        return None;
    }
    let message = error.to_string();
    if error.is_parse_too_large() {
        return Some(if message.contains("URI") {
            (414, "uri_too_long")
        } else {
            (431, "headers_too_large")
        });
    }
    // hyper's internal parse error gets no answer; the others a 400.
    (!message.contains("internal")).then_some((400, "malformed_request"))
}

/// Serves HTTP on `io`; `tls` (on TLS listeners) adds its static headers to every response.
pub(super) async fn serve_http<I: ClientStream>(
    io: WatchedIo<I>,
    info: ConnectionInfo,
    tls: Option<TlsListener>,
    shared: Arc<Shared>,
    protocols: &Protocols,
    shutdown: watch::Receiver<bool>,
) {
    let remote = info.remote;
    let protocol = io.protocol;
    let activity = io.activity.clone();
    let counters = io.counters.clone();
    let metrics = shared.metrics.clone();
    let info = Arc::new(info);
    let recorded = (activity.clone(), info.clone());
    let service = service_fn(move |mut request: Request<Incoming>| {
        if request.version() == Version::HTTP_2 {
            host_from_authority(&mut request);
        } else if request.headers().contains_key(header::UPGRADE) {
            // The HTTP/1 driver hands the connection over through this after a 101.
            let upgrade = activity.expect_upgrade();
            request.extensions_mut().insert(upgrade);
        }
        // Only the proxy says which client certificate was presented.
        set_client_cert_header(request.headers_mut(), info.client_cert_subject.as_ref());
        let guard = RequestGuard::start(&activity);
        let shared = shared.clone();
        let info = info.clone();
        let tls = tls.clone();
        // Boxed: the HTTP/1 driver takes the stream back from hyper, which needs an `Unpin`
        // future; it also keeps hyper's per-connection slot for it small.
        Box::pin(async move {
            let mut response = crate::pipeline::handle(&shared, &info, request).await;
            for (name, value) in &shared.response_headers {
                response.headers_mut().insert(name.clone(), value.clone());
            }
            if let Some(tls) = &tls {
                tls.add_response_headers(response.headers_mut());
            }
            if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                guard.0.upgraded.store(true, Ordering::Release);
            }
            Ok::<_, Infallible>(response.map(|body| TrackedBody {
                body,
                _guard: guard,
            }))
        })
    });
    let result = match protocol {
        Protocol::Http1 => super::http1::serve_http1(io, service, protocols, shutdown).await,
        Protocol::Http2 => {
            // Boxed: hyper's HTTP/2 state would otherwise size every connection's task,
            // parked HTTP/1 ones included (about 3.6 KiB of 4.5; `-Zprint-type-sizes`).
            let conn = protocols.http2.serve_connection(TokioIo::new(io), service);
            Box::pin(until_shutdown(conn, |c| c.graceful_shutdown(), shutdown)).await
        }
    };
    let (activity, info) = recorded;
    if activity.head_timed_out.load(Ordering::Acquire) {
        counters.malformed_request();
        record_refused(&metrics, &info, 408, "request_timeout");
    }
    if let Err(e) = result {
        tracing::debug!(%remote, error = %e, "connection ended with an error");
        if let Some((status, kind)) = refused_by_hyper(&e) {
            counters.malformed_request();
            record_refused(&metrics, &info, status, kind);
        }
    }
}

/// HTTP/2 carries the host in `:authority`, not in a Host header; a request forwarded as
/// HTTP/1.1 needs one (RFC 9113, 8.3.1), and plugins see requests alike whatever the version.
fn host_from_authority(request: &mut Request<Incoming>) {
    if request.headers().contains_key(header::HOST) {
        return;
    }
    let host = request
        .uri()
        .authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok());
    if let Some(host) = host {
        request.headers_mut().insert(header::HOST, host);
    }
}

/// Drives `conn`; when shutdown is requested, asks it to finish its in-flight requests and
/// close.
async fn until_shutdown<C, E>(
    conn: C,
    graceful: impl FnOnce(Pin<&mut C>),
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), E>
where
    C: Future<Output = Result<(), E>>,
{
    tokio::pin!(conn);
    // Biased: the connection first, without a random draw per wake-up; the shutdown signal is
    // still seen at the next wake-up.
    tokio::select! {
        biased;
        result = conn.as_mut() => result,
        _ = stopped(&mut shutdown) => {
            graceful(conn.as_mut());
            conn.await
        }
    }
}
