//! Standby spares and recycling against `fake_plugin.py`: a spare started before a crash takes
//! over at once and is replaced; a process past `recycle_after` or `max_memory` is replaced
//! make-before-break with no failed call while calls keep coming; each process has its own
//! socket.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test crate: panicking is how it fails

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{alive, eventually, init_logs, kill9, logged, records, request, spec, Scratch};
use gatekeeper_plugin_host::spec::RecycleAfter;
use gatekeeper_plugin_host::{LaunchOptions, PluginEventKind, PluginHandle, PluginHost};
use gatekeeper_rpc::methods::{ModifyRequest, PluginType};

const BACK: Duration = Duration::from_secs(10);

/// The pids the plugin recorded at startup, in order.
fn started_pids(out: &std::path::Path) -> Vec<u32> {
    records(out)
        .iter()
        .filter_map(|r| r["pid"].as_u64())
        .map(|pid| pid as u32)
        .collect()
}

#[tokio::test]
async fn a_spare_takes_over_and_is_replaced() {
    init_logs();
    let scratch = Scratch::new("standby");
    let out = scratch.file("out");
    let host = PluginHost::new(None).unwrap();
    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let mut spec = spec("spared", PluginType::Modifier, "pids", Some(&out));
    spec.standby = 1;
    let plugin = host
        .launch(spec, LaunchOptions::default().with_events(events_tx))
        .await
        .unwrap();
    eventually("a spare is ready", BACK, || {
        plugin.state().standby_ready == 1
    })
    .await;
    let active = plugin.pid().unwrap();
    let pids = started_pids(&out);
    assert_eq!(pids.len(), 2, "the instance and its spare");
    let spare = *pids.iter().find(|&&p| p != active).unwrap();
    let socket_before = plugin.state().instances[0].socket_path.clone();

    kill9(active);
    eventually("the spare serves the instance", BACK, || {
        plugin.is_ready() && plugin.pid() == Some(spare)
    })
    .await;
    let result = plugin.call::<ModifyRequest>(&request()).await.unwrap();
    assert_eq!(result.request.unwrap().context["pid"], spare);
    let state = plugin.state();
    assert_eq!(state.restarts, 1);
    assert_ne!(state.instances[0].socket_path, socket_before);
    assert!(state.instances[0].socket_path.exists());
    eventually("the dead process's socket is removed", BACK, || {
        !socket_before.exists()
    })
    .await;
    eventually("a new spare is ready", BACK, || {
        plugin.state().standby_ready == 1 && started_pids(&out).len() == 3
    })
    .await;
    let new_spare = *started_pids(&out).last().unwrap();
    host.shutdown().await;
    assert!(!alive(spare) && !alive(new_spare));
    let kinds: Vec<PluginEventKind> = std::iter::from_fn(|| events.try_recv().ok())
        .map(|e| e.kind)
        .collect();
    assert!(
        kinds.contains(&PluginEventKind::TakenOver {
            restarts: 1,
            pid: Some(spare)
        }),
        "{kinds:?}"
    );
}

/// Calls the plugin `calls` times from 4 tasks at once, each pausing `pause` between calls;
/// returns the pids that answered and how many calls failed.
async fn call_in_a_loop(
    plugin: &PluginHandle,
    calls: usize,
    pause: Duration,
) -> (HashSet<u64>, usize) {
    let tasks = (0..4).map(|_| {
        let plugin = plugin.clone();
        tokio::spawn(async move {
            let mut pids = HashSet::new();
            let mut failed = 0;
            for _ in 0..calls / 4 {
                match plugin.call::<ModifyRequest>(&request()).await {
                    Ok(result) => {
                        pids.insert(result.request.unwrap().context["pid"].as_u64().unwrap());
                    }
                    Err(error) => {
                        eprintln!("failed call: {error}");
                        failed += 1;
                    }
                }
                tokio::time::sleep(pause).await;
            }
            (pids, failed)
        })
    });
    let mut pids = HashSet::new();
    let mut failed = 0;
    for outcome in futures::future::join_all(tasks).await {
        let (seen, lost) = outcome.unwrap();
        pids.extend(seen);
        failed += lost;
    }
    (pids, failed)
}

