//! What each admin path answers: `GET /status`, `/upstreams`, `/backends`, `/plugins`,
//! `/config`, `/metrics`; `POST /backends/{upstream}/{backend}/drain` and `/enable`,
//! `POST /plugins/{name}/restart`. Errors are `{"error": "..."}` with 404 (unknown path, upstream,
//! backend or plugin), 405 (wrong method), 400 (bad escape in the path, bad query parameter) or
//! 409 (a plugin that is not running cannot be restarted).
//!
//! `/upstreams` (`?upstream=ID&prefix=P&limit=N&after=ID`) and `/backends`
//! (`?upstream=ID&limit=N&after=UPSTREAM/BACKEND`) list a page ([`listing`]): with `limit` or
//! `after`, a page object `{"upstreams"|"backends": [...], "next": cursor or null}`; without
//! them, the list as is, at most [`listing::DEFAULT_LIMIT`] items, with the cursor of what
//! follows in the [`NEXT_HEADER`] header.

use bytes::Bytes;
use gatekeeper_plugin_host::{PluginHandle, PluginStatus};
use gatekeeper_proxy::registry::{BackendEntry, UpstreamEntry};
use gatekeeper_proxy::DecisionCache;
use http::{Method, Response, StatusCode};
use http_body_util::Full;
use serde_json::{json, Value};

use super::http::{error, json as json_response, percent_decode, respond};
use super::listing::{self, Page, Query};
use super::Admin;
use crate::prometheus::{Prometheus, OPENMETRICS_CONTENT_TYPE};

type Reply = Response<Full<Bytes>>;

/// The header carrying the cursor of the next page when an unpaged list was cut at
/// [`listing::DEFAULT_LIMIT`].
pub const NEXT_HEADER: &str = "gatekeeper-next";

/// Answers one admin request (`query` is the part after `?`, empty without one).
pub fn handle(admin: &Admin, method: &Method, path: &str, query: &str) -> Reply {
    let Some(segments) = path
        .trim_matches('/')
        .split('/')
        .map(percent_decode)
        .collect::<Option<Vec<String>>>()
    else {
        return error(StatusCode::BAD_REQUEST, "invalid %-escape in the path");
    };
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let get = method == Method::GET || method == Method::HEAD;
    let post = method == Method::POST;
    match (segments.as_slice(), get, post) {
        (["status"], true, _) => json_response(StatusCode::OK, &status(admin)),
        (["upstreams"], true, _) => upstreams(admin, query),
        (["backends"], true, _) => backends(admin, query),
        (["plugins"], true, _) => json_response(StatusCode::OK, &plugins(admin)),
        (["config"], true, _) => json_response(StatusCode::OK, &admin.config.load()),
        (["metrics"], true, _) => match &admin.prometheus {
            Some(prometheus) => metrics(prometheus),
            None => error(
                StatusCode::NOT_FOUND,
                "Prometheus metrics are off (set metrics_listen)",
            ),
        },
        (["backends", upstream, backend, action @ ("drain" | "enable")], _, true) => {
            set_drained(admin, upstream, backend, *action == "drain")
        }
        (["plugins", name, "restart"], _, true) => restart_plugin(admin, name),
        (
            ["status"]
            | ["upstreams"]
            | ["backends"]
            | ["plugins"]
            | ["config"]
            | ["metrics"]
            | ["backends", _, _, "drain" | "enable"]
            | ["plugins", _, "restart"],
            _,
            _,
        ) => error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} is not allowed on {path}"),
        ),
        _ => error(StatusCode::NOT_FOUND, format!("no such admin path: {path}")),
    }
}

/// Answers a request on the metrics listener: only `GET /metrics`.
pub fn metrics_only(prometheus: &Prometheus, method: &Method, path: &str) -> Reply {
    match (path, method == Method::GET || method == Method::HEAD) {
        ("/metrics", true) => metrics(prometheus),
        ("/metrics", false) => error(StatusCode::METHOD_NOT_ALLOWED, "only GET /metrics"),
        _ => error(StatusCode::NOT_FOUND, "only /metrics is served here"),
    }
}

