//! Tests of the retry rules and of [`forward_with_retry`] against real loopback sockets: a live
//! backend, a port nothing listens on, and a listener whose accept queue is full.

use std::convert::Infallible;
use std::net::SocketAddr;

use gatekeeper_rpc::types::{Backend, Upstream};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpSocket, TcpStream};

use super::*;
use crate::balancer::{BalancerKind, BuiltinBalancer};

fn upstream(max_connections: Option<u32>) -> Upstream {
    Upstream {
        id: "u".into(),
        name: "u".into(),
        timeout_ms: None,
        protocols: vec![],
        hostnames: vec![],
        prefixes: vec![],
        balancer: None,
        backend_protocol: None,
        connect_timeout_ms: None,
        max_connections_per_backend: max_connections,
        host_header: None,
        passive_health: None,
        health_check: None,
        extra: Default::default(),
    }
}

/// An upstream over these addresses (backend ids `b0`, `b1`, … in order), round robin.
fn entry(addrs: &[SocketAddr], max_connections: Option<u32>) -> UpstreamEntry {
    let backends = addrs
        .iter()
        .enumerate()
        .map(|(i, addr)| {
            let backend = Backend {
                id: format!("b{i}"),
                address: format!("http://{addr}"),
                weight: None,
                extra: Default::default(),
            };
            Arc::new(
                BackendEntry::new(backend)
                    .unwrap()
                    .with_connection_limit(max_connections),
            )
        })
        .collect();
    UpstreamEntry::new(
        upstream(max_connections),
        backends,
        BalancerKind::RoundRobin,
        Arc::default(),
    )
}

fn request(method: Method, backend: &BackendEntry) -> Request<RequestBody> {
    let mut request = Request::new(RequestBody::empty());
    *request.method_mut() = method;
    *request.uri_mut() = uri_for(backend).unwrap();
    request
}

fn uri_for(backend: &BackendEntry) -> Option<Uri> {
    crate::forward::backend_uri(backend, "/x", None, None).ok()
}

