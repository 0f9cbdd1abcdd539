//! End-to-end tests of the plugin host against `fake_plugin.py`, a plugin written with Python's
//! standard library only (see its docstring for the modes).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test crate: panicking is how it fails

mod common;

use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{alive, eventually, init_logs, kill9, records, request, spec, Scratch};
use gatekeeper_plugin_host::{
    HostError, LaunchOptions, Manager, PluginCallError, PluginEventKind, PluginHost, PluginSpec,
    PluginStatus, StartError,
};
use gatekeeper_rpc::error::error_object;
use gatekeeper_rpc::methods::{
    AddBackendParams, AddUpstreamParams, ModifyRequest, ModifyResponse, ModifyResponseParams,
    PluginType, RemoveBackendParams, RemoveUpstreamParams,
};
use gatekeeper_rpc::types::HttpResponse;
use gatekeeper_rpc::{codes, ErrorObject};
use serde_json::Value;

fn none() -> LaunchOptions {
    LaunchOptions::default()
}

#[tokio::test]
async fn launches_calls_a_hook_and_shuts_down() {
    init_logs();
    let host = PluginHost::new(None).unwrap();
    let dir = host.socket_dir().to_owned();
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700);
    assert!(dir
        .file_name()
        .unwrap()
        .to_string_lossy()
        .starts_with(&format!("gatekeeper-{}-", std::process::id())));

    let plugin = host
        .launch(spec("echo", PluginType::Modifier, "normal", None), none())
        .await
        .unwrap();
    let socket_mode = std::fs::metadata(plugin.socket_path())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(socket_mode & 0o777, 0o600);
    assert!(plugin.socket_path().starts_with(&dir));

    assert!(plugin.is_ready());
    assert_eq!(plugin.name(), "echo");
    assert_eq!(plugin.plugin_type(), PluginType::Modifier);
    assert!(plugin.has_hook("modify_request"));
    assert!(!plugin.has_hook("bogus_hook"), "invalid hooks are ignored");
    assert!(plugin.wants_body("modify_request"));
    assert!(
        !plugin.wants_body("modify_response"),
        "bodies of undeclared hooks are ignored"
    );
    let state = plugin.state();
    assert_eq!(state.status, PluginStatus::Ready);
    assert_eq!(state.restarts, 0);
    let pid = plugin.pid().unwrap();
    assert_eq!(state.pid, Some(pid));

    let result = plugin.call::<ModifyRequest>(&request()).await.unwrap();
    let echoed = result.request.unwrap();
    assert_eq!(echoed.path, "/hello");
    assert_eq!(echoed.context["pid"], Value::from(pid));

    let error = plugin
        .call::<ModifyResponse>(&ModifyResponseParams {
            request: request().request,
            response: HttpResponse {
                status: 200,
                headers: vec![],
                body: None,
                body_base64: None,
                body_omitted: false,
            },
        })
        .await
        .unwrap_err();
    assert!(matches!(
        error,
        PluginCallError::NotDeclared {
            hook: "modify_response",
            ..
        }
    ));

    assert!(host.plugin("echo").is_some());
    assert_eq!(host.plugins().len(), 1);
    assert!(matches!(
        host.launch(spec("echo", PluginType::Modifier, "normal", None), none())
            .await,
        Err(HostError::DuplicateName(_))
    ));

    host.shutdown().await;
    assert!(!alive(pid), "the plugin process is gone after shutdown");
    assert!(!dir.exists(), "the socket directory is removed");
    assert_eq!(plugin.state().status, PluginStatus::Stopped);
    assert_eq!(plugin.pid(), None);
    assert!(matches!(
        plugin.call::<ModifyRequest>(&request()).await,
        Err(PluginCallError::Unavailable { .. })
    ));
    assert!(matches!(
        host.launch(spec("late", PluginType::Modifier, "normal", None), none())
            .await,
        Err(HostError::ShutDown)
    ));
}

