//! Behaviour of `Peer` over in-memory connections: pipelining, limits, unknown and late ids,
//! closing, and strict peers that close on protocol violations.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use gatekeeper_rpc::error::error_object;
use gatekeeper_rpc::peer::{CloseReason, NoHandler};
use gatekeeper_rpc::{CallError, Handler, IncomingRequest, Peer, PeerConfig, Reply};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const LONG: Duration = Duration::from_secs(10);

/// Answers `double {n}` with `{n: 2n}` after a delay that varies per call, so responses come
/// back out of order; answers `fail` with an error.
struct Doubler;

impl Handler for Doubler {
    fn handle_request(&self, request: IncomingRequest) -> BoxFuture<'static, Reply> {
        Box::pin(async move {
            match request.method.as_str() {
                "double" => {
                    let params: Value = request.parse_params()?;
                    let n = params["n"].as_i64().unwrap_or_default();
                    tokio::time::sleep(Duration::from_micros((n % 7) as u64 * 300)).await;
                    gatekeeper_rpc::message::to_raw(&json!({ "n": n * 2 }))
                        .map_err(|e| error_object(-32603, e.to_string()))
                }
                "fail" => Err(error_object(-32011, "conflict here")),
                other => Err(error_object(-32601, format!("no {other}"))),
            }
        })
    }
}

fn config(name: &str) -> PeerConfig {
    PeerConfig {
        name: name.to_owned(),
        ..PeerConfig::default()
    }
}

fn pair() -> (Peer, Peer) {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let client = Peer::spawn(a, Arc::new(NoHandler), config("client"));
    let server = Peer::spawn(b, Arc::new(Doubler), config("server"));
    (client, server)
}

#[tokio::test]
async fn thousand_concurrent_calls_get_their_own_results() {
    let (client, _server) = pair();
    let calls = (0..1000).map(|n| {
        let client = client.clone();
        tokio::spawn(async move {
            let result: Value = client
                .call("double", &json!({ "n": n }), LONG)
                .await
                .unwrap();
            (n, result)
        })
    });
    for call in futures::future::join_all(calls).await {
        let (n, result) = call.unwrap();
        assert_eq!(
            result,
            json!({ "n": n * 2 }),
            "call {n} got another call's result"
        );
    }
    assert_eq!(client.pending_calls(), 0);
}

#[tokio::test]
async fn both_sides_call_each_other_on_one_connection() {
    let (a, b) = tokio::io::duplex(1024);
    let left = Peer::spawn(a, Arc::new(Doubler), config("left"));
    let right = Peer::spawn(b, Arc::new(Doubler), config("right"));
    let (three, five) = (json!({"n": 3}), json!({"n": 5}));
    let (x, y) = tokio::join!(
        left.call::<_, Value>("double", &three, LONG),
        right.call::<_, Value>("double", &five, LONG),
    );
    assert_eq!(x.unwrap(), json!({"n": 6}));
    assert_eq!(y.unwrap(), json!({"n": 10}));
}

#[tokio::test]
async fn remote_errors_keep_code_and_message() {
    let (client, _server) = pair();
    match client.call::<_, Value>("fail", &json!({}), LONG).await {
        Err(CallError::Remote { error, .. }) => {
            assert_eq!(error.code(), -32011);
            assert_eq!(error.message(), "conflict here");
        }
        other => panic!("expected a remote error, got {other:?}"),
    }
    match client.call::<_, Value>("nope", &json!({}), LONG).await {
        Err(CallError::Remote { error, .. }) => assert_eq!(error.code(), -32601),
        other => panic!("expected method not found, got {other:?}"),
    }
}

