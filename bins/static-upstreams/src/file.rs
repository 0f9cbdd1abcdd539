//! The upstreams file, in the original gatekeeper project's YAML format:
//!
//! ```yaml
//! httpbin:                 # the upstream's id
//!   name: httpbin          # optional, defaults to the id
//!   timeout: 5s            # optional, humantime syntax: 10ms, 5s, 1m 30s
//!   protocols: [http-public]   # listener names; empty or absent means all
//!   hostnames: [httpbin.org]
//!   prefixes: [httpbin]    # first path segments, without slashes
//!   balancer: round_robin  # optional: random (default), round_robin, least_outstanding
//!   backend_protocol: h2c  # optional: http1 (default) or h2c
//!   connect_timeout: 1s    # optional, humantime syntax; the proxy's default when absent
//!   max_connections_per_backend: 64   # optional; no limit when absent
//!   host_header: backend   # optional: preserve (default), backend, or a host[:port]
//!   backends:              # base URLs
//!     - https://httpbin.org
//!     - address: https://eu.httpbin.org   # or a map, with a weight (default 1)
//!       weight: 3
//!   passive_health:        # optional: eject a backend after `failures` errors in a row
//!     failures: 3
//!     cooldown: 10s
//!   health_check:          # optional: active HTTP checks of every backend
//!     path: /health
//!     interval: 5s
//!     timeout: 2s
//!     healthy_threshold: 2
//!     unhealthy_threshold: 3
//!     expected_status: 200-399
//! ```
//!
//! Backend ids ([`BackendIds`]) are, by default, the URLs themselves: an id then survives the
//! list being reordered or an entry being inserted before it, so a reload of the file
//! ([`crate::watch`]) removes and adds only the backends that really changed. A list may repeat a
//! URL (the original example does, to weight it): the second occurrence gets the id `URL#2`, the
//! third `URL#3`, and so on. The plugin config key `backend_ids = "index"` (not a key of this
//! file) switches to the ids of earlier versions, the position in the list (`"0"`, `"1"`, ...).
//!
//! The whole file is checked before anything is pushed: unknown keys (a misspelt key is not
//! silently ignored), unknown balancers and backend protocols, backends that are not http(s)
//! URLs, bad `host_header`s, health settings and durations, counts of 0, a repeated upstream id
//! ([`crate::values`]). An error names the file, the line and the key:
//! `upstreams.yml:4: api.balancer: unknown balancer `round_robbin`, expected one of …`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use gatekeeper_plugin_sdk::desired::{DesiredState, DesiredUpstream};
use gatekeeper_plugin_sdk::rpc::types::{HealthCheck, PassiveHealth};
use gatekeeper_plugin_sdk::{Backend, Object, Upstream};
use serde::{Deserialize, Deserializer};

use crate::values::{
    AtLeastOne, BackendProtocol, BackendUrl, Balancer, ExpectedStatus, HealthPath, HostHeader,
    Prefix, Timeout,
};

/// One entry of the file, as written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    timeout: Option<Timeout>,
    #[serde(default)]
    protocols: Vec<String>,
    #[serde(default)]
    hostnames: Vec<String>,
    #[serde(default)]
    prefixes: Vec<Prefix>,
    #[serde(default)]
    backends: Vec<BackendSpec>,
    /// Built-in balancer: `random` (default), `round_robin` or `least_outstanding`.
    #[serde(default)]
    balancer: Option<Balancer>,
    /// The `Host` backends receive: `preserve` (default), `backend`, or a `host[:port]`.
    #[serde(default)]
    host_header: Option<HostHeader>,
    /// Protocol to the backends: `http1` (default) or `h2c`.
    #[serde(default)]
    backend_protocol: Option<BackendProtocol>,
    /// Time allowed to open a backend connection (humantime); the proxy's default when absent.
    #[serde(default)]
    connect_timeout: Option<Timeout>,
    /// Requests in flight at once to each backend; no limit when absent.
    #[serde(default)]
    max_connections_per_backend: Option<AtLeastOne>,
    /// Passive health settings (`Upstream.passive_health`).
    #[serde(default)]
    passive_health: Option<FilePassiveHealth>,
    /// Active health checks (`Upstream.health_check`).
    #[serde(default)]
    health_check: Option<FileHealthCheck>,
}

