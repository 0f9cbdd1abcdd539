//! Supervision of plugins against `fake_plugin.py`: protocol violations restart a plugin (late
//! answers and results of the wrong shape do not), several instances share the calls, the
//! before-ready replay runs on every start before the plugin takes calls, and call counters.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test crate: panicking is how it fails

mod common;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use common::{
    alive, eventually, init_logs, kill9, logged, records, request, script, spec, Scratch,
};
use futures::future::BoxFuture;
use gatekeeper_plugin_host::{
    BeforeReady, HostError, InstanceConnection, LaunchOptions, PluginCallError, PluginEventKind,
    PluginHandle, PluginHost, PluginStatus, StartError,
};
use gatekeeper_rpc::methods::{
    AddUpstream, AddUpstreamParams, ModifyRequest, PluginType, RouteRequest, RouteRequestParams,
};
use gatekeeper_rpc::types::{HttpRequest, Upstream};
use gatekeeper_rpc::{codes, CallError};
use serde_json::Value;

const BACK: Duration = Duration::from_secs(5);

/// Launches a modifier in `mode`, checks that its connection is closed for a protocol
/// violation on its first `modify_request`, that the call is sent again to the restarted process
/// (and answered by it), and that the plugin is restarted exactly once. Returns the host.
async fn restarts_once_after(name: &str, mode: &str) -> (PluginHost, PluginHandle, Scratch) {
    init_logs();
    let scratch = Scratch::new(mode);
    let out = scratch.file("out");
    let host = PluginHost::new(None).unwrap();
    let mut spec = spec(name, PluginType::Modifier, mode, Some(&out));
    // Restarted at once (never in backoff), so the call sent again waits for the restart.
    spec.healthy_after = Duration::ZERO;
    let plugin = host.launch(spec, LaunchOptions::default()).await.unwrap();
    let pid = plugin.pid().unwrap();
    let result = plugin.call::<ModifyRequest>(&request()).await.unwrap();
    assert_ne!(result.request.unwrap().context["pid"], Value::from(pid));
    eventually("the plugin is restarted", BACK, || {
        plugin.restarts() == 1 && plugin.is_ready()
    })
    .await;
    assert!(!alive(pid), "the misbehaving process was killed");
    let result = plugin.call::<ModifyRequest>(&request()).await.unwrap();
    assert_ne!(result.request.unwrap().context["pid"], Value::from(pid));
    assert_eq!(plugin.restarts(), 1);
    let state = plugin.state();
    assert_eq!((state.calls, state.errors, state.retries), (2, 0, 1));
    assert!(
        logged(&[
            &format!("plugin={name} "),
            "plugin is down",
            "protocol violation"
        ]),
        "no log line names the plugin and the violation"
    );
    (host, plugin, scratch)
}

#[tokio::test]
async fn a_garbage_line_restarts_the_plugin() {
    let (host, _plugin, scratch) = restarts_once_after("messy", "garbage").await;
    assert!(logged(&["peer=messy", "not a JSON-RPC message"]));
    let out = scratch.file("out");
    // The garbage line got a parse error (with a null id) before the connection closed.
    assert!(records(&out)
        .iter()
        .any(|r| r["error"]["code"] == codes::PARSE_ERROR));
    // Not an upstream plugin: no manager.
    let manager_answer = || {
        records(&out)
            .into_iter()
            .find(|r| r["method"] == "add_upstream")
    };
    eventually("the manager call is answered", BACK, || {
        manager_answer().is_some()
    })
    .await;
    assert_eq!(
        manager_answer().unwrap()["error"]["code"],
        codes::METHOD_NOT_FOUND
    );
    host.shutdown().await;
}

#[tokio::test]
async fn a_response_with_a_never_issued_id_restarts_the_plugin() {
    let (host, _plugin, _scratch) = restarts_once_after("liar", "bad_id").await;
    assert!(logged(&["plugin=liar ", "never issued"]));
    host.shutdown().await;
}

