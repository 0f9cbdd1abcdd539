//! The health state machine of one backend ([`BackendHealth`]), kept in atomics so that the
//! request path reads it without a lock.
//!
//! **Passive**: each forwarded request's outcome is recorded. `failures` failures in a row eject
//! the backend until a cool-down ends. After the cool-down the backend is *half-open*: it is
//! available again, and the next outcome decides: a success makes it healthy, a failure ejects
//! it for another cool-down. Outcomes of requests that finish during a cool-down (sent before
//! the ejection) are ignored.
//!
//! **Active**: the checker records each probe. `unhealthy_threshold` failed probes in a row take
//! the backend down; `healthy_threshold` successful ones in a row bring it back. A backend starts
//! up (healthy) before its first probe.
//!
//! A backend is available when neither takes it out.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime};

use crate::upstream_settings::{ActiveCheck, PassivePolicy};

/// Milliseconds on a monotonic clock that starts at 1 (0 means "never" in the atomics below).
fn clock_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    u64::try_from(start.elapsed().as_millis())
        .unwrap_or(u64::MAX - 1)
        .saturating_add(1)
}

/// The wall-clock time of a [`clock_ms`] reading.
fn wall_time(at_ms: u64) -> SystemTime {
    let now_ms = clock_ms();
    let now = SystemTime::now();
    if at_ms >= now_ms {
        now + Duration::from_millis(at_ms - now_ms)
    } else {
        now - Duration::from_millis(now_ms - at_ms)
    }
}

/// A change of a backend's health, to be logged and reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// Passive health took the backend out until the cool-down ends.
    Ejected {
        /// Failures in a row that led to it (1 after a failed half-open try).
        failures: u32,
        /// The cool-down.
        cooldown: Duration,
    },
    /// A request succeeded after a cool-down: the backend is back.
    Readmitted,
    /// Active checks failed `unhealthy_threshold` times in a row.
    CheckFailed {
        /// Failed checks in a row.
        failures: u32,
    },
    /// Active checks succeeded `healthy_threshold` times in a row after the backend was down.
    CheckPassed,
}

impl Transition {
    /// Whether the backend became healthy with this transition.
    pub fn is_healthy(self) -> bool {
        matches!(self, Transition::Readmitted | Transition::CheckPassed)
    }

    /// Which mechanism made it: `passive` or `active`.
    pub fn check(self) -> &'static str {
        match self {
            Transition::Ejected { .. } | Transition::Readmitted => "passive",
            Transition::CheckFailed { .. } | Transition::CheckPassed => "active",
        }
    }
}

/// A copy of a backend's health at one moment (see [`BackendHealth::state`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthState {
    /// Whether the built-in balancers send it new requests (neither ejected nor down).
    pub healthy: bool,
    /// Forwarding failures in a row (passive health).
    pub consecutive_failures: u32,
    /// The end of the current passive cool-down, while the backend is ejected.
    pub ejected_until: Option<SystemTime>,
    /// Whether active checks consider it up (true before the first check, and without checks).
    pub check_healthy: bool,
    /// Failed active checks in a row.
    pub check_failures: u32,
    /// Successful active checks in a row.
    pub check_successes: u32,
    /// When its health last changed (`None`: never, since it was added).
    pub since: Option<SystemTime>,
}

/// The passive and active health of one backend.
#[derive(Debug, Default)]
pub struct BackendHealth {
    /// Forwarding failures in a row.
    failures: AtomicU32,
    /// End of the cool-down ([`clock_ms`]); 0 when not ejected. Stays set through the half-open
    /// state (cool-down over, no outcome yet).
    ejected_until: AtomicU64,
    /// Whether active checks took the backend down.
    check_down: AtomicBool,
    check_failures: AtomicU32,
    check_successes: AtomicU32,
    /// When the health last changed ([`clock_ms`]); 0: never.
    since: AtomicU64,
}

