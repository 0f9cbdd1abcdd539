//! End-to-end tests of the metrics pipeline: a test exporter collecting batches.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use futures::future::BoxFuture;
use gatekeeper_proxy::{
    FailurePolicy, MetricKind, Metrics, MetricsConfig, MetricsExporter, Plugin,
};
use gatekeeper_rpc::methods::{ModifyRequest, ModifyRequestResult};
use gatekeeper_rpc::metrics::{EventMetric, RequestMetric, UpstreamMetric};
use gatekeeper_rpc::types::{set_header, Object};

/// Collects every batch it gets; `stuck` makes every export hang forever.
#[derive(Default)]
struct Collector {
    events: Mutex<Vec<Vec<EventMetric>>>,
    requests: Mutex<Vec<Vec<RequestMetric>>>,
    upstreams: Mutex<Vec<Vec<UpstreamMetric>>>,
    only_upstream: bool,
    stuck: bool,
}

impl Collector {
    fn requests(&self) -> Vec<RequestMetric> {
        self.requests.lock().unwrap().concat()
    }
    fn upstreams(&self) -> Vec<UpstreamMetric> {
        self.upstreams.lock().unwrap().concat()
    }
    fn event_names(&self) -> Vec<String> {
        let events = self.events.lock().unwrap().concat();
        events.into_iter().map(|e| e.name).collect()
    }
    fn done(&self) -> BoxFuture<'static, ()> {
        if self.stuck {
            Box::pin(futures::future::pending())
        } else {
            Box::pin(async {})
        }
    }
}

impl MetricsExporter for Collector {
    fn wants(&self, kind: MetricKind) -> bool {
        !self.only_upstream || kind == MetricKind::Upstream
    }
    fn export_events(&self, batch: Vec<EventMetric>) -> BoxFuture<'static, ()> {
        self.events.lock().unwrap().push(batch);
        self.done()
    }
    fn export_requests(&self, batch: Vec<RequestMetric>) -> BoxFuture<'static, ()> {
        self.requests.lock().unwrap().push(batch);
        self.done()
    }
    fn export_upstream_metrics(&self, batch: Vec<UpstreamMetric>) -> BoxFuture<'static, ()> {
        self.upstreams.lock().unwrap().push(batch);
        self.done()
    }
}

/// A modifier adding a request header.
fn add_header() -> Arc<dyn Plugin> {
    FakePlugin::new("add", FailurePolicy::Open)
        .on::<ModifyRequest>(|mut params| {
            Box::pin(async move {
                set_header(&mut params.request.headers, "x-added", "yes");
                Ok(ModifyRequestResult {
                    patch: None,
                    cache: None,
                    request: Some(params.request),
                    response: None,
                })
            })
        })
        .build()
}

fn fast_config() -> MetricsConfig {
    MetricsConfig {
        flush_interval: Duration::from_millis(10),
        ..MetricsConfig::default()
    }
}

#[tokio::test]
async fn a_request_produces_its_metrics() {
    let collector = Arc::new(Collector::default());
    let lb_side = Arc::new(Collector {
        only_upstream: true,
        ..Collector::default()
    });
    let exporters: Vec<Arc<dyn MetricsExporter>> = vec![collector.clone(), lb_side.clone()];
    let metrics = Metrics::new(fast_config(), exporters);
    let m = metrics.clone();
    let (proxy, _) = setup_with(vec![add_header()], move |p| p.with_metrics(m)).await;
    proxy
        .registry
        .add_upstream(upstream("dead", "dead", None))
        .unwrap();
    proxy
        .registry
        .add_backend("dead", backend("d", dead_addr()))
        .unwrap();

    let (status, _, body) = send(proxy.addr, "POST", "/api/x", &[], "hello").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("x-added=yes") && body.contains("body=5"),
        "{body}"
    );
    let r = eventually(|| collector.requests().pop()).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        (r.method.as_str(), r.path.as_str(), r.listener.as_str()),
        ("POST", "/api/x", "http")
    );
    assert_eq!(r.upstream.as_deref(), Some("api"));
    assert_eq!(r.backend.as_deref(), Some("b1"));
    assert_eq!(r.bytes_out, body.len() as u64);
    assert_eq!(r.bytes_in, 5);
    assert_eq!(r.error, None);
    let p = &r.phases;
    assert!(p.total_us >= p.upstream_response_us, "{p:?}");
    assert!(p.upstream_response_us >= p.upstream_connect_us, "{p:?}");
    assert!(
        p.upstream_connect_us > 0,
        "a new connection was opened: {p:?}"
    );
    assert_eq!(p.modifiers.len(), 1);
    assert_eq!(
        (p.modifiers[0].plugin.as_str(), p.modifiers[0].hook.as_str()),
        ("add", "modify_request")
    );

    // The second request reuses the pooled backend connection.
    let (status, _, _) = get(proxy.addr, "/api/y", None).await;
    assert_eq!(status, 200);
    let r = eventually(|| {
        collector
            .requests()
            .into_iter()
            .find(|r| r.path == "/api/y")
    })
    .await;
    assert_eq!(r.phases.upstream_connect_us, 0, "{:?}", r.phases);

    // Errors.
    let (status, _, _) = get(proxy.addr, "/dead/x", None).await;
    assert_eq!(status, 502);
    let (status, _, _) = get(proxy.addr, "/nope", None).await;
    assert_eq!(status, 404);
    let rs = eventually(|| Some(collector.requests()).filter(|r| r.len() == 4)).await;
    assert_eq!(rs[2].error.as_deref(), Some("backend_unreachable"));
    assert_eq!(rs[2].backend.as_deref(), Some("d"));
    assert_eq!(
        (rs[3].status, rs[3].error.as_deref()),
        (404, Some("no_route"))
    );
    assert_eq!(rs[3].upstream, None);

    // Upstream metrics reach both exporters (one only wants those).
    let ups = eventually(|| Some(lb_side.upstreams()).filter(|u| u.len() == 3)).await;
    assert_eq!(ups[0].status, Some(200));
    assert_eq!(
        (ups[0].upstream.as_str(), ups[0].backend.as_str()),
        ("api", "b1")
    );
    assert_eq!(ups[2].error.as_deref(), Some("unreachable"));
    assert_eq!(ups[2].status, None);
    assert_eq!(collector.upstreams().len(), 3);
    assert!(lb_side.requests().is_empty() && lb_side.event_names().is_empty());

    let names = eventually(|| {
        Some(collector.event_names())
            .filter(|n| n.iter().filter(|n| *n == "request_failed").count() == 2)
    })
    .await;
    let count = |name: &str| names.iter().filter(|n| *n == name).count();
    assert_eq!(count("listener_started"), 1);
    assert_eq!(count("request_accepted"), 4);
    // The 502 and the 404 for no route are the proxy's own errors: failed.
    assert_eq!(count("request_succeeded"), 2, "{names:?}");
    metrics.shutdown().await;
    assert_eq!(metrics.dropped(), 0);
}

