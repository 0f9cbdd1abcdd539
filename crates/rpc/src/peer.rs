//! A bidirectional, pipelined JSON-RPC connection.
//!
//! A [`Peer`] owns one connection (any `AsyncRead + AsyncWrite`, in practice a Unix socket) and two
//! tasks: a reader that parses each line and either completes a pending call (by id) or hands an
//! incoming request to the [`Handler`] on its own task; and a writer that takes every queued line
//! and writes them with a single flush. Calls from many tasks share the connection; each has its
//! own timeout. When the connection ends, for any reason, every pending call fails at once with
//! [`CallError::Closed`] and later calls fail immediately.
//!
//! A response is matched to its call by id. One whose id we issued but no longer wait for (the
//! call timed out, or its caller went away) is a *late response*: logged at debug and counted in
//! [`PeerStats::late_responses`]. One whose id we never issued is an *unknown id*. With
//! [`PeerConfig::close_on_violation`], an unknown id or a line that is not a JSON-RPC message
//! (after its parse error is answered) closes the connection with
//! [`CloseReason::ProtocolViolation`]; without it, both are logged, counted and ignored.
//!
//! With [`PeerConfig::busy_poll`], a peer served over a Unix socket ([`Peer::spawn_unix`])
//! busy-polls its socket for a bounded time instead of sleeping while one call waits for its
//! answer, or right after it answered (see [`crate::busy_poll`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::value::RawValue;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio_util::codec::{FramedRead, LinesCodecError};
use tokio_util::sync::CancellationToken;

use crate::busy_poll::{BusyPollReader, BusyPollStats, SpinGate, SpinOutcome, SpinState};
use crate::error::{codes, error_object, CallError, ErrorObject};
use crate::framing;
use crate::message::{self, Message, RequestId};
use crate::methods::Method;

/// What a handler answers to a request: a raw JSON result or an error object.
pub type Reply = Result<Box<RawValue>, ErrorObject>;

/// A request the other side sent us.
#[derive(Debug)]
pub struct IncomingRequest {
    /// The method called.
    pub method: String,
    /// The params, as raw JSON, if any.
    pub params: Option<Box<RawValue>>,
    /// The connection it arrived on, to call back through if needed.
    pub peer: Peer,
}

impl IncomingRequest {
    /// Reads the params as `T`; missing params read as `{}`. Errors are `invalid params` objects
    /// ready to be returned.
    pub fn parse_params<T: DeserializeOwned>(&self) -> Result<T, ErrorObject> {
        let raw = self.params.as_deref().map_or("{}", RawValue::get);
        serde_json::from_str(raw).map_err(|e| {
            error_object(
                codes::INVALID_PARAMS,
                format!("invalid params for `{}`: {e}", self.method),
            )
        })
    }
}

/// A notification the other side sent us.
#[derive(Debug)]
pub struct IncomingNotification {
    /// The method called.
    pub method: String,
    /// The params, as raw JSON, if any.
    pub params: Option<Box<RawValue>>,
}

/// Answers the requests and notifications the other side sends.
///
/// Each request is handled on its own task, so a slow handler delays nothing else.
pub trait Handler: Send + Sync + 'static {
    /// Answers one request. The default answers `method not found`.
    fn handle_request(&self, request: IncomingRequest) -> BoxFuture<'static, Reply> {
        Box::pin(async move {
            Err(error_object(
                codes::METHOD_NOT_FOUND,
                format!("method not found: {}", request.method),
            ))
        })
    }

    /// Runs once the reply to a request is queued for writing: anything sent on `peer` from here
    /// on reaches the other side after that reply. Use it to act on a request only once its
    /// answer is on its way (e.g. start calling a plugin after answering its handshake, or close
    /// the connection after answering `stop`). The default does nothing.
    fn after_reply(&self, method: &str, succeeded: bool, peer: &Peer) {
        let _ = (method, succeeded, peer);
    }

    /// Receives one notification. The default ignores it.
    fn handle_notification(&self, notification: IncomingNotification) {
        tracing::debug!(method = %notification.method, "ignoring notification");
    }
}

/// A handler that answers every request with `method not found`.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoHandler;

impl Handler for NoHandler {}

