//! The built-in router: picks the upstream of a request from a registry [`Snapshot`].
//!
//! An upstream matches when the request's first path segment equals one of its prefixes (the
//! segment is stripped before forwarding: `/api/users` → `/users`, `/api` → `/`), else when the
//! request's host (port stripped, lower-cased) equals one of its hostnames. Prefixes are tried
//! first. An upstream whose `protocols` list is not empty is only used by the listeners it names.

use std::borrow::Cow;
use std::sync::Arc;

use http::header;
use http::request::Parts;

use crate::registry::{Snapshot, UpstreamEntry};

/// The result of routing a request.
#[derive(Debug, Clone)]
pub struct RouteMatch<'a> {
    /// The chosen upstream.
    pub upstream: Arc<UpstreamEntry>,
    /// The matched prefix segment, when the upstream matched by prefix.
    pub prefix: Option<&'a str>,
    /// The path the backend receives: the request path without the matched prefix.
    pub prefixless_path: &'a str,
}

/// Splits `/seg/rest` into (`seg`, `/rest`); `/seg` gives (`seg`, `/`). `None` for paths that
/// do not start with `/` or have an empty first segment.
pub fn split_first_segment(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix('/')?;
    let (segment, remainder) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if segment.is_empty() {
        return None;
    }
    Some((segment, remainder))
}

/// The host without port, lower-cased (allocates only when the host has upper-case letters).
/// Handles bracketed IPv6 literals (`[::1]:8080` → `[::1]`).
pub fn normalize_host(host: &str) -> Cow<'_, str> {
    let without_port = if host.starts_with('[') {
        match host.find(']') {
            Some(i) => &host[..=i],
            None => host,
        }
    } else {
        match host.rfind(':') {
            Some(i) => &host[..i],
            None => host,
        }
    };
    let trimmed = without_port.strip_suffix('.').unwrap_or(without_port);
    if trimmed.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(trimmed.to_ascii_lowercase())
    } else {
        Cow::Borrowed(trimmed)
    }
}

/// The Host header, or the authority of an absolute-form request URI: what a request is
/// routed by.
pub(crate) fn request_host(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()))
}

/// The path without the first `strip` bytes (`/prefix`, as [`RouteMatch`] found it); `/` when
/// nothing remains.
pub(crate) fn prefixless(path: &str, strip: Option<usize>) -> &str {
    match strip {
        Some(n) => path.get(n..).filter(|p| !p.is_empty()).unwrap_or("/"),
        None => path,
    }
}

fn first_allowed(
    candidates: Option<&Vec<Arc<UpstreamEntry>>>,
    listener: &str,
) -> Option<Arc<UpstreamEntry>> {
    candidates?
        .iter()
        .find(|u| u.allows_listener(listener))
        .cloned()
}

/// Routes a request that arrived on `listener` with this `path` (no query) and `host` (Host
/// header or URI authority, port allowed).
pub fn route<'a>(
    snapshot: &Snapshot,
    listener: &str,
    path: &'a str,
    host: Option<&str>,
) -> Option<RouteMatch<'a>> {
    if let Some((segment, rest)) = split_first_segment(path) {
        if let Some(upstream) = first_allowed(snapshot.by_prefix.get(segment), listener) {
            return Some(RouteMatch {
                upstream,
                prefix: Some(segment),
                prefixless_path: rest,
            });
        }
    }
    let host = normalize_host(host?);
    let upstream = first_allowed(snapshot.by_hostname.get(host.as_ref()), listener)?;
    Some(RouteMatch {
        upstream,
        prefix: None,
        prefixless_path: path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;
    use gatekeeper_rpc::types::Upstream;

    fn upstream(id: &str, prefixes: &[&str], hostnames: &[&str], protocols: &[&str]) -> Upstream {
        let list = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        Upstream {
            id: id.into(),
            name: String::new(),
            timeout_ms: None,
            protocols: list(protocols),
            hostnames: list(hostnames),
            prefixes: list(prefixes),
            balancer: None,
            backend_protocol: None,
            connect_timeout_ms: None,
            max_connections_per_backend: None,
            passive_health: None,
            health_check: None,
            host_header: None,
            extra: Default::default(),
        }
    }

    fn registry() -> Registry {
        let r = Registry::new();
        r.add_upstream(upstream("api", &["api"], &[], &[])).unwrap();
        r.add_upstream(upstream("web", &[], &["example.com"], &[]))
            .unwrap();
        r.add_upstream(upstream(
            "admin",
            &["admin"],
            &["admin.local"],
            &["internal"],
        ))
        .unwrap();
        r
    }

    #[test]
    fn prefix_is_stripped() {
        let s = registry().snapshot();
        let m = route(&s, "http", "/api/users", None).unwrap();
        assert_eq!(m.upstream.upstream.id, "api");
        assert_eq!(m.prefix, Some("api"));
        assert_eq!(m.prefixless_path, "/users");
        let m = route(&s, "http", "/api", Some("example.com")).unwrap();
        assert_eq!(
            (m.upstream.upstream.id.as_str(), m.prefixless_path),
            ("api", "/")
        );
        let m = route(&s, "http", "/api/", None).unwrap();
        assert_eq!(m.prefixless_path, "/");
    }

    #[test]
    fn hostname_with_port_and_case() {
        let s = registry().snapshot();
        let m = route(&s, "http", "/users", Some("Example.COM:8080")).unwrap();
        assert_eq!(m.upstream.upstream.id, "web");
        assert_eq!(m.prefix, None);
        assert_eq!(m.prefixless_path, "/users");
        // Prefix wins over hostname.
        let m = route(&s, "http", "/api/x", Some("example.com")).unwrap();
        assert_eq!(m.upstream.upstream.id, "api");
        assert_eq!(normalize_host("[::1]:80"), "[::1]");
        assert_eq!(normalize_host("a.example."), "a.example");
    }

    #[test]
    fn protocols_restrict_listeners() {
        let s = registry().snapshot();
        assert!(route(&s, "http", "/admin/x", None).is_none());
        assert!(route(&s, "http", "/", Some("admin.local")).is_none());
        let m = route(&s, "internal", "/admin/x", None).unwrap();
        assert_eq!(m.upstream.upstream.id, "admin");
        let m = route(&s, "internal", "/", Some("admin.local")).unwrap();
        assert_eq!(m.upstream.upstream.id, "admin");
    }

    #[test]
    fn no_match() {
        let s = registry().snapshot();
        assert!(route(&s, "http", "/nope/x", Some("other.com")).is_none());
        assert!(route(&s, "http", "/", None).is_none());
        assert!(route(&s, "http", "*", None).is_none());
        assert!(route(&s, "http", "//api", None).is_none());
    }
}
