//! Tests of the upstreams file's parsing and checks.

use super::*;
use std::path::PathBuf;

/// The original project's example file. Its backends are public hosts: parse it, never send
/// traffic to them.
fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/original-static-upstreams.yml")
}

fn error_of(text: &str) -> String {
    format!("{:#}", parse(text, BackendIds::Url).unwrap_err())
}

#[test]
fn parses_the_original_example_file() {
    let upstreams = load(&fixture(), BackendIds::Url).unwrap();
    assert_eq!(upstreams.len(), 2);

    let httpbin = &upstreams[0];
    assert_eq!(httpbin.upstream.id, "httpbin");
    assert_eq!(httpbin.upstream.name, "httpbin");
    assert_eq!(httpbin.upstream.timeout_ms, Some(5000));
    assert_eq!(httpbin.upstream.protocols, ["http-internal", "http-public"]);
    assert_eq!(httpbin.upstream.hostnames, ["httpbin", "httpbin.org"]);
    assert_eq!(httpbin.upstream.prefixes, ["httpbin"]);
    let ids: Vec<_> = httpbin.backends.iter().map(|b| b.id.as_str()).collect();
    assert_eq!(
        ids,
        ["https://httpbin.org", "https://httpbin.org#2"],
        "the repeated URL gets two ids"
    );
    assert!(httpbin
        .backends
        .iter()
        .all(|b| b.address == "https://httpbin.org"));

    let localhost = &upstreams[1];
    assert_eq!(localhost.upstream.id, "localhost");
    assert_eq!(localhost.upstream.timeout_ms, Some(10));
    assert!(localhost.upstream.hostnames.is_empty());
    assert_eq!(localhost.upstream.prefixes, ["localhost"]);
    assert_eq!(localhost.backends[0].address, "http://127.0.0.1:8080");
}

#[test]
fn durations_parse() {
    for (text, ms) in [
        ("10ms", 10),
        ("5s", 5000),
        ("1m 30s", 90_000),
        ("2m", 120_000),
    ] {
        let yaml = format!("a:\n  timeout: {text}\n");
        assert_eq!(
            parse(&yaml, BackendIds::Url).unwrap()[0]
                .upstream
                .timeout_ms,
            Some(ms),
            "{text}"
        );
    }
    assert_eq!(
        parse("a: {}\n", BackendIds::Url).unwrap()[0]
            .upstream
            .timeout_ms,
        None
    );
    assert_eq!(
        parse("a:\n  timeout:\n", BackendIds::Url).unwrap()[0]
            .upstream
            .timeout_ms,
        None
    );
    let message = error_of("a:\n  timeout: 5\n");
    assert!(
        message.contains("line 2") && message.contains("`5`"),
        "{message}"
    );
    let message = error_of("a:\n  timeout: 0s\n");
    assert!(message.contains("more than 0"), "{message}");
}

#[test]
fn backend_settings_pass_through() {
    let yaml =
        "a:\n  backend_protocol: h2c\n  connect_timeout: 250ms\n  max_connections_per_backend: 3\n";
    let upstream = &parse(yaml, BackendIds::Url).unwrap()[0].upstream;
    assert_eq!(upstream.backend_protocol.as_deref(), Some("h2c"));
    assert_eq!(upstream.connect_timeout_ms, Some(250));
    assert_eq!(upstream.max_connections_per_backend, Some(3));
    let upstream = &parse("a: {}\n", BackendIds::Url).unwrap()[0].upstream;
    assert_eq!(upstream.backend_protocol, None);
    assert_eq!(upstream.connect_timeout_ms, None);
    assert_eq!(upstream.max_connections_per_backend, None);
    let message = error_of("a:\n  connect_timeout: 0s\n");
    assert!(message.contains("more than 0"), "{message}");
}

#[test]
fn a_bad_duration_names_its_line() {
    let message = error_of("a:\n  name: a\n  timeout: soon\n");
    assert!(message.contains("line 3"), "{message}");
    assert!(message.contains("soon"), "{message}");
}

#[test]
fn a_syntax_error_names_its_line() {
    let message = error_of("a:\n  name: a\n  backends:\n    - http://x\n   - http://y\n");
    assert!(message.contains("line 5"), "{message}");
}