impl BackendHealth {
    /// Whether the backend may get new requests: not in a passive cool-down, not down by
    /// active checks. Usually two relaxed loads; the clock is read only during an ejection.
    pub fn is_available(&self) -> bool {
        if self.check_down.load(Ordering::Relaxed) {
            return false;
        }
        let until = self.ejected_until.load(Ordering::Relaxed);
        until == 0 || until <= clock_ms()
    }

    /// Whether a passive cool-down is running now.
    fn cooling_down(&self) -> bool {
        let until = self.ejected_until.load(Ordering::Relaxed);
        until != 0 && until > clock_ms()
    }

    /// Records a request the backend answered.
    pub fn record_success(&self) -> Option<Transition> {
        if self.failures.load(Ordering::Relaxed) == 0 || self.cooling_down() {
            return None;
        }
        self.failures.store(0, Ordering::Relaxed);
        if self.ejected_until.swap(0, Ordering::Relaxed) != 0 {
            self.since.store(clock_ms(), Ordering::Relaxed);
            return Some(Transition::Readmitted);
        }
        None
    }

    /// Records a forwarding failure under `policy`; ejects the backend after
    /// `policy.failures` in a row, or at once when it was half-open.
    pub fn record_failure(&self, policy: &PassivePolicy) -> Option<Transition> {
        if policy.failures == 0 || self.cooling_down() {
            return None;
        }
        let failures = self
            .failures
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        let until = self.ejected_until.load(Ordering::Relaxed);
        let half_open = until != 0;
        if failures < policy.failures && !half_open {
            return None;
        }
        let now = clock_ms();
        let cooldown_ms = u64::try_from(policy.cooldown.as_millis()).unwrap_or(u64::MAX);
        let next = now.saturating_add(cooldown_ms.max(1));
        // Only one of several concurrent failures ejects (and reports).
        self.ejected_until
            .compare_exchange(until, next, Ordering::Relaxed, Ordering::Relaxed)
            .ok()?;
        if half_open {
            self.failures.store(1, Ordering::Relaxed);
        }
        self.since.store(now, Ordering::Relaxed);
        Some(Transition::Ejected {
            failures: if half_open { 1 } else { failures },
            cooldown: policy.cooldown,
        })
    }

    /// Records the result of an active check under `check`'s thresholds.
    pub fn record_check(&self, ok: bool, check: &ActiveCheck) -> Option<Transition> {
        if ok {
            self.check_failures.store(0, Ordering::Relaxed);
            let successes = self
                .check_successes
                .fetch_add(1, Ordering::Relaxed)
                .saturating_add(1);
            if self.check_down.load(Ordering::Relaxed) && successes >= check.healthy_threshold {
                self.check_down.store(false, Ordering::Relaxed);
                self.since.store(clock_ms(), Ordering::Relaxed);
                return Some(Transition::CheckPassed);
            }
        } else {
            self.check_successes.store(0, Ordering::Relaxed);
            let failures = self
                .check_failures
                .fetch_add(1, Ordering::Relaxed)
                .saturating_add(1);
            if !self.check_down.load(Ordering::Relaxed) && failures >= check.unhealthy_threshold {
                self.check_down.store(true, Ordering::Relaxed);
                self.since.store(clock_ms(), Ordering::Relaxed);
                return Some(Transition::CheckFailed { failures });
            }
        }
        None
    }

