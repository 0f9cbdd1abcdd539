//! The low-latency mode of `Peer` (`PeerConfig::busy_poll`) over a real Unix socket pair, the
//! other side on a thread (and runtime) of its own so a spin can see its answers: calls are
//! answered, spins are counted, and a peer spins only when the rules say so. Asserted with the
//! spin counters, never with timing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use gatekeeper_rpc::busy_poll::BusyPollStats;
use gatekeeper_rpc::error::error_object;
use gatekeeper_rpc::peer::NoHandler;
use gatekeeper_rpc::{Handler, IncomingNotification, IncomingRequest, Peer, PeerConfig, Reply};
use serde_json::{json, Value};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

const LONG: Duration = Duration::from_secs(10);
/// Long enough that a spin waiting for the other thread's line finds it.
const BUDGET: Duration = Duration::from_secs(2);

/// Echoes `echo` calls; forwards notifications to a channel.
struct Echo(mpsc::UnboundedSender<String>);

impl Handler for Echo {
    fn handle_request(&self, request: IncomingRequest) -> BoxFuture<'static, Reply> {
        Box::pin(async move {
            let params: Value = request.parse_params()?;
            gatekeeper_rpc::message::to_raw(&params)
                .map_err(|e| error_object(-32603, e.to_string()))
        })
    }

    fn handle_notification(&self, notification: IncomingNotification) {
        let _ = self.0.send(notification.method);
    }
}

fn busy(name: &str) -> PeerConfig {
    PeerConfig {
        name: name.to_owned(),
        busy_poll: Some(BUDGET),
        ..PeerConfig::default()
    }
}

fn spins(stats: &BusyPollStats) -> (u64, u64) {
    (
        stats.data.load(Ordering::Relaxed),
        stats.timed_out.load(Ordering::Relaxed),
    )
}

/// Runs `side` with its end of the socket on a thread with its own single-threaded runtime;
/// the returned sender stops it.
fn on_other_thread<F, Fut>(
    stream: std::os::unix::net::UnixStream,
    side: F,
) -> std::thread::JoinHandle<()>
where
    F: FnOnce(UnixStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            stream.set_nonblocking(true).unwrap();
            let stream = UnixStream::from_std(stream).unwrap();
            tokio::time::timeout(LONG, side(stream))
                .await
                .expect("the other side finishes");
        });
    })
}

fn socket_pair() -> (UnixStream, std::os::unix::net::UnixStream) {
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    ours.set_nonblocking(true).unwrap();
    (UnixStream::from_std(ours).unwrap(), theirs)
}

#[tokio::test]
async fn calls_at_concurrency_one_are_answered_and_the_caller_spins_for_them() {
    let (ours, theirs) = socket_pair();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let server = on_other_thread(theirs, move |stream| async move {
        let (tx, _rx) = mpsc::unbounded_channel();
        let _peer = Peer::spawn_unix(stream, Arc::new(Echo(tx)), PeerConfig::default());
        let _ = done_rx.await;
    });
    let client = Peer::spawn_unix(ours, Arc::new(NoHandler), busy("client"));
    for n in 0..20 {
        let answer: Value = client.call("echo", &json!({ "n": n }), LONG).await.unwrap();
        assert_eq!(answer["n"], n);
    }
    let (data, timed_out) = spins(&client.stats().busy_poll);
    // At most one spin per call (none after its answer: nothing is outstanding then); most
    // of them found the answer (a call whose answer was there before the reader ran needs none).
    assert!(
        data >= 1,
        "no spin found an answer: {data} found, {timed_out} timed out"
    );
    assert!(
        data + timed_out <= 20,
        "{data} + {timed_out} spins for 20 calls"
    );
    client.close();
    let _ = done_tx.send(());
    server.join().unwrap();
}

#[tokio::test]
async fn a_caller_with_no_call_outstanding_never_spins() {
    let (ours, theirs) = socket_pair();
    let server = on_other_thread(theirs, move |stream| async move {
        let peer = Peer::spawn_unix(stream, Arc::new(NoHandler), PeerConfig::default());
        for _ in 0..5 {
            peer.notify("tick", &json!({})).await.unwrap();
        }
        peer.close_after_flush();
        peer.closed().await;
    });
    let (tx, mut ticks) = mpsc::unbounded_channel();
    let client = Peer::spawn_unix(ours, Arc::new(Echo(tx)), busy("client"));
    for _ in 0..5 {
        let tick = tokio::time::timeout(LONG, ticks.recv()).await.unwrap();
        assert_eq!(tick.as_deref(), Some("tick"));
    }
    tokio::time::timeout(LONG, client.closed()).await.unwrap();
    server.join().unwrap();
    assert_eq!(spins(&client.stats().busy_poll), (0, 0));
}

#[tokio::test]
async fn the_answering_side_spins_after_its_answers_for_the_next_request() {
    let (ours, theirs) = socket_pair();
    let client = on_other_thread(theirs, move |stream| async move {
        let peer = Peer::spawn_unix(stream, Arc::new(NoHandler), PeerConfig::default());
        for n in 0..10 {
            let answer: Value = peer.call("echo", &json!({ "n": n }), LONG).await.unwrap();
            assert_eq!(answer["n"], n);
        }
        peer.close_after_flush();
        peer.closed().await;
    });
    let (tx, _rx) = mpsc::unbounded_channel();
    let stats = Arc::new(BusyPollStats::default());
    let server = Peer::spawn_unix(
        ours,
        Arc::new(Echo(tx)),
        PeerConfig {
            busy_poll_stats: Some(stats.clone()),
            ..busy("server")
        },
    );
    tokio::time::timeout(LONG, server.closed()).await.unwrap();
    client.join().unwrap();
    let (data, timed_out) = spins(&stats);
    // One spin after each of the 10 answers at most; the next request (or the end of the
    // stream, after the last) ends it. The counters given in the config are the peer's.
    assert!(
        data >= 1,
        "no spin found a request: {data} found, {timed_out} timed out"
    );
    assert!(
        data + timed_out <= 10,
        "{data} + {timed_out} spins for 10 answers"
    );
    assert_eq!(spins(&server.stats().busy_poll), (data, timed_out));
}

#[tokio::test]
async fn without_busy_poll_nothing_spins() {
    let (ours, theirs) = socket_pair();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let server = on_other_thread(theirs, move |stream| async move {
        let (tx, _rx) = mpsc::unbounded_channel();
        let _peer = Peer::spawn_unix(stream, Arc::new(Echo(tx)), PeerConfig::default());
        let _ = done_rx.await;
    });
    let client = Peer::spawn_unix(ours, Arc::new(NoHandler), PeerConfig::default());
    for n in 0..5 {
        let answer: Value = client.call("echo", &json!({ "n": n }), LONG).await.unwrap();
        assert_eq!(answer["n"], n);
    }
    assert_eq!(spins(&client.stats().busy_poll), (0, 0));
    client.close();
    let _ = done_tx.send(());
    server.join().unwrap();
}
