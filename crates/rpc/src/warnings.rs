//! Rate-limited warnings about a plugin, shared by both sides of the plugin port (the plugin
//! host's call path: results of the wrong shape, hung processes; the proxy's failure policy: a
//! plugin down or failing): at most one warning per [`WARNING_INTERVAL`] (10 s) per plugin and
//! kind, carrying the number of calls or requests affected since the previous one. The first is
//! warned about at once; the ones after it within the interval are only counted and reported by
//! the first warning after the interval.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// At most one warning of a kind per plugin per this interval.
pub const WARNING_INTERVAL: Duration = Duration::from_secs(10);

/// One kind of warning of one plugin (e.g. one per plugin in each hooks snapshot).
#[derive(Debug)]
pub struct RateLimitedWarning {
    interval: Duration,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// When the last warning was logged.
    last_warned: Option<Instant>,
    /// Calls affected since then that were not warned about.
    unreported: u64,
}

impl Default for RateLimitedWarning {
    fn default() -> Self {
        RateLimitedWarning::new(WARNING_INTERVAL)
    }
}

impl RateLimitedWarning {
    /// At most one warning per `interval`.
    pub fn new(interval: Duration) -> Self {
        RateLimitedWarning {
            interval,
            state: Mutex::default(),
        }
    }

    /// Counts one affected call at `now`: `Some(n)` when it is to be warned about now, `n`
    /// being the calls affected since the previous warning, this one included; `None` when it
    /// is only counted.
    pub fn affected(&self, now: Instant) -> Option<u64> {
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
    fn one_warning_per_interval_with_the_count_of_calls_it_covers() {
        let warning = RateLimitedWarning::new(Duration::from_secs(10));
        let start = Instant::now();
        assert_eq!(warning.affected(start), Some(1), "the first at once");
        for i in 1..=49 {
            let at = start + Duration::from_millis(i * 100);
            assert_eq!(warning.affected(at), None, "call {i} is only counted");
        }
        let later = start + Duration::from_secs(10);
        assert_eq!(warning.affected(later), Some(50), "49 counted and this one");
        assert_eq!(warning.affected(later + Duration::from_secs(1)), None);
        assert_eq!(
            warning.affected(later + Duration::from_secs(30)),
            Some(2),
            "after a quiet spell: the one counted and this one"
        );
    }
}