// A result of the wrong type no longer restarts the plugin: see tests/calls.rs
// (`results_of_the_wrong_shape_fail_calls_and_restart_only_after_five_in_a_row`).

#[tokio::test]
async fn a_late_answer_after_a_timeout_does_not_restart() {
    init_logs();
    let host = PluginHost::new(None).unwrap();
    let mut spec = spec("laggard", PluginType::Modifier, "late", None);
    spec.hook_timeout = Duration::from_millis(300);
    let plugin = host.launch(spec, LaunchOptions::default()).await.unwrap();
    let error = plugin.call::<ModifyRequest>(&request()).await.unwrap_err();
    assert!(matches!(error, PluginCallError::Timeout { .. }), "{error}");
    // The answer arrives at 600 ms; give it time to be read and dropped.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(plugin.is_ready());
    assert_eq!(plugin.restarts(), 0);
    assert!(logged(&["peer=laggard", "late response"]));
    let state = plugin.state();
    assert_eq!((state.calls, state.errors, state.timeouts), (1, 1, 1));
    host.shutdown().await;
}

#[tokio::test]
async fn two_instances_share_the_calls_and_cover_for_each_other() {
    init_logs();
    let host = PluginHost::new(None).unwrap();
    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let spec = spec("pair", PluginType::Modifier, "normal", None).with_instances(2);
    let plugin = host
        .launch(spec, LaunchOptions::default().with_events(events_tx))
        .await
        .unwrap();
    assert_eq!(plugin.instances(), 2);
    let state = plugin.state();
    assert_eq!(state.status, PluginStatus::Ready);
    assert_eq!(state.instances.len(), 2);
    let pids: Vec<u32> = state.instances.iter().map(|i| i.pid.unwrap()).collect();
    assert_ne!(pids[0], pids[1]);
    assert_ne!(
        state.instances[0].socket_path,
        state.instances[1].socket_path
    );
    assert!(state
        .instances
        .iter()
        .all(|i| i.status == PluginStatus::Ready));

    let mut seen = HashSet::new();
    for _ in 0..4 {
        let context = plugin
            .call::<ModifyRequest>(&request())
            .await
            .unwrap()
            .request
            .unwrap()
            .context;
        seen.insert((
            context["pid"].as_u64().unwrap() as u32,
            context["instance"].clone(),
        ));
    }
    let expected: HashSet<_> = [(pids[0], Value::from("0")), (pids[1], Value::from("1"))].into();
    assert_eq!(seen, expected, "calls reach both instances");

    kill9(pids[0]);
    eventually("instance 0 is seen down", BACK, || {
        plugin.state().instances[0].status != PluginStatus::Ready
    })
    .await;
    assert!(plugin.is_ready(), "one instance is enough");
    for _ in 0..4 {
        let context = plugin
            .call::<ModifyRequest>(&request())
            .await
            .unwrap()
            .request
            .unwrap()
            .context;
        assert_eq!(context["pid"], Value::from(pids[1]));
    }
    eventually("instance 0 is back", BACK, || {
        plugin.state().instances[0].status == PluginStatus::Ready
    })
    .await;
    let state = plugin.state();
    assert_eq!(state.restarts, 1);
    assert_eq!(state.instances[0].restarts, 1);
    assert_eq!(state.instances[1].restarts, 0);
    let new_pid = state.instances[0].pid.unwrap();
    assert_ne!(new_pid, pids[0]);
    host.shutdown().await;
    assert!(!alive(new_pid) && !alive(pids[1]));

    let mut per_instance: [Vec<PluginEventKind>; 2] = Default::default();
    while let Ok(event) = events.try_recv() {
        per_instance[event.instance].push(event.kind);
    }
    let [first, second] = per_instance;
    assert!(
        matches!(first[0], PluginEventKind::Started { .. }),
        "{first:?}"
    );
    assert!(
        matches!(first[1], PluginEventKind::Failed { .. }),
        "{first:?}"
    );
    assert_eq!(
        first[2],
        PluginEventKind::Restarted {
            restarts: 1,
            pid: Some(new_pid)
        }
    );
    assert_eq!(first[3], PluginEventKind::Stopped);
    assert_eq!(
        second,
        [
            PluginEventKind::Started { pid: Some(pids[1]) },
            PluginEventKind::Stopped
        ]
    );
}

