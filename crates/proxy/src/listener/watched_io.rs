//! A client connection's byte stream with its timers ([`WatchedIo`]): the request head timer,
//! the idle keep-alive timer, and, for HTTP/1 on plain TCP, the moment an idle connection gives
//! back its buffers (the driver in `http1` parks it). [`ClientStream`] says which streams can
//! be parked.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};
use tokio_rustls::server::TlsStream;

use super::activity::Activity;
use super::connection::{Protocol, Protocols};
use crate::client_limits::ConnectionPermit;
use crate::metrics::listener_stats::{ListenerCounters, OpenConnection};

/// A client's byte stream: plain TCP or TLS.
pub(super) trait ClientStream: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Whether an idle connection on this stream can be parked: waiting for the socket to be
    /// readable then means the client sent something. Not for TLS, whose library may hold
    /// bytes already read from the socket.
    fn can_release(&self) -> bool;
    /// Ready when the stream has something to read (or an error).
    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

impl ClientStream for TcpStream {
    fn can_release(&self) -> bool {
        true
    }

    fn poll_read_ready(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        TcpStream::poll_read_ready(self, cx)
    }
}

impl ClientStream for TlsStream<TcpStream> {
    fn can_release(&self) -> bool {
        false
    }

    fn poll_read_ready(&self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Pending
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
    pub(super) protocol: Protocol,
    pub(super) activity: Arc<Activity>,
    phase: Phase,
    /// `activity.started` when the phase was last updated.
    seen_started: u64,
    pub(super) header_read_timeout: Duration,
    keepalive_idle: Duration,
    /// An idle HTTP/1 connection gives back its buffers after this long (see `http1`).
    release_after: Duration,
    /// The start of the idle period whose buffers were given back already.
    released_for: Option<Instant>,
    timer: Option<Pin<Box<Sleep>>>,
    timer_deadline: Option<Instant>,
    /// hyper has bytes it could not write yet (a 408 must not cut into them).
    write_pending: bool,
    expired: bool,
    /// The connection's place under `max_connections` (and its client's under
    /// `max_connections_per_client`), given back when the stream is dropped.
    _permit: ConnectionPermit,
    /// The connection counted open on its listener until the stream is dropped.
    _open: OpenConnection,
    /// The listener's counters (bytes read and written).
    pub(super) counters: Arc<ListenerCounters>,
}

impl<I: ClientStream> WatchedIo<I> {
    pub(super) fn new(
        inner: I,
        protocol: Protocol,
        permit: ConnectionPermit,
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
            release_after: protocols.keepalive_release_after,
            released_for: None,
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
            Phase::Idle { since } if self.may_release(since) => {
                // (Released before the idle timer could close it: see `may_release`.)
                if self.poll_timer(since + self.release_after, cx).is_pending() {
                    return Poll::Pending;
                }
                // Idle long enough: the driver parks the connection, without its buffers.
                self.released_for = Some(since);
                self.activity.ask_release(self.seen_started);
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
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
        if self.poll_timer(deadline, cx).is_pending() {
            return Poll::Pending;
        }
        self.expire(cx);
        Poll::Ready(Ok(()))
    }

    /// Whether the connection, idle since `since`, may still give back its buffers: HTTP/1 on a
    /// stream that can wait for readiness, not released yet in this idle period, nothing left to
    /// write, and released before the idle timer would close it.
    fn may_release(&self, since: Instant) -> bool {
        self.protocol == Protocol::Http1
            && self.inner.can_release()
            && !self.write_pending
            && self.released_for != Some(since)
            && self.release_after < self.keepalive_idle
    }

    /// Polls the timer set to `deadline` (arming it first).
    fn poll_timer(&mut self, deadline: Instant, cx: &mut Context<'_>) -> Poll<()> {
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
        timer.as_mut().poll(cx)
    }

    /// While the connection is parked (no HTTP state, no buffers): waits until the client sends
    /// something (`true`), or until the phase's timer expires or shutdown is asked for
    /// (`false`: close the connection).
    pub(super) async fn wait_for_bytes(&mut self, shutdown: &mut watch::Receiver<bool>) -> bool {
        self.refresh();
        let deadline = match self.phase {
            Phase::Head { since, .. } => since + self.header_read_timeout,
            Phase::Idle { since } => since + self.keepalive_idle,
            Phase::Busy | Phase::Upgraded => return true,
        };
        let _parked = self.counters.parked();
        // Readable, or an error that the next read reports: serve (`true`). The timer: close.
        let readable = std::future::poll_fn(|cx| {
            if self.inner.poll_read_ready(cx).is_ready() {
                return Poll::Ready(true);
            }
            self.poll_timer(deadline, cx).map(|()| false)
        });
        tokio::select! {
            biased;
            ready = readable => {
                if !ready {
                    tracing::debug!("idle connection: closing");
                }
                ready
            }
            _ = super::connection::stopped(shutdown) => false,
        }
    }

    /// Whether this connection can wait for its client without hyper's state (see
    /// [`ClientStream::can_release`]).
    pub(super) fn can_park(&self) -> bool {
        self.protocol == Protocol::Http1 && self.inner.can_release()
    }

    /// The byte stream, for closing it.
    pub(super) fn inner_mut(&mut self) -> &mut I {
        &mut self.inner
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

impl<I: ClientStream> AsyncRead for WatchedIo<I> {
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

impl<I: ClientStream> AsyncWrite for WatchedIo<I> {
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
