//! End-to-end tests of the router, loadbalancer and metric plugin types, and of an upstream
//! plugin's optional `upstream_metric`: the handshake declares the hooks, a call reaches the
//! trait method and its result comes back, undeclared hooks are refused.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test crate: panicking is how it fails

mod common;

use std::sync::{Arc, Mutex};

use common::{env, harness, request, Harness, CALL};
use gatekeeper_plugin_sdk::rpc::methods::{Empty, Start};
use gatekeeper_plugin_sdk::{
    codes, header, run_loadbalancer, run_metric, run_router, run_upstream, AddBackend,
    AddBackendParams, AddUpstream, AddUpstreamParams, Backend, CallError, EventMetric,
    EventMetricHook, EventMetricParams, GetBackend, GetBackendParams, GetBackendResult, HookError,
    LoadBalancerPlugin, Manager, Method, MetricPlugin, Object, Phases, Plugin, PluginMetric,
    PluginMetricHook, PluginMetricParams, PluginType, ProfilingMetric, ProfilingMetricHook,
    ProfilingMetricParams, RemoveBackend, RemoveBackendParams, RemoveUpstream,
    RemoveUpstreamParams, RequestMetric, RequestMetricHook, RequestMetricParams, RouteRequest,
    RouteRequestParams, RouteRequestResult, RouterPlugin, Upstream, UpstreamMetric,
    UpstreamMetricHook, UpstreamMetricParams, UpstreamPlugin, LOADBALANCER_HOOKS, METRIC_HOOKS,
    ROUTER_HOOKS,
};

fn assert_refused(err: CallError) {
    assert!(
        matches!(err, CallError::Remote { ref error, .. } if error.code() == codes::METHOD_NOT_FOUND),
        "{err}"
    );
}

fn upstream(id: &str) -> Upstream {
    Upstream {
        id: id.into(),
        name: id.into(),
        timeout_ms: None,
        protocols: vec![],
        hostnames: vec![],
        prefixes: vec![],
        balancer: None,
        backend_protocol: None,
        connect_timeout_ms: None,
        max_connections_per_backend: None,
        passive_health: None,
        health_check: None,
        host_header: None,
        extra: Object::new(),
    }
}

fn upstream_metrics() -> UpstreamMetricParams {
    UpstreamMetricParams {
        metrics: vec![UpstreamMetric {
            time_ms: 1,
            upstream: "api".into(),
            backend: "api-1".into(),
            latency_us: 250,
            status: Some(200),
            error: None,
        }],
    }
}

/// Every call the plugin's hooks received, as `method` or `method:detail`.
type Seen = Arc<Mutex<Vec<String>>>;

fn seen(seen: &Seen, entry: impl Into<String>) {
    seen.lock().unwrap().push(entry.into());
}

// ---- router ------------------------------------------------------------------------------------

/// Routes to the upstream named by `x-route`, if it knows it.
#[derive(Default)]
struct Table {
    upstreams: Mutex<Vec<String>>,
}

impl Plugin for Table {}

impl RouterPlugin for Table {
    async fn add_upstream(&self, params: AddUpstreamParams) -> Result<(), HookError> {
        self.upstreams.lock().unwrap().push(params.upstream.id);
        Ok(())
    }

    async fn remove_upstream(&self, params: RemoveUpstreamParams) -> Result<(), HookError> {
        self.upstreams.lock().unwrap().retain(|id| *id != params.id);
        Ok(())
    }

    async fn route_request(
        &self,
        params: RouteRequestParams,
    ) -> Result<RouteRequestResult, HookError> {
        let wanted = header(&params.request.headers, "x-route");
        let upstream = wanted.filter(|w| self.upstreams.lock().unwrap().iter().any(|id| id == w));
        Ok(RouteRequestResult {
            upstream: upstream.map(str::to_owned),
            prefixless_path: Some(params.request.path),
            request: None,
        })
    }
}