#[tokio::test]
async fn an_instance_that_fails_its_first_start_fails_the_launch() {
    init_logs();
    let scratch = Scratch::new("instances");
    let out = scratch.file("out");
    let host = PluginHost::new(None).unwrap();
    let mut spec =
        spec("half", PluginType::Modifier, "instance1_dies", Some(&out)).with_instances(2);
    spec.start_attempts = 1;
    let error = host
        .launch(spec, LaunchOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, HostError::Start { plugin, source: StartError::Exited { .. }, .. } if plugin == "half#1"),
        "{error}"
    );
    let pids: Vec<u32> = records(&out)
        .iter()
        .filter_map(|r| r["pid"].as_u64())
        .map(|pid| pid as u32)
        .collect();
    assert_eq!(pids.len(), 2, "both instances were spawned");
    assert!(
        pids.iter().all(|&pid| !alive(pid)),
        "instance 0 was stopped too"
    );
    assert!(host.plugin("half").is_none());
    assert!(
        std::fs::read_dir(host.socket_dir())
            .unwrap()
            .next()
            .is_none(),
        "sockets removed"
    );
    host.shutdown().await;
}

/// The registry a router plugin must mirror, and what the replay saw.
#[derive(Default)]
struct Replay {
    upstreams: Mutex<Vec<String>>,
    handle: OnceLock<PluginHandle>,
    /// (restarts of the instance, whether the handle was ready) at each replay.
    seen: Mutex<Vec<(u64, Option<bool>)>>,
    /// Fail the replay of this restart count.
    fail_at: Option<u64>,
}

impl BeforeReady for Replay {
    fn before_ready(
        &self,
        instance: InstanceConnection,
    ) -> BoxFuture<'static, Result<(), CallError>> {
        assert_eq!(instance.plugin(), "router");
        assert_eq!(instance.plugin_type(), PluginType::Router);
        assert!(instance.has_hook("add_upstream"));
        let ready = self.handle.get().map(PluginHandle::is_ready);
        self.seen.lock().unwrap().push((instance.restarts(), ready));
        let fail = self.fail_at == Some(instance.restarts());
        let upstreams = self.upstreams.lock().unwrap().clone();
        Box::pin(async move {
            for id in upstreams {
                let upstream: Upstream = serde_json::from_value(serde_json::json!({ "id": id }))
                    .expect("a valid upstream");
                instance
                    .call::<AddUpstream>(&AddUpstreamParams { upstream })
                    .await?;
            }
            if fail {
                return Err(CallError::Closed {
                    method: "replay".into(),
                });
            }
            Ok(())
        })
    }
}

async fn route(plugin: &PluginHandle) -> Option<String> {
    let params = RouteRequestParams {
        request: HttpRequest::default(),
    };
    plugin.call::<RouteRequest>(&params).await.unwrap().upstream
}

async fn launch_router(
    replay: &Arc<Replay>,
) -> (
    PluginHost,
    PluginHandle,
    tokio::sync::mpsc::UnboundedReceiver<gatekeeper_plugin_host::PluginEvent>,
) {
    init_logs();
    let host = PluginHost::new(None).unwrap();
    let (events_tx, events) = tokio::sync::mpsc::unbounded_channel();
    let options = LaunchOptions::default()
        .with_before_ready(replay.clone())
        .with_events(events_tx);
    let plugin = host
        .launch(spec("router", PluginType::Router, "router", None), options)
        .await
        .unwrap();
    let _ = replay.handle.set(plugin.clone());
    (host, plugin, events)
}

