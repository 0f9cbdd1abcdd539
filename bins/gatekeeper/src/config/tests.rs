//! The settings from file and flags: defaults, flags over keys, errors naming their key, the
//! example config complete.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use gatekeeper_plugin_host::spec::RecycleAfter;
use gatekeeper_proxy::{FailurePolicy, ForwardedMode, ListenerConfig, ProxyConfig};

use super::file::{plugin_keys, FileConfig};
use super::flags::DEFAULT_LISTEN;
use super::plugins::default_name;
use super::*;
use crate::cli::{split_plugin_flags, Cli};

fn cli(args: &str) -> Cli {
    let (rest, flags) = split_plugin_flags(args.split_whitespace().map(str::to_owned).collect());
    let mut cli = Cli::parse_from(rest);
    cli.plugin_flags = flags;
    cli
}

fn file(text: &str) -> FileConfig {
    FileConfig::from_table(toml::from_str(text).unwrap()).unwrap()
}

/// The settings of this file and these flags.
fn merge(args: &str, text: &str) -> Result<Settings> {
    let table: toml::Table = toml::from_str(text)?;
    Settings::merge(&cli(args), FileConfig::from_table(table)?)
}

/// The error of this file and these flags, with its causes.
fn err(text: &str, args: &str) -> String {
    format!("{:#}", merge(args, text).unwrap_err())
}

#[test]
fn flags_override_the_file() {
    let f = file(
        r#"
        listen = ["internal=127.0.0.1:9000"]
        default_timeout = "5s"
        [[plugin]]
        name = "shell"
        type = "modifier"
        command = "/bin/sh"
        args = ["-c", "exit 0"]
        failure = "open"
        hook_timeout = "250ms"
        config = { header = "x-a", n = 3 }
        "#,
    );
    let s = Settings::merge(
        &cli("gk --listen 127.0.0.1:8001 --default-timeout 2s --modifier-header=x-b"),
        f,
    )
    .unwrap();
    assert_eq!(
        s.proxy.listeners,
        vec![ListenerConfig {
            name: "http-public".into(),
            addr: "127.0.0.1:8001".parse().unwrap()
        }]
    );
    assert_eq!(s.proxy.default_timeout, Duration::from_secs(2));
    let p = &s.plugins[0];
    assert_eq!(p.spec.name, "shell");
    assert_eq!(p.failure, FailurePolicy::Open);
    assert_eq!(p.spec.hook_timeout, Duration::from_millis(250));
    assert_eq!(p.spec.config["header"], "x-b");
    assert_eq!(p.spec.config["n"], 3);
}

#[test]
fn connect_timeout_default_file_and_flag() {
    let s = merge("gk", "").unwrap();
    assert_eq!(
        s.proxy.connect_timeout,
        ProxyConfig::default().connect_timeout
    );
    let s = merge("gk", "connect_timeout = \"250ms\"").unwrap();
    assert_eq!(s.proxy.connect_timeout, Duration::from_millis(250));
    let s = merge("gk --connect-timeout 1s", "connect_timeout = \"250ms\"").unwrap();
    assert_eq!(s.proxy.connect_timeout, Duration::from_secs(1));
}

#[test]
fn bad_values_name_their_key() {
    assert!(err("listen = [\"nope\"]", "gk").contains("listen"));
    assert!(err("", "gk --listen 1.2.3.4").contains("--listen"));
    assert!(err("default_timeout = \"soon\"", "gk").contains("default_timeout"));
    assert!(err("connect_timeout = \"soon\"", "gk").contains("connect_timeout"));
    assert!(err("connect_timeout = \"0s\"", "gk").contains("connect_timeout"));
    assert!(err("bogus = 1", "gk").contains("bogus"));
    assert!(err("forwarded_headers = \"trust\"", "gk").contains("forwarded_headers"));
    assert!(err("via = \"two words\"", "gk").contains("via"));
    assert!(err(
        "[[plugin]]\ntype = \"modifier\"\ncommand = \"/no/such/plugin\"",
        "gk"
    )
    .contains("plugin[0].command"));
    assert!(
        err("[[plugin]]\ntype = \"teapot\"\ncommand = \"/bin/sh\"", "gk")
            .contains("plugin[0].type")
    );
    assert!(err("", "gk --upstream-file x.yml").contains("no upstream plugin"));
    assert!(err("", "gk --modifier-plugin no-such-plugin-anywhere").contains("not found"));
    assert!(err("passive_health_cooldown = \"0s\"", "gk").contains("passive_health_cooldown"));
}

