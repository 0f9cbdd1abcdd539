//! The limits of one start: [`StartActivity`] records when the starting process last made a
//! call (any request but the handshake on any of its connections: a manager call,
//! `config_status`; a plugin making none thus fails at spawn + `start_timeout`, as it always did),
//! and [`start_limits`] fails the start when the process was silent for `start_timeout` or the
//! start still runs after `start_max`. A plugin pushing a big registry inside `start` thus keeps
//! starting as long as it keeps calling, but never longer than `start_max`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::{sleep_until, Instant};

use crate::error::StartError;
use crate::spec::PluginSpec;

/// When the process last made a call, shared by all its connections.
#[derive(Debug)]
pub(crate) struct StartActivity {
    /// When the start began (the origin of `last_call_nanos`).
    began: Instant,
    /// Nanoseconds from `began` to the last call.
    last_call_nanos: AtomicU64,
}

impl StartActivity {
    /// A start beginning now (counts as a call: the silence is measured from here).
    pub(crate) fn new() -> StartActivity {
        StartActivity {
            began: Instant::now(),
            last_call_nanos: AtomicU64::new(0),
        }
    }

    /// The process made a call now.
    pub(crate) fn touch(&self) {
        let nanos = u64::try_from(self.began.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last_call_nanos.fetch_max(nanos, Ordering::Relaxed);
    }

    /// When the start began.
    pub(crate) fn began(&self) -> Instant {
        self.began
    }

    /// When the process last made a call (the start's beginning without any).
    pub(crate) fn last_call(&self) -> Instant {
        self.began + Duration::from_nanos(self.last_call_nanos.load(Ordering::Relaxed))
    }
}

/// Ends with the limit a start ran into: `start_timeout` of silence ([`StartError::Silent`]) or
/// `start_max` in all ([`StartError::StillStarting`]). Pending while neither is reached; it
/// only reads instants, so it may be created again for each phase of the start.
pub(crate) async fn start_limits(spec: &PluginSpec, activity: &StartActivity) -> StartError {
    let max_deadline = activity.began() + spec.start_max.max(spec.start_timeout);
    loop {
        let silence_deadline = activity.last_call() + spec.start_timeout;
        let now = Instant::now();
        if now >= max_deadline {
            return StartError::StillStarting(spec.start_max);
        }
        if now >= silence_deadline {
            return StartError::Silent(spec.start_timeout);
        }
        sleep_until(silence_deadline.min(max_deadline)).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use gatekeeper_rpc::methods::PluginType;

    fn spec(start_timeout_ms: u64, start_max_ms: u64) -> PluginSpec {
        let mut spec = PluginSpec::new("p", PluginType::Upstream, "x");
        spec.start_timeout = Duration::from_millis(start_timeout_ms);
        spec.start_max = Duration::from_millis(start_max_ms);
        spec
    }

    /// Touches `activity` every `every_ms`, `times` times (forever with `None`).
    fn calls(activity: &Arc<StartActivity>, every_ms: u64, times: Option<usize>) {
        let activity = activity.clone();
        tokio::spawn(async move {
            let mut made = 0;
            while times.is_none_or(|times| made < times) {
                tokio::time::sleep(Duration::from_millis(every_ms)).await;
                activity.touch();
                made += 1;
            }
        });
    }

    #[tokio::test]
    async fn a_silent_start_fails_with_the_silence_limit() {
        let spec = spec(100, 60_000);
        let activity = StartActivity::new();
        let error = start_limits(&spec, &activity).await;
        assert!(matches!(error, StartError::Silent(_)), "{error}");
        assert!(error.to_string().contains("100ms"), "{error}");
    }

    #[tokio::test]
    async fn a_start_calling_forever_fails_with_the_max_limit() {
        let spec = spec(300, 900);
        let activity = Arc::new(StartActivity::new());
        calls(&activity, 20, None);
        let error = start_limits(&spec, &activity).await;
        assert!(matches!(error, StartError::StillStarting(_)), "{error}");
        assert!(error.to_string().contains("900ms"), "{error}");
    }

    #[tokio::test]
    async fn calls_keep_a_start_going_past_start_timeout_until_they_stop() {
        let spec = spec(300, 60_000);
        let activity = Arc::new(StartActivity::new());
        // 20 calls 50 ms apart: the start lasts about 1 s, more than three start_timeouts.
        calls(&activity, 50, Some(20));
        let error = start_limits(&spec, &activity).await;
        assert!(matches!(error, StartError::Silent(_)), "{error}");
        // It ended after the last call, not after the first start_timeout.
        assert!(activity.last_call() >= activity.began() + Duration::from_millis(20 * 50));
    }
}