#[tokio::test]
async fn the_replay_runs_on_every_start_before_the_plugin_is_ready() {
    let replay = Arc::new(Replay {
        upstreams: Mutex::new(vec!["api".into()]),
        ..Replay::default()
    });
    let (host, plugin, _events) = launch_router(&replay).await;
    assert_eq!(route(&plugin).await.as_deref(), Some("api"));

    *replay.upstreams.lock().unwrap() = vec!["v2".into()];
    kill9(plugin.pid().unwrap());
    eventually("the plugin is back", BACK, || {
        plugin.restarts() == 1 && plugin.is_ready()
    })
    .await;
    // The first call after ready already sees the replayed state of the new process.
    assert_eq!(route(&plugin).await.as_deref(), Some("v2"));
    assert_eq!(*replay.seen.lock().unwrap(), [(0, None), (1, Some(false))]);
    host.shutdown().await;
}

#[tokio::test]
async fn a_failing_replay_is_a_failed_start() {
    let replay = Arc::new(Replay {
        upstreams: Mutex::new(vec!["api".into()]),
        fail_at: Some(1),
        ..Replay::default()
    });
    let (host, plugin, mut events) = launch_router(&replay).await;
    kill9(plugin.pid().unwrap());
    eventually("the plugin is back", BACK, || {
        plugin.is_ready() && plugin.restarts() == 2
    })
    .await;
    assert_eq!(route(&plugin).await.as_deref(), Some("api"));
    host.shutdown().await;
    let mut kinds = Vec::new();
    while let Ok(event) = events.try_recv() {
        kinds.push(event.kind);
    }
    assert!(
        matches!(kinds[0], PluginEventKind::Started { .. }),
        "{kinds:?}"
    );
    assert!(
        matches!(&kinds[1], PluginEventKind::Failed { .. }),
        "{kinds:?}"
    );
    assert!(
        matches!(&kinds[2], PluginEventKind::Failed { reason } if reason.contains("before-ready")),
        "{kinds:?}"
    );
    assert!(
        matches!(kinds[3], PluginEventKind::Restarted { restarts: 2, .. }),
        "{kinds:?}"
    );

    // A replay failing on the first start fails the launch.
    let host = PluginHost::new(None).unwrap();
    let failing: Arc<dyn BeforeReady> = Arc::new(
        |_instance: InstanceConnection| -> BoxFuture<'static, Result<(), CallError>> {
            Box::pin(async {
                Err(CallError::Closed {
                    method: "replay".into(),
                })
            })
        },
    );
    let error = host
        .launch(
            spec("router", PluginType::Router, "router", None),
            LaunchOptions::default().with_before_ready(failing),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            HostError::Start {
                source: StartError::BeforeReady(_),
                ..
            }
        ),
        "{error}"
    );
    host.shutdown().await;
}

