//! The bodies the proxy streams: [`RequestBody`] (the client's body on its way to a backend,
//! optionally counting bytes) and [`ProxyBody`] (the response on its way to the client, which
//! holds the backend's in-flight guard and, when metrics are on, the request's record until the
//! body has been sent or dropped).
//!
//! Bodies are only ever read into memory for a plugin that wants them ([`read_limited`], up to
//! `max_plugin_body`); then a request body is forwarded from memory ([`RequestBody::full`]), and a
//! response body either is sent from memory or, when it was too large, streams on with what was
//! read put back in front ([`ProxyBody::read_up_to`]).

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};

use crate::registry::InFlight;
use crate::timing::RequestRecord;

/// What [`read_limited`] read.
#[derive(Debug)]
pub(crate) enum LimitedRead {
    /// The whole body, at most the limit.
    Complete(Bytes),
    /// The body is longer than the limit: the data frames read so far (a little over it).
    Over(VecDeque<Bytes>),
}

/// Reads `body` to its end, unless its data passes `limit` bytes (trailers are dropped).
pub(crate) async fn read_limited<B>(body: &mut B, limit: usize) -> Result<LimitedRead, B::Error>
where
    B: Body<Data = Bytes> + Unpin,
{
    let mut chunks = VecDeque::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame?.into_data() else {
            continue;
        };
        total = total.saturating_add(data.len());
        chunks.push_back(data);
        if total > limit {
            return Ok(LimitedRead::Over(chunks));
        }
    }
    let bytes = match chunks.len() {
        0 => Bytes::new(),
        1 => chunks.pop_front().unwrap_or_default(),
        _ => {
            let mut joined = bytes::BytesMut::with_capacity(total);
            for chunk in chunks {
                joined.extend_from_slice(&chunk);
            }
            joined.freeze()
        }
    };
    Ok(LimitedRead::Complete(bytes))
}

/// The client's request body, forwarded to a backend: streamed (counting data bytes into
/// `counter` if set), or from memory after a plugin saw or replaced it.
#[derive(Debug)]
pub(crate) struct RequestBody {
    inner: RequestInner,
    counter: Option<Arc<AtomicU64>>,
}

#[derive(Debug)]
enum RequestInner {
    Streamed(Incoming),
    Full(Full<Bytes>),
}

impl RequestBody {
    pub(crate) fn new(inner: Incoming, counter: Option<Arc<AtomicU64>>) -> Self {
        RequestBody {
            inner: RequestInner::Streamed(inner),
            counter,
        }
    }

    /// A body with no data: stands in for a bodiless request that is sent again (a retry).
    pub(crate) fn empty() -> Self {
        RequestBody::full(Bytes::new())
    }

    /// A body from memory (its bytes were counted when they were read, if at all).
    pub(crate) fn full(bytes: Bytes) -> Self {
        RequestBody {
            inner: RequestInner::Full(Full::new(bytes)),
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
        let polled = match &mut this.inner {
            RequestInner::Streamed(body) => Pin::new(body).poll_frame(cx),
            RequestInner::Full(body) => Pin::new(body)
                .poll_frame(cx)
                .map_err(|never| match never {}),
        };
        if let (Some(counter), Poll::Ready(Some(Ok(frame)))) = (&this.counter, &polled) {
            if let Some(data) = frame.data_ref() {
                counter.fetch_add(data.len() as u64, Ordering::Relaxed);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            RequestInner::Streamed(body) => body.is_end_stream(),
            RequestInner::Full(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            RequestInner::Streamed(body) => body.size_hint(),
            RequestInner::Full(body) => body.size_hint(),
        }
    }
}

#[derive(Debug)]
enum Inner {
    /// A backend's body, streamed.
    Streamed(Incoming),
    /// A body the proxy or a plugin produced.
    Full(Full<Bytes>),
    /// A backend's body of which the first frames were read (for a plugin that wanted it, but
    /// it was too large): those frames, then the rest, streamed.
    Resumed {
        read: VecDeque<Bytes>,
        rest: Incoming,
    },
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

    /// Reads a backend's body into memory if it is at most `limit` bytes: `Ok(bytes)`, and
    /// this body is done (its in-flight guard released). A larger body is returned as `Err`,
    /// still streaming, with what was read put back in front. Other bodies are returned as they
    /// are.
    pub(crate) async fn read_up_to(
        mut self,
        limit: usize,
    ) -> Result<Result<Bytes, ProxyBody>, hyper::Error> {
        let Inner::Streamed(incoming) = &mut self.inner else {
            return Ok(Err(self));
        };
        match read_limited(incoming, limit).await? {
            LimitedRead::Complete(bytes) => Ok(Ok(bytes)),
            LimitedRead::Over(read) => {
                let empty = Inner::Full(Full::new(Bytes::new()));
                if let Inner::Streamed(rest) = std::mem::replace(&mut self.inner, empty) {
                    self.inner = Inner::Resumed { read, rest };
                }
                Ok(Err(self))
            }
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
        // Still holding the record: the body did not reach its end while being sent.
        if !self.is_end_stream() {
            if let Some(record) = self.record.as_mut() {
                record.response_cut();
            }
        }
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
            Inner::Resumed { read, rest } => match read.pop_front() {
                Some(data) => Poll::Ready(Some(Ok(Frame::data(data)))),
                None => Pin::new(rest).poll_frame(cx),
            },
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
            Inner::Resumed { read, rest } => read.is_empty() && rest.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Streamed(body) => body.size_hint(),
            Inner::Full(body) => body.size_hint(),
            Inner::Resumed { read, rest } => {
                let read: u64 = read.iter().map(|b| b.len() as u64).sum();
                let rest = rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(rest.lower().saturating_add(read));
                if let Some(upper) = rest.upper() {
                    hint.set_upper(upper.saturating_add(read));
                }
                hint
            }
        }
    }
}