fn router<P: RouterPlugin>(plugin: P) -> Harness {
    let env = env(PluginType::Router, common::TOKEN);
    harness(PluginType::Router, move |io| {
        tokio::spawn(async move { run_router(plugin, io, &env).await })
    })
}

async fn route(h: &Harness, route: &str) -> RouteRequestResult {
    let params = RouteRequestParams {
        request: request("/users", &[("x-route", route)]),
    };
    h.proxy
        .request::<RouteRequest>(&params, CALL)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_router_follows_the_registry_and_routes() {
    let mut h = router(Table::default());
    assert_eq!(h.handshake().await.hooks, ROUTER_HOOKS);
    h.proxy.request::<Start>(&Empty {}, CALL).await.unwrap();
    let add = AddUpstreamParams {
        upstream: upstream("api"),
    };
    h.proxy.request::<AddUpstream>(&add, CALL).await.unwrap();

    let routed = route(&h, "api").await;
    assert_eq!(routed.upstream.as_deref(), Some("api"));
    assert_eq!(routed.prefixless_path.as_deref(), Some("/users"));
    assert_eq!(route(&h, "other").await.upstream, None);

    let remove = RemoveUpstreamParams { id: "api".into() };
    h.proxy
        .request::<RemoveUpstream>(&remove, CALL)
        .await
        .unwrap();
    assert_eq!(route(&h, "api").await.upstream, None);
}

/// Implements nothing and declares only `route_request`.
struct NoRoutes;

impl Plugin for NoRoutes {}

impl RouterPlugin for NoRoutes {
    fn hooks(&self) -> &'static [&'static str] {
        &[RouteRequest::NAME]
    }
}

#[tokio::test]
async fn a_default_router_routes_nowhere_and_refuses_undeclared_hooks() {
    let mut h = router(NoRoutes);
    assert_eq!(h.handshake().await.hooks, vec!["route_request".to_owned()]);
    assert_eq!(route(&h, "api").await, RouteRequestResult::default());
    let add = AddUpstreamParams {
        upstream: upstream("api"),
    };
    assert_refused(
        h.proxy
            .request::<AddUpstream>(&add, CALL)
            .await
            .unwrap_err(),
    );
}

// ---- loadbalancer --------------------------------------------------------------------------------

/// Always picks the first backend it was told about; records metric batches.
#[derive(Default)]
struct First {
    backends: Mutex<Vec<(String, String)>>,
    seen: Seen,
}

impl Plugin for First {}

impl LoadBalancerPlugin for First {
    async fn add_backend(&self, params: AddBackendParams) -> Result<(), HookError> {
        let entry = (params.upstream_id, params.backend.id);
        self.backends.lock().unwrap().push(entry);
        Ok(())
    }

    async fn remove_backend(&self, params: RemoveBackendParams) -> Result<(), HookError> {
        self.backends
            .lock()
            .unwrap()
            .retain(|(u, b)| (u, b) != (&params.upstream_id, &params.backend_id));
        Ok(())
    }

    async fn upstream_metric(&self, params: UpstreamMetricParams) -> Result<(), HookError> {
        for metric in params.metrics {
            seen(&self.seen, format!("upstream_metric:{}", metric.backend));
        }
        Ok(())
    }

    async fn get_backend(&self, params: GetBackendParams) -> Result<GetBackendResult, HookError> {
        let backends = self.backends.lock().unwrap();
        let first = backends.iter().find(|(u, _)| *u == params.upstream_id);
        Ok(GetBackendResult {
            backend_id: first.map(|(_, b)| b.clone()),
        })
    }
}

fn loadbalancer<P: LoadBalancerPlugin>(plugin: P) -> Harness {
    let env = env(PluginType::Loadbalancer, common::TOKEN);
    harness(PluginType::Loadbalancer, move |io| {
        tokio::spawn(async move { run_loadbalancer(plugin, io, &env).await })
    })
}

async fn pick(h: &Harness) -> Option<String> {
    let params = GetBackendParams {
        upstream_id: "api".into(),
        request: request("/", &[]),
    };
    h.proxy
        .request::<GetBackend>(&params, CALL)
        .await
        .unwrap()
        .backend_id
}

