//! One client connection: HTTP/1.1 or HTTP/2 (by ALPN, after the TLS handshake of
//! `tls_connection` on TLS listeners; plain
//! listeners speak HTTP/1.1), the connection's timers, and graceful shutdown.
//!
//! The timers live in [`WatchedIo`], a wrapper around the connection's byte stream that sees
//! every read and knows (through [`Activity`]) whether a request is in flight:
//!
//! - **request head**: from the first byte of a request (for the first request: from the
//!   connection's start) the whole head must arrive within `header_read_timeout`; otherwise the
//!   client gets `408 Request Timeout` (if it sent anything) and the connection is closed.
//! - **idle keep-alive**: a connection with no request in flight and no new bytes for
//!   `keepalive_idle` is closed. On HTTP/2 a connection is idle while it has no open stream.
//! - while a request is in flight, and after a protocol upgrade (`101`), neither timer runs.
//!
//! Recording: the connection is counted on its listener ([`ListenerCounters`]: open and
//! accepted connections, failed TLS handshakes, bytes read and written), and the requests
//! refused before any handler ran (hyper's own 400/414/431 answers to a malformed head, the
//! 408 of the head timer) are recorded as requests ([`record_refused`]).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures::task::AtomicWaker;
use http::{header, HeaderValue, Request, StatusCode, Version};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{watch, OwnedSemaphorePermit};
use tokio::time::{Instant, Sleep};