#[test]
fn errors_say_the_key_and_what_is_wrong() {
    assert_eq!(
        err("default_timeout = \"soon\"", "gk"),
        "default_timeout: `soon` is not a duration (examples: 500ms, 5s, 1m)"
    );
    assert_eq!(
        err("listen = [\"nope\"]", "gk"),
        "listen: `nope` is not an IP:PORT address"
    );
    assert_eq!(
        err("", "gk --default-timeout soon"),
        "--default-timeout: `soon` is not a duration (examples: 500ms, 5s, 1m)"
    );
    assert_eq!(
        err("forwarded_headers = \"trust\"", "gk"),
        "forwarded_headers: `trust` must be one of append, replace, off"
    );
    assert_eq!(err("bogus = 1", "gk"), "bogus: unknown key");
    let plugin = "[[plugin]]\ntype = \"modifier\"\ncommand = \"/bin/sh\"\n";
    assert_eq!(
        err(&format!("{plugin}failure = \"maybe\""), "gk"),
        "plugin[0].failure: `maybe` must be \"open\" or \"closed\""
    );
    assert_eq!(
        err(&format!("{plugin}failure_status = 99"), "gk"),
        "plugin[0].failure_status: 99 is not an HTTP status from 200 to 599"
    );
    assert_eq!(
        err(&format!("{plugin}instances = 65"), "gk"),
        "plugin[0].instances: 65 must be from 1 to 64"
    );
    assert_eq!(
        err(&format!("{plugin}hook_timeout = \"x\""), "gk"),
        "plugin[0].hook_timeout: `x` is not a duration (examples: 500ms, 5s, 1m)"
    );
    assert_eq!(
        err(&format!("{plugin}bogus = 1"), "gk"),
        "plugin[0].bogus: unknown key"
    );
    assert!(err("[[plugin]]\ncommand = \"/bin/sh\"", "gk")
        .starts_with("plugin[0]: missing field `type`"));
    assert_eq!(
        err("metrics_batch_size = 0", "gk"),
        "metrics_batch_size: 0 must be from 1 to 100000"
    );
    assert_eq!(
        err("workers = 0", "gk"),
        "workers: 0 must be from 1 to 1024"
    );
}