#[tokio::test]
async fn a_loadbalancer_follows_the_registry_and_picks() {
    let plugin = First::default();
    let seen = plugin.seen.clone();
    let mut h = loadbalancer(plugin);
    assert_eq!(h.handshake().await.hooks, LOADBALANCER_HOOKS);
    assert_eq!(pick(&h).await, None);

    let add = AddBackendParams {
        upstream_id: "api".into(),
        backend: Backend {
            id: "api-1".into(),
            address: "http://127.0.0.1:9".into(),
            weight: None,
            extra: Object::new(),
        },
    };
    h.proxy.request::<AddBackend>(&add, CALL).await.unwrap();
    assert_eq!(pick(&h).await.as_deref(), Some("api-1"));

    h.proxy
        .request::<UpstreamMetricHook>(&upstream_metrics(), CALL)
        .await
        .unwrap();
    assert_eq!(*seen.lock().unwrap(), vec!["upstream_metric:api-1"]);

    let remove = RemoveBackendParams {
        upstream_id: "api".into(),
        backend_id: "api-1".into(),
    };
    h.proxy
        .request::<RemoveBackend>(&remove, CALL)
        .await
        .unwrap();
    assert_eq!(pick(&h).await, None);
}

// ---- metric --------------------------------------------------------------------------------------

/// Records which hook received how many records.
struct Counter {
    hooks: &'static [&'static str],
    seen: Seen,
}

impl Plugin for Counter {}

impl MetricPlugin for Counter {
    fn hooks(&self) -> &'static [&'static str] {
        self.hooks
    }

    async fn event_metric(&self, params: EventMetricParams) -> Result<(), HookError> {
        seen(&self.seen, format!("event_metric:{}", params.events.len()));
        Ok(())
    }

    async fn profiling_metric(&self, params: ProfilingMetricParams) -> Result<(), HookError> {
        seen(
            &self.seen,
            format!("profiling_metric:{}", params.profiles.len()),
        );
        Ok(())
    }

    async fn plugin_metric(&self, params: PluginMetricParams) -> Result<(), HookError> {
        seen(
            &self.seen,
            format!("plugin_metric:{}", params.metrics.len()),
        );
        Ok(())
    }

    async fn request_metric(&self, params: RequestMetricParams) -> Result<(), HookError> {
        seen(
            &self.seen,
            format!("request_metric:{}", params.metrics.len()),
        );
        Ok(())
    }

    async fn upstream_metric(&self, params: UpstreamMetricParams) -> Result<(), HookError> {
        seen(
            &self.seen,
            format!("upstream_metric:{}", params.metrics.len()),
        );
        Ok(())
    }
}

fn metric(hooks: &'static [&'static str]) -> (Harness, Seen) {
    let seen = Seen::default();
    let plugin = Counter {
        hooks,
        seen: seen.clone(),
    };
    let env = env(PluginType::Metric, common::TOKEN);
    let h = harness(PluginType::Metric, move |io| {
        tokio::spawn(async move { run_metric(plugin, io, &env).await })
    });
    (h, seen)
}

fn events() -> EventMetricParams {
    EventMetricParams {
        events: vec![EventMetric {
            time_ms: 1,
            name: "app_started".into(),
            attributes: Object::new(),
        }],
    }
}

