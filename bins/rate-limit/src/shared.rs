//! Limits kept in a shared store (Redis), and what happens when the store fails: the store's
//! health (up, or skipped until a background probe reconnects), `on_store_error` (open, closed,
//! or this process's own buckets), and warnings logged once per interval rather than per
//! request. The store itself is behind [`BucketStore`], so the tests drive this logic with a
//! fake one.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use tokio::time::Instant;

use crate::limiter::{Clock, Decision, Limiter};
use crate::settings::{OnStoreError, RedisSettings, Settings};

/// The least time between two warnings about the store.
pub const WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// Why the store could not decide.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached (refused, dropped, not connected): skip it for a while.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The store answered this call with an error (e.g. a key of the wrong type); the next
    /// call may well succeed.
    #[error("answered with an error: {0}")]
    Answered(String),
}

/// Token buckets kept outside the process.
pub trait BucketStore: Send + Sync + 'static {
    /// Takes a token from bucket `key`, or says how long to wait for one.
    fn take(&self, key: &str) -> impl Future<Output = Result<Decision, StoreError>> + Send;

    /// Makes a fresh connection and checks that the store answers on it; later calls use it.
    fn connect(&self) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// What a request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It passes.
    Pass,
    /// It is over its limit: 429 with this `Retry-After`.
    TooMany {
        /// Seconds until the next token.
        retry_after_secs: u64,
    },
    /// The store failed and `on_store_error = "closed"`: 503 with this `Retry-After`.
    StoreDown {
        /// Seconds until the store is tried again.
        retry_after_secs: u64,
    },
}

impl From<Decision> for Verdict {
    fn from(decision: Decision) -> Self {
        match decision {
            Decision::Allow => Verdict::Pass,
            Decision::Deny { retry_after_secs } => Verdict::TooMany { retry_after_secs },
        }
    }
}

/// Limits decided by a [`BucketStore`], with `on_store_error` when it fails.
pub struct SharedLimits<S> {
    inner: Arc<Inner<S>>,
}

struct Inner<S> {
    store: S,
    settings: RedisSettings,
    clock: Arc<dyn Clock>,
    /// The `local` fallback's buckets.
    local: Mutex<Limiter>,
    health: Mutex<Health>,
}

#[derive(Debug)]
struct Health {
    /// Requests go to the store.
    up: bool,
    /// A background task is reconnecting.
    probing: bool,
    /// When the last warning was logged.
    last_warning: Option<Instant>,
    /// Failures since then that logged nothing.
    unlogged_failures: u64,
}

impl<S: BucketStore> SharedLimits<S> {
    /// Limits in `store`, with `settings` (its `redis` part: timeouts and `on_store_error`;
    /// `rate`, `burst` and `max_keys` for the local fallback). The store is not used before
    /// [`start`](Self::start): until then it counts as down.
    pub fn new(store: S, settings: &Settings, clock: Arc<dyn Clock>) -> Self {
        SharedLimits {
            inner: Arc::new(Inner {
                store,
                settings: settings.redis.clone(),
                clock,
                local: Mutex::new(Limiter::new(
                    settings.rate,
                    settings.burst,
                    settings.max_keys,
                )),
                health: Mutex::new(Health {
                    up: false,
                    probing: false,
                    last_warning: None,
                    unlogged_failures: 0,
                }),
            }),
        }
    }

    /// Connects to the store, waiting at most the connect timeout. A failure is logged and
    /// leaves the store down (so `on_store_error` applies) while a background task keeps
    /// trying; it is not an error.
    pub async fn start(&self) {
        let inner = &self.inner;
        match tokio::time::timeout(inner.connect_timeout(), inner.store.connect()).await {
            Ok(Ok(())) => {
                inner.health().up = true;
                tracing::info!(url = %inner.settings.redacted_url(), "connected to redis");
            }
            Ok(Err(err)) => Inner::mark_down(inner, &format!("at start: {err}")),
            Err(_) => Inner::mark_down(
                inner,
                &format!(
                    "at start: no connection within {}",
                    humantime::format_duration(inner.connect_timeout())
                ),
            ),
        }
    }

    /// Whether requests currently go to the store.
    #[cfg(test)]
    pub fn is_up(&self) -> bool {
        self.inner.health().up
    }