#[test]
fn tls_flags_pair_certificates_and_keys_per_listener() {
    let s = merge(
        "gk --listen https=127.0.0.1:1 --listen 127.0.0.1:2 --tls-cert https=a.crt --tls-key https=a.key --tls-cert https=b.crt --tls-key https=b.key",
        "[[tls]]\nlistener = \"https\"\ncert = \"file.crt\"\nkey = \"file.key\"",
    )
    .unwrap();
    let pairs: Vec<_> = s
        .proxy
        .tls
        .iter()
        .map(|t| {
            (
                t.listener.as_str(),
                t.cert.to_str().unwrap(),
                t.key.to_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        pairs,
        [("https", "a.crt", "a.key"), ("https", "b.crt", "b.key")]
    );
    let only = merge(
        "gk --listen 127.0.0.1:1 --tls-cert a.crt --tls-key a.key",
        "",
    )
    .unwrap();
    assert_eq!(only.proxy.tls[0].listener, "http-public");
    let from_file = merge(
        "gk --listen https=127.0.0.1:1",
        "[[tls]]\nlistener = \"https\"\ncert = \"f.crt\"\nkey = \"f.key\"",
    )
    .unwrap();
    assert_eq!(from_file.proxy.tls[0].cert, PathBuf::from("f.crt"));
}

#[test]
fn bad_listener_settings_name_their_key() {
    let two = "gk --listen a=127.0.0.1:1 --listen b=127.0.0.1:2";
    assert!(err("", &format!("{two} --tls-cert x.crt --tls-key x.key")).contains("--tls-cert"));
    assert!(
        err("", &format!("{two} --tls-cert c=x.crt --tls-key c=x.key"))
            .contains("`c` is not a listener")
    );
    assert!(err("", &format!("{two} --tls-cert a=x.crt"))
        .contains("listener `a` has 1 --tls-cert but 0 --tls-key"));
    assert!(
        err("[[tls]]\nlistener = \"c\"\ncert = \"x\"\nkey = \"y\"", two)
            .contains("tls[0].listener")
    );
    assert!(err("max_header_bytes = 10", "gk").contains("max_header_bytes"));
    assert!(err("max_connections = 0", "gk").contains("max_connections"));
    assert!(err("keepalive_idle = \"never\"", "gk").contains("keepalive_idle"));
    let s = merge("gk", "").unwrap();
    assert_eq!(
        (
            s.proxy.keepalive_idle,
            s.proxy.max_header_bytes,
            s.proxy.max_connections
        ),
        (Duration::from_secs(60), 65536, 10_000)
    );
}

#[test]
fn per_client_limits_are_off_by_default_and_flags_win_over_keys() {
    let default = merge("gk", "").unwrap();
    assert_eq!(default.proxy.max_connections_per_client, 0);
    assert_eq!(default.proxy.client_request_rate, 0);
    assert_eq!(default.proxy.client_request_burst, 0);
    let file =
        "max_connections_per_client = 8\nclient_request_rate = 50\nclient_request_burst = 100";
    let s = merge("gk", file).unwrap();
    assert_eq!(
        (
            s.proxy.max_connections_per_client,
            s.proxy.client_request_rate,
            s.proxy.client_request_burst
        ),
        (8, 50, 100)
    );
    let flags =
        "gk --max-connections-per-client 2 --client-request-rate 5 --client-request-burst 0";
    let s = merge(flags, file).unwrap();
    assert_eq!(
        (
            s.proxy.max_connections_per_client,
            s.proxy.client_request_rate,
            s.proxy.client_request_burst
        ),
        (2, 5, 0)
    );
    let too_fast = merge("gk --client-request-rate 2000000", "").unwrap_err();
    assert!(format!("{too_fast:#}").contains("client_request_rate"));
}

#[test]
fn max_plugin_body_defaults_to_1_mib_and_is_bounded() {
    let default = merge("gk", "").unwrap();
    assert_eq!(default.proxy.max_plugin_body, 1024 * 1024);
    assert_eq!(
        merge("gk", "max_plugin_body = 4096")
            .unwrap()
            .proxy
            .max_plugin_body,
        4096
    );
    let flag = merge("gk --max-plugin-body 10", "max_plugin_body = 4096").unwrap();
    assert_eq!(flag.proxy.max_plugin_body, 10);
    let too_large = merge("gk --max-plugin-body 8388609", "").unwrap_err();
    assert!(format!("{too_large:#}").contains("max_plugin_body"));
}

#[test]
fn interpreters_are_named_after_their_script() {
    let s = merge(
        "gk --modifier-plugin /bin/sh --modifier-plugin /usr/bin/env",
        "",
    )
    .unwrap();
    assert_eq!(s.plugins[0].spec.name, "sh");
    assert_eq!(
        default_name(
            Path::new("/usr/bin/python3"),
            &["-u".into(), "/x/auth.py".into()]
        ),
        Some("auth".into())
    );
    assert_eq!(
        default_name(Path::new("/usr/bin/env"), &["A=1".into(), "node".into()]),
        Some("node".into())
    );
    assert_eq!(
        default_name(Path::new("/opt/request-id"), &[]),
        Some("request-id".into())
    );
}

#[test]
fn flag_plugins_get_unique_names_and_arguments() {
    let s = merge("gk --modifier-plugin /bin/sh --modifier-plugin /bin/sh", "").unwrap();
    let names: Vec<_> = s.plugins.iter().map(|p| p.spec.name.as_str()).collect();
    assert_eq!(names, ["sh", "sh-2"]);
    assert_eq!(s.proxy.listeners[0].addr.to_string(), DEFAULT_LISTEN);
    let defaults = ProxyConfig::default();
    assert_eq!(
        s.proxy.passive_health_failures,
        defaults.passive_health_failures
    );
    assert_eq!(
        s.proxy.passive_health_cooldown,
        defaults.passive_health_cooldown
    );
    assert_eq!(
        (
            s.proxy.passive_health_failures,
            s.proxy.passive_health_cooldown
        ),
        (3, Duration::from_secs(10))
    );
}

/// Keys a line of the example sets or shows commented out: `key = …`, `# key = …`,
/// `[[key]]`, `# [[key]]`.
fn example_keys(text: &str) -> Vec<String> {
    text.lines()
        .map(|line| line.trim_start_matches('#').trim())
        .filter_map(|line| {
            if let Some(table) = line.strip_prefix("[[") {
                return table.split_once("]]").map(|(key, _)| key.trim().to_owned());
            }
            let (key, _) = line.split_once(" = ")?;
            let key = key.trim();
            key.chars()
                .all(|c| c.is_ascii_lowercase() || c == '_')
                .then(|| key.to_owned())
        })
        .collect()
}

#[test]
fn the_example_config_has_every_key_and_parses() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../scripts/gatekeeper.example.toml"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let example: toml::Table = toml::from_str(&text).unwrap();
    let parsed = FileConfig::from_table(example.clone()).unwrap();
    let shown = example_keys(&text);
    let missing: Vec<String> = file_keys()
        .into_iter()
        .filter(|key| !shown.contains(key))
        .collect();
    assert!(missing.is_empty(), "keys missing from {path}: {missing:?}");
    assert_eq!(file_keys().len(), 34, "{:?}", file_keys());

    // Every key of a [[plugin]] table is set in the example's first one; those without a
    // default value (max_memory, recycle_after) are shown commented out.
    let first_plugin = &example["plugin"][0];
    for key in plugin_keys() {
        let optional = ["max_memory", "recycle_after"].contains(&key.as_str());
        assert!(
            first_plugin.get(&key).is_some() || (optional && shown.contains(&key)),
            "[[plugin]] key `{key}` missing"
        );
    }
    assert!(!parsed.plugins.is_empty());
    // The example's active values are the defaults.
    let defaults = merge("gk", "").unwrap();
    assert_eq!(example["default_timeout"].as_str(), Some("30s"));
    assert_eq!(parsed.proxy.default_timeout, defaults.proxy.default_timeout);
    assert_eq!(
        example["max_connections"].as_integer(),
        Some(defaults.proxy.max_connections as i64)
    );
    for key in [
        "max_connections_per_client",
        "client_request_rate",
        "client_request_burst",
    ] {
        assert_eq!(example[key].as_integer(), Some(0), "{key}: off by default");
    }
    assert_eq!(
        example["max_header_bytes"].as_integer(),
        Some(defaults.proxy.max_header_bytes as i64)
    );
    assert_eq!(
        example["max_plugin_body"].as_integer(),
        Some(defaults.proxy.max_plugin_body as i64)
    );
    assert_eq!(
        example["metrics_buffer"].as_integer(),
        Some(defaults.metrics.buffer as i64)
    );
    assert_eq!(example["access_log"].as_str(), Some("off"));
}

#[test]
fn log_and_access_log_settings() {
    let s = merge("gk", "").unwrap();
    assert_eq!(s.access_log, AccessLogFormat::Off);
    assert_eq!(s.access_log_file, PathBuf::from("-"));
    let s = merge(
        "gk",
        "log_format = \"json\"\naccess_log = \"common\"\naccess_log_file = \"/tmp/a.log\"",
    )
    .unwrap();
    assert_eq!(s.log_format, LogFormat::Json);
    assert_eq!(s.access_log, AccessLogFormat::Common);
    let flag = merge("gk --log-format journald", "log_format = \"json\"");
    assert_eq!(flag.unwrap().log_format, LogFormat::Journald);
    assert!(err("log_format = \"xml\"", "gk").starts_with("log_format: "));
    assert!(err("", "gk --log-format xml").starts_with("--log-format: "));
    assert!(err("access_log = \"combined\"", "gk").starts_with("access_log: "));
    assert!(err("access_log_file = \"\"", "gk").starts_with("access_log_file: "));
}

#[test]
fn access_log_fields() {
    use crate::wiring::access_log::{AccessLogField, DEFAULT_FIELDS};
    assert_eq!(merge("gk", "").unwrap().access_log_fields, DEFAULT_FIELDS);
    let s = merge(
        "gk",
        "access_log_fields = [\"status\", \"request_id\", \"sni\"]",
    )
    .unwrap();
    let chosen = [
        AccessLogField::Status,
        AccessLogField::RequestId,
        AccessLogField::Sni,
    ];
    assert_eq!(s.access_log_fields, chosen);
    let unknown = err("access_log_fields = [\"status\", \"colour\"]", "gk");
    assert!(
        unknown.starts_with("access_log_fields") && unknown.contains("colour"),
        "{unknown}"
    );
    let twice = err("access_log_fields = [\"status\", \"status\"]", "gk");
    assert!(twice.contains("`status` is listed twice"), "{twice}");
    assert!(err("access_log_fields = []", "gk").starts_with("access_log_fields: "));
}

#[test]
fn admin_socket_and_metrics_listen() {
    let s = merge("gk --socket-dir /run/x", "").unwrap();
    let socket = s.admin_socket.unwrap();
    assert_eq!(socket.path, PathBuf::from("/run/x/admin.sock"));
    assert!(socket.is_default && !socket.private_dir);
    assert_eq!((socket.mode, socket.group), (0o600, None));
    assert_eq!(s.metrics_listen, None);
    let s = merge(
        "gk",
        "admin_socket = \"/tmp/a.sock\"\nmetrics_listen = \"127.0.0.1:9100\"",
    )
    .unwrap();
    let socket = s.admin_socket.unwrap();
    assert_eq!(socket.path, PathBuf::from("/tmp/a.sock"));
    assert!(!socket.is_default);
    assert_eq!(s.metrics_listen, Some("127.0.0.1:9100".parse().unwrap()));
    let s = merge("gk", "admin_socket = \"\"").unwrap();
    assert_eq!(s.admin_socket, None);
    let bad = merge("gk", "metrics_listen = \"9100\"").unwrap_err();
    assert!(format!("{bad:#}").contains("metrics_listen"));
    let clash = merge(
        "gk",
        "listen = [\"a=0.0.0.0:8000\"]\nmetrics_listen = \"127.0.0.1:8000\"",
    )
    .unwrap_err();
    assert!(
        format!("{clash:#}").starts_with(
            "metrics_listen: `127.0.0.1:8000` clashes with the listener `a=0.0.0.0:8000`"
        ),
        "{clash:#}"
    );
    let s = merge(
        "gk",
        "admin_socket_mode = \"0660\"\nadmin_socket_group = \"0\"",
    )
    .unwrap();
    let socket = s.admin_socket.unwrap();
    assert_eq!((socket.mode, socket.group), (0o660, Some(0)));
    assert!(err("admin_socket_mode = \"0777\"", "gk").starts_with("admin_socket_mode: "));
    assert!(err("admin_socket_mode = \"0660\"", "gk").contains("needs admin_socket_group"));
    assert!(err("admin_socket_group = \"no-such-group-x\"", "gk")
        .starts_with("admin_socket_group: there is no group `no-such-group-x`"));
}

#[test]
fn forwarding_headers_settings() {
    let s = merge("gk", "").unwrap();
    assert_eq!(s.proxy.forwarded.mode, ForwardedMode::Append);
    assert_eq!(s.proxy.forwarded.via, "gatekeeper");
    let s = merge("gk", "forwarded_headers = \"replace\"\nvia = \"\"").unwrap();
    assert_eq!(s.proxy.forwarded.mode, ForwardedMode::Replace);
    assert_eq!(s.proxy.forwarded.via, "");
}

#[test]
fn the_effective_settings_keep_their_json_shape() {
    let s = merge(
        "gk --listen internal=127.0.0.1:9 --modifier-plugin /bin/sh",
        "passive_health_failures = 0",
    )
    .unwrap();
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["listeners"][0]["name"], "internal");
    assert_eq!(json["listeners"][0]["addr"], "127.0.0.1:9");
    assert_eq!(
        json["passive_health"],
        serde_json::json!({"failures": 0, "cooldown": "10s"})
    );
    assert_eq!(json["connect_timeout"], "5s");
    assert_eq!(json["metrics"]["batch_size"], 100);
    assert_eq!(json["plugins"][0]["plugin_type"], "modifier");
    assert_eq!(json["plugins"][0]["failure"]["policy"], "closed");
    assert_eq!(json["access_log"], "off");
}

