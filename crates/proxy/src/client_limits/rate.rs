//! `client_request_rate` and `client_request_burst`: one token bucket per client, in the GCRA
//! form (one timestamp per client: the "theoretical arrival time" `tat`). A client may send
//! `burst` requests at once, then one every `1/rate` seconds; a request that would go over is
//! refused with the time until the next one is allowed (`Retry-After`).
//!
//! The table is split into [`SHARDS`] shards, each an LRU map behind its own lock, picked by a
//! hash of the client: a request locks one shard for one lookup (no lock shared by every
//! request). It holds at most [`MAX_CLIENTS`] clients (about 100 bytes each, so at most about
//! 13 MiB, allocated as clients are seen); a new client in a full shard takes the place of the
//! shard's least recently seen one, which starts again with a full bucket if it comes back. A
//! client whose bucket is full again (`tat` in the past) is the same as one never seen, so
//! forgetting it changes nothing; only a table full of clients all sending within `burst/rate`
//! seconds makes the limit more lenient.

use std::num::NonZeroU64;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use lru::LruCache;

use super::ClientKey;

/// Shards of the table (a power of two).
pub(crate) const SHARDS: usize = 16;

/// Clients the table holds at most (over all shards).
pub(crate) const MAX_CLIENTS: usize = 131_072;

const NANOS_PER_SECOND: u64 = 1_000_000_000;

/// Requests per second per client, with bursts.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    /// Nanoseconds between two requests at the sustained rate (`1/rate`).
    interval_ns: u64,
    /// How far `tat` may run ahead of now: `burst × interval`.
    tolerance_ns: u64,
    /// Clients per shard at most.
    shard_capacity: usize,
    /// Times are nanoseconds since this.
    epoch: Instant,
    shards: Box<[Mutex<LruCache<ClientKey, u64>>]>,
}

impl RateLimiter {
    /// `rate` requests per second per client (at least 1), with bursts of `burst` (at least 1).
    pub(crate) fn new(rate: u32, burst: u32) -> Self {
        Self::with_capacity(rate, burst, MAX_CLIENTS)
    }

    /// As [`RateLimiter::new`], holding at most `max_clients` clients (rounded up to a
    /// multiple of [`SHARDS`]).
    pub(crate) fn with_capacity(rate: u32, burst: u32, max_clients: usize) -> Self {
        let rate = NonZeroU64::new(u64::from(rate)).unwrap_or(NonZeroU64::MIN);
        let interval_ns = (NANOS_PER_SECOND / rate).max(1);
        RateLimiter {
            interval_ns,
            tolerance_ns: interval_ns.saturating_mul(u64::from(burst.max(1))),
            shard_capacity: max_clients.div_ceil(SHARDS).max(1),
            epoch: Instant::now(),
            shards: (0..SHARDS)
                .map(|_| Mutex::new(LruCache::unbounded()))
                .collect(),
        }
    }

    /// Takes one request of `client` at `now`: `Ok` when allowed, else the time until its next
    /// request would be.
    pub(crate) fn check(&self, client: ClientKey, now: Instant) -> Result<(), Duration> {
        let now_ns =
            u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX);
        let shard = &self.shards[(client.spread() >> 60) as usize % SHARDS];
        let mut clients = shard.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(tat) = clients.get_mut(&client) {
            let next = (*tat).max(now_ns).saturating_add(self.interval_ns);
            let ahead = next - now_ns;
            if ahead > self.tolerance_ns {
                return Err(Duration::from_nanos(ahead - self.tolerance_ns));
            }
            *tat = next;
            return Ok(());
        }
        if clients.len() >= self.shard_capacity {
            clients.pop_lru();
        }
        clients.push(client, now_ns.saturating_add(self.interval_ns));
        Ok(())
    }

    /// The clients the table holds now.
    #[cfg(test)]
    pub(crate) fn clients(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.lock().unwrap_or_else(PoisonError::into_inner).len())
            .sum()
    }
}
