//! End-to-end tests of serving: the plugin runs over one end of an in-memory duplex pipe, and a
//! `Peer` on the other end plays the proxy.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test crate: panicking is how it fails

mod common;

use std::sync::{Arc, Mutex};

use common::{env, harness, Harness, CALL, TOKEN};
use gatekeeper_plugin_sdk::rpc::methods::{
    Configure, ConfigureParams, Empty, Heartbeat, Start, Stop,
};
use gatekeeper_plugin_sdk::{
    codes, header, run_modifier, run_upstream, set_header, Backend, CallError, HookError,
    HttpRequest, HttpResponse, Manager, Method, ModifierPlugin, ModifyRequest, ModifyRequestParams,
    ModifyRequestResult, ModifyResponse, ModifyResponseParams, Object, Plugin, PluginType,
    ServeError, Upstream, UpstreamPlugin, PROTOCOL_VERSION,
};
use serde_json::{json, Value};

// ---- a modifier ---------------------------------------------------------------------------------

#[derive(Default)]
struct Tagger {
    config: Mutex<Option<Object>>,
    stopped: Arc<Mutex<bool>>,
}

impl Plugin for Tagger {
    async fn configure(&self, config: Object) -> Result<(), HookError> {
        if config.contains_key("fail") {
            return Err(HookError::invalid_params("`fail` is set"));
        }
        *self.config.lock().unwrap() = Some(config);
        Ok(())
    }

    async fn stop(&self) -> Result<(), HookError> {
        *self.stopped.lock().unwrap() = true;
        Ok(())
    }
}

impl ModifierPlugin for Tagger {
    fn hooks(&self) -> &'static [&'static str] {
        &[ModifyRequest::NAME]
    }

    async fn modify_request(
        &self,
        params: ModifyRequestParams,
    ) -> Result<ModifyRequestResult, HookError> {
        let mut request = params.request;
        if request.path == "/deny" {
            return Err(HookError::new(-32050, "denied by test"));
        }
        let tag = self
            .config
            .lock()
            .unwrap()
            .as_ref()
            .and_then(|c| c.get("tag").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_default();
        set_header(&mut request.headers, "x-tag", tag);
        Ok(ModifyRequestResult {
            patch: None,
            cache: None,
            request: Some(request),
            response: None,
        })
    }
}

fn modifier<P: ModifierPlugin>(plugin: P, token: &str) -> Harness {
    let env = env(PluginType::Modifier, token);
    harness(PluginType::Modifier, move |io| {
        tokio::spawn(async move { run_modifier(plugin, io, &env).await })
    })
}

fn request(path: &str) -> HttpRequest {
    common::request(path, &[])
}

#[tokio::test]
async fn handshake_carries_the_token_and_the_declared_hooks() {
    let mut h = modifier(Tagger::default(), TOKEN);
    let handshake = h.handshake().await;
    assert_eq!(handshake.token, TOKEN);
    assert_eq!(handshake.protocol_version, PROTOCOL_VERSION);
    assert_eq!(handshake.hooks, vec!["modify_request".to_owned()]);
    h.proxy.close();
    h.finished().await.unwrap();
}

#[tokio::test]
async fn configure_delivers_the_map_and_modify_request_answers() {
    let mut h = modifier(Tagger::default(), TOKEN);
    h.handshake().await;
    let mut config = Object::new();
    config.insert("tag".into(), json!("blue"));
    h.proxy
        .request::<Configure>(
            &ConfigureParams {
                config,
                check: false,
            },
            CALL,
        )
        .await
        .unwrap();
    h.proxy.request::<Start>(&Empty {}, CALL).await.unwrap();
    h.proxy.request::<Heartbeat>(&Empty {}, CALL).await.unwrap();

    let params = ModifyRequestParams {
        request: request("/x"),
    };
    let result = h
        .proxy
        .request::<ModifyRequest>(&params, CALL)
        .await
        .unwrap();
    // The handler returned the whole request; the SDK sent only what changed, as a patch.
    assert!(result.request.is_none(), "{result:?}");
    let patch = result.patch.expect("a patch");
    assert_eq!(
        serde_json::to_value(&patch).unwrap(),
        json!({"set_headers": {"x-tag": "blue"}})
    );
    let mut changed = params.request.clone();
    patch.apply(&mut changed);
    assert_eq!(header(&changed.headers, "x-tag"), Some("blue"));
    assert!(result.response.is_none());
}