#[test]
fn supervision_keys_have_defaults_and_are_read() {
    let plugin = "[[plugin]]\ntype = \"modifier\"\ncommand = \"/bin/sh\"\n";
    let s = merge("gk", plugin).unwrap();
    let spec = &s.plugins[0].spec;
    assert_eq!(
        (
            spec.standby,
            spec.restart_after_errors,
            spec.healthy_after,
            spec.restart_backoff_min,
            spec.restart_backoff_max,
            spec.start_attempts,
            spec.max_memory,
            spec.recycle_after
        ),
        (
            0,
            5,
            Duration::from_millis(500),
            Duration::from_millis(100),
            Duration::from_secs(10),
            3,
            None,
            None
        )
    );
    let s = merge(
        "gk",
        &format!(
            "{plugin}standby = 1\nrestart_after_errors = 2\nhealthy_after = \"1s\"\n\
             restart_backoff_min = \"50ms\"\nrestart_backoff_max = \"2s\"\nstart_attempts = 5\n\
             max_memory = \"64MiB\"\nrecycle_after = 1000"
        ),
    )
    .unwrap();
    let spec = &s.plugins[0].spec;
    assert_eq!(spec.standby, 1);
    assert_eq!(spec.restart_after_errors, 2);
    assert_eq!(spec.healthy_after, Duration::from_secs(1));
    assert_eq!(spec.restart_backoff_min, Duration::from_millis(50));
    assert_eq!(spec.restart_backoff_max, Duration::from_secs(2));
    assert_eq!(spec.start_attempts, 5);
    assert_eq!(spec.max_memory, Some(64 << 20));
    assert_eq!(spec.recycle_after, Some(RecycleAfter::Calls(1000)));
    let s = merge(
        "gk",
        &format!("{plugin}recycle_after = \"1h\"\nmax_memory = 1000"),
    )
    .unwrap();
    assert_eq!(
        s.plugins[0].spec.recycle_after,
        Some(RecycleAfter::Time(Duration::from_secs(3600)))
    );
    assert_eq!(s.plugins[0].spec.max_memory, Some(1000));
    // The effective settings show them.
    let json = serde_json::to_value(&s).unwrap();
    let shown = &json["plugins"][0];
    assert_eq!(shown["standby"], 0);
    assert_eq!(shown["restart_after_errors"], 5);
    assert_eq!(shown["healthy_after"], "500ms");
    assert_eq!(shown["restart_backoff_min"], "100ms");
    assert_eq!(shown["restart_backoff_max"], "10s");
    assert_eq!(shown["start_attempts"], 3);
    assert_eq!(shown["max_memory"], 1000);
    assert_eq!(shown["recycle_after"], "1h");
}

