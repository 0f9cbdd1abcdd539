//! Times adding many upstreams (each with two backends) one call at a time, as a service
//! discovery plugin would, then removing them:
//! `cargo run --release -p gatekeeper-proxy --example registry_churn [N]` (default 2000).

use std::time::{Duration, Instant};

use gatekeeper_proxy::Registry;
use gatekeeper_rpc::types::{Backend, Upstream};

fn upstream(i: usize) -> Option<Upstream> {
    serde_json::from_value(
        serde_json::json!({ "id": format!("u{i}"), "prefixes": [format!("p{i}")] }),
    )
    .ok()
}

fn per_call(elapsed: Duration, calls: usize) -> Duration {
    elapsed / u32::try_from(calls.max(1)).unwrap_or(u32::MAX)
}

fn main() {
    let count: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(2000);
    let registry = Registry::new();
    let started = Instant::now();
    for i in 0..count {
        let Some(upstream) = upstream(i) else { return };
        if let Err(e) = registry.add_upstream(upstream) {
            eprintln!("add_upstream: {e}");
            return;
        }
        for b in 0..2 {
            let backend = Backend {
                id: format!("b{b}"),
                address: format!("http://127.0.0.1:{}", 10000 + b),
                weight: None,
                extra: Default::default(),
            };
            if let Err(e) = registry.add_backend(&format!("u{i}"), backend) {
                eprintln!("add_backend: {e}");
                return;
            }
        }
    }
    let added = started.elapsed();
    let started = Instant::now();
    for i in 0..count {
        if let Err(e) = registry.remove_upstream(&format!("u{i}")) {
            eprintln!("remove_upstream: {e}");
            return;
        }
    }
    let removed = started.elapsed();
    println!(
        "{count} upstreams with 2 backends each: added in {added:?} ({:?} per call), removed in {removed:?} ({:?} per call)",
        per_call(added, count * 3),
        per_call(removed, count)
    );
}
