//! The bottom layer of the proxy: an upstream's settings, parsed and validated once when the
//! upstream is added ([`UpstreamSettings::parse`]), and the types that name them:
//! [`BalancerKind`], [`BackendProtocol`], [`HostHeader`], [`PassivePolicy`] and
//! [`ActiveCheck`].
//!
//! This module imports nothing else of the crate: the registry stores these settings in its
//! entries, and the modules that act on them (the balancers, forwarding, health, retries) read
//! them from there. To add an upstream setting: the field in `gatekeeper_rpc::types::Upstream`,
//! its parsed form and its check in [`UpstreamSettings`], then its use where it acts.

mod backend_protocol;
mod balancer_kind;
mod health_policy;
mod host_header;

use std::sync::Arc;
use std::time::Duration;

use gatekeeper_rpc::types::{PassiveHealth, Upstream, BACKEND_PROTOCOLS, BALANCERS};

pub use backend_protocol::BackendProtocol;
pub use balancer_kind::BalancerKind;
pub use health_policy::{
    ActiveCheck, ExpectedStatus, PassivePolicy, DEFAULT_PASSIVE_COOLDOWN, DEFAULT_PASSIVE_FAILURES,
};
pub use host_header::HostHeader;

/// An upstream's settings, parsed from its fields ([`Upstream`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UpstreamSettings {
    /// The built-in balancer (`balancer`; default `random`).
    pub balancer: BalancerKind,
    /// How its backends are spoken to (`backend_protocol`; default `http1`).
    pub backend_protocol: BackendProtocol,
    /// The `Host` its backends receive (`host_header`; default `preserve`).
    pub host_header: HostHeader,
    /// `passive_health` as given; what it leaves out comes from the proxy's defaults
    /// ([`UpstreamSettings::passive_policy`]).
    pub passive_health: Option<PassiveHealth>,
    /// Active health checks (`health_check`), when asked for.
    pub health_check: Option<Arc<ActiveCheck>>,
    /// Time allowed until a backend's response headers (`timeout_ms`; `None`: the proxy's
    /// default, also for 0).
    pub timeout: Option<Duration>,
    /// Time allowed to connect to a backend (`connect_timeout_ms`; `None`: the proxy's
    /// default, also for 0).
    pub connect_timeout: Option<Duration>,
    /// Requests in flight at once to each backend (`max_connections_per_backend`; `None`: no
    /// limit; never 0).
    pub max_connections_per_backend: Option<u32>,
}

impl UpstreamSettings {
    /// Parses and checks the settings of `upstream`; the error is the reason, e.g.
    /// ``unknown balancer `x` (expected one of random, round_robin, least_outstanding)``.
    pub fn parse(upstream: &Upstream) -> Result<Self, String> {
        let balancer = match upstream.balancer.as_deref() {
            None => BalancerKind::default(),
            Some(name) => name.parse().map_err(|_| {
                format!(
                    "unknown balancer `{name}` (expected one of {})",
                    BALANCERS.join(", ")
                )
            })?,
        };
        let backend_protocol = match upstream.backend_protocol.as_deref() {
            None => BackendProtocol::default(),
            Some(name) => name.parse().map_err(|_| {
                format!(
                    "unknown backend_protocol `{name}` (expected one of {})",
                    BACKEND_PROTOCOLS.join(", ")
                )
            })?,
        };
        if upstream.max_connections_per_backend == Some(0) {
            return Err(
                "max_connections_per_backend must be at least 1 (leave it out for no limit)".into(),
            );
        }
        let host_header = HostHeader::parse(upstream.host_header.as_deref())?;
        if let Some(PassiveHealth {
            cooldown_ms: Some(0),
            ..
        }) = upstream.passive_health
        {
            return Err("passive_health.cooldown_ms must be more than 0".into());
        }
        let health_check = match &upstream.health_check {
            None => None,
            Some(spec) => Some(Arc::new(ActiveCheck::from_spec(spec)?)),
        };
        Ok(UpstreamSettings {
            balancer,
            backend_protocol,
            host_header,
            passive_health: upstream.passive_health,
            health_check,
            timeout: positive_millis(upstream.timeout_ms),
            connect_timeout: positive_millis(upstream.connect_timeout_ms),
            max_connections_per_backend: upstream.max_connections_per_backend,
        })
    }

    /// The passive health policy: the upstream's `passive_health`, with `defaults` for what it
    /// leaves out.
    pub fn passive_policy(&self, defaults: PassivePolicy) -> PassivePolicy {
        PassivePolicy::resolve(self.passive_health.as_ref(), defaults)
    }
}

/// A duration of `ms` milliseconds; `None` for none or 0 (the proxy's default then applies).
pub(crate) fn positive_millis(ms: Option<u64>) -> Option<Duration> {
    ms.filter(|&ms| ms > 0).map(Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstream() -> Upstream {
        Upstream {
            id: "u".into(),
            name: "u".into(),
            ..Upstream::default()
        }
    }

    #[test]
    fn defaults_when_nothing_is_set() {
        let settings = UpstreamSettings::parse(&upstream()).unwrap();
        assert_eq!(settings, UpstreamSettings::default());
        assert_eq!(
            settings.passive_policy(PassivePolicy::default()),
            PassivePolicy::default()
        );
    }

    #[test]
    fn every_field_is_parsed() {
        let mut u = upstream();
        u.balancer = Some("least_outstanding".into());
        u.backend_protocol = Some("h2c".into());
        u.host_header = Some("backend".into());
        u.timeout_ms = Some(0);
        u.connect_timeout_ms = Some(250);
        u.max_connections_per_backend = Some(4);
        let s = UpstreamSettings::parse(&u).unwrap();
        assert_eq!(s.balancer, BalancerKind::LeastOutstanding);
        assert_eq!(s.backend_protocol, BackendProtocol::H2c);
        assert_eq!(s.host_header, HostHeader::Backend);
        assert_eq!(s.timeout, None);
        assert_eq!(s.connect_timeout, Some(Duration::from_millis(250)));
        assert_eq!(s.max_connections_per_backend, Some(4));
    }

    #[test]
    fn invalid_fields_are_refused_with_a_reason() {
        type Case = (fn(&mut Upstream), &'static str);
        let cases: [Case; 5] = [
            (|u| u.balancer = Some("fastest".into()), "unknown balancer"),
            (|u| u.backend_protocol = Some("h3".into()), "http1, h2c"),
            (
                |u| u.max_connections_per_backend = Some(0),
                "max_connections_per_backend",
            ),
            (|u| u.host_header = Some("a b".into()), "host_header"),
            (
                |u| {
                    u.passive_health = Some(PassiveHealth {
                        failures: None,
                        cooldown_ms: Some(0),
                    })
                },
                "cooldown_ms",
            ),
        ];
        for (set, expected) in cases {
            let mut u = upstream();
            set(&mut u);
            let reason = UpstreamSettings::parse(&u).unwrap_err();
            assert!(reason.contains(expected), "{reason}");
        }
    }
}
