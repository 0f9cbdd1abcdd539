//! Tests of the shared limits against a fake store: the store deciding, each `on_store_error`,
//! skipping a down store, the background reconnection, and the rate-limited warnings.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::limiter::SystemClock;

/// How the fake store answers `take` and `connect`.
#[derive(Debug, Clone)]
enum Behaviour {
    /// `take` answers this decision (a missing script entry: Allow).
    Answer,
    /// Every call fails as unreachable.
    Unreachable,
    /// `take` answers an error.
    Error,
    /// `take` never answers.
    Hang,
}

struct FakeStore {
    behaviour: Mutex<Behaviour>,
    decisions: Mutex<VecDeque<Decision>>,
    takes: AtomicUsize,
    connects: AtomicUsize,
}

impl FakeStore {
    fn new(behaviour: Behaviour) -> Arc<Self> {
        Arc::new(FakeStore {
            behaviour: Mutex::new(behaviour),
            decisions: Mutex::new(VecDeque::new()),
            takes: AtomicUsize::new(0),
            connects: AtomicUsize::new(0),
        })
    }
    fn set(&self, behaviour: Behaviour) {
        *self.behaviour.lock().unwrap() = behaviour;
    }
    fn takes(&self) -> usize {
        self.takes.load(Ordering::SeqCst)
    }
    fn connects(&self) -> usize {
        self.connects.load(Ordering::SeqCst)
    }
}

impl BucketStore for Arc<FakeStore> {
    async fn take(&self, _key: &str) -> Result<Decision, StoreError> {
        self.takes.fetch_add(1, Ordering::SeqCst);
        let behaviour = self.behaviour.lock().unwrap().clone();
        match behaviour {
            Behaviour::Answer => Ok(self
                .decisions
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or(Decision::Allow)),
            Behaviour::Unreachable => Err(StoreError::Unreachable("refused".into())),
            Behaviour::Error => Err(StoreError::Answered("WRONGTYPE".into())),
            Behaviour::Hang => std::future::pending().await,
        }
    }
    async fn connect(&self) -> Result<(), StoreError> {
        self.connects.fetch_add(1, Ordering::SeqCst);
        let behaviour = self.behaviour.lock().unwrap().clone();
        match behaviour {
            Behaviour::Unreachable => Err(StoreError::Unreachable("refused".into())),
            Behaviour::Hang => std::future::pending().await,
            Behaviour::Answer | Behaviour::Error => Ok(()),
        }
    }
}

fn settings(on_error: OnStoreError) -> Settings {
    Settings {
        rate: 0.001,
        burst: 2.0,
        redis: RedisSettings {
            on_error,
            timeout: Duration::from_millis(50),
            retry_interval: Duration::from_secs(1),
            ..RedisSettings::default()
        },
        ..Settings::default()
    }
}

async fn started(
    behaviour: Behaviour,
    on_error: OnStoreError,
) -> (SharedLimits<Arc<FakeStore>>, Arc<FakeStore>) {
    let store = FakeStore::new(behaviour);
    let limits = SharedLimits::new(store.clone(), &settings(on_error), Arc::new(SystemClock));
    limits.start().await;
    (limits, store)
}

const TOO_MANY: Verdict = Verdict::TooMany {
    retry_after_secs: 7,
};

#[tokio::test(start_paused = true)]
async fn the_store_decides_while_it_answers() {
    let (limits, store) = started(Behaviour::Answer, OnStoreError::Closed).await;
    assert!(limits.is_up());
    store.decisions.lock().unwrap().extend([
        Decision::Allow,
        Decision::Deny {
            retry_after_secs: 7,
        },
    ]);
    assert_eq!(limits.check("k").await, Verdict::Pass);
    assert_eq!(limits.check("k").await, TOO_MANY);
    assert_eq!(store.takes(), 2);
}

#[tokio::test(start_paused = true)]
async fn open_passes_and_closed_refuses_when_unreachable() {
    let (open, _) = started(Behaviour::Unreachable, OnStoreError::Open).await;
    let (closed, _) = started(Behaviour::Unreachable, OnStoreError::Closed).await;
    for _ in 0..5 {
        assert_eq!(open.check("k").await, Verdict::Pass);
        assert_eq!(
            closed.check("k").await,
            Verdict::StoreDown {
                retry_after_secs: 1
            }
        );
    }
}

