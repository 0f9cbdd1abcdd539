//! Checking a plugin's config without running it (`check_plugin`: `configure` with
//! `check: true`, then `stop`), and the `config_status` reports a running plugin sends after a
//! change it made on its own: kept in its state, logged once per change.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test crate: panicking is how it fails

mod common;

use std::time::Duration;

use common::{count_logged, eventually, init_logs, records, spec, Scratch};
use gatekeeper_plugin_host::{
    check_plugin, CheckError, LaunchOptions, PluginHost, PluginSpec, StartError,
};
use gatekeeper_rpc::methods::PluginType;
use serde_json::{json, Value};

#[tokio::test]
async fn a_good_config_passes_the_check_and_the_plugin_is_stopped() {
    init_logs();
    let scratch = Scratch::new("check-ok");
    let path = scratch.file("records");
    let spec = spec("good", PluginType::Upstream, "checks", Some(&path));
    check_plugin(&spec, None).await.unwrap();
    assert_eq!(records(&path), vec![json!({"check": true})]);
}

#[tokio::test]
async fn a_rejected_config_names_the_plugin_and_its_message() {
    init_logs();
    let scratch = Scratch::new("check-bad");
    let path = scratch.file("records");
    let mut spec = spec("picky", PluginType::Modifier, "checks", Some(&path));
    spec.config
        .insert("bad".into(), Value::from("round_robbin"));
    let error = check_plugin(&spec, None).await.unwrap_err();
    assert!(
        matches!(&error, CheckError::Rejected { plugin, message } if plugin == "picky" && message == "cfg.yml:3: bad: round_robbin"),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "plugin picky: cfg.yml:3: bad: round_robbin"
    );
}

#[tokio::test]
async fn a_plugin_that_cannot_run_fails_the_check() {
    init_logs();
    let missing = PluginSpec::new("ghost", PluginType::Modifier, "/nonexistent/plugin");
    let error = check_plugin(&missing, None).await.unwrap_err();
    assert!(
        matches!(&error, CheckError::Start { plugin, source: StartError::Spawn { .. } } if plugin == "ghost"),
        "{error:?}"
    );
    assert!(error.to_string().starts_with("plugin ghost: could not run"));

    let failing = spec("grumpy", PluginType::Modifier, "always_fails", None);
    let error = check_plugin(&failing, None).await.unwrap_err();
    let text = error.to_string();
    assert!(text.contains("exited before it was ready"), "{text}");
    assert!(text.contains("complaint 12"), "{text}");
}

#[tokio::test]
async fn a_plugin_that_ignores_stop_is_killed_after_the_stop_timeout() {
    init_logs();
    let spec = spec("stubborn", PluginType::Modifier, "ignore_stop", None);
    let checked = tokio::time::timeout(Duration::from_secs(10), check_plugin(&spec, None)).await;
    assert!(matches!(checked, Ok(Ok(()))), "{checked:?}");
}

#[tokio::test]
async fn config_status_reports_are_kept_and_logged_once_per_change() {
    init_logs();
    let scratch = Scratch::new("config-status");
    let path = scratch.file("records");
    let host = PluginHost::new(None).unwrap();
    let plugin = host
        .launch(
            spec(
                "watcher",
                PluginType::Upstream,
                "reports_config",
                Some(&path),
            ),
            LaunchOptions::default(),
        )
        .await
        .unwrap();
    eventually("the rejection", Duration::from_secs(5), || {
        plugin.state().config_error.is_some()
    })
    .await;
    let rejection = plugin.state().config_error.unwrap();
    assert_eq!(rejection.message, "cfg.yml:1: k: rejected");
    // Both reports are answered before the plugin records their answers.
    eventually("both answers", Duration::from_secs(5), || {
        records(&path)
            .iter()
            .filter(|r| r["method"] == "config_status" && r["result"] == json!({}))
            .count()
            == 2
    })
    .await;
    let warned = count_logged(&[
        "watcher",
        "rejected its new config",
        "cfg.yml:1: k: rejected",
    ]);
    assert_eq!(warned, 1, "the same rejection twice is logged once");

    std::fs::write(scratch.file("records.ok"), "").unwrap();
    eventually("the clearing", Duration::from_secs(5), || {
        plugin.state().config_error.is_none()
    })
    .await;
    eventually("the info line", Duration::from_secs(5), || {
        count_logged(&["watcher", "config is accepted again"]) == 1
    })
    .await;
    host.shutdown().await;
}