#[tokio::test]
async fn errors_reach_the_proxy_with_code_and_message() {
    let mut h = modifier(Tagger::default(), TOKEN);
    h.handshake().await;

    let mut config = Object::new();
    config.insert("fail".into(), json!(true));
    let err = h
        .proxy
        .request::<Configure>(
            &ConfigureParams {
                config,
                check: false,
            },
            CALL,
        )
        .await
        .unwrap_err();
    let CallError::Remote { error, .. } = err else {
        panic!("expected a remote error, got {err}")
    };
    assert_eq!(error.code(), codes::INVALID_PARAMS);
    assert_eq!(error.message(), "`fail` is set");

    let params = ModifyRequestParams {
        request: request("/deny"),
    };
    let err = h
        .proxy
        .request::<ModifyRequest>(&params, CALL)
        .await
        .unwrap_err();
    assert!(matches!(err, CallError::Remote { ref error, .. } if error.code() == -32050));
}

#[tokio::test]
async fn undeclared_hooks_are_refused() {
    let mut h = modifier(Tagger::default(), TOKEN);
    h.handshake().await;
    let params = ModifyResponseParams {
        request: request("/"),
        response: HttpResponse {
            status: 200,
            headers: Vec::new(),
            body: None,
            body_base64: None,
            body_omitted: false,
        },
    };
    let err = h
        .proxy
        .request::<ModifyResponse>(&params, CALL)
        .await
        .unwrap_err();
    assert!(
        matches!(err, CallError::Remote { ref error, .. } if error.code() == codes::METHOD_NOT_FOUND),
        "{err}"
    );
}

#[tokio::test]
async fn stop_ends_serving() {
    let plugin = Tagger::default();
    let stopped = plugin.stopped.clone();
    let mut h = modifier(plugin, TOKEN);
    h.handshake().await;
    h.proxy.request::<Stop>(&Empty {}, CALL).await.unwrap();
    assert!(*stopped.lock().unwrap());
    // The proxy keeps its end open: serving still ends on its own.
    let proxy = h.proxy.clone();
    h.finished().await.unwrap();
    assert!(tokio::time::timeout(CALL, proxy.closed()).await.is_ok());
}

#[tokio::test]
async fn the_proxy_closing_ends_serving_cleanly() {
    let mut h = modifier(Tagger::default(), TOKEN);
    h.handshake().await;
    h.proxy.close();
    h.finished().await.unwrap();
}

#[tokio::test]
async fn a_refused_handshake_is_an_error() {
    let h = modifier(Tagger::default(), "wrong-token");
    let err = h.finished().await.unwrap_err();
    assert!(matches!(err, ServeError::Handshake(_)), "{err}");
    assert!(err.to_string().contains("bad token"), "{err}");
}

#[tokio::test]
async fn the_wrong_plugin_type_is_an_error() {
    let (_proxy, plugin_io) = tokio::io::duplex(1024);
    let err = run_modifier(
        Tagger::default(),
        plugin_io,
        &env(PluginType::Upstream, TOKEN),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, ServeError::WrongType { .. }), "{err}");
}

// ---- an upstream plugin ---------------------------------------------------------------------------

struct Fixed {
    upstream_for_backend: &'static str,
}

impl Plugin for Fixed {}

impl UpstreamPlugin for Fixed {
    async fn start_upstreams(&self, manager: Manager) -> Result<(), HookError> {
        manager
            .add_upstream(Upstream {
                id: "api".into(),
                name: "API".into(),
                timeout_ms: Some(5000),
                protocols: vec![],
                hostnames: vec!["api.example".into()],
                prefixes: vec!["api".into()],
                balancer: None,
                backend_protocol: None,
                connect_timeout_ms: None,
                max_connections_per_backend: None,
                passive_health: None,
                health_check: None,
                host_header: None,
                extra: Object::new(),
            })
            .await?;
        manager
            .add_backend(
                self.upstream_for_backend,
                Backend {
                    id: "0".into(),
                    address: "http://127.0.0.1:9".into(),
                    weight: None,
                    extra: Object::new(),
                },
            )
            .await?;
        Ok(())
    }
}

fn upstream(plugin: Fixed) -> Harness {
    let env = env(PluginType::Upstream, TOKEN);
    harness(PluginType::Upstream, move |io| {
        tokio::spawn(async move { run_upstream(plugin, io, &env).await })
    })
}

#[tokio::test]
async fn start_pushes_upstreams_through_the_manager() {
    let mut h = upstream(Fixed {
        upstream_for_backend: "api",
    });
    let handshake = h.handshake().await;
    assert!(handshake.hooks.is_empty());
    h.proxy.request::<Start>(&Empty {}, CALL).await.unwrap();
    let (method, params) = h.next_call().await;
    assert_eq!(method, "add_upstream");
    assert_eq!(params["upstream"]["id"], "api");
    assert_eq!(params["upstream"]["timeout_ms"], 5000);
    let (method, params) = h.next_call().await;
    assert_eq!(method, "add_backend");
    assert_eq!(params["upstream_id"], "api");
    assert_eq!(params["backend"]["address"], "http://127.0.0.1:9");
}

