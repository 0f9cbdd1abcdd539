//! The restart policy against `fake_plugin.py`: a process that ran `healthy_after` is restarted
//! at once, a crash loop backs off, instances do not share their fate, a failing first start is
//! tried `start_attempts` times and then reported with its exit status and stderr, and an
//! upstream plugin's manager hears `restarting`/`restarted` around a restart.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test crate: panicking is how it fails

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{
    alive, count_logged, eventually, init_logs, kill9, logged, records, request, spec, Journal,
    Scratch,
};
use gatekeeper_plugin_host::{
    HostError, LaunchOptions, PluginHandle, PluginHost, PluginStatus, StartError,
};
use gatekeeper_rpc::methods::{ModifyRequest, PluginType};
use serde_json::Value;

const BACK: Duration = Duration::from_secs(5);

/// Records every status each instance is seen in, until dropped.
struct StatusWatch {
    seen: Arc<Mutex<Vec<HashSet<PluginStatus>>>>,
    stop: Arc<AtomicBool>,
}

impl StatusWatch {
    fn start(plugin: &PluginHandle) -> StatusWatch {
        let seen = Arc::new(Mutex::new(vec![HashSet::new(); plugin.instances()]));
        let stop = Arc::new(AtomicBool::new(false));
        let (plugin, seen_by_task, stop_task) = (plugin.clone(), seen.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop_task.load(Ordering::Relaxed) {
                for instance in plugin.state().instances {
                    seen_by_task.lock().unwrap()[instance.index].insert(instance.status);
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        });
        StatusWatch { seen, stop }
    }

    fn seen(&self, instance: usize) -> HashSet<PluginStatus> {
        self.seen.lock().unwrap()[instance].clone()
    }
}

impl Drop for StatusWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

#[tokio::test]
async fn a_healthy_process_that_dies_is_restarted_at_once() {
    init_logs();
    let host = PluginHost::new(None).unwrap();
    let mut spec = spec("steady", PluginType::Modifier, "normal", None);
    spec.healthy_after = Duration::from_millis(200);
    // A backoff would outlast the wait below: only an immediate restart passes.
    spec.restart_backoff_min = Duration::from_secs(30);
    spec.restart_backoff_max = Duration::from_secs(30);
    let plugin = host.launch(spec, LaunchOptions::default()).await.unwrap();
    let pid = plugin.pid().unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await; // past healthy_after
    let watch = StatusWatch::start(&plugin);
    kill9(pid);
    eventually("a new process is ready", BACK, || {
        plugin.is_ready() && plugin.pid().is_some_and(|p| p != pid)
    })
    .await;
    assert_eq!(plugin.restarts(), 1);
    assert!(!watch.seen(0).contains(&PluginStatus::Backoff));
    let result = plugin.call::<ModifyRequest>(&request()).await.unwrap();
    assert_eq!(
        result.request.unwrap().context["pid"],
        Value::from(plugin.pid().unwrap())
    );
    assert!(logged(&["plugin=steady ", "restarting it at once"]));
    let new_pid = plugin.pid().unwrap();
    host.shutdown().await;
    assert!(!alive(new_pid));
}

#[tokio::test]
async fn a_crash_loop_backs_off() {
    init_logs();
    let host = PluginHost::new(None).unwrap();
    let mut spec = spec("loopy", PluginType::Modifier, "dies_soon", None);
    spec.healthy_after = Duration::from_secs(5);
    spec.restart_backoff_min = Duration::from_millis(100);
    spec.restart_backoff_max = Duration::from_millis(800);
    let plugin = host.launch(spec, LaunchOptions::default()).await.unwrap();
    let watch = StatusWatch::start(&plugin);
    eventually("the instance waits in backoff", BACK, || {
        watch.seen(0).contains(&PluginStatus::Backoff)
    })
    .await;
    // Backoffs of 100, 200, 400, 800, 800 ms leave room for at most 5 restarts in 2.5 s
    // (without backoff a 0.1 s-lived process would be restarted over 10 times).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    host.shutdown().await;
    let restarts = plugin.restarts();
    assert!((1..=6).contains(&restarts), "{restarts} restarts");
    assert!(logged(&["plugin=loopy ", "crash loop"]));
    // Quiet logs: the supervisor warns once per death (the fake plugin's bogus hooks get their
    // own warning at every handshake).
    let warnings = count_logged(&[" WARN ", "supervisor", "plugin=loopy"]);
    assert!(
        warnings <= restarts as usize + 1,
        "{warnings} warnings for {restarts} restarts"
    );
    assert_eq!(plugin.state().status, PluginStatus::Stopped);
}

#[tokio::test]
async fn instances_are_independent() {
    init_logs();
    let host = PluginHost::new(None).unwrap();
    let mut spec = spec("twins", PluginType::Modifier, "normal", None).with_instances(2);
    spec.healthy_after = Duration::from_secs(10);
    let plugin = host.launch(spec, LaunchOptions::default()).await.unwrap();
    let state = plugin.state();
    let survivor = state.instances[1].pid.unwrap();
    let watch = StatusWatch::start(&plugin);
    for round in 1..=3 {
        let victim = plugin.state().instances[0].pid.unwrap();
        kill9(victim);
        eventually("instance 0 is back", BACK, || {
            let state = plugin.state();
            state.instances[0].status == PluginStatus::Ready
                && state.instances[0].pid.is_some_and(|p| p != victim)
        })
        .await;
        assert_eq!(plugin.state().instances[0].restarts, round);
    }
    let state = plugin.state();
    assert_eq!(watch.seen(1), HashSet::from([PluginStatus::Ready]));
    assert!(
        watch.seen(0).contains(&PluginStatus::Backoff),
        "quick deaths back off"
    );
    assert_eq!(state.instances[1].pid, Some(survivor));
    assert_eq!(state.instances[1].restarts, 0);
    host.shutdown().await;
}

#[tokio::test]
async fn a_failing_first_start_is_tried_again() {
    init_logs();
    let scratch = Scratch::new("attempts");
    let out = scratch.file("out");
    let host = PluginHost::new(None).unwrap();
    let spec = spec("stubborn", PluginType::Modifier, "fails_twice", Some(&out));
    assert_eq!(spec.start_attempts, 3);
    let plugin = host.launch(spec, LaunchOptions::default()).await.unwrap();
    let runs = std::fs::read_to_string(scratch.file("out.runs")).unwrap();
    assert_eq!(runs, "3");
    assert!(plugin.is_ready());
    assert_eq!(plugin.restarts(), 0);
    plugin.call::<ModifyRequest>(&request()).await.unwrap();
    assert!(logged(&["plugin=stubborn ", "trying again"]));
    host.shutdown().await;
}

#[tokio::test]
async fn a_start_that_always_fails_reports_attempts_status_and_stderr() {
    init_logs();
    let host = PluginHost::new(None).unwrap();
    let mut spec = spec("doomed", PluginType::Modifier, "always_fails", None);
    spec.start_attempts = 2;
    let error = host
        .launch(spec, LaunchOptions::default())
        .await
        .unwrap_err();
    let HostError::Start {
        plugin,
        attempts,
        source: StartError::Exited { status, stderr },
    } = &error
    else {
        panic!("{error}");
    };
    assert_eq!((plugin.as_str(), *attempts), ("doomed", 2));
    assert!(status.contains('7'), "{status}");
    assert_eq!(stderr.len(), 10, "{stderr:?}");
    assert_eq!(stderr.first().unwrap(), "complaint 3");
    assert_eq!(stderr.last().unwrap(), "complaint 12");
    let message = error.to_string();
    for needle in ["`doomed`", "2 attempts", "exit status: 7", "complaint 12"] {
        assert!(message.contains(needle), "{message}");
    }
    assert!(host.plugin("doomed").is_none());
    host.shutdown().await;
}

#[tokio::test]
async fn an_upstream_plugins_manager_hears_restarting_then_restarted() {
    init_logs();
    let scratch = Scratch::new("journal");
    let out = scratch.file("out");
    let journal = Arc::new(Journal::default());
    let host = PluginHost::new(None).unwrap();
    let plugin = host
        .launch(
            spec("feeder", PluginType::Upstream, "upstream", Some(&out)),
            LaunchOptions::default().with_manager(journal.clone()),
        )
        .await
        .unwrap();
    eventually("the first process pushed its upstream", BACK, || {
        journal.entries().contains(&"add u1".to_owned())
    })
    .await;
    assert!(
        !journal.entries().iter().any(|e| e.starts_with("restart")),
        "not on the first start"
    );
    kill9(plugin.pid().unwrap());
    eventually("the restarted process pushed its upstream", BACK, || {
        plugin.restarts() == 1
            && journal.entries().iter().filter(|e| *e == "add u1").count() == 2
            && journal.entries().contains(&"restarted feeder".to_owned())
    })
    .await;
    let entries = journal.entries();
    let at = |entry: &str| entries.iter().position(|e| e == entry).unwrap();
    let second_add = entries.iter().rposition(|e| e == "add u1").unwrap();
    assert!(at("restarting feeder") < second_add, "{entries:?}");
    assert!(
        at("restarting feeder") < at("restarted feeder"),
        "{entries:?}"
    );
    assert_eq!(
        entries.iter().filter(|e| e.starts_with("restart")).count(),
        2,
        "{entries:?}"
    );
    assert!(records(&out).len() >= 2);
    host.shutdown().await;
}
