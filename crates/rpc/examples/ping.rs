//! Measures the round trip of sequential calls between two peers on a Unix socket pair, each on
//! its own single-threaded runtime and thread (as the proxy and a plugin would be):
//! `cargo run --release -p gatekeeper-rpc --example ping [calls]`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use gatekeeper_rpc::message::to_raw;
use gatekeeper_rpc::peer::NoHandler;
use gatekeeper_rpc::{Handler, IncomingRequest, Peer, PeerConfig, Reply};

struct Echo;

impl Handler for Echo {
    fn handle_request(&self, request: IncomingRequest) -> BoxFuture<'static, Reply> {
        Box::pin(async move {
            let raw = request
                .params
                .as_deref()
                .map_or("{}", |p| p.get())
                .to_owned();
            to_raw(
                &serde_json::value::RawValue::from_string(raw)
                    .map_err(|e| gatekeeper_rpc::error::error_object(-32603, e.to_string()))?,
            )
            .map_err(|e| gatekeeper_rpc::error::error_object(-32603, e.to_string()))
        })
    }
}

fn main() -> std::io::Result<()> {
    let calls: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(20_000);
    let (a, b) = std::os::unix::net::UnixStream::pair()?;
    a.set_nonblocking(true)?;
    b.set_nonblocking(true)?;
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
        if let Ok(runtime) = runtime {
            runtime.block_on(async move {
                if let Ok(stream) = tokio::net::UnixStream::from_std(b) {
                    let peer = Peer::spawn(stream, Arc::new(Echo), PeerConfig::default());
                    peer.closed().await;
                }
            });
        }
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let stream = tokio::net::UnixStream::from_std(a)?;
        let peer = Peer::spawn(stream, Arc::new(NoHandler), PeerConfig::default());
        let params = serde_json::json!({"request": {"method": "GET", "path": "/b/", "headers": [["host", "127.0.0.1"], ["user-agent", "wrk"]]}});
        let mut samples = Vec::with_capacity(calls);
        for _ in 0..calls {
            let started = Instant::now();
            let _: serde_json::Value = peer
                .call("echo", &params, Duration::from_secs(5))
                .await
                .map_err(std::io::Error::other)?;
            samples.push(started.elapsed());
        }
        samples.sort();
        let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
        println!(
            "{calls} sequential calls: p50 {:?}, p90 {:?}, p99 {:?}",
            at(0.5),
            at(0.9),
            at(0.99)
        );
        Ok(())
    })
}
