//! The proxy's side of the SDK's end-to-end tests: the plugin runs over one end of an in-memory
//! duplex pipe, and a `Peer` on the other end plays the proxy.

#![allow(dead_code)] // each test crate uses a different part of it
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: panicking is how it fails

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use gatekeeper_plugin_sdk::rpc::error::error_object;
use gatekeeper_plugin_sdk::rpc::methods::{HandshakeParams, HandshakeResult};
use gatekeeper_plugin_sdk::rpc::{Handler, IncomingRequest, Peer, PeerConfig, Reply};
use gatekeeper_plugin_sdk::{
    codes, HttpRequest, PluginEnv, PluginType, ServeError, PROTOCOL_VERSION,
};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub const TOKEN: &str = "one-time-token";
pub const CALL: Duration = Duration::from_secs(5);

/// The proxy's side: answers the handshake and the manager methods, recording what it got.
struct FakeProxy {
    plugin_type: PluginType,
    calls: mpsc::UnboundedSender<(String, Value)>,
}

impl Handler for FakeProxy {
    fn handle_request(&self, request: IncomingRequest) -> BoxFuture<'static, Reply> {
        let plugin_type = self.plugin_type;
        let calls = self.calls.clone();
        Box::pin(async move {
            let params: Value = request.parse_params()?;
            let _ = calls.send((request.method.clone(), params.clone()));
            let result = match request.method.as_str() {
                "handshake" => {
                    let params: HandshakeParams = request.parse_params()?;
                    if params.token != TOKEN {
                        return Err(error_object(codes::UNAUTHORIZED, "bad token"));
                    }
                    serde_json::to_value(HandshakeResult {
                        protocol_version: PROTOCOL_VERSION,
                        name: "test".into(),
                        plugin_type,
                    })
                    .map_err(|e| error_object(codes::INTERNAL_ERROR, e.to_string()))?
                }
                "add_backend" if params["upstream_id"] == "missing" => {
                    return Err(error_object(
                        codes::UNKNOWN_UPSTREAM,
                        "no upstream `missing`",
                    ))
                }
                "add_upstream" | "remove_upstream" | "add_backend" | "remove_backend" => json!({}),
                other => {
                    return Err(error_object(codes::METHOD_NOT_FOUND, other.to_owned()));
                }
            };
            Ok(serde_json::value::to_raw_value(&result).unwrap())
        })
    }
}

pub fn env(plugin_type: PluginType, token: &str) -> PluginEnv {
    PluginEnv {
        socket: "/nonexistent".into(),
        token: token.to_owned(),
        name: "test-plugin".to_owned(),
        plugin_type,
        protocol_version: PROTOCOL_VERSION,
        max_line_bytes: 1 << 20,
        busy_poll: None,
    }
}

pub struct Harness {
    pub proxy: Peer,
    pub calls: mpsc::UnboundedReceiver<(String, Value)>,
    pub serving: JoinHandle<Result<(), ServeError>>,
}

impl Harness {
    pub async fn next_call(&mut self) -> (String, Value) {
        tokio::time::timeout(CALL, self.calls.recv())
            .await
            .expect("a call from the plugin")
            .expect("the proxy is alive")
    }

    pub async fn handshake(&mut self) -> HandshakeParams {
        let (method, params) = self.next_call().await;
        assert_eq!(method, "handshake");
        serde_json::from_value(params).unwrap()
    }

    pub async fn finished(self) -> Result<(), ServeError> {
        tokio::time::timeout(CALL, self.serving)
            .await
            .expect("serving ends")
            .expect("serving does not panic")
    }
}

pub fn harness(
    plugin_type: PluginType,
    serve: impl FnOnce(tokio::io::DuplexStream) -> JoinHandle<Result<(), ServeError>>,
) -> Harness {
    let (proxy_io, plugin_io) = tokio::io::duplex(64 * 1024);
    let (tx, calls) = mpsc::unbounded_channel();
    let proxy = Peer::spawn(
        proxy_io,
        Arc::new(FakeProxy {
            plugin_type,
            calls: tx,
        }),
        PeerConfig::default(),
    );
    Harness {
        proxy,
        calls,
        serving: serve(plugin_io),
    }
}

/// A `GET` of `path` with `headers`.
pub fn request(path: &str, headers: &[(&str, &str)]) -> HttpRequest {
    HttpRequest {
        method: "GET".into(),
        path: path.into(),
        headers: headers
            .iter()
            .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
            .collect(),
        ..HttpRequest::default()
    }
}
