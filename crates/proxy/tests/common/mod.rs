//! Helpers shared by the end-to-end tests: a tiny hyper backend and the proxy, both on
//! 127.0.0.1, and a client.

#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use gatekeeper_proxy::{
    HookError, HooksSwitch, ListenerConfig, Parsed, Plugin, Proxy, ProxyConfig, RawCall, Registry,
};
use gatekeeper_rpc::methods::Method;
use gatekeeper_rpc::types::{Backend, Upstream};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// A backend answering `METHOD URI` and a few request headers; sleeps on `/slow`. Every
/// response has `x-backend: yes` and `x-backend-name: {name}`.
pub async fn start_named_backend(name: &'static str, hits: Arc<AtomicUsize>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let hits = hits.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    hits.fetch_add(1, Ordering::SeqCst);
                    async move {
                        if req.uri().path() == "/slow" {
                            tokio::time::sleep(Duration::from_secs(3)).await;
                        }
                        let header = |n: &str| {
                            req.headers()
                                .get(n)
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("-")
                                .to_string()
                        };
                        let mut body = format!(
                            "{} {}\nhost={}\nx-added={}\nconnection={}",
                            req.method(),
                            req.uri(),
                            header("host"),
                            header("x-added"),
                            header("x-hop"),
                        );
                        let (_, req_body) = req.into_parts();
                        let received = req_body.collect().await.unwrap().to_bytes();
                        if !received.is_empty() {
                            body.push_str(&format!("\nbody={}", received.len()));
                        }
                        let mut resp = http::Response::new(Full::new(Bytes::from(body)));
                        resp.headers_mut()
                            .insert("x-backend", http::HeaderValue::from_static("yes"));
                        resp.headers_mut()
                            .insert("x-backend-name", http::HeaderValue::from_static(name));
                        Ok::<_, Infallible>(resp)
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// [`start_named_backend`] named `b1`.
pub async fn start_backend(hits: Arc<AtomicUsize>) -> SocketAddr {
    start_named_backend("b1", hits).await
}

/// An address nothing listens on.
pub fn dead_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

pub struct TestProxy {
    pub addr: SocketAddr,
    pub registry: Arc<Registry>,
    /// Replaces the proxy's hooks while it serves.
    pub hooks: HooksSwitch,
    pub stop: Option<oneshot::Sender<()>>,
    pub done: tokio::task::JoinHandle<()>,
}

/// A proxy with one listener `http`, configured further by `configure`.
pub async fn start_proxy_with(
    modifiers: Vec<Arc<dyn Plugin>>,
    configure: impl FnOnce(Proxy) -> Proxy,
) -> TestProxy {
    let registry = Arc::new(Registry::new());
    let config = ProxyConfig {
        listeners: vec![ListenerConfig {
            name: "http".into(),
            addr: "127.0.0.1:0".parse().unwrap(),
        }],
        ..ProxyConfig::default()
    };
    let bound = configure(Proxy::new(config, registry.clone(), modifiers))
        .bind()
        .await
        .unwrap();
    let addr = bound.local_addrs()[0];
    let hooks = bound.hooks_switch();
    let (tx, rx) = oneshot::channel::<()>();
    let done = tokio::spawn(bound.serve(async move {
        let _ = rx.await;
    }));
    TestProxy {
        addr,
        registry,
        hooks,
        stop: Some(tx),
        done,
    }
}

pub async fn start_proxy(modifiers: Vec<Arc<dyn Plugin>>) -> TestProxy {
    start_proxy_with(modifiers, |p| p).await
}

pub fn upstream(id: &str, prefix: &str, timeout_ms: Option<u64>) -> Upstream {
    Upstream {
        id: id.into(),
        name: String::new(),
        timeout_ms,
        protocols: vec![],
        hostnames: vec![format!("{id}.test")],
        prefixes: vec![prefix.into()],
        balancer: None,
        backend_protocol: None,
        connect_timeout_ms: None,
        max_connections_per_backend: None,
        passive_health: None,
        health_check: None,
        host_header: None,
        extra: Default::default(),
    }
}

pub fn backend(id: &str, addr: SocketAddr) -> Backend {
    Backend {
        id: id.into(),
        address: format!("http://{addr}"),
        weight: None,
        extra: Default::default(),
    }
}

/// A response as the tests look at it.
pub type Answer = (StatusCode, http::HeaderMap, String);

/// Sends a request with these extra headers and body; returns status, headers and body text.
pub async fn send(
    proxy: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &'static str,
) -> Answer {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://{proxy}{path}"))
        .header("connection", "x-hop")
        .header("x-hop", "secret");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let resp = client
        .request(
            req.body(Full::new(Bytes::from_static(body.as_bytes())))
                .unwrap(),
        )
        .await
        .unwrap();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

/// Sends a GET and returns status, headers and body text.
pub async fn get(proxy: SocketAddr, path: &str, host: Option<&str>) -> Answer {
    let headers: Vec<(&str, &str)> = host.map(|h| ("host", h)).into_iter().collect();
    send(proxy, "GET", path, &headers, "").await
}

/// A proxy with upstream `api` (prefix `api`) whose one backend `b1` is a live test backend.
pub async fn setup_with(
    modifiers: Vec<Arc<dyn Plugin>>,
    configure: impl FnOnce(Proxy) -> Proxy,
) -> (TestProxy, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let backend_addr = start_backend(hits.clone()).await;
    let proxy = start_proxy_with(modifiers, configure).await;
    proxy
        .registry
        .add_upstream(upstream("api", "api", Some(500)))
        .unwrap();
    proxy
        .registry
        .add_backend("api", backend("b1", backend_addr))
        .unwrap();
    (proxy, hits)
}

pub async fn setup(modifiers: Vec<Arc<dyn Plugin>>) -> (TestProxy, Arc<AtomicUsize>) {
    setup_with(modifiers, |p| p).await
}

/// Waits (up to 5s) until `check` returns `Some`.
pub async fn eventually<T>(mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not met within 5s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Answers a port call of `M` in process: its params go to `answer`, whose result is read back
/// as the port reads a plugin's (for the test fakes' `call_raw`).
pub fn typed<M: Method>(
    call: RawCall,
    answer: impl FnOnce(M::Params) -> BoxFuture<'static, Result<M::Result, HookError>>,
) -> BoxFuture<'static, Result<Parsed, HookError>>
where
    M::Result: 'static,
{
    match call.params::<M>() {
        Ok(params) => {
            let answering = answer(params);
            Box::pin(async move { call.answer::<M>(&answering.await?) })
        }
        Err(error) => Box::pin(async move { Err(error) }),
    }
}

/// A hook error as a plugin's error answer.
pub fn error_answer(message: &str) -> HookError {
    HookError::ErrorAnswer {
        code: -32000,
        message: message.into(),
    }
}

/// One hook of a [`FakePlugin`]: takes the call, answers it in process.
type FakeHook = Box<dyn Fn(RawCall) -> BoxFuture<'static, Result<Parsed, HookError>> + Send + Sync>;

/// An in-process plugin built from closures, one per hook (`FakePlugin::new(..).on::<M>(..)`),
/// so a test states what its fake answers and nothing else. Hooks it was not given are not
/// declared.
pub struct FakePlugin {
    name: &'static str,
    policy: gatekeeper_proxy::FailurePolicy,
    available: bool,
    hooks: Vec<(&'static str, FakeHook)>,
    cache: Option<Arc<gatekeeper_proxy::DecisionCache>>,
}

impl FakePlugin {
    /// A plugin with no hooks yet, available, with this failure policy.
    pub fn new(name: &'static str, policy: gatekeeper_proxy::FailurePolicy) -> Self {
        FakePlugin {
            name,
            policy,
            available: true,
            hooks: Vec::new(),
            cache: None,
        }
    }

    /// Declares the hook `M`, answered by `answer` (its params in, its result or error out).
    pub fn on<M: Method>(
        mut self,
        answer: impl Fn(M::Params) -> BoxFuture<'static, Result<M::Result, HookError>>
            + Send
            + Sync
            + 'static,
    ) -> Self
    where
        M::Result: 'static,
    {
        let answer = Arc::new(answer);
        self.hooks.push((
            M::NAME,
            Box::new(move |call| {
                let answer = answer.clone();
                typed::<M>(call, move |params| answer(params))
            }),
        ));
        self
    }

    /// Whether the plugin counts as available (default yes).
    pub fn available(mut self, available: bool) -> Self {
        self.available = available;
        self
    }

    /// Honours its results' `cache` instructions in `cache` (default: no decision cache).
    pub fn with_decision_cache(mut self, cache: Arc<gatekeeper_proxy::DecisionCache>) -> Self {
        self.cache = Some(cache);
        self
    }

    /// The plugin, for a hooks snapshot.
    pub fn build(self) -> Arc<dyn Plugin> {
        Arc::new(self)
    }
}

impl Plugin for FakePlugin {
    fn name(&self) -> &str {
        self.name
    }

    fn has_hook(&self, hook: &str) -> bool {
        self.hooks.iter().any(|(name, _)| *name == hook)
    }

    fn is_available(&self) -> bool {
        self.available
    }

    fn failure_policy(&self) -> gatekeeper_proxy::FailurePolicy {
        self.policy
    }

    fn decision_cache(&self) -> Option<&gatekeeper_proxy::DecisionCache> {
        self.cache.as_deref()
    }

    fn call_raw(&self, call: RawCall) -> BoxFuture<'static, Result<Parsed, HookError>> {
        match self.hooks.iter().find(|(name, _)| *name == call.method()) {
            Some((_, answer)) => answer(call),
            None => Box::pin(async { Err(error_answer("not a hook of this fake")) }),
        }
    }
}
