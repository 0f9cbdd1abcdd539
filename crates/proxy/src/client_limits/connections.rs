//! `max_connections_per_client`: the connections each client has open, counted from accept to
//! the end of the connection's byte stream (an upgraded WebSocket connection included).
//!
//! One table behind one lock, taken twice per connection (at accept and when it closes), never
//! per request. An entry exists while its client has a connection open and is removed with its
//! last one, so the table holds at most as many entries as there are open connections
//! (`max_connections`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::OwnedSemaphorePermit;

use super::ClientKey;

/// Open connections per client, at most `max` each.
#[derive(Debug)]
pub(crate) struct ConnectionLimiter {
    max: u32,
    open: Mutex<HashMap<ClientKey, u32>>,
}

impl ConnectionLimiter {
    /// At most `max` (at least 1) connections per client.
    pub(crate) fn new(max: u32) -> Self {
        ConnectionLimiter {
            max: max.max(1),
            open: Mutex::default(),
        }
    }

    /// Counts a new connection of `client`, until the returned guard is dropped; `None` when
    /// the client has `max` connections open already (the connection is to be refused).
    pub(crate) fn open(self: &Arc<Self>, client: ClientKey) -> Option<ClientConnection> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(client).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(ClientConnection {
            limiter: self.clone(),
            client,
        })
    }

    /// The clients with a connection open now (entries in the table).
    #[cfg(test)]
    pub(crate) fn clients(&self) -> usize {
        self.open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// One open connection of a client, counted until dropped.
#[derive(Debug)]
pub(crate) struct ClientConnection {
    limiter: Arc<ConnectionLimiter>,
    client: ClientKey,
}

impl Drop for ClientConnection {
    fn drop(&mut self) {
        let mut open = self
            .limiter
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.client) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.client);
            }
        }
    }
}

/// A connection's places under the limits: under `max_connections` (over all listeners) and,
/// when `max_connections_per_client` is set, under its client's limit. Both are given back
/// when the connection's byte stream is dropped. The client's place is boxed: without the
/// limit, every connection carries 8 bytes for it, not 32.
#[derive(Debug)]
pub(crate) struct ConnectionPermit {
    pub(crate) _global: OwnedSemaphorePermit,
    pub(crate) _client: Option<Box<ClientConnection>>,
}