#[tokio::test]
async fn refuses_a_wrong_token_and_calls_before_the_handshake() {
    init_logs();
    let scratch = Scratch::new("token");
    let out = scratch.file("out");
    let host = PluginHost::new(Some(scratch.0.clone())).unwrap();
    let mut liar = spec("liar", PluginType::Upstream, "wrong_token", Some(&out));
    liar.start_attempts = 1;
    let error = host.launch(liar, none()).await.unwrap_err();
    assert!(
        matches!(
            error,
            HostError::Start {
                source: StartError::Exited { .. },
                ..
            }
        ),
        "{error}"
    );
    let records = records(&out);
    assert_eq!(records.len(), 2, "{records:?}");
    assert_eq!(records[0]["method"], "add_upstream");
    assert_eq!(records[0]["error"]["code"], codes::UNAUTHORIZED);
    assert_eq!(records[1]["method"], "handshake");
    assert_eq!(records[1]["error"]["code"], codes::UNAUTHORIZED);
    assert!(host.plugin("liar").is_none());
    host.shutdown().await;
}

#[tokio::test]
async fn refuses_an_unsupported_protocol_version() {
    init_logs();
    let scratch = Scratch::new("version");
    let out = scratch.file("out");
    let host = PluginHost::new(None).unwrap();
    let error = host
        .launch(
            spec("future", PluginType::Modifier, "wrong_version", Some(&out)),
            none(),
        )
        .await
        .unwrap_err();
    assert!(matches!(error, HostError::Start { .. }), "{error}");
    let records = records(&out);
    assert_eq!(records[0]["error"]["code"], codes::UNSUPPORTED_VERSION);
    host.shutdown().await;
}

#[tokio::test]
async fn a_missing_command_is_a_clear_error() {
    let host = PluginHost::new(None).unwrap();
    let spec = PluginSpec::new(
        "ghost",
        PluginType::Modifier,
        "/nonexistent/gatekeeper-plugin",
    );
    let error = host.launch(spec, none()).await.unwrap_err();
    assert!(
        matches!(
            error,
            HostError::Start {
                source: StartError::Spawn { .. },
                ..
            }
        ),
        "{error}"
    );
    assert!(
        error.to_string().contains("/nonexistent/gatekeeper-plugin"),
        "{error}"
    );
    // The name is free again after a failed launch.
    let spec = PluginSpec::new(
        "ghost",
        PluginType::Modifier,
        "/nonexistent/gatekeeper-plugin",
    );
    assert!(matches!(
        host.launch(spec, none()).await,
        Err(HostError::Start { .. })
    ));
}

