//! Reading and checking the proxy's config keys.

#![allow(clippy::unwrap_used)]

use gatekeeper_rpc::methods::PluginType;

use super::*;
use crate::FailurePolicy;

fn from_toml(text: &str) -> ProxyConfig {
    toml::from_str(text).unwrap()
}

#[test]
fn an_empty_file_gives_the_defaults_which_are_valid() {
    let config = from_toml("");
    assert_eq!(config, ProxyConfig::default());
    config.validate().unwrap();
    assert_eq!(config.default_timeout, Duration::from_secs(30));
    assert_eq!(config.max_plugin_body, 1024 * 1024);
    // The per-client limits are off.
    assert_eq!(config.max_connections_per_client, 0);
    assert_eq!(
        (config.client_request_rate, config.client_request_burst),
        (0, 0)
    );
}

#[test]
fn keys_are_read_and_written_as_in_the_config_file() {
    let text = r#"
        listen = ["a=127.0.0.1:1", "127.0.0.1:2"]
        default_timeout = "2s"
        passive_health_failures = 0
        forwarded_headers = "replace"
        via = ""
        [[tls]]
        listener = "a"
        cert = "c.pem"
        key = "k.pem"
    "#;
    let config = from_toml(text);
    assert_eq!(config.listeners[1].name, "http-public");
    assert_eq!(config.default_timeout, Duration::from_secs(2));
    assert_eq!(config.forwarded.via, "");
    assert_eq!(config.tls[0].listener, "a");
    config.validate().unwrap();
    let again: ProxyConfig = toml::from_str(&toml::to_string(&config).unwrap()).unwrap();
    assert_eq!(again, config);
}

#[test]
fn bad_values_say_what_is_wrong() {
    let err = |text: &str| toml::from_str::<ProxyConfig>(text).unwrap_err().to_string();
    assert!(err("default_timeout = \"soon\"").contains("`soon` is not a duration"));
    assert!(err("listen = [\"nope\"]").contains("`nope` is not an IP:PORT address"));
    assert!(err("listen = [\"=127.0.0.1:1\"]").contains("empty listener name"));
    assert!(err("forwarded_headers = \"trust\"").contains("forwarded_headers"));
    let invalid = |text: &str| from_toml(text).validate().unwrap_err().to_string();
    assert_eq!(
        invalid("max_header_bytes = 10"),
        "max_header_bytes: 10 must be from 1024 to 16777216 (16 MiB)"
    );
    assert!(invalid("max_connections = 0").starts_with("max_connections: "));
    assert_eq!(
        invalid("client_request_rate = 1000001"),
        "client_request_rate: 1000001 must be from 0 to 1000000 (0: no limit)"
    );
    assert!(invalid("client_request_burst = 1000001").starts_with("client_request_burst: "));
    assert!(invalid("max_connections_per_client = 10000001")
        .starts_with("max_connections_per_client: "));
    assert!(invalid("connect_timeout = \"0s\"").starts_with("connect_timeout: "));
    assert!(invalid("passive_health_cooldown = \"0s\"").starts_with("passive_health_cooldown"));
    assert!(invalid("max_plugin_body = 8388609").starts_with("max_plugin_body: "));
    assert!(invalid("via = \"two words\"").starts_with("via: "));
    assert!(invalid("listen = [\"127.0.0.1:1\", \"127.0.0.1:1\"]").contains("given twice"));
    assert_eq!(
        invalid(
            "listen = [\"a=127.0.0.1:1\"]\n[[tls]]\nlistener = \"b\"\ncert = \"c\"\nkey = \"k\""
        ),
        "tls[0].listener: `b` is not a listener (listeners: a)"
    );
}

#[test]
fn failure_policy_defaults_per_plugin_type() {
    let keys = |text: &str| toml::from_str::<FailureConfig>(text).unwrap();
    assert_eq!(
        keys("").policy(PluginType::Modifier),
        FailurePolicy::Closed { status: 503 }
    );
    assert_eq!(keys("").policy(PluginType::Router), FailurePolicy::Open);
    assert_eq!(
        keys("failure = \"closed\"\nfailure_status = 502").policy(PluginType::Loadbalancer),
        FailurePolicy::Closed { status: 502 }
    );
    assert_eq!(
        keys("failure = \"open\"").policy(PluginType::Modifier),
        FailurePolicy::Open
    );
    let bad = toml::from_str::<FailureConfig>("failure = \"maybe\"").unwrap_err();
    assert!(bad
        .to_string()
        .contains("`maybe` must be \"open\" or \"closed\""));
    assert!(keys("failure_status = 99").validate().is_err());
    assert_eq!(
        serde_json::to_value(FailurePolicy::Closed { status: 503 }).unwrap(),
        serde_json::json!({"policy": "closed", "status": 503})
    );
}

#[test]
fn listeners_with_one_name_or_clashing_addresses_are_refused() {
    let invalid = |listen: &str| {
        from_toml(&format!("listen = {listen}"))
            .validate()
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        invalid(r#"["a=127.0.0.1:1", "a=127.0.0.1:2"]"#),
        "listen: the name `a` is given to two listeners (names must be unique)"
    );
    assert!(invalid(r#"["a=127.0.0.1:1", "b=127.0.0.1:1"]"#)
        .contains("`a=127.0.0.1:1` and `b=127.0.0.1:1` cannot both listen"));
    assert!(invalid(r#"["a=0.0.0.0:1", "b=127.0.0.1:1"]"#).contains("cannot both listen"));
    assert!(invalid(r#"["a=[::1]:1", "b=[::]:1"]"#).contains("cannot both listen"));
    assert!(invalid(r#"["a=[::]:1", "b=127.0.0.2:1"]"#).contains("cannot both listen"));
    for valid in [
        r#"["a=127.0.0.1:1", "b=127.0.0.2:1"]"#,
        r#"["a=0.0.0.0:1", "b=[::1]:1"]"#,
        r#"["a=127.0.0.1:0", "b=127.0.0.1:0"]"#,
        r#"["a=127.0.0.1:1", "b=127.0.0.1:2"]"#,
    ] {
        from_toml(&format!("listen = {valid}")).validate().unwrap();
    }
}
