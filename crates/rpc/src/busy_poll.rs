//! Bounded busy-polling of a Unix socket's read side: the opt-in low-latency mode
//! ([`crate::PeerConfig::busy_poll`]).
//!
//! [`BusyPollReader`] wraps the read half of a Unix socket. Its `poll_read` first reads the
//! usual way (tokio's readiness); when that would block and its [`SpinGate`] says a spin is worth
//! it, it keeps trying non-blocking reads on a duplicate of the socket's descriptor (a real
//! `recv` each time, which tokio's cached readiness would skip), with
//! [`std::hint::spin_loop`] between tries, for at most its budget. Data found during the spin
//! is returned at once: the reader never went to sleep, so neither side paid a wake-up. When
//! the budget runs out (or the gate closes) it returns `Pending` like a plain read, its waker
//! already registered with the runtime, so the data still arrives later through the normal
//! wake-up.
//!
//! The spin blocks the thread it runs on and holds nothing else (no lock, no queue). The
//! budget is checked every [`TRIES_PER_CLOCK_CHECK`] tries, so a spin never runs much longer
//! than its budget, and it never spins twice in one `poll_read`.
//!
//! The reader also has a *kick*: an [`AtomicWaker`] holding its task's waker while it waits.
//! The peer's writer, after writing a call or an answer that makes a spin worth it, arms the
//! spin and wakes the reader through the kick ([`SpinState::arm_after_write`]), so the reader
//! polls again and starts spinning right then instead of sleeping until the answer (or the next
//! request) wakes it. Which spins are worth it, and the backoff after spins that found nothing,
//! are [`SpinState`]'s.

use std::io::{self, Read};
use std::os::fd::AsFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::task::AtomicWaker;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::net::unix::OwnedReadHalf;

/// A calling peer spins only while at most this many of its calls are outstanding, and only if
/// no more were since it last had none ([`SpinState::set_outstanding`]). One: at concurrency 1
/// each call waits alone for its answer, which is what a spin saves a wake-up for; with more
/// calls in flight the peer is under load, its writer and reader batch, and a spin would only
/// hold the thread the other calls' tasks need.
pub const MAX_OUTSTANDING_TO_SPIN: usize = 1;

/// The most chances to spin skipped after spins that timed out in a row (the backoff doubles
/// from 1 up to this; a spin that finds data ends it). One spin in this many still probes.
pub const MAX_SKIPPED_AFTER_TIMEOUTS: u32 = 64;

/// Non-blocking read attempts between two looks at the clock (and at the gate).
pub const TRIES_PER_CLOCK_CHECK: u32 = 8;

/// The most bytes one read during a spin asks for. The rest, if more arrived, is read by the
/// next `poll_read` (a spin's buffer is zeroed up to this size once per spin).
const SPIN_READ_BYTES: usize = 16 * 1024;

/// How a spin ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpinOutcome {
    /// A read during the spin found data (or the end of the stream, or an error).
    Data,
    /// The budget ran out, or the gate closed, with nothing read.
    TimedOut,
}

/// How the spins of a peer (or of every peer given the same counters) ended.
#[derive(Debug, Default)]
pub struct BusyPollStats {
    /// Spins that found data (a spin ends as soon as a read returns something).
    pub data: AtomicU64,
    /// Spins that gave up with nothing read: the budget ran out, or spinning stopped being
    /// worth it (more calls went out, the connection closed).
    pub timed_out: AtomicU64,
}

impl BusyPollStats {
    /// Counts one spin's outcome.
    pub fn record(&self, outcome: SpinOutcome) {
        match outcome {
            SpinOutcome::Data => &self.data,
            SpinOutcome::TimedOut => &self.timed_out,
        }
        .fetch_add(1, Ordering::Relaxed);
    }
}

/// What a peer in busy-poll mode keeps track of to decide when a spin is worth it: calls it
/// made and still waits for, requests it is answering, and whether it just answered. Updated by
/// the peer's calls, reader and writer; read by its [`SpinGate`].
#[derive(Debug)]
pub struct SpinState {
    /// The longest a spin lasts.
    pub budget: Duration,
    /// Wakes the reader's task so it starts a spin (see the module doc).
    pub kick: Arc<AtomicWaker>,
    /// Where spins are counted.
    pub stats: Arc<BusyPollStats>,
    outstanding: AtomicUsize,
    /// Set when more than [`MAX_OUTSTANDING_TO_SPIN`] calls were outstanding (the peer is
    /// under load), until none is.
    calls_crowded: AtomicBool,
    answering: AtomicUsize,
    /// Set when a request arrived while another was being answered (the peer is under load),
    /// until no request is being answered.
    crowded: AtomicBool,
    answered: AtomicBool,
    writing: AtomicBool,
    /// Set by the writer for one spin of the reader.
    armed: AtomicBool,
    /// Chances to spin still to skip, and the skip after the next timed-out spin / 2.
    skip: AtomicU32,
    backoff: AtomicU32,
}

