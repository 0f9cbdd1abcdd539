//! The call path against `fake_plugin.py`: no call is lost when a process dies or stalls (it is
//! sent again once to another instance, or to the restarted one), unless the plugin declared
//! the hook `no_retry`; calls made while an instance restarts wait for it; `null` results are
//! `{}`; results of the wrong shape fail their calls and restart the process only when they
//! come `restart_after_errors` times in a row.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test crate: panicking is how it fails

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{
    alive, eventually, init_logs, kill9, logged, records, request, spec, stopped, Scratch,
};
use gatekeeper_plugin_host::{
    LaunchOptions, PluginCallError, PluginHandle, PluginHost, PluginSpec, PluginStatus,
};
use gatekeeper_rpc::methods::{ModifyRequest, PluginType};
use gatekeeper_rpc::CallError;

const BACK: Duration = Duration::from_secs(10);

/// A modifier spec whose instances are restarted at once when they die (never in backoff), so
/// calls made meanwhile wait for the restart.
fn restarted_at_once(name: &str, mode: &str, path: Option<&std::path::Path>) -> PluginSpec {
    let mut spec = spec(name, PluginType::Modifier, mode, path);
    spec.healthy_after = Duration::ZERO;
    spec
}

async fn launch(host: &PluginHost, spec: PluginSpec) -> PluginHandle {
    host.launch(spec, LaunchOptions::default()).await.unwrap()
}

/// The pid of the process that answered a `modify_request`.
async fn answered_by(plugin: &PluginHandle) -> Result<u32, PluginCallError> {
    let result = plugin.call::<ModifyRequest>(&request()).await?;
    let context = result.request.unwrap().context;
    Ok(u32::try_from(context["pid"].as_u64().unwrap()).unwrap())
}

fn closed(error: &PluginCallError) -> bool {
    matches!(
        error,
        PluginCallError::Failed {
            source: CallError::Closed { .. },
            ..
        }
    )
}

fn wrong_shape(error: &PluginCallError) -> bool {
    matches!(
        error,
        PluginCallError::Failed {
            source: CallError::InvalidResult { .. },
            ..
        }
    )
}

#[tokio::test]
async fn a_call_on_a_process_that_dies_is_answered_by_the_other_instance() {
    init_logs();
    let scratch = Scratch::new("dies-on-call");
    let out = scratch.file("out");
    let host = PluginHost::new(None).unwrap();
    let spec = restarted_at_once("mortal", "dies_on_call", Some(&out)).with_instances(2);
    let plugin = launch(&host, spec).await;
    // Instance 0's processes die on their third call, with that call in flight.
    for call in 0..20 {
        let outcome = answered_by(&plugin).await;
        assert!(outcome.is_ok(), "call {call}: {outcome:?}");
    }
    let deaths = records(&out)
        .iter()
        .filter(|r| r.get("died").is_some())
        .count() as u64;
    assert!(deaths >= 1, "a process died with a call in flight");
    let state = plugin.state();
    assert_eq!(state.errors, 0);
    assert_eq!(
        state.retries, deaths,
        "each call in flight was sent again once"
    );
    host.shutdown().await;
}

#[tokio::test]
async fn a_no_retry_hook_fails_when_its_process_dies() {
    init_logs();
    let scratch = Scratch::new("no-retry");
    let out = scratch.file("out");
    let host = PluginHost::new(None).unwrap();
    let spec = restarted_at_once("once-only", "no_retry", Some(&out)).with_instances(2);
    let plugin = launch(&host, spec).await;
    let mut failures = Vec::new();
    for _ in 0..6 {
        if let Err(error) = answered_by(&plugin).await {
            failures.push(error);
        }
    }
    assert!(!failures.is_empty(), "a process died with a call in flight");
    assert!(failures.iter().all(closed), "{failures:?}");
    let deaths = records(&out)
        .iter()
        .filter(|r| r.get("died").is_some())
        .count();
    assert_eq!(failures.len(), deaths);
    assert_eq!(plugin.state().retries, 0, "nothing was sent twice");
    // The undeclared `modify_response` in `no_retry` is ignored with a warning.
    assert!(logged(&[
        "plugin=once-only",
        "modify_response",
        "ignoring `no_retry`"
    ]));
    host.shutdown().await;
}