    /// A copy of the current state.
    pub fn state(&self) -> HealthState {
        let until = self.ejected_until.load(Ordering::Relaxed);
        let since = self.since.load(Ordering::Relaxed);
        HealthState {
            healthy: self.is_available(),
            consecutive_failures: self.failures.load(Ordering::Relaxed),
            ejected_until: (until != 0 && until > clock_ms()).then(|| wall_time(until)),
            check_healthy: !self.check_down.load(Ordering::Relaxed),
            check_failures: self.check_failures.load(Ordering::Relaxed),
            check_successes: self.check_successes.load(Ordering::Relaxed),
            since: (since != 0).then(|| wall_time(since)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream_settings::ExpectedStatus;

    fn policy(failures: u32, cooldown_ms: u64) -> PassivePolicy {
        PassivePolicy {
            failures,
            cooldown: Duration::from_millis(cooldown_ms),
        }
    }

    fn check(healthy: u32, unhealthy: u32) -> ActiveCheck {
        ActiveCheck {
            path: "/health".into(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            healthy_threshold: healthy,
            unhealthy_threshold: unhealthy,
            expected: ExpectedStatus::default(),
        }
    }

    #[test]
    fn ejected_after_n_failures_in_a_row() {
        let h = BackendHealth::default();
        let p = policy(3, 60_000);
        assert_eq!(h.record_failure(&p), None);
        assert_eq!(h.record_failure(&p), None);
        // A success in between starts the count again.
        assert_eq!(h.record_success(), None);
        assert_eq!(h.state().consecutive_failures, 0);
        assert_eq!(h.record_failure(&p), None);
        assert_eq!(h.record_failure(&p), None);
        assert!(h.is_available());
        assert_eq!(
            h.record_failure(&p),
            Some(Transition::Ejected {
                failures: 3,
                cooldown: p.cooldown
            })
        );
        assert!(!h.is_available());
        let state = h.state();
        assert!(!state.healthy && state.ejected_until.is_some() && state.since.is_some());
        // Outcomes during the cool-down (requests sent before the ejection) change nothing.
        assert_eq!(h.record_failure(&p), None);
        assert_eq!(h.record_success(), None);
        assert!(!h.is_available());
    }

    #[test]
    fn half_open_after_the_cooldown() {
        let h = BackendHealth::default();
        let p = policy(2, 20);
        h.record_failure(&p);
        assert!(matches!(
            h.record_failure(&p),
            Some(Transition::Ejected { failures: 2, .. })
        ));
        assert!(!h.is_available());
        std::thread::sleep(Duration::from_millis(40));
        // Cool-down over: available again, and one failure ejects it anew.
        assert!(h.is_available());
        assert!(h.state().ejected_until.is_none());
        assert!(matches!(
            h.record_failure(&p),
            Some(Transition::Ejected { failures: 1, .. })
        ));
        assert!(!h.is_available());
        std::thread::sleep(Duration::from_millis(40));
        // ... and one success makes it healthy.
        assert_eq!(h.record_success(), Some(Transition::Readmitted));
        assert!(h.is_available());
        assert_eq!(h.record_success(), None);
        assert_eq!(h.record_failure(&p), None, "the count starts again");
    }

    #[test]
    fn zero_failures_disables_passive_health() {
        let h = BackendHealth::default();
        for _ in 0..10 {
            assert_eq!(h.record_failure(&policy(0, 1000)), None);
        }
        assert!(h.is_available());
    }

    #[test]
    fn active_thresholds() {
        let h = BackendHealth::default();
        let c = check(2, 3);
        assert!(h.state().check_healthy, "up before the first check");
        assert_eq!(h.record_check(false, &c), None);
        assert_eq!(h.record_check(false, &c), None);
        assert_eq!(
            h.record_check(true, &c),
            None,
            "a success resets the failures"
        );
        assert_eq!(h.record_check(false, &c), None);
        assert_eq!(h.record_check(false, &c), None);
        assert_eq!(
            h.record_check(false, &c),
            Some(Transition::CheckFailed { failures: 3 })
        );
        assert!(!h.is_available());
        assert_eq!(h.record_check(false, &c), None, "reported once");
        assert_eq!(h.record_check(true, &c), None);
        assert_eq!(h.record_check(false, &c), None);
        assert_eq!(h.record_check(true, &c), None);
        assert!(!h.is_available());
        assert_eq!(h.record_check(true, &c), Some(Transition::CheckPassed));
        assert!(h.is_available());
    }

    #[test]
    fn active_and_passive_combine() {
        let h = BackendHealth::default();
        let c = check(1, 1);
        let p = policy(1, 20);
        h.record_check(false, &c);
        h.record_failure(&p);
        std::thread::sleep(Duration::from_millis(40));
        assert!(
            !h.is_available(),
            "cool-down over, but active checks still fail"
        );
        h.record_check(true, &c);
        assert!(h.is_available());
    }
}
