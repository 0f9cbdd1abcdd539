//! Tests of the Prometheus families: request and backend records, reloads, build and process
//! metrics, buckets.

use gatekeeper_rpc::metrics::Phases;

use super::*;

fn request(upstream: Option<&str>, status: u16, total_us: u64) -> RequestMetric {
    RequestMetric {
        time_ms: 0,
        listener: "http-public".into(),
        method: "GET".into(),
        host: "h".into(),
        path: "/".into(),
        status,
        upstream: upstream.map(str::to_owned),
        backend: None,
        bytes_in: 0,
        bytes_out: 0,
        error: None,
        client: None,
        query: None,
        version: None,
        phases: Phases {
            router_us: 0,
            loadbalancer_us: 0,
            modifiers: Vec::new(),
            upstream_connect_us: 0,
            upstream_response_us: 0,
            total_us,
        },
        ..RequestMetric::default()
    }
}

#[tokio::test]
async fn request_records_become_counters_and_histograms() {
    let prometheus = Arc::new(Prometheus::new());
    let exporter = PrometheusExporter::new(prometheus.clone());
    assert!(exporter.wants(MetricKind::Request) && !exporter.wants(MetricKind::Plugin));
    exporter
        .export_requests(vec![
            request(Some("echo"), 200, 1_000),
            request(Some("echo"), 200, 3_000),
            request(None, 404, 10),
        ])
        .await;
    let text = prometheus.render().unwrap();
    // Issue 13: listener, method and error kind labels follow upstream and status.
    let labels = "listener=\"http-public\",method=\"GET\",error_kind=\"\"";
    assert!(
        text.contains(&format!(
            "gatekeeper_requests_total{{upstream=\"echo\",status=\"200\",{labels}}} 2"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "gatekeeper_requests_total{{upstream=\"\",status=\"404\",{labels}}} 1"
        )),
        "{text}"
    );
    assert!(
        text.contains("gatekeeper_request_duration_seconds_count{upstream=\"echo\"} 2"),
        "{text}"
    );
    assert!(
        text.contains(
            "gatekeeper_request_duration_seconds_bucket{le=\"0.001\",upstream=\"echo\"} 1"
        ),
        "{text}"
    );
    assert!(text.ends_with("# EOF\n"));
}

#[tokio::test]
async fn refused_requests_retries_and_backends_are_counted() {
    let prometheus = Arc::new(Prometheus::new());
    let exporter = PrometheusExporter::new(prometheus.clone());
    assert!(exporter.wants(MetricKind::Upstream));
    let malformed = RequestMetric {
        method: "-".into(),
        error: Some("malformed_request".into()),
        ..request(None, 400, 0)
    };
    let retried = RequestMetric {
        method: "BREW".into(),
        retries: 1,
        ..request(Some("echo"), 200, 0)
    };
    exporter.export_requests(vec![malformed, retried]).await;
    let attempt = |backend: &str, status, error: Option<&str>| UpstreamMetric {
        time_ms: 0,
        upstream: "echo".into(),
        backend: backend.into(),
        latency_us: 200_000,
        status,
        error: error.map(str::to_owned),
    };
    exporter
        .export_upstream_metrics(vec![
            attempt("a", None, Some("unreachable")),
            attempt("b", Some(200), None),
            attempt("b", Some(503), None),
        ])
        .await;
    prometheus.count_reload(true);
    let text = prometheus.render().unwrap();
    for line in [
        "gatekeeper_requests_total{upstream=\"\",status=\"400\",listener=\"http-public\",method=\"OTHER\",error_kind=\"malformed_request\"} 1",
        "gatekeeper_requests_total{upstream=\"echo\",status=\"200\",listener=\"http-public\",method=\"OTHER\",error_kind=\"\"} 1",
        "gatekeeper_retries_total{upstream=\"echo\"} 1",
        "gatekeeper_backend_requests_total{upstream=\"echo\",backend=\"b\"} 2",
        "gatekeeper_backend_errors_total{upstream=\"echo\",backend=\"a\",error_kind=\"unreachable\"} 1",
        "gatekeeper_backend_errors_total{upstream=\"echo\",backend=\"b\",error_kind=\"status_5xx\"} 1",
        "gatekeeper_backend_response_seconds_bucket{le=\"0.25\",upstream=\"echo\",backend=\"b\"} 2",
        "gatekeeper_backend_response_seconds_bucket{le=\"0.1\",upstream=\"echo\",backend=\"b\"} 0",
        "gatekeeper_reloads_total{result=\"ok\"} 1",
        "gatekeeper_reloads_total{result=\"failed\"} 0",
        "gatekeeper_build_info{version=\"",
        "process_resident_memory_bytes ",
        "process_open_fds ",
    ] {
        assert!(text.contains(line), "{line} not in {text}");
    }
    assert!(!text.contains("backend=\"b\",error_kind=\"\""), "{text}");
}

#[test]
fn latency_buckets_have_the_slo_edges() {
    for edge in [
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ] {
        assert!(LATENCY_BUCKETS.contains(&edge), "{edge}");
    }
    assert!(LATENCY_BUCKETS.windows(2).all(|w| w[0] < w[1]));
}