#[tokio::test]
async fn a_manager_error_fails_start_with_the_proxys_code() {
    let mut h = upstream(Fixed {
        upstream_for_backend: "missing",
    });
    h.handshake().await;
    let err = h.proxy.request::<Start>(&Empty {}, CALL).await.unwrap_err();
    let CallError::Remote { error, .. } = err else {
        panic!("expected a remote error, got {err}")
    };
    assert_eq!(error.code(), codes::UNKNOWN_UPSTREAM);
    assert!(
        error.message().contains("no upstream `missing`"),
        "{}",
        error.message()
    );
}

/// A modifier that wants the request body and upper-cases it.
struct Upper;

impl Plugin for Upper {}

impl ModifierPlugin for Upper {
    fn hooks(&self) -> &'static [&'static str] {
        &["modify_request"]
    }

    fn bodies(&self) -> &'static [&'static str] {
        &["modify_request"]
    }

    async fn modify_request(
        &self,
        params: ModifyRequestParams,
    ) -> Result<ModifyRequestResult, HookError> {
        let mut request = params.request;
        let body = match request.body_bytes() {
            Some(Ok(body)) => body,
            Some(Err(e)) => return Err(HookError::invalid_params(format!("bad body: {e}"))),
            None => return Ok(ModifyRequestResult::default()),
        };
        request.set_body_bytes(&body.to_ascii_uppercase());
        Ok(ModifyRequestResult {
            patch: None,
            cache: None,
            request: Some(request),
            response: None,
        })
    }
}

#[tokio::test]
async fn a_modifier_declares_the_bodies_it_wants_and_replaces_them() {
    let mut h = modifier(Upper, TOKEN);
    let handshake = h.handshake().await;
    assert_eq!(handshake.bodies, vec!["modify_request".to_owned()]);
    h.proxy.request::<Start>(&Empty {}, CALL).await.unwrap();
    let mut sent = request("/x");
    sent.set_body_bytes(b"hello\x00\xff");
    let params = ModifyRequestParams { request: sent };
    let result = h
        .proxy
        .request::<ModifyRequest>(&params, CALL)
        .await
        .unwrap();
    let changed = result.request.expect("a changed request");
    assert_eq!(changed.body_bytes().unwrap().unwrap(), b"HELLO\x00\xff");
}

#[tokio::test]
async fn a_modifier_wants_no_bodies_by_default() {
    let mut h = modifier(Tagger::default(), TOKEN);
    assert!(h.handshake().await.bodies.is_empty());
}

/// A modifier whose `modify_request` must not run twice for one request.
struct ChargesOnce;

impl Plugin for ChargesOnce {
    fn no_retry(&self) -> &'static [&'static str] {
        &["modify_request"]
    }
}

impl ModifierPlugin for ChargesOnce {
    fn hooks(&self) -> &'static [&'static str] {
        &["modify_request"]
    }
}

#[tokio::test]
async fn a_plugin_marks_the_hooks_not_to_retry_in_the_handshake() {
    let mut h = modifier(ChargesOnce, TOKEN);
    assert_eq!(
        h.handshake().await.no_retry,
        vec!["modify_request".to_owned()]
    );
    let mut h = modifier(Tagger::default(), TOKEN);
    assert!(h.handshake().await.no_retry.is_empty(), "none by default");
}

/// Needs only the Authorization header, and sets `x-user` from it.
struct NeedsAuthorization;

impl Plugin for NeedsAuthorization {}

impl ModifierPlugin for NeedsAuthorization {
    fn hooks(&self) -> &'static [&'static str] {
        &["modify_request"]
    }

    fn request_parts(&self) -> &'static [&'static str] {
        &["header:Authorization"]
    }

    async fn modify_request(
        &self,
        params: ModifyRequestParams,
    ) -> Result<ModifyRequestResult, HookError> {
        let mut request = params.request;
        let user = header(&request.headers, "authorization")
            .unwrap_or("-")
            .to_owned();
        set_header(&mut request.headers, "x-user", user);
        Ok(ModifyRequestResult::forward(request))
    }
}

#[tokio::test]
async fn a_modifier_declares_the_request_parts_it_needs_and_answers_a_partial_request_with_a_patch()
{
    let mut h = modifier(NeedsAuthorization, TOKEN);
    let handshake = h.handshake().await;
    assert_eq!(
        serde_json::to_value(&handshake.parts).unwrap(),
        json!({"modify_request": ["header:authorization"]})
    );
    // What gatekeeper sends such a hook: method, path and the declared header only.
    let params: ModifyRequestParams = serde_json::from_value(json!({"request": {
        "method": "GET", "path": "/x", "headers": [["authorization", "alice"]]}}))
    .unwrap();
    let result = h
        .proxy
        .request::<ModifyRequest>(&params, CALL)
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(&result).unwrap(),
        json!({"patch": {"set_headers": {"x-user": "alice"}}})
    );
    let mut h = modifier(Tagger::default(), TOKEN);
    assert!(h.handshake().await.parts.is_empty(), "none by default");
}
