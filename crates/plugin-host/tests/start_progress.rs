//! A start is bounded by the plugin's silence, not by a stopwatch: an upstream plugin pushing
//! its registry with manager calls inside `start` for longer than `start_timeout` starts; a
//! silent one (log lines do not count) fails with the silence limit; one that calls forever
//! fails at `start_max`; a restart of a pushing plugin is wrapped in the manager's
//! `restarting`/`restarted`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test crate: panicking is how it fails

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{eventually, init_logs, kill9, logged, spec, Journal};
use gatekeeper_plugin_host::{HostError, LaunchOptions, PluginHost, StartError};
use gatekeeper_rpc::methods::PluginType;

/// The fake plugin as an upstream plugin in `mode`, tried once, silent for at most 1 s.
fn pushing_spec(name: &str, mode: &str) -> gatekeeper_plugin_host::PluginSpec {
    let mut spec = spec(name, PluginType::Upstream, mode, None);
    spec.start_timeout = Duration::from_secs(1);
    spec.start_attempts = 1;
    spec
}

fn pushes() -> Vec<String> {
    (0..10).map(|i| format!("add push{i}")).collect()
}

#[tokio::test]
async fn a_plugin_pushing_for_longer_than_start_timeout_starts() {
    init_logs();
    let journal = Arc::new(Journal::default());
    let host = PluginHost::new(None).unwrap();
    // A manager call every 300 ms for 3 s, under a 1 s start_timeout.
    let launched = host
        .launch(
            pushing_spec("pusher", "pushes_in_start"),
            LaunchOptions::default().with_manager(journal.clone()),
        )
        .await;
    assert!(launched.is_ok(), "{:?}", launched.err());
    // `start` was answered after its last push.
    assert_eq!(journal.entries(), pushes());
    host.shutdown().await;
}

#[tokio::test]
async fn a_silent_start_fails_with_the_silence_limit() {
    init_logs();
    let journal = Arc::new(Journal::default());
    let host = PluginHost::new(None).unwrap();
    let error = host
        .launch(
            pushing_spec("mute", "slow_start"),
            LaunchOptions::default().with_manager(journal.clone()),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            &error,
            HostError::Start {
                source: StartError::Silent(timeout),
                ..
            } if *timeout == Duration::from_secs(1)
        ),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("no manager call (nor any other call) from the plugin for 1s during start (start_timeout)"),
        "{error}"
    );
    host.shutdown().await;
}

#[tokio::test]
async fn log_lines_are_not_progress() {
    init_logs();
    let host = PluginHost::new(None).unwrap();
    let error = host
        .launch(
            pushing_spec("chatty", "logs_in_start"),
            LaunchOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            &error,
            HostError::Start {
                source: StartError::Silent(_),
                ..
            }
        ),
        "{error}"
    );
    assert!(logged(&["chatty", "still starting"]));
    host.shutdown().await;
}

#[tokio::test]
async fn a_plugin_calling_forever_fails_at_start_max() {
    init_logs();
    let journal = Arc::new(Journal::default());
    let host = PluginHost::new(None).unwrap();
    let mut spec = pushing_spec("trickle", "trickles_in_start");
    spec.start_max = Duration::from_secs(2);
    let error = host
        .launch(spec, LaunchOptions::default().with_manager(journal.clone()))
        .await
        .unwrap_err();
    assert!(
        matches!(
            &error,
            HostError::Start {
                source: StartError::StillStarting(max),
                ..
            } if *max == Duration::from_secs(2)
        ),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("start still running after 2s (start_max)"),
        "{error}"
    );
    // It pushed all along (about 20 calls in 2 s), past start_timeout.
    assert!(journal.entries().len() > 10, "{:?}", journal.entries());
    host.shutdown().await;
}

#[tokio::test]
async fn a_restarted_pusher_is_wrapped_in_restarting_and_restarted() {
    init_logs();
    let journal = Arc::new(Journal::default());
    let host = PluginHost::new(None).unwrap();
    let mut spec = pushing_spec("phoenix", "pushes_in_start");
    spec.healthy_after = Duration::ZERO;
    let plugin = host
        .launch(spec, LaunchOptions::default().with_manager(journal.clone()))
        .await
        .unwrap();
    let pid = plugin.pid().unwrap();
    kill9(pid);
    eventually(
        "the restarted process finished start",
        Duration::from_secs(10),
        || journal.entries().contains(&"restarted phoenix".to_owned()),
    )
    .await;
    let mut expected = pushes();
    expected.push("restarting phoenix".to_owned());
    expected.extend(pushes());
    expected.push("restarted phoenix".to_owned());
    assert_eq!(journal.entries(), expected);
    host.shutdown().await;
}