fn metrics(prometheus: &Prometheus) -> Reply {
    match prometheus.render() {
        Ok(text) => respond(StatusCode::OK, OPENMETRICS_CONTENT_TYPE, text),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode the metrics: {e}"),
        ),
    }
}

fn status(admin: &Admin) -> Value {
    let snapshot = admin.registry.snapshot();
    let backends: usize = snapshot.iter().map(|u| u.backends.len()).sum();
    let live = admin.live.load_full();
    let live = live.as_deref();
    let draining = admin.draining.load(std::sync::atomic::Ordering::Relaxed);
    let listeners: Vec<Value> = live
        .map(|live| {
            live.listeners
                .iter()
                .map(|(name, addr)| json!({ "name": name, "address": addr.to_string() }))
                .collect()
        })
        .unwrap_or_default();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "pid": std::process::id(),
        "uptime_seconds": admin.started.elapsed().as_secs_f64(),
        "ready": live.is_some() && !draining,
        "draining": draining,
        "listeners": listeners,
        "upstreams": snapshot.len(),
        "backends": backends,
        "plugins": live.map_or(0, |l| l.plugins.len()),
        "metrics_dropped": live.map_or(0, |l| l.metrics.dropped()),
    })
}

/// A backend's health in one word: `drained` (by an operator), `down` (active checks),
/// `ejected` (passive health cool-down) or `healthy`.
pub fn health_word(backend: &BackendEntry) -> &'static str {
    let health = backend.health_state();
    if backend.is_drained() {
        "drained"
    } else if !health.check_healthy {
        "down"
    } else if !health.healthy {
        "ejected"
    } else {
        "healthy"
    }
}

fn backend_json(upstream: &str, backend: &BackendEntry) -> Value {
    let health = backend.health_state();
    json!({
        "upstream": upstream,
        "id": backend.backend.id,
        "address": backend.backend.address,
        "weight": backend.weight,
        "in_flight": backend.in_flight(),
        "health": health_word(backend),
        "drained": backend.is_drained(),
        "healthy": health.healthy,
        "consecutive_failures": health.consecutive_failures,
        "check_healthy": health.check_healthy,
    })
}

fn upstream_json(entry: &UpstreamEntry) -> Value {
    let up = &entry.upstream;
    json!({
        "id": up.id,
        "name": up.name,
        "prefixes": up.prefixes,
        "hostnames": up.hostnames,
        "protocols": up.protocols,
        "balancer": up.balancer.as_deref().unwrap_or("random"),
        "backends": entry.backends.iter().map(|b| backend_json(&up.id, b)).collect::<Vec<_>>(),
    })
}