#[tokio::test]
async fn recycling_after_calls_loses_no_call() {
    init_logs();
    let scratch = Scratch::new("recycle-calls");
    let out = scratch.file("out");
    let host = PluginHost::new(None).unwrap();
    let mut spec = spec("worn", PluginType::Modifier, "pids", Some(&out));
    spec.recycle_after = Some(RecycleAfter::Calls(100));
    let plugin = host.launch(spec, LaunchOptions::default()).await.unwrap();
    let first = plugin.pid().unwrap();
    let (pids, failed) = call_in_a_loop(&plugin, 800, Duration::from_millis(2)).await;
    assert_eq!(failed, 0);
    let state = plugin.state();
    assert!(state.instances[0].recycles >= 1, "{state:?}");
    assert!(pids.len() >= 2, "{pids:?}");
    assert_eq!(state.restarts, 0, "a recycle is not a restart");
    eventually("the first process is stopped", BACK, || !alive(first)).await;
    assert!(logged(&["plugin=worn ", "recycle_after 100"]));
    let last = plugin.pid().unwrap();
    host.shutdown().await;
    assert!(started_pids(&out).iter().all(|&p| !alive(p)), "{last}");
}

#[tokio::test]
async fn recycling_on_memory_loses_no_call() {
    init_logs();
    let scratch = Scratch::new("recycle-memory");
    let out = scratch.file("out");
    let host = PluginHost::new(None).unwrap();
    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let mut spec = spec("hog", PluginType::Modifier, "hog", Some(&out));
    spec.max_memory = Some(40 << 20);
    let plugin = host
        .launch(spec, LaunchOptions::default().with_events(events_tx))
        .await
        .unwrap();
    let (mut pids, mut failed) = call_in_a_loop(&plugin, 200, Duration::from_millis(10)).await;
    eventually("the hog was recycled", BACK, || {
        plugin.state().recycles >= 1
    })
    .await;
    // On a loaded machine the recycle may come after those calls: the next ones reach the
    // new process (and are not lost either).
    let (after, lost) = call_in_a_loop(&plugin, 20, Duration::from_millis(10)).await;
    pids.extend(after);
    failed += lost;
    assert_eq!(failed, 0);
    assert!(pids.len() >= 2, "{pids:?}");
    assert!(logged(&["plugin=hog ", "over max_memory 40 MiB"]));
    host.shutdown().await;
    assert!(started_pids(&out).iter().all(|&p| !alive(p)));
    let recycled = std::iter::from_fn(|| events.try_recv().ok())
        .filter(|e| matches!(&e.kind, PluginEventKind::Recycled { reason, .. } if reason.contains("max_memory")))
        .count();
    assert!(recycled >= 1);
}

#[tokio::test]
async fn a_dead_spare_is_replaced_and_new_settings_renew_the_spares() {
    init_logs();
    let scratch = Scratch::new("spare-dies");
    let out = scratch.file("out");
    let host = PluginHost::new(None).unwrap();
    let mut first = spec("renewed", PluginType::Modifier, "pids", Some(&out));
    first.standby = 1;
    let plugin = host
        .launch(first.clone(), LaunchOptions::default())
        .await
        .unwrap();
    eventually("a spare is ready", BACK, || {
        plugin.state().standby_ready == 1
    })
    .await;
    let active = plugin.pid().unwrap();
    let spare = *started_pids(&out).iter().find(|&&p| p != active).unwrap();
    kill9(spare);
    eventually("another spare is ready", BACK, || {
        plugin.state().standby_ready == 1 && started_pids(&out).len() == 3
    })
    .await;
    assert_eq!(plugin.pid(), Some(active), "the instance is left alone");
    assert_eq!(plugin.restarts(), 0);

    let mut config = gatekeeper_rpc::types::Object::new();
    config.insert("v".into(), 2.into());
    host.reconfigure(first.with_config(config)).await.unwrap();
    let configured_v2 = || {
        records(&out)
            .iter()
            .filter(|r| r["configure"]["v"] == 2)
            .count()
    };
    eventually(
        "the instance and a new spare run the new settings",
        BACK,
        || configured_v2() == 2 && plugin.state().standby_ready == 1,
    )
    .await;
    let pids = started_pids(&out);
    host.shutdown().await;
    assert!(pids.iter().all(|&p| !alive(p)));
}