    /// Decides for bucket `key`: by the store when it is up and answers within
    /// `redis_timeout`, otherwise by `on_store_error` at once.
    pub async fn check(&self, key: &str) -> Verdict {
        let inner = &self.inner;
        let (up, probing) = {
            let health = inner.health();
            (health.up, health.probing)
        };
        if !up {
            if !probing {
                // Not connected and nobody trying (a call before `start`): start trying.
                Inner::mark_down(inner, "not connected yet");
            }
            return inner.fallback(key);
        }
        match tokio::time::timeout(inner.settings.timeout, inner.store.take(key)).await {
            Ok(Ok(decision)) => decision.into(),
            Ok(Err(StoreError::Answered(message))) => {
                inner.warn_failure(&format!("answered with an error: {message}"));
                inner.fallback(key)
            }
            Ok(Err(StoreError::Unreachable(message))) => {
                Inner::mark_down(inner, &message);
                inner.fallback(key)
            }
            Err(_) => {
                let waited = humantime::format_duration(inner.settings.timeout);
                Inner::mark_down(inner, &format!("no answer within {waited}"));
                inner.fallback(key)
            }
        }
    }
}

impl<S: BucketStore> Inner<S> {
    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn connect_timeout(&self) -> Duration {
        self.settings.connect_timeout()
    }

    /// What `on_store_error` gives a request the store could not decide.
    fn fallback(&self, key: &str) -> Verdict {
        match self.settings.on_error {
            OnStoreError::Open => Verdict::Pass,
            OnStoreError::Closed => Verdict::StoreDown {
                retry_after_secs: self.settings.retry_interval.as_secs_f64().ceil().max(1.0) as u64,
            },
            OnStoreError::Local => {
                let now = self.clock.now();
                self.local
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .check(key, now)
                    .into()
            }
        }
    }

    /// Logs a failure, at most once per [`WARNING_INTERVAL`] (saying how many were not logged).
    fn warn_failure(&self, what: &str) {
        self.warn(what, false);
    }

    /// Logs a failure: always when `force`, else at most once per [`WARNING_INTERVAL`].
    fn warn(&self, what: &str, force: bool) {
        let now = Instant::now();
        let unlogged = {
            let mut health = self.health();
            let due = force
                || health
                    .last_warning
                    .is_none_or(|last| now.duration_since(last) >= WARNING_INTERVAL);
            if !due {
                health.unlogged_failures += 1;
                return;
            }
            health.last_warning = Some(now);
            std::mem::take(&mut health.unlogged_failures)
        };
        tracing::warn!(
            url = %self.settings.redacted_url(),
            on_store_error = %self.settings.on_error,
            unlogged_failures = unlogged,
            "redis rate-limit store failed: {what}; on_store_error = {} applies to the requests \
             it cannot decide",
            self.settings.on_error,
        );
    }

    /// The store failed: skip it from now on and start the background probe unless one runs.
    /// The failure that takes the store down is always logged (at most one per
    /// `redis_retry_interval`, since only the probe brings it back up); failures of calls that
    /// were in flight with it are logged at most once per [`WARNING_INTERVAL`].
    fn mark_down(this: &Arc<Self>, what: &str) {
        let start_probe = {
            let mut health = this.health();
            health.up = false;
            !std::mem::replace(&mut health.probing, true)
        };
        let retry = humantime::format_duration(this.settings.retry_interval);
        this.warn(
            &format!("{what}; skipping it, reconnecting every {retry}"),
            start_probe,
        );
        if start_probe {
            tokio::spawn(Self::probe(Arc::downgrade(this)));
        }
    }

    /// Every `redis_retry_interval`, tries to reconnect; once it succeeds requests go to the
    /// store again. Ends when the limits are dropped (the plugin was reconfigured or stops).
    async fn probe(weak: Weak<Self>) {
        let Some(interval) = weak.upgrade().map(|inner| inner.settings.retry_interval) else {
            return;
        };
        loop {
            tokio::time::sleep(interval).await;
            let Some(inner) = weak.upgrade() else {
                return;
            };
            let attempt = tokio::time::timeout(inner.connect_timeout(), inner.store.connect());
            match attempt.await {
                Ok(Ok(())) => {
                    {
                        let mut health = inner.health();
                        health.up = true;
                        health.probing = false;
                    }
                    tracing::info!(
                        url = %inner.settings.redacted_url(),
                        "redis rate-limit store answers again: limits are shared again"
                    );
                    return;
                }
                Ok(Err(err)) => inner.warn_failure(&format!("still unreachable: {err}")),
                Err(_) => inner.warn_failure("still unreachable: connection timed out"),
            }
        }
    }
}

#[cfg(test)]
mod tests;
