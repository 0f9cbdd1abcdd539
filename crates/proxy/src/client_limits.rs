//! Per-client limits, enforced before any plugin runs: connections open at once per client
//! address (`max_connections_per_client`, checked at accept time, before any byte is read) and
//! requests per second per client address (`client_request_rate`, `client_request_burst`,
//! checked first in the pipeline, before the request checks and routing). Both are off unless
//! set; [`ClientLimits`] is what the listeners and the pipeline share.
//!
//! A client is its TCP peer address ([`ClientKey`]): an IPv4 address (also when it arrives
//! IPv4-mapped on a dual-stack listener), or the /64 prefix of an IPv6 address (one host or
//! network usually holds a whole /64, so per-address limits would not hold it back).
//!
//! - [`connections`]: the open-connection count per client (one table, locked at accept and at
//!   close only; an entry lives while its client has a connection open, so at most
//!   `max_connections` entries).
//! - [`rate`]: one GCRA token bucket per client in a sharded, bounded LRU table
//!   ([`rate::MAX_CLIENTS`] clients; the least recently seen is forgotten first).
//!
//! Refusals are counted per listener (`gatekeeper_client_limited_total{listener,limit}`) and
//! logged at most once per [`crate::WARNING_INTERVAL`] per limit ([`ThrottledWarning`]: the last
//! client refused and how many were refused since the previous line), so a flood does not flood
//! the log either.

pub(crate) mod connections;
pub(crate) mod rate;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) use connections::{ConnectionLimiter, ConnectionPermit};
pub(crate) use rate::RateLimiter;

use crate::ProxyConfig;

/// A client as the limits count it: an IPv4 address, or the /64 prefix of an IPv6 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct ClientKey(u128);

impl ClientKey {
    /// The client of a connection from `ip`. IPv4 addresses are kept in their IPv4-mapped IPv6
    /// form (`::ffff:a.b.c.d`), which no /64 prefix of a real IPv6 address equals.
    pub(crate) fn of(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => ClientKey(u128::from(v4.to_ipv6_mapped())),
            IpAddr::V6(v6) => ClientKey(u128::from(v6) & !u128::from(u64::MAX)),
        }
    }

    /// A well-mixed 64-bit hash of the key (picks a shard of the rate table).
    fn spread(self) -> u64 {
        let folded = (self.0 as u64) ^ ((self.0 >> 64) as u64);
        folded.wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }
}

/// The per-client limits of a proxy: each `None` when off.
#[derive(Debug)]
pub(crate) struct ClientLimits {
    /// `max_connections_per_client`.
    pub(crate) connections: Option<Arc<ConnectionLimiter>>,
    /// `client_request_rate` and `client_request_burst`.
    pub(crate) rate: Option<RateLimiter>,
    /// The log line of refused connections.
    pub(crate) connections_refused: ThrottledWarning,
    /// The log line of refused requests.
    pub(crate) requests_refused: ThrottledWarning,
}

impl Default for ClientLimits {
    /// No limit.
    fn default() -> Self {
        ClientLimits::new(&ProxyConfig::default())
    }
}

impl ClientLimits {
    /// The limits `config` sets (0: off).
    pub(crate) fn new(config: &ProxyConfig) -> Self {
        let connections = Some(config.max_connections_per_client)
            .filter(|max| *max > 0)
            .map(|max| {
                Arc::new(ConnectionLimiter::new(
                    u32::try_from(max).unwrap_or(u32::MAX),
                ))
            });
        let rate = (config.client_request_rate > 0).then(|| {
            let burst = match config.client_request_burst {
                0 => config.client_request_rate,
                burst => burst,
            };
            RateLimiter::new(config.client_request_rate, burst)
        });
        ClientLimits {
            connections,
            rate,
            connections_refused: ThrottledWarning::new(crate::WARNING_INTERVAL),
            requests_refused: ThrottledWarning::new(crate::WARNING_INTERVAL),
        }
    }
}

/// At most one log line per interval for one limit: lock-free (two atomics), so that the
/// refusal path of a flood takes no lock for its log either.
#[derive(Debug)]
pub(crate) struct ThrottledWarning {
    epoch: Instant,
    interval_ns: u64,
    /// Nanoseconds since `epoch` before which no line is logged (0: the first refusal logs).
    next_ns: AtomicU64,
    /// Refusals since the last line.
    unreported: AtomicU64,
}

impl ThrottledWarning {
    pub(crate) fn new(interval: Duration) -> Self {
        ThrottledWarning {
            epoch: Instant::now(),
            interval_ns: u64::try_from(interval.as_nanos()).unwrap_or(u64::MAX),
            next_ns: AtomicU64::new(0),
            unreported: AtomicU64::new(0),
        }
    }

    /// Counts one refusal at `now`: `Some(n)` when a line is to be logged now, `n` being the
    /// refusals since the previous line, this one included.
    pub(crate) fn refused(&self, now: Instant) -> Option<u64> {
        self.unreported.fetch_add(1, Ordering::Relaxed);
        let at =
            u64::try_from(now.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX);
        let next = self.next_ns.load(Ordering::Relaxed);
        if at < next {
            return None;
        }
        let due = at.saturating_add(self.interval_ns);
        self.next_ns
            .compare_exchange(next, due, Ordering::Relaxed, Ordering::Relaxed)
            .ok()
            .map(|_| self.unreported.swap(0, Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests;
