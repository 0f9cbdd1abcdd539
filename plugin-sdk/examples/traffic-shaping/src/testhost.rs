//! The plugin through the SDK's test host (`gatekeeper_plugin_sdk::testing`): the lifecycle and
//! the JSON round trip as under gatekeeper, no proxy needed.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: panicking is how it fails

use gatekeeper_plugin_sdk::testing::{self, make_request, make_response};
use serde_json::json;

use crate::plugin::{TrafficShaping, CONTEXT_KEY};

#[tokio::test]
async fn a_second_request_waits_for_the_first_ones_slot() {
    // Values as pass-through flags give them: strings.
    let config = json!({"limit": "1", "queue_ms": "0"});
    let host = testing::modifier(TrafficShaping::default(), config)
        .await
        .unwrap();
    let request = || {
        make_request("GET", "/api/x")
            .prefix("api")
            .upstream("api")
            .build()
    };

    let first = serde_json::to_value(host.modify_request(request()).await.unwrap()).unwrap();
    let marker = first["patch"]["context"][CONTEXT_KEY]
        .as_str()
        .expect("a slot marker")
        .to_owned();
    let busy = host.modify_request(request()).await.unwrap();
    assert_eq!(busy.response.map(|r| r.status), Some(503));

    let done = make_request("GET", "/api/x")
        .upstream("api")
        .context(CONTEXT_KEY, json!(marker))
        .build();
    host.modify_response(done, make_response(200).build())
        .await
        .unwrap();
    let again = host.modify_request(request()).await.unwrap();
    assert!(again.response.is_none(), "the slot came back: {again:?}");
    host.stop().await.unwrap();
}

#[tokio::test]
async fn a_bad_limit_is_refused_at_configure() {
    let error = testing::modifier(TrafficShaping::default(), json!({"limit": "many"}))
        .await
        .err()
        .unwrap();
    assert!(error.to_string().contains("limit"), "{error}");
}
