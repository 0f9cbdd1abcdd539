//! What a connection's timers and its HTTP/1 driver know about its requests ([`Activity`]):
//! how many are in flight ([`RequestGuard`], held by each response's [`TrackedBody`] until the
//! body is done), whether one upgraded the connection (and where the connection goes then),
//! whether the head timer fired, and whether the idle connection should give back its buffers.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::task::AtomicWaker;
use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::oneshot;

use crate::upgrade::{ClientConnection, ClientUpgrade};

/// A connection's requests, as its [`WatchedIo`](super::watched_io::WatchedIo) and its
/// HTTP/1 driver need to know them.
#[derive(Default)]
pub(super) struct Activity {
    /// Requests whose response has not been sent completely.
    pub(super) in_flight: AtomicUsize,
    /// Requests started so far.
    pub(super) started: AtomicU64,
    /// The connection was upgraded (`101 Switching Protocols`): no more timers.
    pub(super) upgraded: AtomicBool,
    /// A request head began but did not arrive in time: the connection answered 408.
    pub(super) head_timed_out: AtomicBool,
    /// The reader, woken when the last request in flight ends, so that it arms the idle timer.
    pub(super) reader: AtomicWaker,
    /// The connection has been idle long enough to give back its buffers: the HTTP/1 driver
    /// takes this and parks the connection. Holds `started + 1` as it was when the timer fired
    /// (0: not asked), so that a request begun since makes the request stale.
    pub(super) release: AtomicU64,
    /// Where the HTTP/1 driver sends the client's connection after a `101` (set by the request
    /// that asks to upgrade).
    pub(super) client_upgrade: Mutex<Option<oneshot::Sender<ClientConnection>>>,
}

impl std::fmt::Debug for Activity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Activity")
            .field("in_flight", &self.in_flight)
            .field("started", &self.started)
            .field("upgraded", &self.upgraded)
            .finish_non_exhaustive()
    }
}

impl Activity {
    /// Readies the hand-over of the connection for a request that asks to upgrade: the
    /// returned extension resolves to the client's connection once the `101` is written.
    pub(super) fn expect_upgrade(&self) -> ClientUpgrade {
        let (tx, rx) = oneshot::channel();
        *self
            .client_upgrade
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(tx);
        ClientUpgrade::new(rx)
    }

    /// Asks the HTTP/1 driver to park the connection, idle since `started` requests began.
    pub(super) fn ask_release(&self, started: u64) {
        self.release
            .store(started.wrapping_add(1), Ordering::Release);
    }

    /// Whether the timers asked for the idle connection's buffers back and it is still idle:
    /// no request in flight and none begun since (clearing the request). A request that began
    /// in between (e.g. the client's bytes arrived as the timer fired, and hyper read them)
    /// keeps the connection: parking it then would have hyper close with a pipelined request
    /// still in its buffer.
    pub(super) fn take_release(&self) -> bool {
        let asked = self.release.swap(0, Ordering::AcqRel);
        asked != 0
            && asked == self.started.load(Ordering::Acquire).wrapping_add(1)
            && self.in_flight.load(Ordering::Acquire) == 0
    }

    /// Hands the client's connection to the upgrade's splice (nothing when no upgrade waits).
    pub(super) fn hand_over(&self, connection: ClientConnection) {
        let sender = self
            .client_upgrade
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(sender) = sender {
            let _ = sender.send(connection);
        }
    }
}

/// Counts a request as in flight until dropped (with its response body, or earlier if the
/// request is abandoned).
pub(super) struct RequestGuard(pub(super) Arc<Activity>);

impl RequestGuard {
    pub(super) fn start(activity: &Arc<Activity>) -> Self {
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
    pub(super) struct TrackedBody<B> {
        #[pin]
        pub(super) body: B,
        pub(super) _guard: RequestGuard,
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{Activity, RequestGuard};

    #[test]
    fn a_release_asked_while_idle_is_taken_once() {
        let activity = Arc::new(Activity::default());
        assert!(!activity.take_release());
        activity.ask_release(0);
        assert!(activity.take_release());
        assert!(!activity.take_release());
    }

    #[test]
    fn a_request_begun_after_the_release_was_asked_keeps_the_connection() {
        // The client's next (pipelined) request arrived as the idle timer fired: hyper holds it,
        // so parking now would lose what hyper read.
        let activity = Arc::new(Activity::default());
        activity.ask_release(0);
        let guard = RequestGuard::start(&activity);
        assert!(!activity.take_release());
        // Not even once that request is done: it was asked for an idle period that is over.
        activity.ask_release(0);
        drop(guard);
        assert!(!activity.take_release());
        activity.ask_release(1);
        assert!(activity.take_release());
    }
}
