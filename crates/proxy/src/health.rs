//! Backend health: passive health (the outcomes of forwarded requests take a failing backend out
//! of rotation for a cool-down) and optional active HTTP checks per upstream.
//!
//! - The settings: [`PassivePolicy`] (an upstream's `passive_health`, completed with the
//!   proxy's defaults) and [`ActiveCheck`] (an upstream's `health_check`), validated when the
//!   upstream is added.
//! - The state of each backend lives in its registry entry ([`BackendHealth`], atomics), shared
//!   by every snapshot until the backend is removed.
//! - [`record`] is called wherever a forwarding result is known; [`spawn_checker`] runs the
//!   active checks while the proxy serves.
//! - Every change is logged (warn when a backend goes out, info when it comes back) and, with
//!   metrics, sent as a `backend_unhealthy` / `backend_healthy` event.
//!
//! The built-in balancers skip unavailable backends; when every backend of an upstream is
//! unavailable they pick among all of them (fail-open), so that an upstream is never refused
//! on health alone. A loadbalancer plugin's choice is used as it is.

mod check;
mod state;

use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use gatekeeper_rpc::metrics::events;
use gatekeeper_rpc::types::{HealthCheck, Object, PassiveHealth, Upstream};
use http::uri::PathAndQuery;

pub use check::{spawn_checker, HealthChecker};
pub use state::{BackendHealth, HealthState, Transition};

use crate::forward::ForwardError;
use crate::metrics::Metrics;
use crate::registry::{BackendEntry, UpstreamEntry};

/// Default of `passive_health_failures`.
pub const DEFAULT_PASSIVE_FAILURES: u32 = 3;
/// Default of `passive_health_cooldown`.
pub const DEFAULT_PASSIVE_COOLDOWN: Duration = Duration::from_secs(10);

/// Passive health settings of an upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassivePolicy {
    /// Forwarding failures in a row that eject a backend; 0 disables passive health.
    pub failures: u32,
    /// How long an ejected backend gets no new requests.
    pub cooldown: Duration,
}

impl Default for PassivePolicy {
    fn default() -> Self {
        PassivePolicy {
            failures: DEFAULT_PASSIVE_FAILURES,
            cooldown: DEFAULT_PASSIVE_COOLDOWN,
        }
    }
}

impl PassivePolicy {
    /// The upstream's settings, each missing one taken from `defaults`.
    pub fn resolve(upstream: Option<&PassiveHealth>, defaults: PassivePolicy) -> Self {
        let Some(p) = upstream else {
            return defaults;
        };
        PassivePolicy {
            failures: p.failures.unwrap_or(defaults.failures),
            cooldown: p
                .cooldown_ms
                .map_or(defaults.cooldown, Duration::from_millis),
        }
    }
}

/// The statuses an active check accepts (`health_check.expected_status`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedStatus(Vec<RangeInclusive<u16>>);

impl Default for ExpectedStatus {
    /// `200-399`.
    fn default() -> Self {
        ExpectedStatus(vec![200..=399])
    }
}

impl ExpectedStatus {
    /// Parses a comma-separated list of codes (`204`), ranges (`200-299`) and classes (`2xx`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let status = |s: &str| {
            s.trim()
                .parse::<u16>()
                .ok()
                .filter(|n| (100..=599).contains(n))
                .ok_or_else(|| format!("`{}` is not a status from 100 to 599", s.trim()))
        };
        let mut ranges = Vec::new();
        for part in text.split(',').map(str::trim) {
            let range = if let Some(class) = part.strip_suffix("xx").or(part.strip_suffix("XX")) {
                let first = status(&format!("{class}00"))?;
                first..=first + 99
            } else if let Some((low, high)) = part.split_once('-') {
                let (low, high) = (status(low)?, status(high)?);
                if low > high {
                    return Err(format!("empty status range `{part}`"));
                }
                low..=high
            } else {
                let n = status(part)?;
                n..=n
            };
            ranges.push(range);
        }
        Ok(ExpectedStatus(ranges))
    }

    /// Whether `status` is expected.
    pub fn contains(&self, status: u16) -> bool {
        self.0.iter().any(|r| r.contains(&status))
    }
}

