//! The backend connector: hyper-util's [`HttpConnector`] wrapped so that each new connection
//! remembers how long it took to open. The time travels as a [`Connected`] extra into the
//! extensions of every response on that connection, and only the first response to ask for it
//! ([`ConnectTime::take`]) gets it: later requests reuse the pooled connection and report 0.
//!
//! It also bounds the time a connect may take. The limit is per upstream while the client is
//! shared, so the request path states it with [`with_connect_timeout`] around the client's
//! request future: hyper-util calls the connector from inside that future (when no pooled
//! connection is ready at once), and [`TimedConnector`] reads the limit there, falling back to
//! the proxy's default. A connect over the limit fails like a refused one (a connect error).

use std::future::Future;
use std::io::IoSlice;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tower_service::Service;

use crate::metrics::{micros, MetricKind, Metrics};

/// The time a connection took to open, readable once.
#[derive(Debug, Clone)]
pub(crate) struct ConnectTime {
    micros: u64,
    taken: Arc<AtomicBool>,
}

impl ConnectTime {
    fn new(elapsed: Duration) -> Self {
        ConnectTime {
            micros: micros(elapsed),
            taken: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The connect time in microseconds the first time, 0 afterwards.
    pub(crate) fn take(&self) -> u64 {
        if self.taken.swap(true, Ordering::Relaxed) {
            0
        } else {
            self.micros
        }
    }
}

tokio::task_local! {
    /// The connect timeout of the request being sent (see [`with_connect_timeout`]).
    static CONNECT_TIMEOUT: Duration;
}

/// Runs `sending` (a backend client's request future) with connects bounded by `limit`.
pub(crate) async fn with_connect_timeout<F: Future>(limit: Duration, sending: F) -> F::Output {
    CONNECT_TIMEOUT.scope(limit, sending).await
}

/// A connect that took longer than its limit.
#[derive(Debug, thiserror::Error)]
#[error("connect timed out after {0:?}")]
pub(crate) struct ConnectTimedOut(pub(crate) Duration);

/// An [`HttpConnector`] that bounds the time connects take and times new connections while
/// `metrics` wants request records (read at each connect: exporters can change while serving).
#[derive(Debug, Clone)]
pub(crate) struct TimedConnector {
    inner: HttpConnector,
    metrics: Metrics,
    /// The limit when the request states none ([`with_connect_timeout`]).
    default_timeout: Duration,
}

impl TimedConnector {
    pub(crate) fn new(inner: HttpConnector, metrics: Metrics, default_timeout: Duration) -> Self {
        TimedConnector {
            inner,
            metrics,
            default_timeout,
        }
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Service<Uri> for TimedConnector {
    type Response = TimedConn;
    type Error = BoxError;
    type Future = BoxFuture<'static, Result<TimedConn, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let limit = CONNECT_TIMEOUT
            .try_with(|limit| *limit)
            .unwrap_or(self.default_timeout);
        let timed = self.metrics.wants(MetricKind::Request);
        let started = timed.then(Instant::now);
        let connecting = self.inner.call(uri);
        Box::pin(async move {
            let io = match tokio::time::timeout(limit, connecting).await {
                Ok(connected) => connected?,
                Err(_) => return Err(ConnectTimedOut(limit).into()),
            };
            Ok(TimedConn {
                io,
                connect: started.map(|s| ConnectTime::new(s.elapsed())),
            })
        })
    }
}

/// A backend connection carrying its [`ConnectTime`].
#[derive(Debug)]
pub(crate) struct TimedConn {
    io: TokioIo<TcpStream>,
    connect: Option<ConnectTime>,
}

impl Connection for TimedConn {
    fn connected(&self) -> Connected {
        let connected = self.io.connected();
        match &self.connect {
            Some(time) => connected.extra(time.clone()),
            None => connected,
        }
    }
}

impl Read for TimedConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<Result<(), std::io::Error>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl Write for TimedConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<Result<usize, std::io::Error>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), std::io::Error>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<(), std::io::Error>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<Result<usize, std::io::Error>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
}
