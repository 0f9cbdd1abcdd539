//! The HTTP/1 driver of a client connection: runs hyper's HTTP/1 connection on the stream and
//! takes the stream back from it when the connection has been idle for
//! `keepalive_release_after`, so that an idle keep-alive connection holds no HTTP state and no
//! buffers (hyper keeps an 8 KiB read and an 8 KiB write buffer per connection for as long as it
//! serves it). A parked connection waits for the socket to become readable (or its idle timer,
//! or shutdown), then gets a new hyper connection, fed first with any bytes the old one had
//! read but not parsed: nothing the client sent is lost. A new connection is parked from the
//! start: hyper's state is made when its first bytes arrive.
//!
//! Because the driver takes the stream back from hyper, it also performs upgrades: after a
//! `101` the stream (with the bytes read after the request) goes to the upgrade's splice
//! through [`Activity::hand_over`].
//!
//! TLS connections are served the same way but never parked (see
//! [`ClientStream::can_release`]).

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Request, Response};
use hyper::body::{Body, Incoming};
use hyper::service::HttpService;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

use super::connection::{stopped, Protocols};
use super::prefixed::Prefixed;
use super::watched_io::{ClientStream, WatchedIo};

/// How long closing a finished connection may take (flushing and shutting down the socket).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

/// Serves HTTP/1 on `io` until the connection closes or shutdown asks it to.
pub(super) async fn serve_http1<I, S, B>(
    mut io: WatchedIo<I>,
    service: S,
    protocols: &Protocols,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), hyper::Error>
where
    I: ClientStream,
    S: HttpService<Incoming, ResBody = B> + Clone + Unpin,
    S::Future: Unpin,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    Request<Incoming>: Send,
    Response<B>: Send,
{
    let activity = io.activity.clone();
    let mut leftover = Bytes::new();
    loop {
        if leftover.is_empty() && io.can_park() && !io.wait_for_bytes(&mut shutdown).await {
            close(io).await;
            return Ok(());
        }
        let stream = TokioIo::new(Prefixed::new(std::mem::take(&mut leftover), io));
        // Boxed: hyper's state lives on the heap only while the connection is served, not in
        // the connection's task while it is parked.
        let mut conn = Box::new(protocols.http1.serve_connection(stream, service.clone()));
        let mut stop = std::pin::pin!(stopped(&mut shutdown));
        // `released`: hyper gave the stream back because the connection was idle (park it);
        // otherwise the connection is done (client closed, keep-alive off, upgrade, shutdown).
        let (mut graceful, mut released) = (false, false);
        let result = poll_fn(|cx| {
            if !graceful && stop.as_mut().poll(cx).is_ready() {
                graceful = true;
                Pin::new(&mut *conn).graceful_shutdown();
            }
            loop {
                match conn.poll_without_shutdown(cx) {
                    Poll::Ready(result) => return Poll::Ready(result),
                    Poll::Pending if !graceful && activity.take_release() => {
                        // Idle (no request in flight, nothing to write, no bytes since the
                        // last response): hyper closes its side at once and returns the stream.
                        graceful = true;
                        released = true;
                        Pin::new(&mut *conn).graceful_shutdown();
                    }
                    Poll::Pending => return Poll::Pending,
                }
            }
        })
        .await;
        result?;
        let parts = conn.into_parts();
        let (unread, watched) = parts.io.into_inner().into_parts();
        leftover = join(parts.read_buf, unread);
        io = watched;
        if activity.upgraded.load(std::sync::atomic::Ordering::Acquire) {
            activity.hand_over(Box::new(Prefixed::new(leftover, io)));
            return Ok(());
        }
        if !released {
            close(io).await;
            return Ok(());
        }
    }
}

/// The bytes hyper read but did not parse, then those it did not read yet. An empty result
/// holds no memory (an empty slice of hyper's read buffer would keep the whole buffer alive
/// while the connection is parked).
fn join(read: Bytes, unread: Bytes) -> Bytes {
    if read.is_empty() {
        return if unread.is_empty() {
            Bytes::new()
        } else {
            unread
        };
    }
    // Copied out, not sliced: a slice would keep hyper's whole read buffer alive.
    let mut both = BytesMut::with_capacity(read.len() + unread.len());
    both.extend_from_slice(&read);
    both.extend_from_slice(&unread);
    both.freeze()
}

/// Flushes and shuts down the stream, within [`CLOSE_TIMEOUT`].
async fn close<I: ClientStream>(mut io: WatchedIo<I>) {
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, io.inner_mut().shutdown()).await;
}