/// Active check settings of an upstream (its `health_check` with defaults applied).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActiveCheck {
    /// Path and query requested (after the backend's base path).
    pub path: String,
    /// Time between two checks of a backend.
    pub interval: Duration,
    /// Time a check may take.
    pub timeout: Duration,
    /// Successes in a row that bring a backend back.
    pub healthy_threshold: u32,
    /// Failures in a row that take a backend out.
    pub unhealthy_threshold: u32,
    /// Statuses that count as success.
    pub expected: ExpectedStatus,
}

impl ActiveCheck {
    /// Default `path`.
    pub const DEFAULT_PATH: &'static str = "/health";
    /// Default `interval_ms`.
    pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
    /// Default `timeout_ms`.
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);
    /// Default `healthy_threshold`.
    pub const DEFAULT_HEALTHY_THRESHOLD: u32 = 2;
    /// Default `unhealthy_threshold`.
    pub const DEFAULT_UNHEALTHY_THRESHOLD: u32 = 3;

    /// Validates an upstream's `health_check` and applies the defaults.
    pub fn from_spec(spec: &HealthCheck) -> Result<Self, String> {
        let path = spec.path.as_deref().unwrap_or(Self::DEFAULT_PATH);
        if !path.starts_with('/') || path.parse::<PathAndQuery>().is_err() {
            return Err(format!(
                "health_check.path `{}` must be a path starting with `/`",
                path.escape_debug()
            ));
        }
        let millis = |name: &str, value: Option<u64>, default: Duration| match value {
            None => Ok(default),
            Some(0) => Err(format!("health_check.{name} must be more than 0")),
            Some(ms) => Ok(Duration::from_millis(ms)),
        };
        let threshold = |name: &str, value: Option<u32>, default: u32| match value {
            None => Ok(default),
            Some(0) => Err(format!("health_check.{name} must be at least 1")),
            Some(n) => Ok(n),
        };
        Ok(ActiveCheck {
            path: path.to_string(),
            interval: millis("interval_ms", spec.interval_ms, Self::DEFAULT_INTERVAL)?,
            timeout: millis("timeout_ms", spec.timeout_ms, Self::DEFAULT_TIMEOUT)?,
            healthy_threshold: threshold(
                "healthy_threshold",
                spec.healthy_threshold,
                Self::DEFAULT_HEALTHY_THRESHOLD,
            )?,
            unhealthy_threshold: threshold(
                "unhealthy_threshold",
                spec.unhealthy_threshold,
                Self::DEFAULT_UNHEALTHY_THRESHOLD,
            )?,
            expected: match &spec.expected_status {
                None => ExpectedStatus::default(),
                Some(text) => ExpectedStatus::parse(text)
                    .map_err(|e| format!("health_check.expected_status: {e}"))?,
            },
        })
    }
}

/// An upstream's validated health settings, as the registry keeps them.
#[derive(Debug, Clone, Default)]
pub(crate) struct UpstreamHealth {
    passive: Option<PassiveHealth>,
    check: Option<Arc<ActiveCheck>>,
}

impl UpstreamHealth {
    /// Validates the upstream's `passive_health` and `health_check`.
    pub(crate) fn parse(upstream: &Upstream) -> Result<Self, String> {
        if let Some(PassiveHealth {
            cooldown_ms: Some(0),
            ..
        }) = upstream.passive_health
        {
            return Err("passive_health.cooldown_ms must be more than 0".into());
        }
        let check = match &upstream.health_check {
            None => None,
            Some(spec) => Some(Arc::new(ActiveCheck::from_spec(spec)?)),
        };
        Ok(UpstreamHealth {
            passive: upstream.passive_health,
            check,
        })
    }

    /// The passive policy (with `defaults` for what the upstream leaves out) and the checks.
    pub(crate) fn settings(
        &self,
        defaults: PassivePolicy,
    ) -> (PassivePolicy, Option<Arc<ActiveCheck>>) {
        (
            PassivePolicy::resolve(self.passive.as_ref(), defaults),
            self.check.clone(),
        )
    }
}

/// Records the outcome of forwarding a request to `backend` (passive health): an answer, whatever
/// its status, is a success; a [`ForwardError`] (cannot connect, timeout, connection broken) is a
/// failure. Logs and reports a change of health.
pub(crate) fn record<T>(
    metrics: &Metrics,
    upstream: &UpstreamEntry,
    backend: &BackendEntry,
    result: &Result<T, ForwardError>,
) {
    let policy = &upstream.passive_health;
    if policy.failures == 0 {
        return;
    }
    let transition = match result {
        Ok(_) => backend.health().record_success(),
        Err(_) => backend.health().record_failure(policy),
    };
    if let Some(transition) = transition {
        let reason = match result {
            Ok(_) => "request succeeded".to_string(),
            Err(e) => e.to_string(),
        };
        report(metrics, &upstream.upstream.id, backend, transition, &reason);
    }
}