#[tokio::test]
async fn a_start_that_takes_too_long_fails_the_launch() {
    init_logs();
    let host = PluginHost::new(None).unwrap();
    let mut spec = spec("sloth", PluginType::Modifier, "slow_start", None);
    spec.start_timeout = Duration::from_millis(700);
    let started = Instant::now();
    let error = host.launch(spec, none()).await.unwrap_err();
    assert!(
        matches!(
            error,
            HostError::Start {
                source: StartError::Silent(_),
                ..
            }
        ),
        "{error}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    host.shutdown().await;
}

#[tokio::test]
async fn a_killed_plugin_is_restarted_and_calls_made_meanwhile_wait_for_it() {
    init_logs();
    let host = PluginHost::new(None).unwrap();
    let mut spec = spec("phoenix", PluginType::Modifier, "normal", None);
    spec.restart_backoff_min = Duration::from_millis(300);
    // Restarted at once (never in backoff): calls wait for it rather than fail.
    spec.healthy_after = Duration::ZERO;
    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let plugin = host
        .launch(spec, none().with_events(events_tx))
        .await
        .unwrap();
    let pid = plugin.pid().unwrap();
    kill9(pid);

    eventually("the plugin is seen down", Duration::from_secs(3), || {
        !plugin.is_ready()
    })
    .await;
    assert!(plugin.is_available(), "a restart is coming");
    let result = plugin.call::<ModifyRequest>(&request()).await.unwrap();
    assert_ne!(result.request.unwrap().context["pid"], Value::from(pid));

    eventually("the plugin is back", Duration::from_secs(5), || {
        plugin.is_ready()
    })
    .await;
    assert_eq!(plugin.restarts(), 1);
    let new_pid = plugin.pid().unwrap();
    assert_ne!(new_pid, pid);
    let result = plugin.call::<ModifyRequest>(&request()).await.unwrap();
    assert_eq!(result.request.unwrap().context["pid"], Value::from(new_pid));
    host.shutdown().await;
    assert!(!alive(new_pid));

    // Lifecycle events, in order.
    let mut kinds = Vec::new();
    while let Ok(event) = events.try_recv() {
        assert_eq!((event.plugin.as_str(), event.instance), ("phoenix", 0));
        kinds.push(event.kind);
    }
    assert_eq!(kinds.len(), 4, "{kinds:?}");
    assert_eq!(kinds[0], PluginEventKind::Started { pid: Some(pid) });
    assert!(
        matches!(&kinds[1], PluginEventKind::Failed { reason } if reason.contains("exited") || reason.contains("closed")),
        "{kinds:?}"
    );
    assert_eq!(
        kinds[2],
        PluginEventKind::Restarted {
            restarts: 1,
            pid: Some(new_pid)
        }
    );
    assert_eq!(kinds[3], PluginEventKind::Stopped);
}

#[tokio::test]
async fn missed_heartbeats_restart_the_plugin() {
    init_logs();
    let scratch = Scratch::new("heartbeat");
    let marker = scratch.file("marker");
    let host = PluginHost::new(None).unwrap();
    let (events_tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let plugin = host
        .launch(
            spec(
                "mute",
                PluginType::Modifier,
                "flaky_heartbeat",
                Some(&marker),
            ),
            none().with_events(events_tx),
        )
        .await
        .unwrap();
    let pid = plugin.pid().unwrap();
    eventually("the plugin is restarted", Duration::from_secs(5), || {
        plugin.restarts() == 1 && plugin.is_ready()
    })
    .await;
    assert!(!alive(pid), "the silent process was killed");
    // The second process answers heartbeats: no further restart.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(plugin.restarts(), 1);
    assert!(plugin.is_ready());
    host.shutdown().await;
    let mut kinds = Vec::new();
    while let Ok(event) = events.try_recv() {
        kinds.push(event.kind);
    }
    assert!(
        matches!(kinds[0], PluginEventKind::Started { .. }),
        "{kinds:?}"
    );
    assert_eq!(kinds[1], PluginEventKind::HeartbeatMissed { missed: 1 });
    assert_eq!(kinds[2], PluginEventKind::HeartbeatMissed { missed: 2 });
    assert!(
        matches!(&kinds[3], PluginEventKind::Failed { reason } if reason.contains("heartbeats")),
        "{kinds:?}"
    );
    assert!(
        matches!(kinds[4], PluginEventKind::Restarted { restarts: 1, .. }),
        "{kinds:?}"
    );
}

#[derive(Default)]
struct RecordingManager {
    calls: Mutex<Vec<String>>,
}

impl RecordingManager {
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

impl Manager for RecordingManager {
    fn add_upstream(&self, plugin: &str, params: AddUpstreamParams) -> Result<(), ErrorObject> {
        if params.upstream.id == "taken" {
            return Err(error_object(
                codes::CONFLICT,
                "upstream `taken` already exists",
            ));
        }
        self.calls
            .lock()
            .unwrap()
            .push(format!("{plugin}: add_upstream {}", params.upstream.id));
        Ok(())
    }

    fn remove_upstream(&self, _: &str, _: RemoveUpstreamParams) -> Result<(), ErrorObject> {
        Ok(())
    }

    fn add_backend(&self, _: &str, _: AddBackendParams) -> Result<(), ErrorObject> {
        Ok(())
    }

    fn remove_backend(&self, plugin: &str, params: RemoveBackendParams) -> Result<(), ErrorObject> {
        self.calls
            .lock()
            .unwrap()
            .push(format!("{plugin}: remove_backend {}", params.backend_id));
        Err(error_object(codes::UNKNOWN_UPSTREAM, "no upstream `u1`"))
    }
}

#[tokio::test]
async fn upstream_plugins_reach_the_manager_and_get_its_errors() {
    init_logs();
    let scratch = Scratch::new("manager");
    let out = scratch.file("out");
    let manager = Arc::new(RecordingManager::default());
    let host = PluginHost::new(None).unwrap();
    let mut spec = spec("static", PluginType::Upstream, "upstream", Some(&out));
    spec.config
        .insert("file".into(), Value::from("upstreams.yml"));
    let plugin = host
        .launch(spec, none().with_manager(manager.clone()))
        .await
        .unwrap();
    assert_eq!(plugin.plugin_type(), PluginType::Upstream);

    eventually(
        "the plugin got every answer",
        Duration::from_secs(5),
        || records(&out).len() >= 5,
    )
    .await;
    assert_eq!(
        manager.calls(),
        ["static: add_upstream u1", "static: remove_backend b9"]
    );
    let records = records(&out);
    assert_eq!(records[0]["configure"]["file"], "upstreams.yml");
    let answer = |method: &str, index: usize| {
        records
            .iter()
            .filter(|r| r["method"] == method)
            .nth(index)
            .cloned()
            .unwrap_or_else(|| panic!("no answer {index} to {method}: {records:?}"))
    };
    assert_eq!(answer("add_upstream", 0)["result"], serde_json::json!({}));
    let conflict = &answer("add_upstream", 1)["error"];
    assert_eq!(conflict["code"], codes::CONFLICT);
    assert_eq!(conflict["message"], "upstream `taken` already exists");
    assert_eq!(
        answer("remove_backend", 0)["error"]["code"],
        codes::UNKNOWN_UPSTREAM
    );
    assert_eq!(
        answer("add_backend", 0)["error"]["code"],
        codes::INVALID_PARAMS
    );
    host.shutdown().await;
}

#[tokio::test]
async fn hook_calls_use_every_connection() {
    init_logs();
    let host = PluginHost::new(None).unwrap();
    let plugin = host
        .launch(spec("wide", PluginType::Modifier, "multi", None), none())
        .await
        .unwrap();
    let mut seen = std::collections::HashSet::new();
    let start = Instant::now();
    while seen.len() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "only saw {seen:?}"
        );
        let result = plugin.call::<ModifyRequest>(&request()).await.unwrap();
        seen.insert(result.request.unwrap().context["conn"].clone());
    }
    host.shutdown().await;
}

#[tokio::test]
async fn shutdown_kills_a_plugin_that_does_not_exit() {
    init_logs();
    let host = PluginHost::new(None).unwrap();
    let plugin = host
        .launch(
            spec("stubborn", PluginType::Modifier, "ignore_stop", None),
            none(),
        )
        .await
        .unwrap();
    let pid = plugin.pid().unwrap();
    let started = Instant::now();
    host.shutdown().await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(!alive(pid));
    assert_eq!(plugin.state().status, PluginStatus::Stopped);
}

#[tokio::test]
async fn a_requested_restart_stops_the_process_and_starts_a_new_one_at_once() {
    init_logs();
    let host = PluginHost::new(None).unwrap();
    let mut spec = spec("renewed", PluginType::Modifier, "normal", None);
    // A restart after a failure would wait this long; a requested one does not.
    spec.restart_backoff_min = Duration::from_secs(30);
    let plugin = host.launch(spec, none()).await.unwrap();
    let pid = plugin.pid().unwrap();
    plugin.call::<ModifyRequest>(&request()).await.unwrap();
    let before = plugin.state();
    assert_eq!((before.calls, before.errors), (1, 0));
    assert!(before.latency_us_total > 0);

    assert_eq!(plugin.restart(), 1);
    eventually("a new process is ready", Duration::from_secs(5), || {
        plugin.is_ready() && plugin.pid().is_some_and(|p| p != pid)
    })
    .await;
    assert!(!alive(pid), "the old process exited");
    assert_eq!(plugin.restarts(), 1);
    plugin.call::<ModifyRequest>(&request()).await.unwrap();
    host.shutdown().await;
    assert_eq!(plugin.restart(), 0, "a stopped plugin is not restarted");
}
