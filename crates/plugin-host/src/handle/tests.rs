//! Unit tests of the call path on in-memory connections (no process): waiting for a restarting
//! instance, failing at once in backoff, `null` results, results of the wrong shape.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: panicking is how they fail

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use gatekeeper_rpc::methods::{ModifyRequest, PluginType};
use gatekeeper_rpc::peer::CloseReason;
use gatekeeper_rpc::{Handler, IncomingRequest, Peer, PeerConfig, Reply};
use serde_json::value::RawValue;

use super::{PluginHandle, PluginStatus};
use crate::error::PluginCallError;
use crate::state::{Connections, Declared, HookSet, Instance, Shared};

/// Answers every request with a fixed result.
struct Answers(&'static str);

impl Handler for Answers {
    fn handle_request(&self, _: IncomingRequest) -> BoxFuture<'static, Reply> {
        let result = RawValue::from_string(self.0.to_owned()).unwrap();
        Box::pin(async move { Ok(result) })
    }
}

/// A plugin handle with `count` instances, none ready, all in `status`.
fn handle(count: usize, status: PluginStatus, hook_timeout: Duration) -> PluginHandle {
    let instances = (0..count)
        .map(|index| {
            let instance = Instance::new(index, Arc::from("fake"), PathBuf::from("/nonexistent"));
            instance.set_status(status);
            Arc::new(instance)
        })
        .collect();
    PluginHandle {
        shared: Arc::new(Shared::new(
            "fake",
            PluginType::Modifier,
            hook_timeout,
            5,
            3,
            instances,
        )),
    }
}

/// Makes instance `index` ready with one connection to a plugin answering `result`, as the
/// supervisor's `publish` does. Returns the proxy's end of the connection.
fn publish(plugin: &PluginHandle, index: usize, result: &'static str) -> Peer {
    let (ours, theirs) = tokio::io::duplex(64 * 1024);
    let peer = Peer::spawn(
        ours,
        Arc::new(gatekeeper_rpc::peer::NoHandler),
        PeerConfig::default(),
    );
    let _plugin_side = Peer::spawn(theirs, Arc::new(Answers(result)), PeerConfig::default());
    let declared = Arc::new(Declared {
        hooks: HookSet::from_iter(["modify_request".to_owned()]),
        ..Declared::default()
    });
    let instance = &plugin.shared.instances[index];
    instance.connections.store(Some(Arc::new(Connections {
        peers: vec![peer.clone()],
        hooks: declared,
        calls: Arc::default(),
    })));
    instance.set_status(PluginStatus::Ready);
    plugin.shared.became_ready.notify_waiters();
    peer
}

fn request() -> gatekeeper_rpc::methods::ModifyRequestParams {
    gatekeeper_rpc::methods::ModifyRequestParams {
        request: gatekeeper_rpc::types::HttpRequest::default(),
    }
}

const BOUND: Duration = Duration::from_secs(5);

#[tokio::test]
async fn a_call_while_an_instance_restarts_waits_for_it() {
    let plugin = handle(1, PluginStatus::Restarting, Duration::from_secs(30));
    assert!(plugin.is_available());
    assert!(!plugin.is_ready());
    let call = {
        let plugin = plugin.clone();
        tokio::spawn(async move { plugin.call::<ModifyRequest>(&request()).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!call.is_finished(), "the call waits for the restart");
    let _peer = publish(&plugin, 0, "{}");
    let outcome = tokio::time::timeout(BOUND, call).await.unwrap().unwrap();
    assert!(outcome.unwrap().request.is_none());
    assert_eq!(plugin.state().errors, 0);
}

#[tokio::test]
async fn a_call_while_every_instance_is_in_backoff_or_stopped_fails_at_once() {
    let plugin = handle(2, PluginStatus::Backoff, Duration::from_secs(60));
    plugin.shared.instances[1].set_status(PluginStatus::Stopped);
    assert!(!plugin.is_available());
    let outcome = tokio::time::timeout(BOUND, plugin.call::<ModifyRequest>(&request()))
        .await
        .expect("no waiting while nothing is coming");
    assert!(matches!(outcome, Err(PluginCallError::Unavailable { .. })));
}

#[tokio::test]
async fn a_wait_ends_when_the_instance_goes_into_backoff() {
    let plugin = handle(1, PluginStatus::Restarting, Duration::from_secs(60));
    let call = {
        let plugin = plugin.clone();
        tokio::spawn(async move { plugin.call::<ModifyRequest>(&request()).await })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    plugin.shared.instances[0].set_status(PluginStatus::Backoff);
    let outcome = tokio::time::timeout(BOUND, call).await.unwrap().unwrap();
    assert!(matches!(outcome, Err(PluginCallError::Unavailable { .. })));
}

#[tokio::test]
async fn a_null_result_is_an_empty_one() {
    let plugin = handle(1, PluginStatus::Starting, Duration::from_secs(5));
    let _peer = publish(&plugin, 0, "null");
    let result = plugin.call::<ModifyRequest>(&request()).await.unwrap();
    assert!(result.request.is_none() && result.response.is_none());
}

#[tokio::test]
async fn results_of_the_wrong_shape_fail_their_calls_and_restart_only_in_a_row() {
    // `Shared::new(.., restart_after_timeouts 5, restart_after_errors 3, ..)`.
    let plugin = handle(1, PluginStatus::Starting, Duration::from_secs(5));
    let peer = publish(&plugin, 0, r#"{"request": 5}"#);
    for _ in 0..2 {
        let error = plugin.call::<ModifyRequest>(&request()).await.unwrap_err();
        assert!(
            matches!(
                &error,
                PluginCallError::Failed {
                    source: gatekeeper_rpc::CallError::InvalidResult { .. },
                    ..
                }
            ),
            "{error}"
        );
        assert!(!peer.is_closed(), "not closed before the third in a row");
    }
    plugin.call::<ModifyRequest>(&request()).await.unwrap_err();
    let reason = tokio::time::timeout(BOUND, peer.closed()).await.unwrap();
    assert!(
        matches!(&reason, CloseReason::Failing(what) if what.contains("3 results of the wrong shape")),
        "{reason:?}"
    );
    let state = plugin.state();
    assert_eq!((state.calls, state.errors, state.bad_results), (3, 3, 3));
}

#[tokio::test]
async fn a_good_answer_resets_the_wrong_shape_count() {
    let plugin = handle(1, PluginStatus::Starting, Duration::from_secs(5));
    let peer = publish(&plugin, 0, r#"{"request": 5}"#);
    for _ in 0..2 {
        plugin.call::<ModifyRequest>(&request()).await.unwrap_err();
    }
    let instance = &plugin.shared.instances[0];
    assert_eq!(instance.consecutive_bad_results.load(Ordering::Relaxed), 2);
    let good = plugin.judge(
        &super::Target {
            instance,
            connections: instance.connections.load_full().unwrap(),
            peer: 0,
        },
        "modify_request",
        &RawValue::from_string("{}".to_owned()).unwrap(),
        |raw| serde_json::from_str::<serde_json::Value>(raw),
    );
    assert!(good.is_ok());
    assert_eq!(instance.consecutive_bad_results.load(Ordering::Relaxed), 0);
    plugin.call::<ModifyRequest>(&request()).await.unwrap_err();
    assert!(!peer.is_closed());
}