#[tokio::test]
async fn wrong_result_type_is_an_invalid_result() {
    let (client, _server) = pair();
    let outcome = client
        .call::<_, String>("double", &json!({"n": 1}), LONG)
        .await;
    assert!(
        matches!(outcome, Err(CallError::InvalidResult { .. })),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn oversized_line_closes_the_connection_without_waiting_for_its_end() {
    let (mine, theirs) = tokio::io::duplex(64 * 1024);
    let peer = Peer::spawn(
        theirs,
        Arc::new(Doubler),
        PeerConfig {
            max_line_bytes: 1024,
            ..config("limited")
        },
    );
    let (_read, mut write) = tokio::io::split(mine);
    // One byte over the limit and no newline: the peer must give up now, not buffer on.
    write.write_all(&[b'x'; 1025]).await.unwrap();
    let reason = tokio::time::timeout(Duration::from_secs(5), peer.closed())
        .await
        .expect("peer did not close on an oversized line");
    assert_eq!(reason, CloseReason::LineTooLong);
    // Further bytes are not read into memory: the connection is gone.
    let more = vec![b'y'; 4 * 1024 * 1024];
    let _ = tokio::time::timeout(Duration::from_secs(1), write.write_all(&more)).await;
    assert!(peer.is_closed());
}

#[tokio::test]
async fn unknown_response_ids_are_ignored() {
    let (mine, theirs) = tokio::io::duplex(64 * 1024);
    let peer = Peer::spawn(theirs, Arc::new(NoHandler), config("p"));
    let (read, mut write) = tokio::io::split(mine);
    let mut lines = BufReader::new(read).lines();

    write
        .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":999,\"result\":1}\n")
        .await
        .unwrap();
    let call = tokio::spawn({
        let peer = peer.clone();
        async move { peer.call::<_, Value>("ping", &json!({}), LONG).await }
    });
    let request: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    assert_eq!(request["method"], "ping");
    let answer = json!({"jsonrpc": "2.0", "id": request["id"], "result": "pong"});
    write
        .write_all(format!("{answer}\n").as_bytes())
        .await
        .unwrap();
    assert_eq!(call.await.unwrap().unwrap(), json!("pong"));
    assert_eq!(peer.stats().unknown_ids.load(Ordering::Relaxed), 1);
    assert!(!peer.is_closed());
}

#[tokio::test]
async fn garbage_gets_a_parse_error_and_the_connection_lives_on() {
    let (mine, theirs) = tokio::io::duplex(64 * 1024);
    let peer = Peer::spawn(theirs, Arc::new(Doubler), config("p"));
    let (read, mut write) = tokio::io::split(mine);
    let mut lines = BufReader::new(read).lines();
    write.write_all(b"this is not json\n").await.unwrap();
    let error: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    assert_eq!(error["id"], Value::Null);
    assert_eq!(error["error"]["code"], -32700);
    write
        .write_all(
            b"{\"jsonrpc\":\"2.0\",\"id\":\"x\",\"method\":\"double\",\"params\":{\"n\":4}}\n",
        )
        .await
        .unwrap();
    let answer: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    assert_eq!(
        answer,
        json!({"jsonrpc": "2.0", "id": "x", "result": {"n": 8}})
    );
    assert_eq!(peer.stats().invalid_lines.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn closing_fails_pending_calls_promptly() {
    let (mine, theirs) = tokio::io::duplex(64 * 1024);
    let peer = Peer::spawn(theirs, Arc::new(NoHandler), config("p"));
    let (read, write) = tokio::io::split(mine);
    let mut lines = BufReader::new(read).lines();
    let calls: Vec<_> = (0..10)
        .map(|_| {
            let peer = peer.clone();
            tokio::spawn(async move { peer.call::<_, Value>("slow", &json!({}), LONG).await })
        })
        .collect();
    for _ in 0..10 {
        lines.next_line().await.unwrap().unwrap();
    }
    // The other side goes away without answering.
    drop(lines);
    drop(write);
    let started = std::time::Instant::now();
    for call in calls {
        let outcome = call.await.unwrap();
        assert!(
            matches!(outcome, Err(CallError::Closed { .. })),
            "{outcome:?}"
        );
    }
    assert!(
        started.elapsed() < LONG / 2,
        "pending calls waited for their timeout"
    );
    assert_eq!(peer.closed().await, CloseReason::Eof);
    let late = peer.call::<_, Value>("after", &json!({}), LONG).await;
    assert!(matches!(late, Err(CallError::Closed { .. })), "{late:?}");
}

#[tokio::test]
async fn a_call_times_out_and_leaves_nothing_pending() {
    let (mine, theirs) = tokio::io::duplex(64 * 1024);
    let peer = Peer::spawn(theirs, Arc::new(NoHandler), config("p"));
    let _keep = mine; // never answers
    let outcome = peer
        .call::<_, Value>("silent", &json!({}), Duration::from_millis(50))
        .await;
    assert!(
        matches!(outcome, Err(CallError::Timeout { .. })),
        "{outcome:?}"
    );
    assert_eq!(peer.pending_calls(), 0);
}

#[tokio::test]
async fn notifications_reach_the_handler() {
    struct Recorder(tokio::sync::mpsc::UnboundedSender<String>);
    impl Handler for Recorder {
        fn handle_notification(&self, n: gatekeeper_rpc::IncomingNotification) {
            let _ = self.0.send(n.method);
        }
    }
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (a, b) = tokio::io::duplex(1024);
    let sender = Peer::spawn(a, Arc::new(NoHandler), config("a"));
    let _receiver = Peer::spawn(b, Arc::new(Recorder(tx)), config("b"));
    sender.notify("hello", &json!({})).await.unwrap();
    assert_eq!(rx.recv().await.unwrap(), "hello");
}

#[tokio::test]
async fn after_reply_can_close_once_the_reply_is_written() {
    /// Answers `stop`, then closes the connection right after the answer is written.
    struct Stopper;
    impl Handler for Stopper {
        fn handle_request(&self, _request: IncomingRequest) -> BoxFuture<'static, Reply> {
            Box::pin(async { Ok(gatekeeper_rpc::message::null()) })
        }
        fn after_reply(&self, method: &str, succeeded: bool, peer: &Peer) {
            if method == "stop" && succeeded {
                peer.close_after_flush();
            }
        }
    }
    let (mine, theirs) = tokio::io::duplex(64 * 1024);
    let peer = Peer::spawn(theirs, Arc::new(Stopper), config("p"));
    let (read, mut write) = tokio::io::split(mine);
    let mut lines = BufReader::new(read).lines();
    write
        .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"stop\",\"params\":{}}\n")
        .await
        .unwrap();
    let answer: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    assert_eq!(answer, json!({"jsonrpc": "2.0", "id": 1, "result": null}));
    assert_eq!(
        lines.next_line().await.unwrap(),
        None,
        "connection should close after the reply"
    );
    assert_eq!(peer.closed().await, CloseReason::Local);
}

// ---- strict peers (`close_on_violation`) ---------------------------------------------------

fn strict(name: &str) -> PeerConfig {
    PeerConfig {
        close_on_violation: true,
        ..config(name)
    }
}

/// A strict peer with no handler, and the raw other end of its connection.
fn strict_peer() -> (
    Peer,
    tokio::io::Lines<BufReader<tokio::io::ReadHalf<tokio::io::DuplexStream>>>,
    tokio::io::WriteHalf<tokio::io::DuplexStream>,
) {
    let (mine, theirs) = tokio::io::duplex(64 * 1024);
    let peer = Peer::spawn(theirs, Arc::new(NoHandler), strict("strict"));
    let (read, write) = tokio::io::split(mine);
    (peer, BufReader::new(read).lines(), write)
}

async fn closed_within(peer: &Peer) -> CloseReason {
    match tokio::time::timeout(Duration::from_secs(5), peer.closed()).await {
        Ok(reason) => reason,
        Err(_) => panic!("the peer did not close"),
    }
}

fn is_violation(reason: &CloseReason, contains: &str) -> bool {
    matches!(reason, CloseReason::ProtocolViolation(what) if what.contains(contains))
}

#[tokio::test]
async fn strict_garbage_is_answered_then_closes() {
    let (peer, mut lines, mut write) = strict_peer();
    let pending = tokio::spawn({
        let peer = peer.clone();
        async move { peer.call::<_, Value>("ping", &json!({}), LONG).await }
    });
    lines.next_line().await.unwrap().unwrap(); // the ping
    write.write_all(b"this is not json\n").await.unwrap();
    let error: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    assert_eq!(error["id"], Value::Null);
    assert_eq!(error["error"]["code"], -32700);
    let reason = closed_within(&peer).await;
    assert!(
        is_violation(&reason, "not a JSON-RPC message"),
        "{reason:?}"
    );
    assert_eq!(lines.next_line().await.unwrap(), None, "connection closed");
    let outcome = pending.await.unwrap();
    assert!(
        matches!(outcome, Err(CallError::Closed { .. })),
        "{outcome:?}"
    );
    assert_eq!(peer.stats().invalid_lines.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn strict_json_that_is_not_json_rpc_closes() {
    let (peer, mut lines, mut write) = strict_peer();
    write
        .write_all(b"{\"id\":1,\"method\":\"x\"}\n")
        .await
        .unwrap();
    let error: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    assert_eq!(error["error"]["code"], -32600);
    let reason = closed_within(&peer).await;
    assert!(is_violation(&reason, "jsonrpc"), "{reason:?}");
}

#[tokio::test]
async fn strict_never_issued_ids_close() {
    let cases: [&[u8]; 5] = [
        // Above every id issued so far (none yet).
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n",
        b"{\"jsonrpc\":\"2.0\",\"id\":0,\"result\":{}}\n",
        b"{\"jsonrpc\":\"2.0\",\"id\":-3,\"error\":{\"code\":1,\"message\":\"x\"}}\n",
        b"{\"jsonrpc\":\"2.0\",\"id\":\"abc\",\"result\":{}}\n",
        b"{\"jsonrpc\":\"2.0\",\"id\":null,\"result\":{}}\n",
    ];
    for line in cases {
        let (peer, _lines, mut write) = strict_peer();
        write.write_all(line).await.unwrap();
        let reason = closed_within(&peer).await;
        let shown = String::from_utf8_lossy(line);
        assert!(
            matches!(reason, CloseReason::ProtocolViolation(_)),
            "{shown}: {reason:?}"
        );
        assert_eq!(
            peer.stats().unknown_ids.load(Ordering::Relaxed),
            1,
            "{shown}"
        );
    }
}

#[tokio::test]
async fn strict_id_above_the_ones_issued_closes_even_with_calls_in_flight() {
    let (peer, mut lines, mut write) = strict_peer();
    let pending = tokio::spawn({
        let peer = peer.clone();
        async move { peer.call::<_, Value>("ping", &json!({}), LONG).await }
    });
    let request: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    let next = request["id"].as_i64().unwrap() + 1;
    write
        .write_all(format!("{{\"jsonrpc\":\"2.0\",\"id\":{next},\"result\":1}}\n").as_bytes())
        .await
        .unwrap();
    let reason = closed_within(&peer).await;
    assert!(is_violation(&reason, "never issued"), "{reason:?}");
    assert!(matches!(
        pending.await.unwrap(),
        Err(CallError::Closed { .. })
    ));
}

#[tokio::test]
async fn strict_error_without_id_is_not_a_violation() {
    let (peer, _lines, mut write) = strict_peer();
    write
        .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32700,\"message\":\"parse error\"}}\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!peer.is_closed());
    assert_eq!(peer.stats().unknown_ids.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn strict_late_answers_after_a_timeout_are_not_violations() {
    let (peer, mut lines, mut write) = strict_peer();
    let outcome = peer
        .call::<_, Value>("slow", &json!({}), Duration::from_millis(30))
        .await;
    assert!(
        matches!(outcome, Err(CallError::Timeout { .. })),
        "{outcome:?}"
    );
    let request: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    let late = json!({"jsonrpc": "2.0", "id": request["id"], "result": "too late"});
    write
        .write_all(format!("{late}\n").as_bytes())
        .await
        .unwrap();

    // The connection still works afterwards.
    let call = tokio::spawn({
        let peer = peer.clone();
        async move { peer.call::<_, Value>("ping", &json!({}), LONG).await }
    });
    let request: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    let answer = json!({"jsonrpc": "2.0", "id": request["id"], "result": "pong"});
    write
        .write_all(format!("{answer}\n").as_bytes())
        .await
        .unwrap();
    assert_eq!(call.await.unwrap().unwrap(), json!("pong"));
    assert!(!peer.is_closed());
    assert_eq!(peer.stats().late_responses.load(Ordering::Relaxed), 1);
    assert_eq!(peer.stats().unknown_ids.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn strict_late_answers_to_dropped_calls_are_not_violations() {
    let (peer, mut lines, mut write) = strict_peer();
    let call = tokio::spawn({
        let peer = peer.clone();
        async move { peer.call::<_, Value>("abandoned", &json!({}), LONG).await }
    });
    let request: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    call.abort();
    let _ = call.await;
    assert_eq!(peer.pending_calls(), 0);
    let late = json!({"jsonrpc": "2.0", "id": request["id"], "error": {"code": 1, "message": "x"}});
    write
        .write_all(format!("{late}\n").as_bytes())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!peer.is_closed());
    assert_eq!(peer.stats().late_responses.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn lenient_peers_count_unknown_and_late_ids_apart() {
    let (mine, theirs) = tokio::io::duplex(64 * 1024);
    let peer = Peer::spawn(theirs, Arc::new(NoHandler), config("lenient"));
    let (read, mut write) = tokio::io::split(mine);
    let mut lines = BufReader::new(read).lines();
    let outcome = peer
        .call::<_, Value>("slow", &json!({}), Duration::from_millis(30))
        .await;
    assert!(outcome.is_err());
    let request: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    let late = json!({"jsonrpc": "2.0", "id": request["id"], "result": 1});
    write
        .write_all(
            format!("{late}\n{{\"jsonrpc\":\"2.0\",\"id\":777,\"result\":1}}\nnot json\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let error: Value = serde_json::from_str(&lines.next_line().await.unwrap().unwrap()).unwrap();
    assert_eq!(error["error"]["code"], -32700);
    assert!(!peer.is_closed());
    assert_eq!(peer.stats().late_responses.load(Ordering::Relaxed), 1);
    assert_eq!(peer.stats().unknown_ids.load(Ordering::Relaxed), 1);
    assert_eq!(peer.stats().invalid_lines.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn close_for_violation_records_why() {
    let (peer, mut lines, _write) = strict_peer();
    peer.close_for_violation("`x` returned a result of the wrong type");
    let reason = closed_within(&peer).await;
    assert_eq!(
        reason,
        CloseReason::ProtocolViolation("`x` returned a result of the wrong type".into())
    );
    assert_eq!(
        reason.to_string(),
        "protocol violation: `x` returned a result of the wrong type"
    );
    assert_eq!(lines.next_line().await.unwrap(), None);
}

#[tokio::test]
async fn close_with_records_a_reason_that_is_not_a_violation() {
    let (peer, mut lines, _write) = strict_peer();
    peer.close_with(CloseReason::Hung("5 hook calls in a row timed out".into()));
    let reason = closed_within(&peer).await;
    assert_eq!(reason.to_string(), "hung (5 hook calls in a row timed out)");
    assert!(!matches!(reason, CloseReason::ProtocolViolation(_)));
    assert_eq!(lines.next_line().await.unwrap(), None);
    assert_eq!(
        CloseReason::Failing("5 results of the wrong shape in a row".into()).to_string(),
        "failing (5 results of the wrong shape in a row)"
    );
}

/// Answers every request with a `null` result.
struct Nothing;

impl Handler for Nothing {
    fn handle_request(&self, _: IncomingRequest) -> BoxFuture<'static, Reply> {
        Box::pin(async { Ok(gatekeeper_rpc::message::null()) })
    }
}

#[tokio::test]
async fn a_null_result_reads_as_an_empty_object() {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let client = Peer::spawn(a, Arc::new(NoHandler), config("client"));
    let _server = Peer::spawn(b, Arc::new(Nothing), config("server"));
    let result = client
        .request::<gatekeeper_rpc::methods::ModifyRequest>(
            &gatekeeper_rpc::methods::ModifyRequestParams {
                request: gatekeeper_rpc::types::HttpRequest::default(),
            },
            LONG,
        )
        .await
        .unwrap();
    assert!(result.request.is_none() && result.response.is_none());
    let empty: gatekeeper_rpc::methods::Empty =
        client.call("start", &json!({}), LONG).await.unwrap();
    assert_eq!(empty, gatekeeper_rpc::methods::Empty {});
    // The raw result stays as it came.
    let raw = client.call_raw("start", &json!({}), LONG).await.unwrap();
    assert_eq!(raw.get(), "null");
    assert_eq!(gatekeeper_rpc::peer::lenient_result(&raw), "{}");
}