/// Logs a change of a backend's health and sends it as an event.
pub(crate) fn report(
    metrics: &Metrics,
    upstream: &str,
    backend: &BackendEntry,
    transition: Transition,
    reason: &str,
) {
    let id = backend.backend.id.as_str();
    let address = backend.backend.address.as_str();
    match transition {
        Transition::Ejected { failures, cooldown } => tracing::warn!(
            upstream = %upstream,
            backend = %id,
            address = %address,
            failures,
            cooldown_ms = cooldown.as_millis() as u64,
            reason = %reason,
            "backend ejected (passive health): no new requests until the cool-down ends"
        ),
        Transition::Readmitted => tracing::info!(
            upstream = %upstream,
            backend = %id,
            address = %address,
            "backend re-admitted (passive health): a request succeeded after the cool-down"
        ),
        Transition::CheckFailed { failures } => tracing::warn!(
            upstream = %upstream,
            backend = %id,
            address = %address,
            failures,
            reason = %reason,
            "backend unhealthy (active health check): no new requests until checks pass"
        ),
        Transition::CheckPassed => tracing::info!(
            upstream = %upstream,
            backend = %id,
            address = %address,
            "backend healthy again (active health check)"
        ),
    }
    if metrics.is_enabled() {
        let name = if transition.is_healthy() {
            events::BACKEND_HEALTHY
        } else {
            events::BACKEND_UNHEALTHY
        };
        let mut attributes = Object::new();
        attributes.insert("upstream".into(), upstream.into());
        attributes.insert("backend".into(), id.into());
        attributes.insert("check".into(), transition.check().into());
        if !transition.is_healthy() {
            attributes.insert("reason".into(), reason.into());
        }
        metrics.record_event(name, attributes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_status_forms() {
        let e = ExpectedStatus::parse("2xx, 301-302,418").unwrap();
        for ok in [200, 299, 301, 302, 418] {
            assert!(e.contains(ok), "{ok}");
        }
        for bad in [199, 300, 303, 404, 503] {
            assert!(!e.contains(bad), "{bad}");
        }
        assert!(ExpectedStatus::default().contains(399));
        assert!(!ExpectedStatus::default().contains(400));
        for bad in ["", "2x", "abc", "700", "300-200", "9xx", "200-"] {
            assert!(ExpectedStatus::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn check_defaults_and_validation() {
        let c = ActiveCheck::from_spec(&HealthCheck::default()).unwrap();
        assert_eq!(c.path, "/health");
        assert_eq!(c.interval, Duration::from_secs(5));
        assert_eq!(c.timeout, Duration::from_secs(2));
        assert_eq!((c.healthy_threshold, c.unhealthy_threshold), (2, 3));
        let bad = |spec: HealthCheck| ActiveCheck::from_spec(&spec).unwrap_err();
        assert!(bad(HealthCheck {
            path: Some("health".into()),
            ..Default::default()
        })
        .contains("path"));
        assert!(bad(HealthCheck {
            interval_ms: Some(0),
            ..Default::default()
        })
        .contains("interval_ms"));
        assert!(bad(HealthCheck {
            unhealthy_threshold: Some(0),
            ..Default::default()
        })
        .contains("unhealthy_threshold"));
        assert!(bad(HealthCheck {
            expected_status: Some("20x".into()),
            ..Default::default()
        })
        .contains("expected_status"));
    }

    #[test]
    fn passive_defaults_fill_the_gaps() {
        let defaults = PassivePolicy {
            failures: 5,
            cooldown: Duration::from_secs(7),
        };
        assert_eq!(PassivePolicy::resolve(None, defaults), defaults);
        let own = PassiveHealth {
            failures: Some(2),
            cooldown_ms: None,
        };
        assert_eq!(
            PassivePolicy::resolve(Some(&own), defaults),
            PassivePolicy {
                failures: 2,
                cooldown: Duration::from_secs(7)
            }
        );
    }
}
