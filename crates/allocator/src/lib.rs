//! gatekeeper's global allocator, mimalloc ([`Allocator`]), and the one thing done to it:
//! [`release_idle_memory`], which a runtime calls when one of its threads goes idle, so that
//! memory freed after a burst (connections that closed or were parked, a whole-registry batch)
//! goes back to the system within about a second instead of when mimalloc next happens to
//! purge (it purges lazily, on later allocations). mimalloc is built with its arena committed
//! on demand (the workspace's `.cargo/config.toml`).
//!
//! This is the only crate with `unsafe` code: one call into mimalloc's C library.

use std::cell::Cell;
use std::time::{Duration, Instant};

/// The global allocator: `#[global_allocator] static GLOBAL: Allocator = Allocator;`.
pub use mimalloc::MiMalloc as Allocator;

/// At most one collection per thread in this interval.
const COLLECT_EVERY: Duration = Duration::from_secs(1);

thread_local! {
    static LAST_COLLECT: Cell<Option<Instant>> = const { Cell::new(None) };
}

/// Gives the memory this thread's heap has free back to the system, at most once a second per
/// thread (a collection walks the thread's pages: tens of microseconds for a large heap). Call
/// it when the thread has nothing to do (tokio's `on_thread_park`). Does nothing useful unless
/// [`Allocator`] is the global allocator.
pub fn release_idle_memory() {
    let now = Instant::now();
    let due = LAST_COLLECT.with(|last| match last.get() {
        Some(at) if now.duration_since(at) < COLLECT_EVERY => false,
        _ => {
            last.set(Some(now));
            true
        }
    });
    if due {
        collect();
    }
}

#[allow(unsafe_code)]
fn collect() {
    // SAFETY: mi_collect takes no pointers and may be called at any time from any thread; it
    // frees nothing in use, only returns pages with no live block to the system.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[global_allocator]
    static GLOBAL: Allocator = Allocator;

    fn resident_kb() -> Option<u64> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    #[test]
    fn freed_memory_goes_back_after_a_collection() {
        let Some(before) = resident_kb() else {
            return; // no /proc: nothing to measure
        };
        // 64 MiB in blocks of 8 KiB, written (resident), then freed.
        let blocks: Vec<Vec<u8>> = (0..8192).map(|i| vec![i as u8; 8192]).collect();
        let Some(full) = resident_kb() else { return };
        assert!(full > before + 32 * 1024, "{before} -> {full} KiB");
        drop(blocks);
        release_idle_memory();
        let Some(after) = resident_kb() else { return };
        assert!(
            after < full - 32 * 1024,
            "freed memory stayed resident: {before} -> {full} -> {after} KiB"
        );
        // A second call within the interval does not collect again (nothing to assert but
        // that it returns at once).
        release_idle_memory();
    }
}
