//! Times the registry as a service discovery plugin drives it, without the wire:
//! `cargo run --release -p gatekeeper-proxy --example registry_churn [UPSTREAMS] [BACKENDS]`
//! (default 10,000 upstreams × 10 backends).
//!
//! 1. single calls: every upstream and backend added one call at a time (operations per
//!    second), then every upstream removed one call at a time;
//! 2. one batch: the same set added in one `apply_batch`, then removed in one;
//! 3. churn: with the set loaded, 10,000 backend changes (remove one, add it back) one call at a
//!    time, and the time a reader's `snapshot()` plus a prefix lookup takes meanwhile;
//! 4. the process's resident memory with the set loaded (from /proc/self/status).
//!
//! Prints one `key value` line per figure, for scripts/scale.sh.

use std::time::{Duration, Instant};

use gatekeeper_proxy::{Registry, RegistryOp};
use gatekeeper_rpc::types::{Backend, Upstream};

fn upstream(i: usize) -> Option<Upstream> {
    serde_json::from_value(
        serde_json::json!({ "id": format!("u{i}"), "prefixes": [format!("p{i}")] }),
    )
    .ok()
}

fn backend(b: usize) -> Backend {
    Backend {
        id: format!("b{b}"),
        address: format!("http://127.0.0.1:{}", 10000 + b),
        weight: None,
        extra: Default::default(),
    }
}

fn per_second(operations: usize, elapsed: Duration) -> u64 {
    (operations as f64 / elapsed.as_secs_f64().max(1e-9)) as u64
}

fn resident_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse().ok())
        })
        .unwrap_or(0)
}

fn ops(upstreams: usize, backends: usize) -> Vec<RegistryOp> {
    let mut ops = Vec::with_capacity(upstreams * (backends + 1));
    for i in 0..upstreams {
        let Some(u) = upstream(i) else { continue };
        ops.push(RegistryOp::AddUpstream(u));
        for b in 0..backends {
            ops.push(RegistryOp::AddBackend {
                upstream_id: format!("u{i}"),
                backend: backend(b),
            });
        }
    }
    ops
}

fn main() {
    let mut args = std::env::args().skip(1);
    let upstreams: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(10_000);
    let backends: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(10);
    let total = upstreams * (backends + 1);
    let before_kb = resident_kb();

    // 1. Single calls.
    let registry = Registry::new();
    let started = Instant::now();
    for op in ops(upstreams, backends) {
        let outcome = match op {
            RegistryOp::AddUpstream(u) => registry.add_upstream(u),
            RegistryOp::AddBackend {
                upstream_id,
                backend,
            } => registry.add_backend(&upstream_id, backend),
            _ => Ok(()),
        };
        if let Err(e) = outcome {
            eprintln!("single call refused: {e}");
            return;
        }
    }
    let added = started.elapsed();
    let loaded_kb = resident_kb();

    // 3. Churn on the loaded registry, with reader lookups timed in between.
    let started = Instant::now();
    let mut lookups = Duration::ZERO;
    let churn = 10_000;
    for n in 0..churn {
        let id = format!("u{}", (n * 7919) % upstreams);
        let b = n % backends.max(1);
        let outcome = registry
            .remove_backend(&id, &format!("b{b}"))
            .and_then(|()| registry.add_backend(&id, backend(b)));
        if let Err(e) = outcome {
            eprintln!("churn refused: {e}");
            return;
        }
        let looked = Instant::now();
        let snapshot = registry.snapshot();
        let found = snapshot
            .by_prefix
            .get(format!("p{}", n % upstreams).as_str());
        std::hint::black_box(found.map(|f| f.len()));
        lookups += looked.elapsed();
    }
    let churned = started.elapsed();

    let started = Instant::now();
    for i in 0..upstreams {
        if let Err(e) = registry.remove_upstream(&format!("u{i}")) {
            eprintln!("remove_upstream: {e}");
            return;
        }
    }
    let removed = started.elapsed();

    // 2. One batch.
    let registry = Registry::new();
    let batch = ops(upstreams, backends);
    let started = Instant::now();
    if let Err(e) = registry.apply_batch(batch) {
        eprintln!("batch refused: {e}");
        return;
    }
    let batch_added = started.elapsed();
    let removals = (0..upstreams)
        .map(|i| RegistryOp::RemoveUpstream {
            id: format!("u{i}"),
        })
        .collect();
    let started = Instant::now();
    if let Err(e) = registry.apply_batch(removals) {
        eprintln!("batch refused: {e}");
        return;
    }
    let batch_removed = started.elapsed();

    println!("upstreams {upstreams}");
    println!("backends {}", upstreams * backends);
    println!("single_add_ops_per_s {}", per_second(total, added));
    println!("single_add_s {:.3}", added.as_secs_f64());
    println!(
        "single_remove_upstream_per_s {}",
        per_second(upstreams, removed)
    );
    println!("batch_add_s {:.3}", batch_added.as_secs_f64());
    println!("batch_remove_s {:.3}", batch_removed.as_secs_f64());
    println!("churn_ops_per_s {}", per_second(2 * churn, churned));
    println!(
        "lookup_during_churn_ns {}",
        lookups.as_nanos() / churn as u128
    );
    println!(
        "rss_loaded_mb {:.1}",
        loaded_kb.saturating_sub(before_kb) as f64 / 1024.0
    );
}