/// Runs `tasks` loops of calls until `stop` is set; returns (answered, failed) and the failures.
fn call_loops(
    plugin: &PluginHandle,
    tasks: usize,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<(u64, Vec<String>)>> {
    (0..tasks)
        .map(|_| {
            let plugin = plugin.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut answered = 0;
                let mut failures = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match plugin.call::<ModifyRequest>(&request()).await {
                        Ok(_) => answered += 1,
                        Err(error) => failures.push(error.to_string()),
                    }
                }
                (answered, failures)
            })
        })
        .collect()
}

/// Waits for the call loops and checks that none of their calls failed and that more than
/// `at_least` were answered.
async fn assert_all_answered(
    loops: Vec<tokio::task::JoinHandle<(u64, Vec<String>)>>,
    at_least: u64,
) {
    let mut answered = 0;
    let mut failures = Vec::new();
    for each in loops {
        let (a, f) = each.await.unwrap();
        answered += a;
        failures.extend(f);
    }
    assert!(
        failures.is_empty(),
        "{} failed: {failures:?}",
        failures.len()
    );
    assert!(answered > at_least, "{answered}");
}

#[tokio::test]
async fn killing_instances_while_calls_loop_fails_no_call() {
    init_logs();
    let host = PluginHost::new(None).unwrap();
    let plugin = launch(
        &host,
        restarted_at_once("cat", "normal", None).with_instances(2),
    )
    .await;
    let stop = Arc::new(AtomicBool::new(false));
    let loops = call_loops(&plugin, 4, &stop);
    for kill in 0..4 {
        let index = kill % 2;
        eventually("both instances are ready", BACK, || {
            plugin
                .state()
                .instances
                .iter()
                .all(|i| i.status == PluginStatus::Ready)
        })
        .await;
        let calls = plugin.state().calls;
        eventually("calls go on", BACK, || plugin.state().calls > calls + 20).await;
        kill9(plugin.state().instances[index].pid.unwrap());
    }
    eventually("the last one killed is back", BACK, || {
        plugin.state().restarts == 4 && plugin.is_ready()
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    assert_all_answered(loops, 80).await;
    host.shutdown().await;
}

#[tokio::test]
async fn calls_made_while_the_only_instance_restarts_wait_for_it() {
    init_logs();
    let host = PluginHost::new(None).unwrap();
    let plugin = launch(&host, restarted_at_once("solo", "normal", None)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let loops = call_loops(&plugin, 4, &stop);
    for kill in 1..=3 {
        let calls = plugin.state().calls;
        eventually("calls go on", BACK, || plugin.state().calls > calls + 20).await;
        let pid = plugin.pid().unwrap();
        kill9(pid);
        eventually("the instance is seen down", BACK, || !plugin.is_ready()).await;
        // A call made now, while the instance restarts, waits for it.
        let new_pid = answered_by(&plugin).await.unwrap();
        assert_ne!(new_pid, pid);
        assert!(!alive(pid));
        assert_eq!(plugin.restarts(), kill);
    }
    stop.store(true, Ordering::Relaxed);
    assert_all_answered(loops, 60).await;
    host.shutdown().await;
}

#[tokio::test]
async fn a_stopped_instance_is_covered_by_the_other_and_restarted_as_hung() {
    init_logs();
    let host = PluginHost::new(None).unwrap();
    let mut spec = restarted_at_once("sleepy", "normal", None).with_instances(2);
    // Only the stalled calls tell the process is hung, not its heartbeats.
    spec.heartbeat_interval = Duration::from_secs(60);
    spec.restart_after_timeouts = 3;
    spec.hook_timeout = Duration::from_millis(600);
    let plugin = launch(&host, spec).await;
    let stopped_pid = plugin.state().instances[0].pid.unwrap();
    let signal = |name: &str| {
        std::process::Command::new("kill")
            .args([name, &stopped_pid.to_string()])
            .status()
            .unwrap()
    };
    assert!(signal("-STOP").success());
    eventually("the process is stopped", BACK, || stopped(stopped_pid)).await;
    let mut answered_by_other = 0;
    for call in 0..12 {
        let outcome = answered_by(&plugin).await;
        let pid = outcome.unwrap_or_else(|e| panic!("call {call}: {e}"));
        assert_ne!(pid, stopped_pid);
        answered_by_other += 1;
    }
    assert_eq!(answered_by_other, 12);
    let state = plugin.state();
    assert_eq!(state.errors, 0);
    assert!(
        state.retries >= 3,
        "stalled calls were sent again: {state:?}"
    );
    eventually("the stopped process is restarted", BACK, || {
        plugin.state().instances[0].restarts == 1
            && plugin.state().instances[0].pid != Some(stopped_pid)
    })
    .await;
    let _ = signal("-CONT");
    assert!(logged(&["plugin=sleepy#0", "hung"]));
    assert!(!logged(&["plugin=sleepy#0", "broke the protocol"]));
    host.shutdown().await;
    assert!(!alive(stopped_pid));
}

#[tokio::test]
async fn a_null_result_is_an_empty_one() {
    init_logs();
    let host = PluginHost::new(None).unwrap();
    let plugin = launch(
        &host,
        spec("blank", PluginType::Modifier, "null_result", None),
    )
    .await;
    for _ in 0..3 {
        let result = plugin.call::<ModifyRequest>(&request()).await.unwrap();
        assert!(result.request.is_none() && result.response.is_none());
    }
    let state = plugin.state();
    assert_eq!((state.calls, state.errors, state.bad_results), (3, 0, 0));
    assert_eq!(plugin.restarts(), 0);
    host.shutdown().await;
}

#[tokio::test]
async fn results_of_the_wrong_shape_fail_calls_and_restart_only_after_five_in_a_row() {
    init_logs();
    let scratch = Scratch::new("wrong-shape");
    let out = scratch.file("out");
    let host = PluginHost::new(None).unwrap();
    let plugin = launch(
        &host,
        spec("sloppy", PluginType::Modifier, "wrong_type", Some(&out)),
    )
    .await;
    let pid = plugin.pid().unwrap();
    for call in 1..=4 {
        let error = plugin.call::<ModifyRequest>(&request()).await.unwrap_err();
        assert!(wrong_shape(&error), "call {call}: {error}");
    }
    assert_eq!(plugin.restarts(), 0, "4 in a row do not restart");
    assert_eq!(plugin.pid(), Some(pid));
    assert!(plugin.is_ready());
    let error = plugin.call::<ModifyRequest>(&request()).await.unwrap_err();
    assert!(wrong_shape(&error), "{error}");
    eventually("the fifth in a row restarts the plugin", BACK, || {
        plugin.restarts() == 1 && plugin.is_ready()
    })
    .await;
    assert!(!alive(pid));
    // The next process answers well.
    let new_pid = answered_by(&plugin).await.unwrap();
    assert_ne!(new_pid, pid);
    let state = plugin.state();
    assert_eq!(
        (state.calls, state.errors, state.bad_results),
        (6, 5, 5),
        "{state:?}"
    );
    assert!(logged(&[
        "plugin=sloppy",
        "result of the wrong shape",
        "calls=1"
    ]));
    assert!(logged(&[
        "plugin=sloppy",
        "5 results of the wrong shape in a row"
    ]));
    assert!(!logged(&["plugin=sloppy", "broke the protocol"]));
    assert_eq!(
        records(&out)
            .iter()
            .filter(|r| r.get("configure").is_some())
            .count(),
        2
    );
    host.shutdown().await;
}

#[tokio::test]
async fn a_call_while_the_plugin_is_in_backoff_fails_at_once() {
    init_logs();
    let host = PluginHost::new(None).unwrap();
    let mut spec = spec("looping", PluginType::Modifier, "normal", None);
    // Any death is a crash loop, with a long wait before the restart.
    spec.healthy_after = Duration::from_secs(600);
    spec.restart_backoff_min = Duration::from_secs(30);
    spec.restart_backoff_max = Duration::from_secs(30);
    spec.hook_timeout = Duration::from_secs(60);
    let plugin = launch(&host, spec).await;
    kill9(plugin.pid().unwrap());
    eventually("the plugin is in backoff", BACK, || {
        plugin.state().status == PluginStatus::Backoff
    })
    .await;
    assert!(!plugin.is_available());
    let outcome = tokio::time::timeout(BACK, plugin.call::<ModifyRequest>(&request()))
        .await
        .expect("no waiting for a restart that is not coming");
    assert!(
        matches!(outcome, Err(PluginCallError::Unavailable { .. })),
        "{outcome:?}"
    );
    host.shutdown().await;
}
