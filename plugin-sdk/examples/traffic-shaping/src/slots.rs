//! The slots: one semaphore of `limit` permits per upstream, and the permits currently held,
//! keyed by a slot id and stamped with when they were taken.
//!
//! Releasing a slot removes its entry (dropping the permit wakes the next waiter); releasing an
//! unknown or already released id does nothing, so a response seen twice cannot free a slot it
//! does not own. [`Slots::reclaim`] releases every slot held longer than the lease: a request
//! whose response never came back (the client went away, a later plugin's answer was lost)
//! cannot keep its slot forever.
//!
//! The time of taking and reclaiming comes from the caller (the plugin's clock); only the
//! waiting for a permit uses tokio's timer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug)]
struct Held {
    _permit: OwnedSemaphorePermit,
    taken: Instant,
}

#[derive(Debug, Default)]
struct Inner {
    semaphores: HashMap<String, Arc<Semaphore>>,
    held: HashMap<u64, Held>,
    next_id: u64,
}

/// The slots of every upstream.
#[derive(Debug)]
pub struct Slots {
    limit: usize,
    inner: Mutex<Inner>,
}

impl Slots {
    /// `limit` slots per upstream (at least 1).
    pub fn new(limit: usize) -> Self {
        Slots {
            limit: limit.max(1),
            inner: Mutex::default(),
        }
    }

    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a slot of `upstream`, waiting at most `queue` for one to be released. Returns the
    /// slot's id, or `None` when none came free in time. `now` stamps the slot.
    pub async fn acquire(&self, upstream: &str, queue: Duration, now: Instant) -> Option<u64> {
        let semaphore = {
            let mut inner = self.inner();
            let limit = self.limit;
            inner
                .semaphores
                .entry(upstream.to_owned())
                .or_insert_with(|| Arc::new(Semaphore::new(limit)))
                .clone()
        };
        let permit = match semaphore.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => tokio::time::timeout(queue, semaphore.acquire_owned())
                .await
                .ok()?
                .ok()?,
        };
        let mut inner = self.inner();
        inner.next_id += 1;
        let id = inner.next_id;
        inner.held.insert(
            id,
            Held {
                _permit: permit,
                taken: now,
            },
        );
        Some(id)
    }

    /// Releases slot `id`; whether it was held.
    pub fn release(&self, id: u64) -> bool {
        self.inner().held.remove(&id).is_some()
    }

    /// Releases every slot taken `lease` or longer before `now`; how many.
    pub fn reclaim(&self, lease: Duration, now: Instant) -> usize {
        let mut inner = self.inner();
        let before = inner.held.len();
        inner
            .held
            .retain(|_, held| now.checked_duration_since(held.taken).unwrap_or_default() < lease);
        before - inner.held.len()
    }

    /// How many slots are held, over all upstreams.
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.inner().held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_WAIT: Duration = Duration::from_millis(1);

    #[tokio::test]
    async fn limit_per_upstream() {
        let now = Instant::now();
        let slots = Slots::new(2);
        let a = slots.acquire("api", NO_WAIT, now).await.unwrap();
        let b = slots.acquire("api", NO_WAIT, now).await.unwrap();
        assert_ne!(a, b);
        assert_eq!(slots.acquire("api", NO_WAIT, now).await, None);
        // Another upstream has its own slots.
        assert!(slots.acquire("web", NO_WAIT, now).await.is_some());
        assert!(slots.release(a));
        assert!(!slots.release(a), "a slot is released once");
        assert!(!slots.release(12345));
        assert!(slots.acquire("api", NO_WAIT, now).await.is_some());
    }

    #[tokio::test]
    async fn a_waiter_gets_a_released_slot() {
        let now = Instant::now();
        let slots = Slots::new(1);
        let first = slots.acquire("api", NO_WAIT, now).await.unwrap();
        let (second, released) =
            tokio::join!(slots.acquire("api", Duration::from_secs(5), now), async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                slots.release(first)
            });
        assert!(released);
        assert!(second.is_some());
        assert_eq!(slots.held(), 1);
    }

    #[tokio::test]
    async fn old_slots_are_reclaimed() {
        let t0 = Instant::now();
        let slots = Slots::new(1);
        let old = slots.acquire("api", NO_WAIT, t0).await.unwrap();
        let lease = Duration::from_secs(60);
        assert_eq!(slots.reclaim(lease, t0 + Duration::from_secs(59)), 0);
        assert_eq!(slots.acquire("api", NO_WAIT, t0).await, None);
        assert_eq!(slots.reclaim(lease, t0 + lease), 1);
        assert!(slots.acquire("api", NO_WAIT, t0 + lease).await.is_some());
        // The reclaimed slot's late response frees nothing.
        assert!(!slots.release(old));
        assert_eq!(slots.held(), 1);
    }
}