/// A backend answering 200 to everything, after `delay`.
async fn live_backend(delay: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(move |_| async move {
                    tokio::time::sleep(delay).await;
                    Ok::<_, Infallible>(Response::new(Full::new(bytes::Bytes::from("ok"))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// An address nothing listens on.
fn dead_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// A listener (backlog 0) whose accept queue is full, so new connects hang; keep the result.
async fn blackhole() -> (tokio::net::TcpListener, Vec<TcpStream>) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut held = Vec::new();
    for _ in 0..8 {
        match tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => held.push(stream),
            _ => return (listener, held),
        }
    }
    panic!("the accept queue never filled");
}

fn sending<'a>(client: &'a BackendClient, upstream: &'a UpstreamEntry) -> Sending<'a> {
    Sending {
        client,
        balancer: &BuiltinBalancer,
        upstream,
        timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_millis(300),
        metrics: Box::leak(Box::new(crate::metrics::Metrics::disabled())),
    }
}

/// Sends a `method` request to the upstream's first backend, with the retry rules.
async fn send_to_first(
    client: &BackendClient,
    upstream: &UpstreamEntry,
    method: Method,
) -> Forwarded {
    let first = upstream.backends[0].clone();
    let request = request(method, &first);
    forward_with_retry(&sending(client, upstream), first, request, uri_for).await
}

fn summary(forwarded: &Forwarded) -> Vec<(String, Result<u16, &'static str>, bool)> {
    forwarded
        .attempts
        .iter()
        .map(|a| (a.backend.backend.id.clone(), a.outcome, a.connect_failed))
        .collect()
}

#[test]
fn idempotent_methods() {
    for m in ["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"] {
        assert!(is_idempotent(&m.parse().unwrap()), "{m}");
    }
    for m in ["POST", "PATCH", "CONNECT"] {
        assert!(!is_idempotent(&m.parse().unwrap()), "{m}");
    }
}

#[test]
fn a_request_with_a_body_is_not_retried() {
    let upstream = entry(&[dead_addr(), dead_addr()], None);
    let b = &upstream.backends[0];
    assert!(RetryCopy::of(&request(Method::GET, b), &upstream).is_some());
    assert!(RetryCopy::of(&request(Method::PUT, b), &upstream).is_some());
    assert!(RetryCopy::of(&request(Method::POST, b), &upstream).is_none());
    let mut with_length = request(Method::PUT, b);
    with_length
        .headers_mut()
        .insert(header::CONTENT_LENGTH, "5".parse().unwrap());
    assert!(RetryCopy::of(&with_length, &upstream).is_none());
    with_length
        .headers_mut()
        .insert(header::CONTENT_LENGTH, "0".parse().unwrap());
    assert!(RetryCopy::of(&with_length, &upstream).is_some());
    let mut chunked = request(Method::GET, b);
    chunked
        .headers_mut()
        .insert(header::TRANSFER_ENCODING, "chunked".parse().unwrap());
    assert!(RetryCopy::of(&chunked, &upstream).is_none());
    // Nowhere else to go.
    let single = entry(&[dead_addr()], None);
    let b = &single.backends[0];
    assert!(RetryCopy::of(&request(Method::GET, b), &single).is_none());
}

#[test]
fn the_retry_goes_to_another_backend() {
    let upstream = entry(&[dead_addr(), dead_addr(), dead_addr()], None);
    for failed in &upstream.backends {
        for _ in 0..20 {
            let other = pick_other(&BuiltinBalancer, &upstream, failed).unwrap();
            assert_ne!(other.backend.id, failed.backend.id);
        }
    }
    let single = entry(&[dead_addr()], None);
    assert!(pick_other(&BuiltinBalancer, &single, &single.backends[0]).is_none());
}

#[tokio::test]
async fn a_get_after_a_refused_connect_is_retried_on_the_live_backend() {
    let upstream = entry(&[dead_addr(), live_backend(Duration::ZERO).await], None);
    let client = BackendClient::new(
        crate::metrics::Metrics::disabled(),
        Duration::from_secs(5),
        65536,
    );
    let forwarded = send_to_first(&client, &upstream, Method::GET).await;
    assert_eq!(
        summary(&forwarded),
        [
            ("b0".to_string(), Err("unreachable"), true),
            ("b1".to_string(), Ok(200), false)
        ]
    );
    assert_eq!(forwarded.backend.backend.id, "b1");
    let (response, in_flight) = forwarded.result.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(in_flight.backend().backend.id, "b1");
    assert_eq!(upstream.backends[0].in_flight(), 0);
    assert_eq!(upstream.backends[1].in_flight(), 1);
    drop(in_flight);
    assert_eq!(upstream.backends[1].in_flight(), 0);
}

#[tokio::test]
async fn a_post_is_not_retried() {
    let upstream = entry(&[dead_addr(), live_backend(Duration::ZERO).await], None);
    let client = BackendClient::new(
        crate::metrics::Metrics::disabled(),
        Duration::from_secs(5),
        65536,
    );
    let forwarded = send_to_first(&client, &upstream, Method::POST).await;
    assert_eq!(
        summary(&forwarded),
        [("b0".to_string(), Err("unreachable"), true)]
    );
    assert!(matches!(
        forwarded.result,
        Err(ForwardError::Unreachable(_))
    ));
}

#[tokio::test]
async fn a_connect_over_the_connect_timeout_fails_and_is_retried() {
    let (hole, _held) = blackhole().await;
    let hole = hole.local_addr().unwrap();
    let client = BackendClient::new(
        crate::metrics::Metrics::disabled(),
        Duration::from_secs(60),
        65536,
    );
    // Alone: the connect fails after the upstream's connect timeout (not the client's 60s).
    let single = entry(&[hole], None);
    let forwarded = tokio::time::timeout(
        Duration::from_secs(5),
        send_to_first(&client, &single, Method::GET),
    )
    .await
    .unwrap();
    assert_eq!(
        summary(&forwarded),
        [("b0".to_string(), Err("unreachable"), true)]
    );
    let message = forwarded.result.unwrap_err().to_string();
    assert!(message.contains("connect timed out"), "{message}");
    // With a live backend beside it, the GET is retried there.
    let pair = entry(&[hole, live_backend(Duration::ZERO).await], None);
    let forwarded = send_to_first(&client, &pair, Method::GET).await;
    assert_eq!(forwarded.result.unwrap().0.status(), 200);
}

#[tokio::test]
async fn a_full_backend_makes_requests_wait_then_answers_busy() {
    let upstream = entry(&[live_backend(Duration::from_millis(50)).await], Some(1));
    let client = BackendClient::new(
        crate::metrics::Metrics::disabled(),
        Duration::from_secs(5),
        65536,
    );
    let b = upstream.backends[0].clone();
    let how = sending(&client, &upstream);
    let send = || forward_with_retry(&how, b.clone(), request(Method::GET, &b), uri_for);
    let (response, held) = send().await.result.unwrap();
    assert_eq!(response.status(), 200);
    // The slot is held until the guard (the response body, in the proxy) is dropped.
    let forwarded = send().await;
    assert!(forwarded.attempts.iter().next().is_none());
    match forwarded.result {
        Err(ForwardError::Busy { backend, limit, .. }) => {
            assert_eq!((backend.as_str(), limit), ("b0", 1));
        }
        other => panic!("expected busy, got {:?}", other.map(|(r, _)| r.status())),
    }
    // A waiting request gets the slot when it is released.
    let release = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(held);
    };
    let (forwarded, ()) = tokio::join!(send(), release);
    assert_eq!(forwarded.result.unwrap().0.status(), 200);
    assert_eq!(upstream.backends[0].in_flight(), 0);
}