impl SpinState {
    /// A state with nothing outstanding, counting into `stats`.
    pub fn new(budget: Duration, stats: Arc<BusyPollStats>) -> SpinState {
        SpinState {
            budget,
            kick: Arc::new(AtomicWaker::new()),
            stats,
            outstanding: AtomicUsize::new(0),
            calls_crowded: AtomicBool::new(false),
            answering: AtomicUsize::new(0),
            crowded: AtomicBool::new(false),
            answered: AtomicBool::new(false),
            writing: AtomicBool::new(false),
            armed: AtomicBool::new(false),
            skip: AtomicU32::new(0),
            backoff: AtomicU32::new(0),
        }
    }

    /// The number of calls made and not answered yet changed (called under the lock of the
    /// calls, so the updates come in order). Calls that overlapped beyond
    /// [`MAX_OUTSTANDING_TO_SPIN`] mean load: no call spins until none is outstanding again,
    /// even when their number drops back to one meanwhile.
    pub fn set_outstanding(&self, calls: usize) {
        if calls > MAX_OUTSTANDING_TO_SPIN {
            self.calls_crowded.store(true, Ordering::Release);
        } else if calls == 0 {
            self.calls_crowded.store(false, Ordering::Release);
        }
        self.outstanding.store(calls, Ordering::Release);
    }

    /// A request arrived and is being answered.
    pub fn answering(&self) {
        if self.answering.fetch_add(1, Ordering::AcqRel) > 0 {
            self.crowded.store(true, Ordering::Release);
        }
    }

    /// The answer to a request is queued for writing. Once every request is answered, answers
    /// were "just written" (a spin for the next request is worth it) only if the requests came
    /// one at a time: requests overlapping mean load, where the next one comes soon anyway and
    /// a spin would take a core from the other side.
    pub fn answered(&self) {
        if self.answering.fetch_sub(1, Ordering::AcqRel) == 1 {
            let crowded = self.crowded.swap(false, Ordering::AcqRel);
            self.answered.store(!crowded, Ordering::Release);
        }
    }

    /// The writer took lines and is writing them (`true`), or is done (`false`).
    pub fn set_writing(&self, writing: bool) {
        self.writing.store(writing, Ordering::Release);
    }

    /// The writer wrote a batch: whether the reader should spin now for what comes back, and
    /// if so arms it ([`SpinState::start`]) — the caller then wakes the reader with
    /// [`SpinState::kick`]. Worth it when nothing is left to write (`queue_empty`, the writer
    /// idle) and no request is being answered (on a single-threaded runtime the spin would hold
    /// both up), and either one call ([`MAX_OUTSTANDING_TO_SPIN`]) waits for its answer or, with
    /// no call outstanding, the answer to a lone request was just written (waiting for the next
    /// request; see [`SpinState::answered`]). And not while backing off: after a spin that
    /// timed out the next chance is skipped, after two in a row the next two, doubling up to
    /// [`MAX_SKIPPED_AFTER_TIMEOUTS`], until a spin finds data; so spins that do not pay (the
    /// other side busy, or answering slower than the budget) cost little CPU.
    pub fn arm_after_write(&self, queue_empty: bool) -> bool {
        if !self.worth_spinning(queue_empty) {
            return false;
        }
        let skip = self.skip.load(Ordering::Acquire);
        if skip > 0 {
            self.skip.store(skip - 1, Ordering::Release);
            return false;
        }
        self.armed.store(true, Ordering::Release);
        true
    }

    /// The reader found nothing to read: whether to spin now. Only once per arming
    /// ([`SpinState::arm_after_write`]), and only while [`SpinState::keep_spinning`].
    pub fn start(&self, queue_empty: bool) -> bool {
        self.armed.swap(false, Ordering::AcqRel) && self.keep_spinning(queue_empty)
    }