#[tokio::test]
async fn reconfigure_restarts_every_instance_with_the_new_spec() {
    init_logs();
    let scratch = Scratch::new("reconfigure");
    let out = scratch.file("out");
    let host = PluginHost::new(None).unwrap();
    let first = spec("reconf", PluginType::Modifier, "normal", Some(&out))
        .with_instances(2)
        .with_config(serde_json::json!({ "v": 1 }).as_object().cloned().unwrap());
    let plugin = host
        .launch(first.clone(), LaunchOptions::default())
        .await
        .unwrap();
    let old_pids: HashSet<u32> = plugin
        .state()
        .instances
        .iter()
        .filter_map(|i| i.pid)
        .collect();
    assert_eq!(old_pids.len(), 2);

    let second = first
        .clone()
        .with_config(serde_json::json!({ "v": 2 }).as_object().cloned().unwrap());
    host.reconfigure(second).await.unwrap();
    let new_pids: HashSet<u32> = plugin
        .state()
        .instances
        .iter()
        .filter_map(|i| i.pid)
        .collect();
    assert_eq!(new_pids.len(), 2);
    assert!(
        new_pids.is_disjoint(&old_pids),
        "every instance was restarted"
    );
    let configured: Vec<Value> = records(&out)
        .into_iter()
        .filter_map(|r| r.get("configure").cloned())
        .collect();
    assert_eq!(
        configured.iter().filter(|c| c["v"] == 2).count(),
        2,
        "{configured:?}"
    );
    // The same handle calls the new processes.
    let result = plugin.call::<ModifyRequest>(&request()).await.unwrap();
    let pid = result.request.unwrap().context["pid"].as_u64().unwrap();
    assert!(new_pids.contains(&u32::try_from(pid).unwrap()));

    // What cannot change this way is refused, and nothing restarts.
    let more = first.clone().with_instances(3);
    assert!(matches!(
        host.reconfigure(more).await,
        Err(HostError::Reconfigure { .. })
    ));
    let unknown = spec("nobody", PluginType::Modifier, "normal", None);
    assert!(matches!(
        host.reconfigure(unknown).await,
        Err(HostError::UnknownPlugin(_))
    ));

    // A spec that does not start: the instance goes back to the previous settings.
    let mut broken = first.clone().with_args(vec![
        script().display().to_string(),
        "slow_start".to_owned(),
    ]);
    broken.start_timeout = Duration::from_millis(300);
    assert!(matches!(
        host.reconfigure(broken).await,
        Err(HostError::Reconfigure { .. })
    ));
    eventually("the plugin is ready again", BACK, || {
        plugin.state().instances.iter().all(|i| i.pid.is_some()) && plugin.is_ready()
    })
    .await;
    plugin.call::<ModifyRequest>(&request()).await.unwrap();
    host.shutdown().await;
}

#[tokio::test]
async fn a_replacement_takes_over_the_name_and_stop_ends_only_the_old_plugin() {
    init_logs();
    let host = PluginHost::new(None).unwrap();
    let first = spec("swap", PluginType::Modifier, "normal", None);
    let old = host
        .launch(first.clone(), LaunchOptions::default())
        .await
        .unwrap();
    let other = host
        .launch(
            spec("other", PluginType::Modifier, "normal", None),
            LaunchOptions::default(),
        )
        .await
        .unwrap();
    let old_pid = old.pid().unwrap();
    assert!(matches!(
        host.launch(first.clone(), LaunchOptions::default()).await,
        Err(HostError::DuplicateName(_))
    ));
    assert!(matches!(
        host.launch_replacement(
            spec("nobody", PluginType::Modifier, "normal", None),
            LaunchOptions::default()
        )
        .await,
        Err(HostError::UnknownPlugin(_))
    ));

    // A replacement with a different number of instances runs next to the old plugin.
    let new = host
        .launch_replacement(first.clone().with_instances(2), LaunchOptions::default())
        .await
        .unwrap();
    assert_eq!(new.instances(), 2);
    assert!(old.is_ready() && new.is_ready());
    assert_eq!(
        host.plugin("swap").unwrap().instances(),
        2,
        "the name means the new one"
    );

    host.stop(&old).await.unwrap();
    assert!(!old.is_ready());
    assert!(!alive(old_pid), "the old process is gone");
    assert!(matches!(
        old.call::<ModifyRequest>(&request()).await,
        Err(PluginCallError::Unavailable { .. })
    ));
    assert!(matches!(
        host.stop(&old).await,
        Err(HostError::UnknownPlugin(_))
    ));
    new.call::<ModifyRequest>(&request()).await.unwrap();
    other.call::<ModifyRequest>(&request()).await.unwrap();
    assert_eq!(host.plugins().len(), 2);

    // Stopping the last plugin of a name frees the name.
    host.stop(&new).await.unwrap();
    host.launch(first, LaunchOptions::default()).await.unwrap();
    host.shutdown().await;
}