#[test]
fn bad_supervision_values_name_their_key() {
    let plugin = "[[plugin]]\ntype = \"modifier\"\ncommand = \"/bin/sh\"\n";
    let cases = [
        ("standby = 65", "plugin[0].standby: 65 must be from 0 to 64"),
        ("standby = -1", "plugin[0].standby: "),
        (
            "restart_after_errors = \"x\"",
            "plugin[0].restart_after_errors: ",
        ),
        (
            "healthy_after = \"soon\"",
            "plugin[0].healthy_after: `soon` is not a duration (examples: 500ms, 5s, 1m)",
        ),
        (
            "restart_backoff_min = \"5s\"\nrestart_backoff_max = \"1s\"",
            "plugin[0].restart_backoff_min: must not be more than restart_backoff_max",
        ),
        (
            "start_attempts = 0",
            "plugin[0].start_attempts: must be at least 1",
        ),
        (
            "max_memory = \"lots\"",
            "plugin[0].max_memory: `lots` is not a size (examples: 256MiB, 1GB, 512k)",
        ),
        ("max_memory = 0", "plugin[0].max_memory: "),
        (
            "recycle_after = 0",
            "plugin[0].recycle_after: must be at least 1",
        ),
        (
            "recycle_after = \"soon\"",
            "plugin[0].recycle_after: `soon` is neither a number of calls nor a duration",
        ),
        ("recycle_after = true", "plugin[0].recycle_after: "),
    ];
    for (line, expected) in cases {
        let error = err(&format!("{plugin}{line}"), "gk");
        assert!(error.starts_with(expected), "{line}: {error}");
    }
    let upstream = "[[plugin]]\ntype = \"upstream\"\ncommand = \"/bin/sh\"\nstandby = 1";
    assert!(err(upstream, "gk").starts_with("plugin[0].standby: upstream plugins cannot"));
}