/// Settings of one connection.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// Longest line accepted or sent, in bytes. A longer incoming line ends the connection.
    pub max_line_bytes: usize,
    /// Most incoming requests handled at once; the reader waits when this many are running.
    pub max_incoming_in_flight: usize,
    /// Capacity of the write queue, in lines; callers wait when it is full.
    pub write_queue: usize,
    /// A name for log lines (e.g. the plugin's name).
    pub name: String,
    /// Close the connection on a protocol violation by the other side: a line that is not a
    /// JSON-RPC message (answered with its parse error first), or a response whose id we never
    /// issued (a numeric id we have not used yet, or an id that is not a number). Late responses
    /// are not violations. Default false: violations are logged, counted and ignored.
    pub close_on_violation: bool,
    /// The opt-in low-latency mode: when a read finds nothing, keep trying non-blocking reads
    /// for at most this long instead of going to sleep, while it is worth it: while exactly
    /// one call this peer made waits for its answer (never with none, and not under load, when
    /// more are or were outstanding: see [`crate::busy_poll::MAX_OUTSTANDING_TO_SPIN`]), or right after
    /// it wrote the answer to a request that came alone, with no request left to answer
    /// (waiting for the next one; not after requests that overlapped, a sign of load). After
    /// spins that found nothing, the next chances are skipped, more after each (see
    /// [`crate::busy_poll::SpinState::arm_after_write`]). Each spin
    /// holds the thread it runs on for up to this long. Only [`Peer::spawn_unix`] spins;
    /// `None` or zero (the default): never.
    pub busy_poll: Option<Duration>,
    /// Where this peer counts its spins ([`PeerStats::busy_poll`]); give several peers the same
    /// counters to add them up (e.g. every connection of one plugin). `None`: its own.
    pub busy_poll_stats: Option<Arc<BusyPollStats>>,
}

impl Default for PeerConfig {
    fn default() -> Self {
        PeerConfig {
            max_line_bytes: framing::DEFAULT_MAX_LINE_BYTES,
            max_incoming_in_flight: 1024,
            write_queue: 4096,
            name: "peer".to_owned(),
            close_on_violation: false,
            busy_poll: None,
            busy_poll_stats: None,
        }
    }
}

/// Counters of protocol violations and late answers by the other side, for supervision and
/// metrics.
#[derive(Debug, Default)]
pub struct PeerStats {
    /// Lines that were not JSON-RPC messages.
    pub invalid_lines: AtomicU64,
    /// Responses whose id we never issued (a violation), including successful responses with a
    /// null id.
    pub unknown_ids: AtomicU64,
    /// Responses to calls we made but no longer wait for (they timed out, or their caller went
    /// away). Not a violation.
    pub late_responses: AtomicU64,
    /// How the busy-poll spins ended ([`PeerConfig::busy_poll`]); shared with other peers if
    /// [`PeerConfig::busy_poll_stats`] said so.
    pub busy_poll: Arc<BusyPollStats>,
}

/// Why the connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CloseReason {
    /// The other side closed the connection.
    Eof,
    /// [`Peer::close`] was called.
    Local,
    /// The other side sent a line longer than the limit.
    LineTooLong,
    /// Reading or writing failed.
    Io(String),
    /// The other side broke the protocol (see [`PeerConfig::close_on_violation`] and
    /// [`Peer::close_for_violation`]); the text says how.
    ProtocolViolation(String),
    /// The other side stopped answering (e.g. its calls keep timing out); closed with
    /// [`Peer::close_with`]. Not a protocol violation; the text says how it was seen.
    Hung(String),
    /// The other side keeps answering calls it cannot have meant (e.g. results of the wrong
    /// shape, each failing its call); closed with [`Peer::close_with`]. Not a protocol
    /// violation; the text says how.
    Failing(String),
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CloseReason::Eof => f.write_str("closed by the other side"),
            CloseReason::Local => f.write_str("closed locally"),
            CloseReason::LineTooLong => f.write_str("a line over the length limit"),
            CloseReason::Io(e) => write!(f, "I/O error: {e}"),
            CloseReason::ProtocolViolation(what) => write!(f, "protocol violation: {what}"),
            CloseReason::Hung(why) => write!(f, "hung ({why})"),
            CloseReason::Failing(what) => write!(f, "failing ({what})"),
        }
    }
}

