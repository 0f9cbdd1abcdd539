//! Backend health while the proxy serves: passive health (the outcomes of forwarded requests take
//! a failing backend out of rotation for a cool-down) and optional active HTTP checks per
//! upstream.
//!
//! - The settings: [`PassivePolicy`] (an upstream's `passive_health`, completed with the
//!   proxy's defaults) and [`ActiveCheck`] (an upstream's `health_check`), parsed and validated
//!   with the other upstream settings ([`crate::upstream_settings`]) when the upstream is added.
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

use gatekeeper_rpc::metrics::events;
use gatekeeper_rpc::types::Object;

pub use crate::registry::{BackendHealth, HealthState, Transition};
pub use crate::upstream_settings::{
    ActiveCheck, ExpectedStatus, PassivePolicy, DEFAULT_PASSIVE_COOLDOWN, DEFAULT_PASSIVE_FAILURES,
};
pub use check::{spawn_checker, HealthChecker};

use crate::forward::ForwardError;
use crate::metrics::Metrics;
use crate::registry::{BackendEntry, UpstreamEntry};

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