#[test]
fn instances_and_standby_by_flag() {
    let s = merge(
        "gk --modifier-plugin /bin/sh --modifier-instances 2 --modifier-standby=1 --modifier-header x",
        "",
    )
    .unwrap();
    let spec = &s.plugins[0].spec;
    assert_eq!((spec.instances, spec.standby), (2, 1));
    // They are settings, not keys of the config map.
    assert!(!spec.config.contains_key("instances"));
    assert!(!spec.config.contains_key("standby"));
    assert_eq!(spec.config["header"], "x");
    // Flags override the file, for every plugin of the type.
    let file = "[[plugin]]\ntype = \"modifier\"\ncommand = \"/bin/sh\"\ninstances = 4\n";
    let s = merge("gk --modifier-plugin /bin/sh --modifier-instances 3", file).unwrap();
    assert_eq!(
        s.plugins
            .iter()
            .map(|p| p.spec.instances)
            .collect::<Vec<_>>(),
        [3, 3]
    );
    assert_eq!(
        err("", "gk --modifier-plugin /bin/sh --modifier-instances 0"),
        "--modifier-instances: 0 must be from 1 to 64"
    );
    assert_eq!(
        err("", "gk --modifier-plugin /bin/sh --modifier-standby many"),
        "--modifier-standby: expected a number, got \"many\""
    );
    assert_eq!(
        err("", "gk --modifier-plugin /bin/sh --modifier-standby"),
        "--modifier-standby: expected a number, got true"
    );
    assert!(err("", "gk --upstream-plugin /bin/sh --upstream-standby 1")
        .starts_with("--upstream-standby: upstream plugins cannot"));
    assert!(err("", "gk --modifier-instances 2").contains("no modifier plugin"));
}

#[test]
fn busy_poll_us_is_read_from_the_file_and_the_flag_and_checked() {
    let plugin = "[[plugin]]\ntype = \"modifier\"\ncommand = \"/bin/sh\"\n";
    assert_eq!(merge("gk", plugin).unwrap().plugins[0].spec.busy_poll_us, 0);
    let s = merge("gk", &format!("{plugin}busy_poll_us = 200")).unwrap();
    assert_eq!(s.plugins[0].spec.busy_poll_us, 200);
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["plugins"][0]["busy_poll_us"], 200);
    for (value, expected) in [
        (
            "-1",
            "plugin[0].busy_poll_us: -1 must be from 0 (off) to 1000 microseconds",
        ),
        (
            "1001",
            "plugin[0].busy_poll_us: 1001 must be from 0 (off) to 1000 microseconds",
        ),
        (
            "2.5",
            "plugin[0].busy_poll_us: expected a whole number of microseconds",
        ),
    ] {
        let error = err(&format!("{plugin}busy_poll_us = {value}"), "gk");
        assert!(error.starts_with(expected), "{value}: {error}");
    }
    let s = merge(
        "gk --modifier-plugin /bin/sh --modifier-busy-poll-us 150",
        plugin,
    )
    .unwrap();
    assert!(s.plugins.iter().all(|p| p.spec.busy_poll_us == 150));
    assert!(!s.plugins[0].spec.config.contains_key("busy-poll-us"));
    let s = merge(
        "gk --modifier-plugin /bin/sh --modifier-busy_poll_us=50",
        "",
    )
    .unwrap();
    assert_eq!(s.plugins[0].spec.busy_poll_us, 50);
    assert_eq!(
        err(
            "",
            "gk --modifier-plugin /bin/sh --modifier-busy-poll-us 5000"
        ),
        "--modifier-busy-poll-us: 5000 must be from 0 (off) to 1000 microseconds"
    );
    assert_eq!(
        err(
            "",
            "gk --modifier-plugin /bin/sh --modifier-busy-poll-us -3"
        ),
        "--modifier-busy-poll-us: -3 must be from 0 (off) to 1000 microseconds"
    );
}

