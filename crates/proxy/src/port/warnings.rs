//! Rate-limited failure warnings: a plugin that is down or failing produces at most one
//! warning per [`WARNING_INTERVAL`] (10 s), carrying the number of requests its failures
//! affected since the previous warning. The first failure is warned about at once; the ones
//! after it within the interval are only counted, and reported by the first warning after the
//! interval has passed.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// At most one failure warning per plugin per this interval.
pub const WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// The failure warnings of one plugin (one per plugin in each hooks snapshot).
#[derive(Debug)]
pub(crate) struct FailureWarnings {
    interval: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// When the last warning was logged.
    last_warned: Option<Instant>,
    /// Failures since then that were not warned about.
    unreported: u64,
}

impl Default for FailureWarnings {
    fn default() -> Self {
        FailureWarnings::new(WARNING_INTERVAL)
    }
}

impl FailureWarnings {
    /// At most one warning per `interval`.
    pub(crate) fn new(interval: Duration) -> Self {
        FailureWarnings {
            interval,
            state: Mutex::default(),
        }
    }

    /// Counts one failure at `now`: `Some(n)` when it is to be warned about now, `n` being the
    /// failures (requests affected) since the previous warning, this one included; `None` when
    /// it is only counted.
    pub(crate) fn failed(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let due = state
            .last_warned
            .is_none_or(|last| now.saturating_duration_since(last) >= self.interval);
        if due {
            let affected = state.unreported + 1;
            state.last_warned = Some(now);
            state.unreported = 0;
            Some(affected)
        } else {
            state.unreported += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_warning_per_interval_with_the_count_of_failures_it_covers() {
        let warnings = FailureWarnings::new(Duration::from_secs(10));
        let start = Instant::now();
        assert_eq!(warnings.failed(start), Some(1), "the first failure at once");
        for i in 1..=99 {
            let at = start + Duration::from_millis(i * 50);
            assert_eq!(warnings.failed(at), None, "failure {i} is only counted");
        }
        let later = start + Duration::from_secs(10);
        assert_eq!(
            warnings.failed(later),
            Some(100),
            "99 counted failures and this one"
        );
        assert_eq!(warnings.failed(later + Duration::from_secs(1)), None);
        assert_eq!(
            warnings.failed(later + Duration::from_secs(60)),
            Some(2),
            "after a quiet spell: the one counted and this one"
        );
    }
}