#[tokio::test]
async fn batches_respect_the_size_and_shutdown_flushes() {
    let collector = Arc::new(Collector::default());
    let config = MetricsConfig {
        batch_size: 3,
        flush_interval: Duration::from_secs(3600),
        buffer: 100,
    };
    let metrics = Metrics::new(config, vec![collector.clone()]);
    for i in 0..7 {
        let mut attributes = Object::new();
        attributes.insert("i".into(), i.into());
        metrics.record_event("test", attributes);
    }
    let sizes = || -> Vec<usize> {
        collector
            .events
            .lock()
            .unwrap()
            .iter()
            .map(Vec::len)
            .collect()
    };
    eventually(|| Some(sizes()).filter(|s| s.len() == 2)).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(sizes(), [3, 3], "the last record waits for the interval");
    metrics.shutdown().await;
    assert_eq!(sizes(), [3, 3, 1]);
    let events = collector.events.lock().unwrap().concat();
    let order: Vec<_> = events
        .iter()
        .map(|e| e.attributes["i"].as_u64().unwrap())
        .collect();
    assert_eq!(order, [0, 1, 2, 3, 4, 5, 6]);
    // After shutdown, records are dropped.
    metrics.record_event("late", Object::new());
    assert_eq!(metrics.dropped(), 1);
    metrics.shutdown().await;
}

#[tokio::test]
async fn a_full_buffer_drops_without_blocking() {
    let collector = Arc::new(Collector {
        stuck: true,
        ..Collector::default()
    });
    let config = MetricsConfig {
        batch_size: 1,
        flush_interval: Duration::from_secs(3600),
        buffer: 2,
    };
    let metrics = Metrics::new(config, vec![collector.clone()]);
    // The first record is taken by the flusher, whose export never finishes.
    metrics.record_event("first", Object::new());
    eventually(|| Some(()).filter(|_| collector.events.lock().unwrap().len() == 1)).await;
    let started = Instant::now();
    for _ in 0..1000 {
        metrics.record_event("more", Object::new());
    }
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(metrics.dropped(), 998);
    // Kinds nobody wants are not counted.
    let lb_only = Metrics::new(
        config,
        vec![Arc::new(Collector {
            only_upstream: true,
            ..Collector::default()
        })],
    );
    assert!(!lb_only.wants(MetricKind::Event) && lb_only.wants(MetricKind::Upstream));
    for _ in 0..10 {
        lb_only.record_event("x", Object::new());
    }
    assert_eq!(lb_only.dropped(), 0);
    lb_only.shutdown().await;
}

