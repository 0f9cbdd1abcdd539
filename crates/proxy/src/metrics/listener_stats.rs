//! Connection counters per listener: connections open, parked and accepted, TLS handshakes that
//! failed, malformed requests hyper answered itself, connections and requests refused by the
//! per-client limits, and the bytes read from and written to clients. They are plain atomics kept whatever the metrics exporters want (one add per
//! connection event or per read/write), and read at scrape time ([`Metrics::listener_stats`]).
//!
//! [`Metrics::listener_stats`]: crate::Metrics::listener_stats

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The counters of one listener, shared by its connections.
#[derive(Debug, Default)]
pub(crate) struct ListenerCounters {
    open: AtomicU64,
    parked: AtomicU64,
    accepted: AtomicU64,
    tls_handshake_failures: AtomicU64,
    malformed_requests: AtomicU64,
    client_limited_connections: AtomicU64,
    client_limited_requests: AtomicU64,
    bytes_received: AtomicU64,
    bytes_sent: AtomicU64,
}

/// What the counters of one listener say now.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ListenerStats {
    /// Client connections open now (TLS handshakes under way included).
    pub open_connections: u64,
    /// Of the open connections, those waiting for their client's next bytes without HTTP state
    /// or buffers (new ones before their first bytes, idle ones after `keepalive_release_after`).
    pub parked_connections: u64,
    /// Client connections accepted so far.
    pub connections: u64,
    /// TLS handshakes that failed or timed out.
    pub tls_handshake_failures: u64,
    /// Requests hyper could not parse and answered itself (400, 414, 431), and request heads
    /// that did not arrive in time (408).
    pub malformed_requests: u64,
    /// Connections closed at accept for `max_connections_per_client` (not counted in
    /// `connections`).
    pub client_limited_connections: u64,
    /// Requests answered 429 for `client_request_rate`.
    pub client_limited_requests: u64,
    /// Bytes read from clients (after TLS), heads included.
    pub bytes_received: u64,
    /// Bytes written to clients (before TLS), heads included.
    pub bytes_sent: u64,
}

impl ListenerCounters {
    /// Counts a connection as accepted and open until the guard is dropped.
    pub(crate) fn open(self: &Arc<Self>) -> OpenConnection {
        self.accepted.fetch_add(1, Ordering::Relaxed);
        self.open.fetch_add(1, Ordering::Relaxed);
        OpenConnection(self.clone())
    }

    /// Counts a connection as parked until the guard is dropped.
    pub(crate) fn parked(self: &Arc<Self>) -> ParkedConnection {
        self.parked.fetch_add(1, Ordering::Relaxed);
        ParkedConnection(self.clone())
    }

    pub(crate) fn tls_handshake_failed(&self) {
        self.tls_handshake_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn malformed_request(&self) {
        self.malformed_requests.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn client_limited_connection(&self) {
        self.client_limited_connections
            .fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn client_limited_request(&self) {
        self.client_limited_requests.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn received(&self, bytes: usize) {
        self.bytes_received
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub(crate) fn sent(&self, bytes: usize) {
        self.bytes_sent.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    fn stats(&self) -> ListenerStats {
        ListenerStats {
            open_connections: self.open.load(Ordering::Relaxed),
            parked_connections: self.parked.load(Ordering::Relaxed),
            connections: self.accepted.load(Ordering::Relaxed),
            tls_handshake_failures: self.tls_handshake_failures.load(Ordering::Relaxed),
            malformed_requests: self.malformed_requests.load(Ordering::Relaxed),
            client_limited_connections: self.client_limited_connections.load(Ordering::Relaxed),
            client_limited_requests: self.client_limited_requests.load(Ordering::Relaxed),
            bytes_received: self.bytes_received.load(Ordering::Relaxed),
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
        }
    }
}

/// One open connection: counted in `open` until dropped.
#[derive(Debug)]
pub(crate) struct OpenConnection(Arc<ListenerCounters>);

impl OpenConnection {
    /// The listener's counters.
    pub(crate) fn counters(&self) -> &ListenerCounters {
        &self.0
    }

    /// The listener's counters, to keep.
    pub(crate) fn shared_counters(&self) -> Arc<ListenerCounters> {
        self.0.clone()
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One parked connection: counted in `parked` until dropped.
#[derive(Debug)]
pub(crate) struct ParkedConnection(Arc<ListenerCounters>);

impl Drop for ParkedConnection {
    fn drop(&mut self) {
        self.0.parked.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The counters of every listener that accepted a connection, by name.
#[derive(Debug, Default)]
pub(crate) struct ListenerTable {
    listeners: Mutex<BTreeMap<String, Arc<ListenerCounters>>>,
}

impl ListenerTable {
    /// The counters of listener `name` (created at its first connection).
    pub(crate) fn counters(&self, name: &str) -> Arc<ListenerCounters> {
        let mut listeners = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(counters) = listeners.get(name) {
            return counters.clone();
        }
        let counters = Arc::new(ListenerCounters::default());
        listeners.insert(name.to_string(), counters.clone());
        counters
    }

    /// Every listener's counters now, by name.
    pub(crate) fn stats(&self) -> Vec<(String, ListenerStats)> {
        let listeners = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
        listeners
            .iter()
            .map(|(name, counters)| (name.clone(), counters.stats()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_counted_open_until_dropped() {
        let table = ListenerTable::default();
        let counters = table.counters("a");
        let first = counters.open();
        let second = table.counters("a").open();
        first.counters().received(10);
        second.counters().sent(5);
        counters.tls_handshake_failed();
        counters.malformed_request();
        counters.client_limited_connection();
        counters.client_limited_request();
        counters.client_limited_request();
        let parked = counters.parked();
        drop(first);
        let stats = table.stats();
        assert_eq!(
            stats,
            [(
                "a".to_string(),
                ListenerStats {
                    open_connections: 1,
                    parked_connections: 1,
                    connections: 2,
                    tls_handshake_failures: 1,
                    malformed_requests: 1,
                    client_limited_connections: 1,
                    client_limited_requests: 2,
                    bytes_received: 10,
                    bytes_sent: 5,
                }
            )]
        );
        drop(parked);
        drop(second);
        assert_eq!(table.stats()[0].1.open_connections, 0);
        assert_eq!(table.stats()[0].1.parked_connections, 0);
    }
}