    /// Counts how a spin ended and adapts the backoff ([`SpinState::arm_after_write`]).
    pub fn record(&self, outcome: SpinOutcome) {
        self.stats.record(outcome);
        match outcome {
            SpinOutcome::Data => self.backoff.store(0, Ordering::Release),
            SpinOutcome::TimedOut => {
                let backoff =
                    (self.backoff.load(Ordering::Acquire) * 2).clamp(1, MAX_SKIPPED_AFTER_TIMEOUTS);
                self.backoff.store(backoff, Ordering::Release);
                self.skip.store(backoff, Ordering::Release);
            }
        }
    }

    /// See [`SpinState::arm_after_write`]; uses up "a lone request was just answered".
    fn worth_spinning(&self, queue_empty: bool) -> bool {
        if !queue_empty
            || self.writing.load(Ordering::Acquire)
            || self.answering.load(Ordering::Acquire) > 0
        {
            return false;
        }
        match self.outstanding.load(Ordering::Acquire) {
            0 => self.answered.swap(false, Ordering::AcqRel),
            calls => {
                calls <= MAX_OUTSTANDING_TO_SPIN && !self.calls_crowded.load(Ordering::Acquire)
            }
        }
    }

    /// Whether a spin under way may go on: still nothing to write, nothing being answered, and
    /// no more calls outstanding than [`MAX_OUTSTANDING_TO_SPIN`] (nor were since none was).
    pub fn keep_spinning(&self, queue_empty: bool) -> bool {
        queue_empty
            && !self.writing.load(Ordering::Acquire)
            && self.answering.load(Ordering::Acquire) == 0
            && self.outstanding.load(Ordering::Acquire) <= MAX_OUTSTANDING_TO_SPIN
            && !self.calls_crowded.load(Ordering::Acquire)
    }
}

/// Decides when a spin is worth it and counts how spins end.
pub trait SpinGate: Send + Sync + Unpin + 'static {
    /// Whether to start spinning now, a read having just found nothing. May consume a one-shot
    /// reason to spin (e.g. "answers were just written").
    fn start(&self) -> bool;
    /// Whether a spin under way may go on (checked with the clock).
    fn keep_going(&self) -> bool;
    /// Records how a spin ended.
    fn record(&self, outcome: SpinOutcome);
}

/// A Unix socket's read half that busy-polls, within a budget, when its gate allows.
pub struct BusyPollReader<G> {
    inner: OwnedReadHalf,
    /// A duplicate descriptor of the same socket (non-blocking, like the original): reading it
    /// always makes the system call, whatever tokio's cached readiness says.
    raw: std::os::unix::net::UnixStream,
    budget: Duration,
    gate: G,
    kick: Arc<AtomicWaker>,
}

impl<G> std::fmt::Debug for BusyPollReader<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BusyPollReader")
            .field("budget", &self.budget)
            .finish_non_exhaustive()
    }
}

impl<G: SpinGate> BusyPollReader<G> {
    /// Wraps `inner`, spinning up to `budget` whenever `gate` allows. Fails only if the socket's
    /// descriptor cannot be duplicated (e.g. the process is out of descriptors), giving `inner`
    /// back.
    /// `kick` is the waker a [`SpinState`]'s owner wakes to start a spin.
    pub fn new(
        inner: OwnedReadHalf,
        budget: Duration,
        gate: G,
        kick: Arc<AtomicWaker>,
    ) -> Result<Self, (io::Error, OwnedReadHalf)> {
        let duplicate = || {
            let stream: &tokio::net::UnixStream = inner.as_ref();
            let raw = std::os::unix::net::UnixStream::from(stream.as_fd().try_clone_to_owned()?);
            // Shared with the original descriptor, which tokio already made non-blocking; set
            // again so a spin can never block.
            raw.set_nonblocking(true)?;
            Ok(raw)
        };
        let raw = match duplicate() {
            Ok(raw) => raw,
            Err(error) => return Err((error, inner)),
        };
        Ok(BusyPollReader {
            inner,
            raw,
            budget,
            gate,
            kick,
        })
    }