/// `passive_health` as written: durations in humantime syntax.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct FilePassiveHealth {
    #[serde(default)]
    failures: Option<u32>,
    #[serde(default)]
    cooldown: Option<Timeout>,
}

/// `health_check` as written: durations in humantime syntax.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileHealthCheck {
    #[serde(default)]
    path: Option<HealthPath>,
    #[serde(default)]
    interval: Option<Timeout>,
    #[serde(default)]
    timeout: Option<Timeout>,
    #[serde(default)]
    healthy_threshold: Option<AtLeastOne>,
    #[serde(default)]
    unhealthy_threshold: Option<AtLeastOne>,
    /// A status (`200`) or text such as `2xx` or `200-399`.
    #[serde(default)]
    expected_status: Option<ExpectedStatus>,
}

/// One entry of `backends`: a URL, or a map `{address: URL, weight: N}`.
#[derive(Debug, Clone, PartialEq)]
struct BackendSpec {
    address: String,
    weight: Option<u32>,
}

impl<'de> Deserialize<'de> for BackendSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(BackendSpecVisitor)
    }
}

struct BackendSpecVisitor;

impl<'de> serde::de::Visitor<'de> for BackendSpecVisitor {
    type Value = BackendSpec;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a URL, or a map with `address` and `weight`")
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<BackendSpec, E> {
        let BackendUrl(address) =
            BackendUrl::deserialize(serde::de::value::StrDeserializer::<E>::new(text))?;
        Ok(BackendSpec {
            address,
            weight: None,
        })
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<BackendSpec, A::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Detailed {
            address: BackendUrl,
            #[serde(default)]
            weight: Option<AtLeastOne>,
        }
        let d = Detailed::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
        Ok(BackendSpec {
            address: d.address.0,
            weight: d.weight.map(|AtLeastOne(n)| n),
        })
    }
}

/// The whole file: upstream ids to their entries, each id once.
struct Entries(BTreeMap<String, Entry>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(EntriesVisitor)
    }
}

struct EntriesVisitor;

impl<'de> serde::de::Visitor<'de> for EntriesVisitor {
    type Value = Entries;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of upstream ids to upstreams")
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Entries, E> {
        Ok(Entries(BTreeMap::new()))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Entries, A::Error> {
        let mut entries = BTreeMap::new();
        while let Some(id) = map.next_key::<String>()? {
            if entries.contains_key(&id) {
                return Err(serde::de::Error::custom(format!(
                    "upstream id `{id}` appears twice"
                )));
            }
            let entry = map.next_value::<Entry>()?;
            entries.insert(id, entry);
        }
        Ok(Entries(entries))
    }
}

/// How backends get their ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BackendIds {
    /// The URL; a repeated URL gets `URL#2`, `URL#3`, ... (the default).
    #[default]
    Url,
    /// The position in the list: `"0"`, `"1"`, ...
    Index,
}

impl BackendIds {
    /// The scheme named by the config value `url` or `index`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "url" => Some(BackendIds::Url),
            "index" => Some(BackendIds::Index),
            _ => None,
        }
    }

    /// The ids of `addresses`, in order, by this scheme; always distinct.
    pub fn assign(self, addresses: &[&str]) -> Vec<String> {
        match self {
            BackendIds::Index => (0..addresses.len()).map(|i| i.to_string()).collect(),
            BackendIds::Url => {
                let mut used = HashSet::new();
                addresses
                    .iter()
                    .map(|address| {
                        let mut id = (*address).to_owned();
                        let mut n = 2;
                        while used.contains(&id) {
                            id = format!("{address}#{n}");
                            n += 1;
                        }
                        used.insert(id.clone());
                        id
                    })
                    .collect()
            }
        }
    }
}

/// An upstream with its backends, ready to push through the manager.
#[derive(Debug, Clone, PartialEq)]
pub struct StaticUpstream {
    /// The upstream.
    pub upstream: Upstream,
    /// Its backends, in file order, with ids by the [`BackendIds`] scheme.
    pub backends: Vec<Backend>,
}