type PendingReply = oneshot::Sender<Reply>;

/// What the writer task is asked to do, in order.
enum Outgoing {
    /// Write this line (without `\n`).
    Line(String),
    /// Write everything queued before this, flush, then close the connection.
    CloseAfterFlush,
}

struct Pending {
    calls: HashMap<i64, PendingReply>,
    closed: bool,
}

struct Shared {
    config: PeerConfig,
    next_id: AtomicI64,
    pending: Mutex<Pending>,
    writes: mpsc::Sender<Outgoing>,
    shutdown: CancellationToken,
    close_reason: Mutex<Option<CloseReason>>,
    stats: PeerStats,
    /// `Some` in busy-poll mode.
    spin: Option<SpinState>,
}

impl Shared {
    /// Nothing queued for the writer (no permit taken either).
    fn write_queue_empty(&self) -> bool {
        self.writes.capacity() == self.writes.max_capacity()
    }

    /// Publishes the number of outstanding calls to the busy-poll gate, if any.
    fn outstanding_changed(&self, calls: usize) {
        if let Some(spin) = &self.spin {
            spin.set_outstanding(calls);
        }
    }
}

/// The busy-poll gate of a peer's reader: asks the peer's [`SpinState`].
struct PeerGate(Arc<Shared>);

impl SpinGate for PeerGate {
    fn start(&self) -> bool {
        let shared = &self.0;
        !shared.shutdown.is_cancelled()
            && shared
                .spin
                .as_ref()
                .is_some_and(|spin| spin.start(shared.write_queue_empty()))
    }

    fn keep_going(&self) -> bool {
        let shared = &self.0;
        !shared.shutdown.is_cancelled()
            && shared
                .spin
                .as_ref()
                .is_some_and(|spin| spin.keep_spinning(shared.write_queue_empty()))
    }

    fn record(&self, outcome: SpinOutcome) {
        if let Some(spin) = &self.0.spin {
            spin.record(outcome);
        }
    }
}

/// One end of a JSON-RPC connection. Cheap to clone; all clones share the connection.
#[derive(Clone)]
pub struct Peer {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("name", &self.shared.config.name)
            .finish()
    }
}