#[test]
fn start_limits_are_read_from_the_file_and_the_flags_and_checked() {
    let plugin = "[[plugin]]\ntype = \"upstream\"\ncommand = \"/bin/sh\"\n";
    let spec = merge("gk", plugin).unwrap().plugins[0].spec.clone();
    assert_eq!(
        (spec.start_timeout, spec.start_max),
        (Duration::from_secs(10), Duration::from_secs(300))
    );
    let s = merge(
        "gk",
        &format!("{plugin}start_timeout = \"2s\"\nstart_max = \"1m\""),
    )
    .unwrap();
    let spec = &s.plugins[0].spec;
    assert_eq!(
        (spec.start_timeout, spec.start_max),
        (Duration::from_secs(2), Duration::from_secs(60))
    );
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["plugins"][0]["start_timeout"], "2s");
    assert_eq!(json["plugins"][0]["start_max"], "1m");
    assert_eq!(
        err(&format!("{plugin}start_timeout = \"0s\""), "gk"),
        "plugin[0].start_timeout: must be more than 0"
    );
    assert_eq!(
        err(
            &format!("{plugin}start_timeout = \"1m\"\nstart_max = \"30s\""),
            "gk"
        ),
        "plugin[0].start_max: must not be less than start_timeout"
    );
    assert!(err(&format!("{plugin}start_max = \"later\""), "gk")
        .starts_with("plugin[0].start_max: `later` is not a duration"));
    // The flags set them for every plugin of the type (not as config-map keys).
    let s = merge(
        "gk --upstream-plugin /bin/sh --upstream-start-timeout 500ms --upstream-start_max=20s",
        plugin,
    )
    .unwrap();
    for plugin in &s.plugins {
        assert_eq!(
            (plugin.spec.start_timeout, plugin.spec.start_max),
            (Duration::from_millis(500), Duration::from_secs(20))
        );
        assert!(plugin.spec.config.is_empty(), "{:?}", plugin.spec.config);
    }
    assert_eq!(
        err("", "gk --upstream-plugin /bin/sh --upstream-start-max soon"),
        "--upstream-start-max: expected a duration (examples: 500ms, 5s, 1m), got \"soon\""
    );
    assert_eq!(
        err("", "gk --upstream-plugin /bin/sh --upstream-start-max 1s"),
        "--upstream-start-max: must not be less than start_timeout"
    );
}

#[test]
fn tls_listener_settings_are_read_and_bad_ones_name_their_key() {
    let listen = "listen = [\"https=127.0.0.1:1\"]\n";
    let table = |extra: &str| {
        format!("{listen}[[tls]]\nlistener = \"https\"\ncert = \"a.crt\"\nkey = \"a.key\"\n{extra}")
    };
    let s = merge(
        "gk",
        &table(
            r#"ocsp = "a.ocsp"
min_version = "1.3"
ciphers = ["TLS13_AES_128_GCM_SHA256"]
client_ca = "ca.pem"
client_auth = "optional"
response_headers = { "strict-transport-security" = "max-age=63072000" }
"#,
        ),
    )
    .unwrap();
    let tls = &s.proxy.tls[0];
    assert_eq!(tls.ocsp, Some(PathBuf::from("a.ocsp")));
    assert_eq!(
        tls.settings.min_version,
        Some(gatekeeper_proxy::TlsMinVersion::Tls13)
    );
    assert_eq!(
        tls.settings.client_auth,
        Some(gatekeeper_proxy::ClientAuth::Optional)
    );
    assert_eq!(
        tls.settings.response_headers.as_ref().unwrap()["strict-transport-security"],
        "max-age=63072000"
    );
    // The effective settings show them (and `check --json` with them).
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["tls"][0]["min_version"], "1.3");
    assert_eq!(json["tls"][0]["client_auth"], "optional");

    let bad = |extra: &str| err(&table(extra), "gk");
    assert!(
        bad("min_version = \"1.1\"").starts_with("tls[0].min_version: `1.1` must be"),
        "{}",
        bad("min_version = \"1.1\"")
    );
    let cipher = bad("ciphers = [\"RC4\"]");
    assert!(
        cipher.starts_with("tls[0].ciphers: unknown cipher suite `RC4` (known: TLS13_"),
        "{cipher}"
    );
    assert!(bad("client_auth = \"maybe\"").starts_with("tls[0].client_auth: "));
    assert!(bad("client_auth = \"required\"").starts_with("tls[0].client_auth: needs client_ca"));
    let header = bad("response_headers = { \"bad header\" = \"x\" }");
    assert!(
        header.starts_with("tls[0].response_headers.bad header: "),
        "{header}"
    );
    assert!(bad("ocsp_file = \"x\"").contains("ocsp_file"));
    // Two tables of one listener that disagree.
    let two = format!(
        "{}\n[[tls]]\nlistener = \"https\"\ncert = \"b.crt\"\nkey = \"b.key\"\nmin_version = \"1.2\"",
        table("min_version = \"1.3\"")
    );
    let conflict = err(&two, "gk");
    assert!(
        conflict.starts_with("tls[1].min_version: differs from tls[0].min_version"),
        "{conflict}"
    );
}