/// The state to push for parsed upstreams (backends in file order).
pub fn desired(upstreams: Vec<StaticUpstream>) -> DesiredState {
    upstreams
        .into_iter()
        .map(|u| DesiredUpstream::with_backends(u.upstream, u.backends))
        .collect()
}

/// What is wrong with the text of an upstreams file: where (line, key path) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// The line (from 1), when the YAML parser knows it.
    pub line: Option<usize>,
    /// The key path (`api.balancer`, `api.backends[1]`), empty for the whole file.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ParseError {
    /// `line 4: api.balancer: message` (each part only when known).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// Why an upstreams file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// It could not be read.
    #[error("{}: could not read the upstreams file: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// It does not parse or check: `FILE:LINE: KEY: message`.
    #[error("{}{}: {}{}", path.display(), error.line.map(|l| format!(":{l}")).unwrap_or_default(), if error.key.is_empty() { String::new() } else { format!("{}: ", error.key) }, error.message)]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Where and what.
        error: ParseError,
    },
}

/// Reads, parses and checks the file at `path`; errors name the file, the line and the key.
#[cfg(test)]
pub fn load(path: &Path, ids: BackendIds) -> Result<Vec<StaticUpstream>, LoadError> {
    check(path, &read(path)?, ids)
}

/// Parses and checks `text`, read from the file at `path`; errors name the file, the line and
/// the key.
pub fn check(path: &Path, text: &str, ids: BackendIds) -> Result<Vec<StaticUpstream>, LoadError> {
    parse(text, ids).map_err(|error| LoadError::Invalid {
        path: path.to_owned(),
        error,
    })
}

/// Reads the file at `path` (for [`parse`]).
pub fn read(path: &Path) -> Result<String, LoadError> {
    std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Parses and checks the text of an upstreams file. The upstreams come out sorted by id.
pub fn parse(text: &str, ids: BackendIds) -> Result<Vec<StaticUpstream>, ParseError> {
    // An empty file (or a lone `---`) is a valid file with no upstreams.
    let deserializer = serde_yaml::Deserializer::from_str(text);
    let entries: Option<Entries> = serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner();
        ParseError {
            line: inner.location().map(|l| l.line()),
            key: if key == "." { String::new() } else { key },
            message: strip_location(&inner),
        }
    })?;
    let upstreams = entries
        .map(|Entries(entries)| entries)
        .unwrap_or_default()
        .into_iter()
        .map(|(id, entry)| convert(id, entry, ids))
        .collect::<Result<Vec<_>, _>>()?;
    check_routes_are_distinct(&upstreams)?;
    Ok(upstreams)
}

/// Two upstreams that may serve the same listener (`protocols` absent means every listener)
/// must not share a prefix or a hostname: the proxy refuses the second one.
/// Only upstreams sharing a prefix or hostname are compared (through an index of them), so a
/// file of many upstreams is checked in time proportional to its size.
fn check_routes_are_distinct(upstreams: &[StaticUpstream]) -> Result<(), ParseError> {
    // Lower-cased prefix or hostname (tagged, as they do not clash with each other) → the
    // positions of the upstreams having it.
    let mut having: HashMap<(bool, String), Vec<usize>> = HashMap::new();
    for (i, later) in upstreams.iter().enumerate() {
        let later = &later.upstream;
        let routes = (later.prefixes.iter().map(|p| (true, p)))
            .chain(later.hostnames.iter().map(|h| (false, h)))
            .map(|(is_prefix, route)| (is_prefix, route.to_ascii_lowercase()));
        let mut candidates = Vec::new();
        for route in routes {
            let seen = having.entry(route).or_default();
            candidates.extend(seen.iter().copied().filter(|&j| j < i));
            if seen.last() != Some(&i) {
                seen.push(i);
            }
        }
        candidates.sort_unstable();
        candidates.dedup();
        for earlier in candidates
            .iter()
            .filter_map(|&j| upstreams.get(j))
            .map(|u| &u.upstream)
        {
            let overlap = earlier.protocols.is_empty()
                || later.protocols.is_empty()
                || earlier
                    .protocols
                    .iter()
                    .any(|p| later.protocols.contains(p));
            if !overlap {
                continue;
            }
            let clash = |key: &str, what: &str, mine: &[String], theirs: &[String]| {
                mine.iter()
                    .find(|m| theirs.iter().any(|t| t.eq_ignore_ascii_case(m)))
                    .map(|shared| ParseError {
                        line: None,
                        key: format!("{}.{key}", later.id),
                        message: format!(
                            "{what} `{shared}` is upstream `{}`'s too (on the same listeners)",
                            earlier.id
                        ),
                    })
            };
            if let Some(error) = clash("prefixes", "prefix", &later.prefixes, &earlier.prefixes)
                .or_else(|| {
                    clash(
                        "hostnames",
                        "hostname",
                        &later.hostnames,
                        &earlier.hostnames,
                    )
                })
            {
                return Err(error);
            }
        }
    }
    Ok(())
}