use crate::connection_info::ConnectionInfo;
use crate::metrics::listener_stats::{ListenerCounters, OpenConnection};
use crate::service::Shared;
use crate::timing::record_refused;
use crate::tls::client_cert::set_client_cert_header;
use crate::tls::TlsListener;
use crate::ProxyConfig;

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
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
    pub(super) header_read_timeout: Duration,
    keepalive_idle: Duration,
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
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(max_header_bytes).unwrap_or(u32::MAX));
        Protocols {
            http1,
            http2,
            header_read_timeout: config.header_read_timeout,
            keepalive_idle: config.keepalive_idle,
        }
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
    permit: OwnedSemaphorePermit,
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
pub(super) async fn serve_http<I>(
    io: WatchedIo<I>,
    info: ConnectionInfo,
    tls: Option<TlsListener>,
    shared: Arc<Shared>,
    protocols: &Protocols,
    shutdown: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let remote = info.remote;
    let protocol = io.protocol;
    let activity = io.activity.clone();
    let counters = io.counters.clone();
    let metrics = shared.metrics.clone();
    let io = TokioIo::new(io);
    let info = Arc::new(info);
    let recorded = (activity.clone(), info.clone());
    let service = service_fn(move |mut request: Request<Incoming>| {
        if request.version() == Version::HTTP_2 {
            host_from_authority(&mut request);
        }
        // Only the proxy says which client certificate was presented.
        set_client_cert_header(request.headers_mut(), info.client_cert_subject.as_ref());
        let guard = RequestGuard::start(&activity);
        let shared = shared.clone();
        let info = info.clone();
        let tls = tls.clone();
        async move {
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
        }
    });
    let result = match protocol {
        Protocol::Http1 => {
            let conn = protocols
                .http1
                .serve_connection(io, service)
                .with_upgrades();
            until_shutdown(conn, |c| c.graceful_shutdown(), shutdown).await
        }
        Protocol::Http2 => {
            let conn = protocols.http2.serve_connection(io, service);
            until_shutdown(conn, |c| c.graceful_shutdown(), shutdown).await
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

/// A connection's requests, as its [`WatchedIo`] needs to know them.
#[derive(Debug, Default)]
struct Activity {
    /// Requests whose response has not been sent completely.
    in_flight: AtomicUsize,
    /// Requests started so far.
    started: AtomicU64,
    /// The connection was upgraded (`101 Switching Protocols`): no more timers.
    upgraded: AtomicBool,
    /// A request head began but did not arrive in time: the connection answered 408.
    head_timed_out: AtomicBool,
    /// The reader, woken when the last request in flight ends, so that it arms the idle timer.
    reader: AtomicWaker,
}

/// Counts a request as in flight until dropped (with its response body, or earlier if the
/// request is abandoned).
struct RequestGuard(Arc<Activity>);

impl RequestGuard {
    fn start(activity: &Arc<Activity>) -> Self {
        activity.started.fetch_add(1, Ordering::AcqRel);
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        RequestGuard(activity.clone())
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.reader.wake();
        }
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request counted as in flight until it is done.
    struct TrackedBody<B> {
        #[pin]
        body: B,
        _guard: RequestGuard,
    }
}

impl<B: Body<Data = Bytes>> Body for TrackedBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.project().body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// Where a connection is between requests, as [`WatchedIo`] sees it.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// A request head is expected (`got_bytes`: part of it arrived) since `since`.
    Head { since: Instant, got_bytes: bool },
    /// No request in flight and no bytes since `since`.
    Idle { since: Instant },
    /// A request is in flight.
    Busy,
    /// Upgraded: the bytes are no longer HTTP.
    Upgraded,
}

/// The answer to a request head that did not arrive in time.
const REQUEST_TIMEOUT: &[u8] =
    b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\ncontent-length: 0\r\n\r\n";

/// A connection's byte stream with its head and idle timers (see the module docs). When a timer
/// expires, reads return end-of-file, which makes hyper close the connection.
pub(super) struct WatchedIo<I> {
    inner: I,
    protocol: Protocol,
    activity: Arc<Activity>,
    phase: Phase,
    /// `activity.started` when the phase was last updated.
    seen_started: u64,
    pub(super) header_read_timeout: Duration,
    keepalive_idle: Duration,
    timer: Option<Pin<Box<Sleep>>>,
    timer_deadline: Option<Instant>,
    /// hyper has bytes it could not write yet (a 408 must not cut into them).
    write_pending: bool,
    expired: bool,
    /// The connection's place under `max_connections`, given back when the stream is dropped.
    _permit: OwnedSemaphorePermit,
    /// The connection counted open on its listener until the stream is dropped.
    _open: OpenConnection,
    /// The listener's counters (bytes read and written).
    counters: Arc<ListenerCounters>,
}

impl<I: AsyncRead + AsyncWrite + Unpin> WatchedIo<I> {
    pub(super) fn new(
        inner: I,
        protocol: Protocol,
        permit: OwnedSemaphorePermit,
        open: OpenConnection,
        protocols: &Protocols,
    ) -> Self {
        let now = Instant::now();
        let counters = open.shared_counters();
        WatchedIo {
            inner,
            protocol,
            activity: Arc::default(),
            phase: match protocol {
                Protocol::Http1 => Phase::Head {
                    since: now,
                    got_bytes: false,
                },
                Protocol::Http2 => Phase::Idle { since: now },
            },
            seen_started: 0,
            header_read_timeout: protocols.header_read_timeout,
            keepalive_idle: protocols.keepalive_idle,
            timer: None,
            timer_deadline: None,
            write_pending: false,
            expired: false,
            _permit: permit,
            _open: open,
            counters,
        }
    }

    /// Brings the phase up to date with the requests.
    fn refresh(&mut self) {
        if matches!(self.phase, Phase::Upgraded) {
            return;
        }
        if self.activity.upgraded.load(Ordering::Acquire) {
            self.phase = Phase::Upgraded;
            return;
        }
        let started = self.activity.started.load(Ordering::Acquire);
        if self.activity.in_flight.load(Ordering::Acquire) > 0 {
            self.phase = Phase::Busy;
        } else if started != self.seen_started || matches!(self.phase, Phase::Busy) {
            self.phase = Phase::Idle {
                since: Instant::now(),
            };
        }
        self.seen_started = started;
    }

    fn on_bytes(&mut self) {
        self.refresh();
        match self.phase {
            Phase::Idle { .. } if self.protocol == Protocol::Http1 => {
                self.phase = Phase::Head {
                    since: Instant::now(),
                    got_bytes: true,
                }
            }
            Phase::Head { since, .. } => {
                self.phase = Phase::Head {
                    since,
                    got_bytes: true,
                }
            }
            _ => {}
        }
    }

    /// Called when a read would block: arms the phase's timer, or acts on its expiry.
    fn poll_deadline(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.refresh();
        let deadline = match self.phase {
            Phase::Head { since, .. } => since + self.header_read_timeout,
            Phase::Idle { since } => since + self.keepalive_idle,
            Phase::Busy => {
                // Woken when the last request ends, to arm the idle timer.
                self.activity.reader.register(cx.waker());
                // It may have ended between the check and the registration.
                if self.activity.in_flight.load(Ordering::Acquire) == 0 {
                    cx.waker().wake_by_ref();
                }
                return Poll::Pending;
            }
            Phase::Upgraded => return Poll::Pending,
        };
        let timer = match &mut self.timer {
            Some(timer) => {
                if self.timer_deadline != Some(deadline) {
                    timer.as_mut().reset(deadline);
                }
                timer
            }
            None => self
                .timer
                .insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        self.timer_deadline = Some(deadline);
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.expire(cx);
        Poll::Ready(Ok(()))
    }

    fn expire(&mut self, cx: &mut Context<'_>) {
        self.expired = true;
        match self.phase {
            Phase::Head {
                got_bytes: true, ..
            } if !self.write_pending => {
                tracing::debug!("request head not received in time: 408");
                self.activity.head_timed_out.store(true, Ordering::Release);
                // Best effort: the socket's buffer is empty, so this normally completes at once.
                if let Poll::Ready(Ok(_)) =
                    Pin::new(&mut self.inner).poll_write(cx, REQUEST_TIMEOUT)
                {
                    let _ = Pin::new(&mut self.inner).poll_flush(cx);
                }
            }
            Phase::Head { .. } => tracing::debug!("no request head in time: closing"),
            _ => tracing::debug!("idle keep-alive connection: closing"),
        }
    }

    fn track_write<T>(&mut self, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if poll.is_pending() {
            self.write_pending = true;
        }
        poll
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> AsyncRead for WatchedIo<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.expired {
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let read = buf.filled().len() - before;
                if read > 0 {
                    this.counters.received(read);
                    this.on_bytes();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => this.poll_deadline(cx),
        }
    }
}

impl<I: AsyncRead + AsyncWrite + Unpin> AsyncWrite for WatchedIo<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(written)) = poll {
            this.counters.sent(written);
        }
        this.track_write(poll)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(written)) = poll {
            this.counters.sent(written);
        }
        this.track_write(poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_flush(cx);
        if let Poll::Ready(Ok(())) = poll {
            this.write_pending = false;
        }
        this.track_write(poll)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
