//! Backend health settings of an upstream: [`PassivePolicy`] (its `passive_health`, completed
//! with the proxy's defaults) and [`ActiveCheck`] (its `health_check`, with [`ExpectedStatus`]).
//! The health state these settings drive lives in the registry's entries
//! ([`BackendHealth`](crate::registry::BackendHealth)); the checks run in [`crate::health`].

use std::ops::RangeInclusive;
use std::time::Duration;

use gatekeeper_rpc::types::{HealthCheck, PassiveHealth};
use http::uri::PathAndQuery;

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
        gatekeeper_rpc::types::parse_expected_status(text).map(ExpectedStatus)
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