/// A YAML error's message without serde_yaml's ` at line L column C` (the line is shown
/// before it) and without the key path it may start with (shown before it too).
fn strip_location(error: &serde_yaml::Error) -> String {
    let mut message = error.to_string();
    if let Some(location) = error.location() {
        let suffix = format!(" at line {} column {}", location.line(), location.column());
        if let Some(at) = message.find(&suffix) {
            message.replace_range(at..at + suffix.len(), "");
        }
    }
    // serde_yaml starts a nested error with its own path (`api.balancer: …`).
    match message.split_once(": ") {
        Some((path, rest))
            if !path.is_empty()
                && !path.contains(' ')
                && !path.contains('`')
                && path
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_alphanumeric() || c == '_') =>
        {
            rest.to_owned()
        }
        _ => message,
    }
}

fn convert(id: String, entry: Entry, ids: BackendIds) -> Result<StaticUpstream, ParseError> {
    if id.trim().is_empty() {
        return Err(ParseError {
            line: None,
            key: String::new(),
            message: "an upstream id (an entry's key) is empty".into(),
        });
    }
    let addresses: Vec<&str> = entry.backends.iter().map(|b| b.address.as_str()).collect();
    let backends = ids
        .assign(&addresses)
        .into_iter()
        .zip(&entry.backends)
        .map(|(backend_id, spec)| Backend {
            id: backend_id,
            address: spec.address.clone(),
            weight: spec.weight,
            extra: Object::new(),
        })
        .collect();
    let health_check = entry.health_check.map(|c| HealthCheck {
        path: c.path.map(|HealthPath(p)| p),
        interval_ms: c.interval.map(Timeout::millis),
        timeout_ms: c.timeout.map(Timeout::millis),
        healthy_threshold: c.healthy_threshold.map(|AtLeastOne(n)| n),
        unhealthy_threshold: c.unhealthy_threshold.map(|AtLeastOne(n)| n),
        expected_status: c.expected_status.map(|ExpectedStatus(s)| s),
    });
    let upstream = Upstream {
        name: entry.name.unwrap_or_else(|| id.clone()),
        id,
        timeout_ms: entry.timeout.map(Timeout::millis),
        protocols: entry.protocols,
        hostnames: entry.hostnames,
        prefixes: entry.prefixes.into_iter().map(|Prefix(p)| p).collect(),
        balancer: entry.balancer.map(|Balancer(b)| b),
        backend_protocol: entry.backend_protocol.map(|BackendProtocol(p)| p),
        connect_timeout_ms: entry.connect_timeout.map(Timeout::millis),
        max_connections_per_backend: entry.max_connections_per_backend.map(|AtLeastOne(n)| n),
        passive_health: entry.passive_health.map(|p| PassiveHealth {
            failures: p.failures,
            cooldown_ms: p.cooldown.map(Timeout::millis),
        }),
        health_check,
        host_header: entry.host_header.map(|HostHeader(h)| h),
        extra: Object::new(),
    };
    Ok(StaticUpstream { upstream, backends })
}

#[cfg(test)]
mod tests;