/// Sends raw bytes on a new connection and reads until the proxy closes it (5 s at most).
async fn raw_exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer));
    let _ = read.await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn refused_requests_are_recorded_and_errors_carry_the_request_id() {
    let collector = Arc::new(Collector::default());
    let metrics = Metrics::new(fast_config(), vec![collector.clone()]);
    let m = metrics.clone();
    let (proxy, _) = setup_with(vec![], move |p| p.with_metrics(m)).await;

    // hyper cannot parse it: 400, recorded with what the connection knows.
    let answer = raw_exchange(
        proxy.addr,
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    let r = eventually(|| collector.requests().pop()).await;
    assert_eq!(
        (r.status, r.error.as_deref(), r.method.as_str()),
        (400, Some("malformed_request"), "-")
    );
    assert_eq!(
        (r.listener.as_str(), r.client.as_deref()),
        ("http", Some("127.0.0.1"))
    );

    // The request checks refuse it: 501, recorded with its kind and request id.
    let answer = raw_exchange(
        proxy.addr,
        b"POST /api/ HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\nX-Request-Id: r-1\r\n\r\n0\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 501"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("x-request-id: r-1"),
        "{answer}"
    );
    let r = eventually(|| collector.requests().into_iter().find(|r| r.status == 501)).await;
    assert_eq!(r.error.as_deref(), Some("unsupported_transfer_coding"));
    assert_eq!(r.request_id.as_deref(), Some("r-1"));

    // The proxy's own 404 carries the client's request id; the record has it and the user agent.
    let headers = [("x-request-id", "n-1"), ("user-agent", "probe/1")];
    let (status, answer_headers, _) = send(proxy.addr, "GET", "/nope", &headers, "").await;
    assert_eq!(status, 404);
    assert_eq!(answer_headers["x-request-id"], "n-1");
    let r = eventually(|| collector.requests().into_iter().find(|r| r.status == 404)).await;
    assert_eq!(
        (r.request_id.as_deref(), r.user_agent.as_deref()),
        (Some("n-1"), Some("probe/1"))
    );
    // Without one, none is added.
    let (status, answer_headers, _) = send(proxy.addr, "GET", "/nope", &[], "").await;
    assert_eq!(status, 404);
    assert!(!answer_headers.contains_key("x-request-id"));

    // The listener's connections were counted: 4 accepted, the malformed one counted.
    let stats = eventually(|| {
        let stats = metrics.listener_stats();
        stats
            .into_iter()
            .find(|(name, s)| name == "http" && s.connections >= 4)
    })
    .await
    .1;
    assert_eq!(stats.malformed_requests, 1);
    assert!(
        stats.bytes_received > 0 && stats.bytes_sent > 0,
        "{stats:?}"
    );
    metrics.shutdown().await;
}

#[tokio::test]
async fn a_request_the_client_abandons_is_recorded_as_client_closed() {
    use tokio::io::AsyncWriteExt;
    let collector = Arc::new(Collector::default());
    let metrics = Metrics::new(fast_config(), vec![collector.clone()]);
    let m = metrics.clone();
    let proxy = start_proxy_with(vec![], move |p| p.with_metrics(m)).await;
    let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let backend_addr = start_backend(hits.clone()).await;
    let registry = &proxy.registry;
    registry
        .add_upstream(upstream("long", "long", Some(10_000)))
        .unwrap();
    registry
        .add_backend("long", backend("b", backend_addr))
        .unwrap();

    let mut stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    let request = b"GET /long/slow HTTP/1.1\r\nHost: a\r\nX-Request-Id: gone-1\r\n\r\n";
    stream.write_all(request).await.unwrap();
    // The backend has it (it answers after 3 s): the client goes away.
    eventually(|| (hits.load(std::sync::atomic::Ordering::SeqCst) == 1).then_some(())).await;
    drop(stream);
    let r = eventually(|| collector.requests().pop()).await;
    assert_eq!(
        (r.status, r.error.as_deref(), r.request_id.as_deref()),
        (499, Some("client_closed"), Some("gone-1"))
    );
    assert_eq!(r.upstream.as_deref(), Some("long"));
    metrics.shutdown().await;
}

#[tokio::test]
async fn a_response_cut_while_its_body_streams_is_recorded_as_response_cut() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let collector = Arc::new(Collector::default());
    let metrics = Metrics::new(fast_config(), vec![collector.clone()]);
    let m = metrics.clone();
    let proxy = start_proxy_with(vec![], move |p| p.with_metrics(m)).await;
    // A backend that sends its head and part of a 100-byte body, then stalls.
    let stalling = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend_addr = stalling.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = stalling.accept().await.unwrap();
        let mut buf = [0u8; 4096];
        let _ = stream.read(&mut buf).await;
        let head = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhello";
        stream.write_all(head).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    });
    let registry = &proxy.registry;
    registry
        .add_upstream(upstream("stall", "stall", Some(10_000)))
        .unwrap();
    registry
        .add_backend("stall", backend("b", backend_addr))
        .unwrap();

    let mut stream = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    stream
        .write_all(b"GET /stall/x HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    // The head and the first bytes arrive; then the client goes away.
    let mut read = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&read).contains("hello") {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&read));
        read.extend_from_slice(&buf[..n]);
    }
    drop(stream);
    let r = eventually(|| collector.requests().pop()).await;
    assert_eq!((r.status, r.error.as_deref()), (200, Some("response_cut")));
    assert_eq!(r.upstream.as_deref(), Some("stall"));
    metrics.shutdown().await;
}