impl Peer {
    /// Starts serving a connection: spawns its reader and writer tasks on the current runtime.
    pub fn spawn<IO>(io: IO, handler: Arc<dyn Handler>, config: PeerConfig) -> Peer
    where
        IO: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (reader, writer) = tokio::io::split(io);
        Peer::spawn_halves(reader, writer, handler, config)
    }

    /// Starts serving a Unix socket. Same as [`Peer::spawn`], but the reader and the writer
    /// task own their half of the socket outright instead of sharing it behind a lock.
    pub fn spawn_unix(
        stream: tokio::net::UnixStream,
        handler: Arc<dyn Handler>,
        config: PeerConfig,
    ) -> Peer {
        let (reader, writer) = stream.into_split();
        let (peer, queue) = Peer::new(config, true);
        let Some(spin) = &peer.shared.spin else {
            peer.start(queue, reader, writer, handler);
            return peer;
        };
        let gate = PeerGate(peer.shared.clone());
        match BusyPollReader::new(reader, spin.budget, gate, spin.kick.clone()) {
            Ok(reader) => peer.start(queue, reader, writer, handler),
            Err((error, reader)) => {
                tracing::warn!(peer = %peer.name(), %error, "cannot busy-poll this connection: reading it the usual way");
                peer.start(queue, reader, writer, handler);
            }
        }
        peer
    }

    /// Starts serving a connection given as separate read and write halves.
    pub fn spawn_halves<R, W>(
        reader: R,
        writer: W,
        handler: Arc<dyn Handler>,
        config: PeerConfig,
    ) -> Peer
    where
        R: AsyncRead + Send + Unpin + 'static,
        W: AsyncWrite + Send + Unpin + 'static,
    {
        let (peer, queue) = Peer::new(config, false);
        peer.start(queue, reader, writer, handler);
        peer
    }

    /// A peer whose tasks are not started yet, and its write queue's receiving end. In busy-poll
    /// mode if its config asks for it and its reader `can_spin` (a Unix socket's).
    fn new(config: PeerConfig, can_spin: bool) -> (Peer, mpsc::Receiver<Outgoing>) {
        let (writes, queue) = mpsc::channel(config.write_queue.max(1));
        let busy_poll = config
            .busy_poll
            .filter(|budget| can_spin && !budget.is_zero());
        let busy_poll_stats = config.busy_poll_stats.clone().unwrap_or_default();
        let shared = Arc::new(Shared {
            next_id: AtomicI64::new(1),
            pending: Mutex::new(Pending {
                calls: HashMap::new(),
                closed: false,
            }),
            writes,
            shutdown: CancellationToken::new(),
            close_reason: Mutex::new(None),
            stats: PeerStats {
                busy_poll: busy_poll_stats.clone(),
                ..PeerStats::default()
            },
            spin: busy_poll.map(|budget| SpinState::new(budget, busy_poll_stats)),
            config,
        });
        (Peer { shared }, queue)
    }

    /// Spawns the reader and writer tasks on the current runtime.
    fn start<R, W>(
        &self,
        queue: mpsc::Receiver<Outgoing>,
        reader: R,
        writer: W,
        handler: Arc<dyn Handler>,
    ) where
        R: AsyncRead + Send + Unpin + 'static,
        W: AsyncWrite + Send + Unpin + 'static,
    {
        tokio::spawn(write_loop(self.clone(), writer, queue));
        tokio::spawn(read_loop(self.clone(), reader, handler));
    }

    /// Calls `method` on the other side and waits up to `timeout` for its result.
    pub async fn call<P, R>(
        &self,
        method: &str,
        params: &P,
        timeout: Duration,
    ) -> Result<R, CallError>
    where
        P: Serialize + ?Sized,
        R: DeserializeOwned,
    {
        let raw = self.call_raw(method, params, timeout).await?;
        serde_json::from_str(lenient_result(&raw)).map_err(|source| CallError::InvalidResult {
            method: method.to_owned(),
            source,
        })
    }

    /// Calls a typed [`Method`]. A `null` result reads as `{}`.
    pub async fn request<M: Method>(
        &self,
        params: &M::Params,
        timeout: Duration,
    ) -> Result<M::Result, CallError> {
        self.call(M::NAME, params, timeout).await
    }

    /// Calls `method` and returns its result as raw JSON (a `null` result as it came: see
    /// [`lenient_result`]).
    pub async fn call_raw<P>(
        &self,
        method: &str,
        params: &P,
        timeout: Duration,
    ) -> Result<Box<RawValue>, CallError>
    where
        P: Serialize + ?Sized,
    {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let line = message::encode_call(Some(&RequestId::Number(id)), method, params).map_err(
            |source| CallError::Encode {
                method: method.to_owned(),
                source,
            },
        )?;
        if line.len() > self.shared.config.max_line_bytes {
            return Err(CallError::TooLarge {
                method: method.to_owned(),
                bytes: line.len(),
                limit: self.shared.config.max_line_bytes,
            });
        }
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = self.pending();
            if pending.closed {
                return Err(CallError::Closed {
                    method: method.to_owned(),
                });
            }
            pending.calls.insert(id, tx);
            self.shared.outstanding_changed(pending.calls.len());
        }
        // Removes the pending entry however this future ends (timeout, caller dropped it).
        let guard = PendingGuard { peer: self, id };
        let outcome = tokio::time::timeout(timeout, async {
            if self.shared.writes.send(Outgoing::Line(line)).await.is_err() {
                return Err(CallError::Closed {
                    method: method.to_owned(),
                });
            }
            rx.await.map_err(|_| CallError::Closed {
                method: method.to_owned(),
            })
        })
        .await;
        drop(guard);
        match outcome {
            Err(_elapsed) => Err(CallError::Timeout {
                method: method.to_owned(),
                timeout,
            }),
            Ok(Err(e)) => Err(e),
            Ok(Ok(Ok(result))) => Ok(result),
            Ok(Ok(Err(error))) => Err(CallError::Remote {
                method: method.to_owned(),
                error,
            }),
        }
    }

    /// Sends a notification (no response expected). Waits only for room in the write queue.
    pub async fn notify<P: Serialize + ?Sized>(
        &self,
        method: &str,
        params: &P,
    ) -> Result<(), CallError> {
        let line =
            message::encode_call(None, method, params).map_err(|source| CallError::Encode {
                method: method.to_owned(),
                source,
            })?;
        if self.is_closed() {
            return Err(CallError::Closed {
                method: method.to_owned(),
            });
        }
        self.shared
            .writes
            .send(Outgoing::Line(line))
            .await
            .map_err(|_| CallError::Closed {
                method: method.to_owned(),
            })
    }

    /// Closes the connection: pending calls fail, queued writes already taken are flushed.
    pub fn close(&self) {
        self.finish(CloseReason::Local);
    }

    /// Closes the connection because the other side broke the protocol in a way only the caller
    /// can tell (e.g. a result of the wrong type): like [`Peer::close`], but the close reason is
    /// [`CloseReason::ProtocolViolation`] with `what`, and it is logged at warn.
    pub fn close_for_violation(&self, what: impl Into<String>) {
        let what = what.into();
        if !self.is_closed() {
            tracing::warn!(peer = %self.name(), violation = %what, "protocol violation: closing the connection");
        }
        self.finish(CloseReason::ProtocolViolation(what));
    }

    /// Closes the connection for `reason` (e.g. [`CloseReason::Hung`]): like [`Peer::close`],
    /// with that reason recorded. Logs nothing; the caller says why.
    pub fn close_with(&self, reason: CloseReason) {
        self.finish(reason);
    }

    /// Closes the connection once every line queued before this call is written and flushed
    /// (e.g. a reply just sent). Returns at once; [`Peer::closed`] tells when it is done.
    pub fn close_after_flush(&self) {
        if let Err(mpsc::error::TrySendError::Full(_)) =
            self.shared.writes.try_send(Outgoing::CloseAfterFlush)
        {
            // The queue is full: wait for room on a task of its own, so the caller never blocks.
            let peer = self.clone();
            tokio::spawn(async move {
                if peer
                    .shared
                    .writes
                    .send(Outgoing::CloseAfterFlush)
                    .await
                    .is_err()
                {
                    peer.close();
                }
            });
        }
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.shared.shutdown.is_cancelled()
    }

    /// Waits until the connection ends and tells why.
    pub async fn closed(&self) -> CloseReason {
        self.shared.shutdown.cancelled().await;
        self.close_reason().unwrap_or(CloseReason::Local)
    }

    /// Why the connection ended, if it has.
    pub fn close_reason(&self) -> Option<CloseReason> {
        lock(&self.shared.close_reason).clone()
    }

    /// Protocol violations seen from the other side so far.
    pub fn stats(&self) -> &PeerStats {
        &self.shared.stats
    }

    /// Calls currently waiting for a response.
    pub fn pending_calls(&self) -> usize {
        self.pending().calls.len()
    }

    /// The connection's name, as given in its config.
    pub fn name(&self) -> &str {
        &self.shared.config.name
    }

    fn pending(&self) -> MutexGuard<'_, Pending> {
        lock(&self.shared.pending)
    }

    /// Ends the connection once: records why, fails pending calls, stops both tasks.
    fn finish(&self, reason: CloseReason) {
        {
            let mut slot = lock(&self.shared.close_reason);
            if slot.is_none() {
                *slot = Some(reason);
            }
        }
        let calls = {
            let mut pending = self.pending();
            pending.closed = true;
            self.shared.outstanding_changed(0);
            std::mem::take(&mut pending.calls)
        };
        // Dropping the senders wakes every waiting call with `Closed`.
        drop(calls);
        self.shared.shutdown.cancel();
    }

    /// Hands a response to the call waiting for it. Returns a description of the violation if
    /// its id is one we never issued.
    fn complete(&self, id: Option<RequestId>, outcome: Reply) -> Result<(), String> {
        let n = match id {
            Some(RequestId::Number(n)) => n,
            Some(RequestId::String(s)) => {
                return Err(self.unknown_id(format!(
                    "a response with the string id {s:?}; ours are numbers"
                )));
            }
            None => {
                return match outcome {
                    // The other side could not read something we sent (e.g. a parse error):
                    // its own report, not a violation.
                    Err(error) => {
                        tracing::warn!(peer = %self.name(), %error, "the other side reported an error without an id");
                        Ok(())
                    }
                    Ok(_) => {
                        Err(self.unknown_id("a successful response with a null id".to_owned()))
                    }
                };
            }
        };
        let sender = {
            let mut pending = self.pending();
            let sender = pending.calls.remove(&n);
            self.shared.outstanding_changed(pending.calls.len());
            sender
        };
        if let Some(sender) = sender {
            // The caller may have given up in the meantime; nothing to do then.
            let _ = sender.send(outcome);
            return Ok(());
        }
        // Ids are taken before their line is queued, so every id sent is below `next_id`.
        if n > 0 && n < self.shared.next_id.load(Ordering::Acquire) {
            // A late answer to a call that timed out or whose caller went away (e.g. the HTTP
            // client disconnected).
            self.shared
                .stats
                .late_responses
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(peer = %self.name(), id = n, "ignoring a late response");
            return Ok(());
        }
        Err(self.unknown_id(format!(
            "a response with the id {n}, which was never issued"
        )))
    }

    /// Logs a violation that closes the connection and returns the close reason.
    fn violation(&self, what: String) -> CloseReason {
        tracing::warn!(peer = %self.name(), violation = %what, "protocol violation: closing the connection");
        CloseReason::ProtocolViolation(what)
    }

    fn unknown_id(&self, what: String) -> String {
        self.shared
            .stats
            .unknown_ids
            .fetch_add(1, Ordering::Relaxed);
        if !self.shared.config.close_on_violation {
            tracing::debug!(peer = %self.name(), "ignoring {what}");
        }
        what
    }

    async fn send_line(&self, line: String) {
        // Fails only once the connection is closed, when there is no one to tell.
        let _ = self.shared.writes.send(Outgoing::Line(line)).await;
    }

    async fn respond(&self, id: Option<RequestId>, outcome: Reply) {
        match message::encode_response(id.as_ref(), &outcome) {
            Ok(line) => self.send_line(line).await,
            Err(e) => {
                tracing::error!(peer = %self.name(), error = %e, "could not encode a response")
            }
        }
    }
}