#[tokio::test(start_paused = true)]
async fn local_falls_back_to_this_process_buckets() {
    let (limits, store) = started(Behaviour::Answer, OnStoreError::Local).await;
    store.set(Behaviour::Unreachable);
    // Burst 2: two pass, then 429 from the local bucket (rate 0.001: 1000 s to the next).
    assert_eq!(limits.check("k").await, Verdict::Pass);
    assert_eq!(limits.check("k").await, Verdict::Pass);
    assert_eq!(
        limits.check("k").await,
        Verdict::TooMany {
            retry_after_secs: 1000
        }
    );
    // Another key has its own local bucket.
    assert_eq!(limits.check("other").await, Verdict::Pass);
}

#[tokio::test(start_paused = true)]
async fn a_down_store_is_skipped_until_the_probe_reconnects() {
    let (limits, store) = started(Behaviour::Answer, OnStoreError::Open).await;
    store.set(Behaviour::Unreachable);
    assert_eq!(limits.check("k").await, Verdict::Pass);
    assert!(!limits.is_up());
    // While down, requests do not touch the store at all.
    for _ in 0..10 {
        assert_eq!(limits.check("k").await, Verdict::Pass);
    }
    assert_eq!(store.takes(), 1);
    // The probe tries once per retry interval while it is still down...
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(store.connects(), 1 + 3);
    assert!(!limits.is_up());
    // ...and brings it back once it answers.
    store.set(Behaviour::Answer);
    store.decisions.lock().unwrap().push_back(Decision::Deny {
        retry_after_secs: 7,
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(limits.is_up());
    assert_eq!(limits.check("k").await, TOO_MANY);
    assert_eq!(store.takes(), 2);
    // Only one probe ran: no more connects once up.
    let connects = store.connects();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(store.connects(), connects);
}

#[tokio::test(start_paused = true)]
async fn a_store_that_does_not_answer_in_time_counts_as_down() {
    let (limits, store) = started(Behaviour::Answer, OnStoreError::Closed).await;
    store.set(Behaviour::Hang);
    let before = Instant::now();
    assert!(matches!(limits.check("k").await, Verdict::StoreDown { .. }));
    // It waited redis_timeout (paused clock: exactly), not longer.
    assert_eq!(before.elapsed(), Duration::from_millis(50));
    assert!(!limits.is_up());
    // The next request does not wait at all.
    let before = Instant::now();
    assert!(matches!(limits.check("k").await, Verdict::StoreDown { .. }));
    assert_eq!(before.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn an_error_answer_applies_the_policy_to_that_request_only() {
    let (limits, store) = started(Behaviour::Error, OnStoreError::Closed).await;
    assert!(matches!(limits.check("k").await, Verdict::StoreDown { .. }));
    assert!(limits.is_up());
    store.set(Behaviour::Answer);
    assert_eq!(limits.check("k").await, Verdict::Pass);
}

#[tokio::test(start_paused = true)]
async fn a_store_down_at_start_does_not_fail_start_and_is_picked_up_later() {
    let (limits, store) = started(Behaviour::Unreachable, OnStoreError::Closed).await;
    assert!(!limits.is_up());
    assert!(matches!(limits.check("k").await, Verdict::StoreDown { .. }));
    assert_eq!(store.takes(), 0);
    store.set(Behaviour::Answer);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(limits.is_up());
    assert_eq!(limits.check("k").await, Verdict::Pass);
}

#[tokio::test(start_paused = true)]
async fn warnings_are_logged_once_per_interval() {
    let (limits, _store) = started(Behaviour::Error, OnStoreError::Open).await;
    for _ in 0..20 {
        limits.check("k").await;
    }
    {
        let health = limits.inner.health();
        assert_eq!(health.unlogged_failures, 19);
    }
    tokio::time::sleep(WARNING_INTERVAL).await;
    limits.check("k").await;
    // That one was logged, with the 19 before it: the count starts over.
    assert_eq!(limits.inner.health().unlogged_failures, 0);
}

#[tokio::test(start_paused = true)]
async fn a_call_before_start_falls_back_and_starts_connecting() {
    let store = FakeStore::new(Behaviour::Answer);
    let limits = SharedLimits::new(
        store.clone(),
        &settings(OnStoreError::Closed),
        Arc::new(SystemClock),
    );
    assert!(matches!(limits.check("k").await, Verdict::StoreDown { .. }));
    assert_eq!(store.takes(), 0);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(limits.is_up());
    assert_eq!(limits.check("k").await, Verdict::Pass);
}

#[tokio::test(start_paused = true)]
async fn the_probe_ends_when_the_limits_are_dropped() {
    let (limits, store) = started(Behaviour::Unreachable, OnStoreError::Open).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let connects = store.connects();
    drop(limits);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(store.connects() <= connects + 1);
}