#[test]
fn tls_settings_flags_apply_to_a_listener_s_tables() {
    let two_tls = "gk --listen a=127.0.0.1:1 --listen b=127.0.0.1:2 --listen plain=127.0.0.1:3 \
        --tls-cert a=a1.crt --tls-key a=a1.key --tls-cert a=a2.crt --tls-key a=a2.key \
        --tls-cert b=b.crt --tls-key b=b.key";
    let s = merge(
        &format!(
            "{two_tls} --tls-min-version a=1.3 --tls-client-ca b=ca.pem --tls-client-auth b=optional \
             --tls-ocsp a=a1.ocsp --tls-ocsp a=a2.ocsp \
             --tls-response-header a=strict-transport-security:max-age=63072000 \
             --tls-response-header a=x-frame-options:DENY"
        ),
        "",
    )
    .unwrap();
    let [a1, a2, b] = &s.proxy.tls[..] else {
        panic!("{:?}", s.proxy.tls)
    };
    for a in [a1, a2] {
        assert_eq!(
            a.settings.min_version,
            Some(gatekeeper_proxy::TlsMinVersion::Tls13)
        );
        let headers = a.settings.response_headers.as_ref().unwrap();
        assert_eq!(headers["strict-transport-security"], "max-age=63072000");
        assert_eq!(headers["x-frame-options"], "DENY");
    }
    assert_eq!(a1.ocsp, Some(PathBuf::from("a1.ocsp")));
    assert_eq!(a2.ocsp, Some(PathBuf::from("a2.ocsp")));
    assert_eq!(b.settings.client_ca, Some(PathBuf::from("ca.pem")));
    assert_eq!(
        b.settings.client_auth,
        Some(gatekeeper_proxy::ClientAuth::Optional)
    );
    assert_eq!(b.settings.min_version, None);

    // Without NAME: the only TLS listener (a plain one beside it does not count); the flag wins
    // over the file's key.
    let file = "listen = [\"https=127.0.0.1:1\", \"plain=127.0.0.1:2\"]\n[[tls]]\nlistener = \"https\"\ncert = \"c\"\nkey = \"k\"\nmin_version = \"1.3\"";
    let s = merge(
        "gk --tls-min-version 1.2 --tls-response-header strict-transport-security:max-age=1",
        file,
    )
    .unwrap();
    assert_eq!(
        s.proxy.tls[0].settings.min_version,
        Some(gatekeeper_proxy::TlsMinVersion::Tls12)
    );
    assert_eq!(
        s.proxy.tls[0].settings.response_headers.as_ref().unwrap()["strict-transport-security"],
        "max-age=1"
    );
    // --tls-client-auth goes with the table that gives client_ca.
    let two_tables = format!(
        "{file}\nclient_ca = \"ca.pem\"\n[[tls]]\nlistener = \"https\"\ncert = \"c2\"\nkey = \"k2\""
    );
    let s = merge("gk --tls-client-auth optional", &two_tables).unwrap();
    assert_eq!(
        s.proxy.tls[0].settings.client_auth,
        Some(gatekeeper_proxy::ClientAuth::Optional)
    );
    assert_eq!(s.proxy.tls[1].settings.client_auth, None);

    assert!(err("", &format!("{two_tls} --tls-min-version 1.3")).contains("say which TLS listener"));
    assert!(err("", &format!("{two_tls} --tls-min-version plain=1.3"))
        .contains("`plain` is not a TLS listener (TLS listeners: a, b)"));
    assert!(err("", &format!("{two_tls} --tls-min-version a=1.0"))
        .starts_with("--tls-min-version: `1.0` must be"));
    assert!(
        err("", &format!("{two_tls} --tls-client-auth b=maybe")).starts_with("--tls-client-auth: ")
    );
    assert!(err("", &format!("{two_tls} --tls-ocsp b=1 --tls-ocsp b=2"))
        .contains("more --tls-ocsp than certificates"));
    assert!(
        err("", &format!("{two_tls} --tls-response-header a=novalue"))
            .contains("is not HEADER:VALUE")
    );
    assert!(err("", "gk --tls-client-ca ca.pem").contains("there is no TLS listener"));
    // Checked like the keys: client_auth without a CA.
    assert!(err("", &format!("{two_tls} --tls-client-auth a=required"))
        .contains("client_auth: needs client_ca"));
}