/// The JSON text a result is read from: a `null` result reads as `{}` (the protocol accepts
/// `null` for an empty result, for every method).
pub fn lenient_result(raw: &RawValue) -> &str {
    let text = raw.get();
    if text.trim() == "null" {
        "{}"
    } else {
        text
    }
}

struct PendingGuard<'a> {
    peer: &'a Peer,
    id: i64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        let mut pending = self.peer.pending();
        if pending.calls.remove(&self.id).is_some() {
            self.peer.shared.outstanding_changed(pending.calls.len());
        }
    }
}

/// A request being answered, for the busy-poll gate: [`SpinState::answered`] when dropped.
struct Answering<'a>(&'a Peer);

impl Drop for Answering<'_> {
    fn drop(&mut self) {
        if let Some(spin) = &self.0.shared.spin {
            spin.answered();
        }
    }
}

/// Locks a mutex, recovering the data if a holder panicked (the data stays consistent: every
/// critical section here is a single map operation).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A connection's read buffer larger than this is released once it is empty.
const KEPT_READ_BUFFER: usize = 1 << 20;

async fn read_loop<R>(peer: Peer, reader: R, handler: Arc<dyn Handler>)
where
    R: AsyncRead + Send + Unpin + 'static,
{
    let mut lines = FramedRead::new(reader, framing::codec(peer.shared.config.max_line_bytes));
    let in_flight = Arc::new(Semaphore::new(
        peer.shared.config.max_incoming_in_flight.max(1),
    ));
    let reason = loop {
        let next = tokio::select! {
            biased;
            () = peer.shared.shutdown.cancelled() => break CloseReason::Local,
            next = lines.next() => next,
        };
        let line = match next {
            None => break CloseReason::Eof,
            Some(Ok(line)) => line,
            Some(Err(LinesCodecError::MaxLineLengthExceeded)) => {
                tracing::warn!(
                    peer = %peer.name(),
                    limit = peer.shared.config.max_line_bytes,
                    "line longer than the limit: closing the connection"
                );
                break CloseReason::LineTooLong;
            }
            Some(Err(LinesCodecError::Io(e))) => break CloseReason::Io(e.to_string()),
        };
        // After a large line (e.g. a batch of a whole registry), do not keep its buffer for the
        // connection's life.
        if lines.read_buffer().is_empty() && lines.read_buffer().capacity() > KEPT_READ_BUFFER {
            *lines.read_buffer_mut() = Default::default();
        }
        if line.trim().is_empty() {
            continue;
        }
        match Message::parse(&line) {
            Ok(Message::Response(response)) => {
                if let Err(what) = peer.complete(response.id, response.outcome) {
                    if peer.shared.config.close_on_violation {
                        break peer.violation(what);
                    }
                }
            }
            Ok(Message::Request(request)) => {
                let Ok(permit) = in_flight.clone().acquire_owned().await else {
                    break CloseReason::Local;
                };
                let peer = peer.clone();
                let handler = handler.clone();
                if let Some(spin) = &peer.shared.spin {
                    spin.answering();
                }
                tokio::spawn(async move {
                    // Tells the busy-poll gate once the answer is queued, however the task ends.
                    let _answering = Answering(&peer);
                    let id = request.id;
                    let incoming = IncomingRequest {
                        method: request.method,
                        params: request.params,
                        peer: peer.clone(),
                    };
                    let method = incoming.method.clone();
                    let outcome = handler.handle_request(incoming).await;
                    drop(permit);
                    let succeeded = outcome.is_ok();
                    peer.respond(Some(id), outcome).await;
                    handler.after_reply(&method, succeeded, &peer);
                });
            }
            Ok(Message::Notification(notification)) => {
                handler.handle_notification(IncomingNotification {
                    method: notification.method,
                    params: notification.params,
                });
            }
            Err(e) => {
                peer.shared
                    .stats
                    .invalid_lines
                    .fetch_add(1, Ordering::Relaxed);
                let shown: String = line.chars().take(200).collect();
                let strict = peer.shared.config.close_on_violation;
                if !strict {
                    tracing::warn!(peer = %peer.name(), error = %e, line = %shown, "ignoring a line that is not JSON-RPC");
                }
                let code = match e {
                    message::ParseError::Json(_) => codes::PARSE_ERROR,
                    message::ParseError::Invalid(_) => codes::INVALID_REQUEST,
                };
                let description = e.to_string();
                // Queued before the close: the writer takes what is queued before it stops.
                peer.respond(None, Err(error_object(code, description.clone())))
                    .await;
                if strict {
                    break peer.violation(format!("{description} (line: {shown})"));
                }
            }
        }
    };
    peer.finish(reason);
}