    /// Spins on non-blocking reads into `buf` for at most the budget. `Some` with what a read
    /// gave, or `None` when nothing came.
    fn spin(&mut self, buf: &mut ReadBuf<'_>) -> Option<io::Result<()>> {
        let room = buf.remaining().min(SPIN_READ_BYTES);
        if room == 0 {
            return None;
        }
        let deadline = Instant::now() + self.budget;
        loop {
            for _ in 0..TRIES_PER_CLOCK_CHECK {
                let target = buf.initialize_unfilled_to(room);
                match (&self.raw).read(target) {
                    Ok(read) => {
                        buf.advance(read);
                        self.gate.record(SpinOutcome::Data);
                        return Some(Ok(()));
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::hint::spin_loop(),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        self.gate.record(SpinOutcome::Data);
                        return Some(Err(e));
                    }
                }
            }
            if Instant::now() >= deadline || !self.gate.keep_going() {
                self.gate.record(SpinOutcome::TimedOut);
                return None;
            }
        }
    }
}

impl<G: SpinGate> AsyncRead for BusyPollReader<G> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Poll::Ready(read) = Pin::new(&mut this.inner).poll_read(cx, buf) {
            return Poll::Ready(read);
        }
        // Registered before the gate is asked, so a kick that comes in between is not lost.
        this.kick.register(cx.waker());
        if !this.gate.start() {
            return Poll::Pending;
        }
        match this.spin(buf) {
            Some(read) => Poll::Ready(read),
            // The plain read above registered the waker: the data wakes us as usual.
            None => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use tokio::io::AsyncReadExt;

    /// A gate that allows spinning while `open`, and counts outcomes.
    #[derive(Default)]
    struct TestGate {
        open: AtomicBool,
        data: AtomicU64,
        timed_out: AtomicU64,
    }

    impl SpinGate for Arc<TestGate> {
        fn start(&self) -> bool {
            self.open.load(Ordering::Acquire)
        }
        fn keep_going(&self) -> bool {
            self.open.load(Ordering::Acquire)
        }
        fn record(&self, outcome: SpinOutcome) {
            match outcome {
                SpinOutcome::Data => &self.data,
                SpinOutcome::TimedOut => &self.timed_out,
            }
            .fetch_add(1, Ordering::Relaxed);
        }
    }

    fn pair(
        budget: Duration,
        open: bool,
    ) -> (
        BusyPollReader<Arc<TestGate>>,
        Arc<TestGate>,
        std::os::unix::net::UnixStream,
    ) {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let ours = tokio::net::UnixStream::from_std(ours).unwrap();
        let (read, _write) = ours.into_split();
        let gate = Arc::new(TestGate::default());
        gate.open.store(open, Ordering::Release);
        let reader = BusyPollReader::new(read, budget, gate.clone(), Arc::new(AtomicWaker::new()))
            .map_err(|(e, _)| e)
            .unwrap();
        (reader, gate, theirs)
    }

    /// Polls once, as a task that is never woken would.
    fn poll_once(
        reader: &mut BusyPollReader<Arc<TestGate>>,
        out: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut buf = ReadBuf::new(out);
        match Pin::new(reader).poll_read(&mut cx, &mut buf) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(buf.filled().len())),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    #[tokio::test]
    async fn data_arriving_during_the_spin_is_returned_by_that_poll() {
        // A long budget: the writer thread's line comes well within it.
        let (mut reader, gate, mut theirs) = pair(Duration::from_secs(5), true);
        let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
        let writer = std::thread::spawn(move || {
            started_rx.recv().unwrap();
            std::thread::sleep(Duration::from_millis(20));
            std::io::Write::write_all(&mut theirs, b"hello\n").unwrap();
            theirs
        });
        started_tx.send(()).unwrap();
        let mut out = [0u8; 64];
        // One poll, no wake-up in between: only the spin can have found the line.
        let polled = poll_once(&mut reader, &mut out);
        let _theirs = writer.join().unwrap();
        match polled {
            Poll::Ready(Ok(read)) => assert_eq!(&out[..read], b"hello\n"),
            other => panic!("expected the line from the spin, got {other:?}"),
        }
        assert_eq!(gate.data.load(Ordering::Relaxed), 1);
        assert_eq!(gate.timed_out.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_spin_that_finds_nothing_gives_up_and_the_read_completes_later() {
        let (mut reader, gate, mut theirs) = pair(Duration::from_micros(200), true);
        let mut out = [0u8; 64];
        assert!(poll_once(&mut reader, &mut out).is_pending());
        assert_eq!(gate.timed_out.load(Ordering::Relaxed), 1);
        assert_eq!(gate.data.load(Ordering::Relaxed), 0);
        // Later data comes through the normal wake-up (no spin: the gate is closed now).
        gate.open.store(false, Ordering::Release);
        std::io::Write::write_all(&mut theirs, b"later\n").unwrap();
        let read = tokio::time::timeout(Duration::from_secs(5), reader.read(&mut out))
            .await
            .expect("the read completes")
            .unwrap();
        assert_eq!(&out[..read], b"later\n");
        assert_eq!(gate.timed_out.load(Ordering::Relaxed), 1);
        assert_eq!(gate.data.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn a_closed_gate_never_spins() {
        let (mut reader, gate, theirs) = pair(Duration::from_secs(5), false);
        let mut out = [0u8; 64];
        assert!(poll_once(&mut reader, &mut out).is_pending());
        drop(theirs);
        let read = tokio::time::timeout(Duration::from_secs(5), reader.read(&mut out))
            .await
            .expect("the end of the stream is seen")
            .unwrap();
        assert_eq!(read, 0);
        assert_eq!(
            gate.data.load(Ordering::Relaxed) + gate.timed_out.load(Ordering::Relaxed),
            0
        );
    }

    fn state() -> SpinState {
        SpinState::new(Duration::from_micros(200), Arc::default())
    }

    /// What happens after the writer wrote a batch: armed, and the reader starts its spin.
    fn spins_after_write(spin: &SpinState, queue_empty: bool) -> bool {
        spin.arm_after_write(queue_empty) && spin.start(queue_empty)
    }

    #[test]
    fn a_caller_spins_only_with_one_call_outstanding_and_nothing_to_write() {
        let spin = state();
        assert!(!spins_after_write(&spin, true), "nothing outstanding");
        spin.set_outstanding(1);
        assert!(!spin.start(true), "not armed by a write");
        assert!(spins_after_write(&spin, true));
        assert!(!spin.start(true), "one spin per arming");
        assert!(
            !spins_after_write(&spin, false),
            "a line waits to be written"
        );
        spin.set_writing(true);
        assert!(!spins_after_write(&spin, true), "the writer is writing");
        assert!(!spin.keep_spinning(true));
        spin.set_writing(false);
        spin.set_outstanding(2);
        assert!(!spins_after_write(&spin, true), "under load");
        assert!(!spin.keep_spinning(true));
        spin.set_outstanding(1);
        assert!(
            !spins_after_write(&spin, true),
            "back to one, but they overlapped: still load"
        );
        spin.set_outstanding(0);
        assert!(!spins_after_write(&spin, true));
        spin.set_outstanding(1);
        assert!(spins_after_write(&spin, true), "a lone call again");
    }

    #[test]
    fn an_answerer_spins_once_after_answering_a_lone_request() {
        let spin = state();
        spin.answering();
        assert!(!spins_after_write(&spin, true), "still answering");
        spin.answered();
        assert!(spins_after_write(&spin, true));
        assert!(spin.keep_spinning(true), "a spin under way goes on");
        assert!(!spins_after_write(&spin, true), "one spin per answer");
    }

    #[test]
    fn an_answerer_does_not_spin_after_overlapping_requests() {
        let spin = state();
        spin.answering();
        spin.answering();
        spin.answered();
        assert!(!spins_after_write(&spin, true), "one still being answered");
        spin.answered();
        assert!(!spins_after_write(&spin, true), "they overlapped: load");
        // The next lone request is worth a spin again.
        spin.answering();
        spin.answered();
        assert!(spins_after_write(&spin, true));
    }

    #[test]
    fn spins_that_time_out_back_off_and_one_that_finds_data_ends_the_backoff() {
        let spin = state();
        spin.set_outstanding(1);
        // Chances taken until the next spin, after each timed-out spin: 1, 2, 4, … up to the
        // most, then it stays there.
        let mut skipped = Vec::new();
        assert!(spins_after_write(&spin, true));
        for _ in 0..9 {
            spin.record(SpinOutcome::TimedOut);
            let mut chances = 0;
            while !spins_after_write(&spin, true) {
                chances += 1;
                assert!(chances <= MAX_SKIPPED_AFTER_TIMEOUTS, "never spins again");
            }
            skipped.push(chances);
        }
        assert_eq!(skipped, [1, 2, 4, 8, 16, 32, 64, 64, 64]);
        // The spin just started finds data: no more skipping.
        spin.record(SpinOutcome::Data);
        assert!(spins_after_write(&spin, true));
        assert!(spins_after_write(&spin, true));
        assert_eq!(spin.stats.timed_out.load(Ordering::Relaxed), 9);
        assert_eq!(spin.stats.data.load(Ordering::Relaxed), 1);
    }
}