#[tokio::test]
async fn a_metric_plugin_receives_every_kind_of_batch() {
    let (mut h, seen) = metric(METRIC_HOOKS);
    assert_eq!(h.handshake().await.hooks, METRIC_HOOKS);
    let p = &h.proxy;
    p.request::<EventMetricHook>(&events(), CALL).await.unwrap();
    let profiles = ProfilingMetricParams {
        profiles: vec![
            ProfilingMetric {
                time_ms: 1,
                name: "plugin_start".into(),
                duration_us: 10,
                attributes: Object::new(),
            };
            2
        ],
    };
    p.request::<ProfilingMetricHook>(&profiles, CALL)
        .await
        .unwrap();
    let plugins = PluginMetricParams {
        metrics: vec![PluginMetric {
            time_ms: 1,
            plugin: "ids".into(),
            method: "modify_request".into(),
            latency_us: 40,
            error: None,
        }],
    };
    p.request::<PluginMetricHook>(&plugins, CALL).await.unwrap();
    let requests = RequestMetricParams {
        metrics: vec![RequestMetric {
            time_ms: 1,
            listener: "http-public".into(),
            method: "GET".into(),
            host: "localhost".into(),
            path: "/".into(),
            status: 404,
            upstream: None,
            backend: None,
            bytes_in: 0,
            bytes_out: 9,
            error: Some("no_route".into()),
            phases: Phases::default(),
            client: None,
            query: None,
            version: None,
            ..RequestMetric::default()
        }],
    };
    p.request::<RequestMetricHook>(&requests, CALL)
        .await
        .unwrap();
    p.request::<UpstreamMetricHook>(&upstream_metrics(), CALL)
        .await
        .unwrap();
    assert_eq!(
        *seen.lock().unwrap(),
        vec![
            "event_metric:1",
            "profiling_metric:2",
            "plugin_metric:1",
            "request_metric:1",
            "upstream_metric:1"
        ]
    );
}

#[tokio::test]
async fn a_metric_plugin_is_sent_only_what_it_declared() {
    let (mut h, seen) = metric(&[RequestMetricHook::NAME]);
    assert_eq!(h.handshake().await.hooks, vec!["request_metric".to_owned()]);
    assert_refused(
        h.proxy
            .request::<EventMetricHook>(&events(), CALL)
            .await
            .unwrap_err(),
    );
    assert!(seen.lock().unwrap().is_empty());
}

// ---- upstream_metric on an upstream plugin ---------------------------------------------------------

/// An upstream plugin that pushes nothing, optionally declaring `upstream_metric`.
struct Watcher {
    hooks: &'static [&'static str],
    seen: Seen,
}

impl Plugin for Watcher {}

impl UpstreamPlugin for Watcher {
    async fn start_upstreams(&self, manager: Manager) -> Result<(), HookError> {
        let _ = manager;
        Ok(())
    }

    fn hooks(&self) -> &'static [&'static str] {
        self.hooks
    }

    async fn upstream_metric(&self, params: UpstreamMetricParams) -> Result<(), HookError> {
        seen(
            &self.seen,
            format!("upstream_metric:{}", params.metrics.len()),
        );
        Ok(())
    }
}

fn watcher(hooks: &'static [&'static str]) -> (Harness, Seen) {
    let seen = Seen::default();
    let plugin = Watcher {
        hooks,
        seen: seen.clone(),
    };
    let env = env(PluginType::Upstream, common::TOKEN);
    let h = harness(PluginType::Upstream, move |io| {
        tokio::spawn(async move { run_upstream(plugin, io, &env).await })
    });
    (h, seen)
}

#[tokio::test]
async fn an_upstream_plugin_receives_upstream_metric_when_it_declares_it() {
    let (mut h, seen) = watcher(&[UpstreamMetricHook::NAME]);
    assert_eq!(
        h.handshake().await.hooks,
        vec!["upstream_metric".to_owned()]
    );
    h.proxy
        .request::<UpstreamMetricHook>(&upstream_metrics(), CALL)
        .await
        .unwrap();
    assert_eq!(*seen.lock().unwrap(), vec!["upstream_metric:1"]);
}

#[tokio::test]
async fn an_upstream_plugin_refuses_upstream_metric_unless_declared() {
    let (mut h, seen) = watcher(&[]);
    assert!(h.handshake().await.hooks.is_empty());
    assert_refused(
        h.proxy
            .request::<UpstreamMetricHook>(&upstream_metrics(), CALL)
            .await
            .unwrap_err(),
    );
    assert!(seen.lock().unwrap().is_empty());
}
