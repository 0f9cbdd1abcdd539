//! The host's result check, against a plugin that speaks the protocol by hand (the SDK's typed
//! results cannot be malformed): a result gatekeeper refuses is `BadResult`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: panicking is how it fails

use gatekeeper_rpc::methods::PluginType;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream};
use tokio::task::JoinHandle;

use super::*;
use crate::env::PluginEnv;
use crate::error::ServeError;

/// A router that answers `route_request` with `route` and everything else with `{}`.
fn raw_router(
    route: Value,
) -> impl FnOnce(DuplexStream, PluginEnv) -> JoinHandle<Result<(), ServeError>> {
    move |io, env| {
        tokio::spawn(async move {
            let (read, mut write) = tokio::io::split(io);
            let handshake = json!({"jsonrpc": "2.0", "id": 1, "method": "handshake",
                "params": {"token": env.token, "protocol_version": 1, "hooks": ["route_request"]}});
            write
                .write_all(format!("{handshake}\n").as_bytes())
                .await
                .unwrap();
            let mut lines = BufReader::new(read).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let message: Value = serde_json::from_str(&line).unwrap();
                let Some(method) = message["method"].as_str() else {
                    continue;
                };
                let result = if method == "route_request" {
                    route.clone()
                } else {
                    json!({})
                };
                let answer = json!({"jsonrpc": "2.0", "id": message["id"], "result": result});
                write
                    .write_all(format!("{answer}\n").as_bytes())
                    .await
                    .unwrap();
                if method == "stop" {
                    break;
                }
            }
            Ok(())
        })
    }
}

#[tokio::test]
async fn a_result_gatekeeper_refuses_is_a_bad_result() {
    let host = builder()
        .start(PluginType::Router, raw_router(json!({"upstream": 42})))
        .await
        .unwrap();
    let error = host
        .route_request(make_request("GET", "/").build())
        .await
        .unwrap_err();
    let text = error.to_string();
    assert!(matches!(error, TestHostError::BadResult { .. }), "{text}");
    assert!(
        text.contains("route_request") && text.contains("42"),
        "{text}"
    );
    let error = host
        .call_json(
            "route_request",
            &json!({"request": {"method": "GET", "path": "/"}}),
        )
        .await
        .unwrap_err();
    assert!(matches!(error, TestHostError::BadResult { .. }), "{error}");
    host.stop().await.unwrap();
}

#[tokio::test]
async fn a_good_result_by_hand_passes() {
    let host = builder()
        .start(PluginType::Router, raw_router(json!({"upstream": "api"})))
        .await
        .unwrap();
    let result = host
        .route_request(make_request("GET", "/").build())
        .await
        .unwrap();
    assert_eq!(result.upstream.as_deref(), Some("api"));
    host.stop().await.unwrap();
}
