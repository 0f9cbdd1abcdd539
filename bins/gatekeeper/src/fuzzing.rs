//! Entry points for the fuzz targets (`fuzz/`, `crates/fuzz-targets`): the config file as
//! `gatekeeper check` reads it, the admin socket's and the metrics listener's HTTP handling, and
//! the manager methods as gatekeeper applies them to its registry. Not part of the API; nothing
//! else may use it.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use gatekeeper_proxy::Registry;
use serde_json::value::RawValue;
use tokio::io::AsyncWriteExt;

use crate::admin::{http, routes, Admin};
use crate::prometheus::Prometheus;
use crate::wiring::manager::RegistryManager;

/// Checks a config file's text as `gatekeeper check` does (key by key, then whole, without
/// flags), and prints the settings as `--check` would when they are valid. Returns the errors.
pub fn check_config(text: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if let Err(error) = crate::check::check_text(text, &mut errors) {
        return vec![error];
    }
    if let Ok(table) = toml::from_str::<toml::Table>(text) {
        match crate::config::check_file_part(table) {
            Ok(settings) => {
                if let Err(e) = serde_json::to_string_pretty(&settings) {
                    errors.push(e.to_string());
                }
            }
            Err(e) => errors.push(crate::describe(&e)),
        }
    }
    errors
}

/// Answers a manager call (method and params as an upstream plugin sent them) with
/// gatekeeper's registry manager, on a registry of its own (a fresh one per call).
pub fn manager_call(method: &str, params: &str) -> Result<(), String> {
    let params: Option<Box<RawValue>> = match params {
        "" => None,
        text => Some(RawValue::from_string(text.to_owned()).map_err(|e| e.to_string())?),
    };
    let manager = RegistryManager::new(Arc::new(Registry::new()));
    gatekeeper_plugin_host::manager::dispatch(&manager, "fuzz", method, params.as_deref())
        .map(drop)
        .map_err(|e| e.message().to_owned())
}

/// The admin state the admin target answers from: an empty registry, Prometheus metrics on.
fn admin() -> &'static Arc<Admin> {
    static ADMIN: OnceLock<Arc<Admin>> = OnceLock::new();
    ADMIN.get_or_init(|| {
        Arc::new(Admin {
            started: Instant::now(),
            registry: Arc::new(Registry::new()),
            config: ArcSwap::from_pointee(serde_json::json!({})),
            live: ArcSwapOption::empty(),
            prometheus: Some(Arc::new(Prometheus::new())),
            draining: Arc::new(AtomicBool::new(false)),
        })
    })
}

/// Serves the raw bytes of one client connection (any number of requests) with the admin
/// socket's handler, or with the metrics listener's when `metrics_listener`; returns the bytes
/// answered. Each connection is bounded to a few seconds.
pub fn serve_connection(metrics_listener: bool, input: &[u8]) -> Vec<u8> {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return Vec::new();
    };
    let admin = admin().clone();
    let handler: http::Handler = match admin.prometheus.clone() {
        Some(prometheus) if metrics_listener => {
            Arc::new(move |method, path, _query| routes::metrics_only(&prometheus, method, path))
        }
        _ => Arc::new(move |method, path, query| routes::handle(&admin, method, path, query)),
    };
    runtime.block_on(async move {
        let (mut client, server) = tokio::io::duplex(1 << 20);
        let served = tokio::spawn(http::serve_connection(server, handler));
        let _ = client.write_all(input).await;
        let _ = client.shutdown().await;
        let mut answer = Vec::new();
        let read = tokio::io::AsyncReadExt::read_to_end(&mut client, &mut answer);
        let _ = tokio::time::timeout(Duration::from_secs(5), read).await;
        served.abort();
        answer
    })
}