#[test]
fn a_misspelt_key_names_its_line() {
    let message = error_of("a:\n  name: a\n  hostname: [x]\n");
    assert!(message.contains("line 3"), "{message}");
    assert!(message.contains("hostname"), "{message}");
}

#[test]
fn a_bad_file_names_the_file_and_the_line() {
    let dir = std::env::temp_dir().join(format!("static-upstreams-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.yml");
    std::fs::write(&path, "a:\n  timeout: [1, 2]\n").unwrap();
    let message = format!("{:#}", load(&path, BackendIds::Url).unwrap_err());
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(message.ends_with("bad.yml:2: a.timeout: invalid type: sequence, expected a duration such as `10ms`, `5s` or `1m 30s`"), "{message}");
}

#[test]
fn defaults_and_normalisation() {
    let upstreams = parse(
        "api:\n  prefixes: [/api/]\n  backends: [' http://10.0.0.1:80 ']\n",
        BackendIds::Url,
    )
    .unwrap();
    let api = &upstreams[0];
    assert_eq!(api.upstream.name, "api");
    assert_eq!(api.upstream.prefixes, ["api"]);
    assert_eq!(api.backends[0].address, "http://10.0.0.1:80");
    assert_eq!(api.backends[0].id, "http://10.0.0.1:80");
    assert!(parse("", BackendIds::Url).unwrap().is_empty());
    assert!(parse("---\n", BackendIds::Url).unwrap().is_empty());
}

#[test]
fn host_header_passes_through() {
    let upstreams = parse(
        "a:\n  host_header: backend\nb:\n  host_header: api.internal:8080\nc: {}\n",
        BackendIds::Url,
    )
    .unwrap();
    let host = |i: usize| upstreams[i].upstream.host_header.as_deref();
    assert_eq!(host(0), Some("backend"));
    assert_eq!(host(1), Some("api.internal:8080"));
    assert_eq!(host(2), None);
}

#[test]
fn semantic_errors_name_the_upstream() {
    let message = error_of("api:\n  prefixes: [a/b]\n");
    assert!(
        message.starts_with("line 2: api.prefixes[0]: ") && message.contains("a/b"),
        "{message}"
    );
    let message = error_of("api:\n  backends: [10.0.0.1:80]\n");
    assert!(message.contains("not an http"), "{message}");
}

#[test]
fn url_ids_survive_reordering_and_number_repeats() {
    let ids =
        BackendIds::Url.assign(&["http://a", "http://b", "http://a", "http://a#2", "http://a"]);
    assert_eq!(
        ids,
        [
            "http://a",
            "http://b",
            "http://a#2",
            "http://a#2#2",
            "http://a#3"
        ]
    );
    let reordered = BackendIds::Url.assign(&["http://b", "http://a"]);
    assert_eq!(reordered, ["http://b", "http://a"]);
    assert_eq!(
        BackendIds::Index.assign(&["http://a", "http://a"]),
        ["0", "1"]
    );
    assert_eq!(BackendIds::from_name("index"), Some(BackendIds::Index));
    assert_eq!(BackendIds::from_name("url"), Some(BackendIds::Url));
    assert_eq!(BackendIds::from_name("position"), None);
}

#[test]
fn weights_and_health_settings_pass_through() {
    let yaml = "\
api:
  balancer: round_robin
  passive_health: { failures: 2, cooldown: 1s }
  health_check:
    path: /status/200
    interval: 500ms
    timeout: 250ms
    healthy_threshold: 1
    unhealthy_threshold: 4
    expected_status: 204
  backends:
    - http://127.0.0.1:1
    - address: http://127.0.0.1:2
      weight: 3
";
    let api = &parse(yaml, BackendIds::Url).unwrap()[0];
    assert_eq!(
        api.backends.iter().map(|b| b.weight).collect::<Vec<_>>(),
        [None, Some(3)]
    );
    assert_eq!(api.backends[1].address, "http://127.0.0.1:2");
    assert_eq!(
        api.upstream.passive_health,
        Some(PassiveHealth {
            failures: Some(2),
            cooldown_ms: Some(1000)
        })
    );
    assert_eq!(
        api.upstream.health_check,
        Some(HealthCheck {
            path: Some("/status/200".into()),
            interval_ms: Some(500),
            timeout_ms: Some(250),
            healthy_threshold: Some(1),
            unhealthy_threshold: Some(4),
            expected_status: Some("204".into()),
        })
    );
    let plain = &parse("a:\n  backends: [http://x]\n", BackendIds::Url).unwrap()[0];
    assert_eq!(plain.upstream.passive_health, None);
    assert_eq!(plain.upstream.health_check, None);

    let message = error_of("a:\n  backends:\n    - address: http://x\n      wieght: 2\n");
    assert!(message.contains("wieght"), "{message}");
    let message = error_of("a:\n  backends:\n    - {address: http://x, weight: 0}\n");
    assert!(message.contains("at least 1"), "{message}");
    let message = error_of("a:\n  health_check: {interval: soon}\n");
    assert!(message.contains("soon"), "{message}");
}

#[test]
fn what_the_proxy_would_refuse_is_refused_with_line_and_key() {
    for (text, expected) in [
        (
            "api:\n  prefixes: [api]\n  balancer: round_robbin\n",
            "line 3: api.balancer: unknown balancer `round_robbin`, expected one of `random`, `round_robin`, `least_outstanding`",
        ),
        (
            "api:\n  backend_protocol: h3\n",
            "line 2: api.backend_protocol: unknown backend protocol `h3`, expected one of `http1`, `h2c`",
        ),
        (
            "api:\n  backends:\n    - http://a\n    - 10.0.0.1:80\n",
            "line 4: api.backends[1]: backend `10.0.0.1:80` is not an http:// or https:// URL",
        ),
        (
            "api:\n  host_header: 'a b'\n",
            "line 2: api.host_header: host_header `a b` is not `preserve`, `backend` or a host[:port]",
        ),
        (
            "api:\n  max_connections_per_backend: 0\n",
            "line 2: api.max_connections_per_backend: must be at least 1",
        ),
        (
            "api:\n  health_check:\n    expected_status: 700\n",
            "line 3: api.health_check.expected_status: `700` is not a status from 100 to 599",
        ),
        (
            "api:\n  health_check:\n    path: status\n",
            "line 3: api.health_check.path: `status` is not a path starting with `/`",
        ),
        (
            "api:\n  health_check:\n    healthy_threshold: 0\n",
            "line 3: api.health_check.healthy_threshold: must be at least 1",
        ),
        ("api: {}\napi: {}\n", "line 1: upstream id `api` appears twice"),
    ] {
        assert_eq!(error_of(text), expected);
    }
}

#[test]
fn an_unreadable_file_names_the_file() {
    let message = load(Path::new("/nonexistent/upstreams.yml"), BackendIds::Url)
        .unwrap_err()
        .to_string();
    assert!(
        message.starts_with("/nonexistent/upstreams.yml: could not read the upstreams file: "),
        "{message}"
    );
}

#[test]
fn upstreams_on_the_same_listeners_do_not_share_routes() {
    assert_eq!(
        error_of("a:\n  prefixes: [api]\nb:\n  prefixes: [x, /api/]\n"),
        "b.prefixes: prefix `api` is upstream `a`'s too (on the same listeners)"
    );
    assert_eq!(
        error_of("a:\n  hostnames: [Api.example]\n  protocols: [http-public]\nb:\n  hostnames: [api.example]\n"),
        "b.hostnames: hostname `api.example` is upstream `a`'s too (on the same listeners)"
    );
    let apart = "a:\n  prefixes: [api]\n  protocols: [http-public]\nb:\n  prefixes: [api]\n  protocols: [http-internal]\n";
    assert_eq!(parse(apart, BackendIds::Url).unwrap().len(), 2);
    // The first upstream in file order is named, whichever route matched first.
    assert_eq!(
        error_of("a:\n  prefixes: [x]\nb:\n  prefixes: [y]\nc:\n  prefixes: [y, x]\n"),
        "c.prefixes: prefix `x` is upstream `a`'s too (on the same listeners)"
    );
    // A route repeated within one upstream is not a clash.
    assert_eq!(
        parse("a:\n  prefixes: [x, x]\n", BackendIds::Url)
            .unwrap()
            .len(),
        1
    );
}