fn upstreams(admin: &Admin, query: &str) -> Reply {
    let query = match Query::parse(query, &["upstream", "prefix", "limit", "after"]) {
        Ok(query) => query,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let snapshot = admin.registry.snapshot();
    let page = listing::upstreams(&snapshot, &query);
    let items = page
        .items
        .iter()
        .map(|entry| upstream_json(entry))
        .collect();
    page_reply("upstreams", &query, items, page.next)
}

fn backends(admin: &Admin, query: &str) -> Reply {
    let query = match Query::parse(query, &["upstream", "limit", "after"]) {
        Ok(query) => query,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let snapshot = admin.registry.snapshot();
    let page: Page<_> = match listing::backends(&snapshot, &query) {
        Ok(page) => page,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let items = page
        .items
        .iter()
        .map(|(upstream, backend)| backend_json(upstream, backend))
        .collect();
    page_reply("backends", &query, items, page.next)
}

/// A page as asked: a page object `{KEY: items, "next": cursor}` when the query paged, else the
/// bare list with the next cursor (if any) in the [`NEXT_HEADER`] header.
fn page_reply(key: &str, query: &Query, items: Vec<Value>, next: Option<String>) -> Reply {
    if query.paged {
        return json_response(StatusCode::OK, &json!({ key: items, "next": next }));
    }
    let mut reply = json_response(StatusCode::OK, &Value::Array(items));
    if let Some(value) = next.and_then(|next| http::HeaderValue::from_bytes(next.as_bytes()).ok()) {
        reply.headers_mut().insert(NEXT_HEADER, value);
    }
    reply
}

/// A plugin's state in one word, as `ctl plugins` shows it.
pub fn status_word(status: PluginStatus) -> &'static str {
    match status {
        PluginStatus::Starting => "starting",
        PluginStatus::Ready => "running",
        PluginStatus::Restarting => "restarting",
        PluginStatus::Backoff => "backoff",
        PluginStatus::Stopped => "stopped",
    }
}

fn plugin_json(handle: &PluginHandle, cache: Option<&DecisionCache>) -> Value {
    let state = handle.state();
    let cache = cache.map(DecisionCache::stats).unwrap_or_default();
    let mean_latency_us = state.latency_us_total.checked_div(state.calls).unwrap_or(0);
    json!({
        "name": handle.name(),
        "type": handle.plugin_type().to_string(),
        "state": status_word(state.status),
        "pid": state.pid,
        "instances": state.instances.len(),
        "restarts": state.restarts,
        "recycles": state.recycles,
        "standby_ready": state.standby_ready,
        "calls": state.calls,
        "errors": state.errors,
        "timeouts": state.timeouts,
        "bad_results": state.bad_results,
        "retries": state.retries,
        "mean_latency_us": mean_latency_us,
        "cache": { "hits": cache.hits, "misses": cache.misses, "entries": cache.entries },
        "busy_poll_us": state.busy_poll_us,
        "busy_poll": { "data": state.busy_poll_data, "timeout": state.busy_poll_timeouts },
        "config_error": state.config_error.as_ref().map(|r| r.message.clone()),
        "config_error_since": state.config_error.as_ref().and_then(|r| r.at.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_secs()),
        "processes": state.instances.iter().map(|instance| json!({
            "state": status_word(instance.status),
            "pid": instance.pid,
            "restarts": instance.restarts,
            "recycles": instance.recycles,
        })).collect::<Vec<_>>(),
    })
}

fn plugins(admin: &Admin) -> Value {
    admin
        .live
        .load()
        .as_deref()
        .map(|live| {
            live.plugins
                .iter()
                .map(|p| plugin_json(p, live.caches.of(p.name())))
                .collect()
        })
        .unwrap_or_else(|| json!([]))
}

fn set_drained(admin: &Admin, upstream: &str, backend: &str, drained: bool) -> Reply {
    let snapshot = admin.registry.snapshot();
    let Some(entry) = snapshot.upstream(upstream) else {
        return error(StatusCode::NOT_FOUND, format!("no upstream `{upstream}`"));
    };
    let Some(entry) = entry.backend(backend) else {
        return error(
            StatusCode::NOT_FOUND,
            format!("upstream `{upstream}` has no backend `{backend}`"),
        );
    };
    entry.set_drained(drained);
    tracing::info!(
        upstream,
        backend,
        drained,
        "admin: backend {}",
        if drained { "drained" } else { "enabled" }
    );
    json_response(StatusCode::OK, &backend_json(upstream, entry))
}

fn restart_plugin(admin: &Admin, name: &str) -> Reply {
    let live = admin.live.load_full();
    let Some(handle) = live
        .as_deref()
        .and_then(|live| live.plugins.iter().find(|p| p.name() == name))
    else {
        return error(StatusCode::NOT_FOUND, format!("no plugin `{name}`"));
    };
    let asked = handle.restart();
    if asked == 0 {
        return error(
            StatusCode::CONFLICT,
            format!(
                "plugin `{name}` is not running (it is {})",
                status_word(handle.state().status)
            ),
        );
    }
    // Its decisions are the old processes': the restarted ones decide anew.
    if let Some(cache) = live.as_deref().and_then(|live| live.caches.of(name)) {
        cache.clear();
    }
    tracing::info!(
        plugin = name,
        instances = asked,
        "admin: plugin restart requested"
    );
    json_response(
        StatusCode::ACCEPTED,
        &json!({ "plugin": name, "restarting_instances": asked }),
    )
}
