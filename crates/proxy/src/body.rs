//! The bodies the proxy streams: [`RequestBody`] (the client's body on its way to a backend,
//! optionally counting bytes) and [`ProxyBody`] (the response on its way to the client, which
//! holds the backend's in-flight guard and, when metrics are on, the request's record until the
//! body has been sent or dropped).

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Frame, Incoming, SizeHint};

use crate::registry::InFlight;
use crate::timing::RequestRecord;

/// The client's request body, forwarded to a backend; counts data bytes into `counter` if set.
/// An empty body (no `inner`) stands in for a bodiless request that is sent again (a retry).
#[derive(Debug)]
pub(crate) struct RequestBody {
    inner: Option<Incoming>,
    counter: Option<Arc<AtomicU64>>,
}

impl RequestBody {
    pub(crate) fn new(inner: Incoming, counter: Option<Arc<AtomicU64>>) -> Self {
        RequestBody {
            inner: Some(inner),
            counter,
        }
    }

    /// A body with no data.
    pub(crate) fn empty() -> Self {
        RequestBody {
            inner: None,
            counter: None,
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let Some(inner) = &mut this.inner else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(inner).poll_frame(cx);
        if let (Some(counter), Poll::Ready(Some(Ok(frame)))) = (&this.counter, &polled) {
            if let Some(data) = frame.data_ref() {
                counter.fetch_add(data.len() as u64, Ordering::Relaxed);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

#[derive(Debug)]
enum Inner {
    /// A backend's body, streamed.
    Streamed(Incoming),
    /// A body the proxy or a plugin produced.
    Full(Full<Bytes>),
}

/// The body of responses the proxy sends: a backend's streamed body, or a body the proxy or a
/// plugin produced.
#[derive(Debug)]
pub struct ProxyBody {
    inner: Inner,
    in_flight: Option<InFlight>,
    record: Option<Box<RequestRecord>>,
    bytes_out: u64,
}

impl ProxyBody {
    /// A backend's body; `in_flight` is released when the body ends or is dropped.
    pub(crate) fn streamed(body: Incoming, in_flight: Option<InFlight>) -> Self {
        ProxyBody {
            inner: Inner::Streamed(body),
            in_flight,
            record: None,
            bytes_out: 0,
        }
    }

    /// A complete body.
    pub(crate) fn full(bytes: impl Into<Bytes>) -> Self {
        ProxyBody {
            inner: Inner::Full(Full::new(bytes.into())),
            in_flight: None,
            record: None,
            bytes_out: 0,
        }
    }

    /// Records the request's metrics when the body ends or is dropped.
    pub(crate) fn set_record(&mut self, record: Box<RequestRecord>) {
        self.record = Some(record);
    }

    /// Releases the in-flight guard and records the request (once).
    fn finish(&mut self) {
        self.in_flight = None;
        if let Some(record) = self.record.take() {
            record.finish(self.bytes_out);
        }
    }
}

impl Drop for ProxyBody {
    fn drop(&mut self) {
        self.finish();
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let polled = match &mut this.inner {
            Inner::Streamed(body) => Pin::new(body).poll_frame(cx),
            Inner::Full(body) => Pin::new(body)
                .poll_frame(cx)
                .map_err(|never| match never {}),
        };
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.bytes_out += data.len() as u64;
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => this.finish(),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Streamed(body) => body.is_end_stream(),
            Inner::Full(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Streamed(body) => body.size_hint(),
            Inner::Full(body) => body.size_hint(),
        }
    }
}