async fn write_loop<W>(peer: Peer, mut writer: W, mut queue: mpsc::Receiver<Outgoing>)
where
    W: AsyncWrite + Send + Unpin + 'static,
{
    const BATCH_LINES: usize = 256;
    let max_line = peer.shared.config.max_line_bytes;
    let mut lines = Vec::with_capacity(BATCH_LINES);
    let mut buffer: Vec<u8> = Vec::with_capacity(64 * 1024);
    loop {
        let received = tokio::select! {
            biased;
            received = queue.recv_many(&mut lines, BATCH_LINES) => received,
            () = peer.shared.shutdown.cancelled() => 0,
        };
        if received == 0 {
            break;
        }
        if let Some(spin) = &peer.shared.spin {
            spin.set_writing(true);
        }
        buffer.clear();
        let mut close_after = false;
        for outgoing in lines.drain(..) {
            let line = match outgoing {
                Outgoing::Line(line) => line,
                Outgoing::CloseAfterFlush => {
                    close_after = true;
                    break;
                }
            };
            if line.len() > max_line {
                tracing::error!(peer = %peer.name(), bytes = line.len(), limit = max_line, "dropping an outgoing line over the limit");
                continue;
            }
            buffer.extend_from_slice(line.as_bytes());
            buffer.push(b'\n');
        }
        let written = async {
            writer.write_all(&buffer).await?;
            writer.flush().await
        };
        if let Err(e) = written.await {
            peer.finish(CloseReason::Io(e.to_string()));
            break;
        }
        if close_after {
            peer.finish(CloseReason::Local);
            break;
        }
        if let Some(spin) = &peer.shared.spin {
            spin.set_writing(false);
            // A call or an answer just went out: let the reader spin for what comes back.
            if spin.arm_after_write(peer.shared.write_queue_empty()) {
                spin.kick.wake();
            }
        }
    }
    let _ = writer.shutdown().await;
}
