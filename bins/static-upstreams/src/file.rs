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
//! Unknown keys are errors, so a misspelt key is not silently ignored. Syntax and type errors
//! name the line.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context as _};
use gatekeeper_plugin_sdk::rpc::types::{HealthCheck, PassiveHealth};
use gatekeeper_plugin_sdk::{Backend, Object, Upstream};
use serde::{Deserialize, Deserializer};

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
    prefixes: Vec<String>,
    #[serde(default)]
    backends: Vec<BackendSpec>,
    /// Built-in balancer: `random` (default), `round_robin` or `least_outstanding`.
    #[serde(default)]
    balancer: Option<String>,
    /// The `Host` backends receive: `preserve` (default), `backend`, or a `host[:port]`.
    #[serde(default)]
    host_header: Option<String>,
    /// Protocol to the backends: `http1` (default) or `h2c`.
    #[serde(default)]
    backend_protocol: Option<String>,
    /// Time allowed to open a backend connection (humantime); the proxy's default when absent.
    #[serde(default)]
    connect_timeout: Option<Timeout>,
    /// Requests in flight at once to each backend; no limit when absent.
    #[serde(default)]
    max_connections_per_backend: Option<u32>,
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
    path: Option<String>,
    #[serde(default)]
    interval: Option<Timeout>,
    #[serde(default)]
    timeout: Option<Timeout>,
    #[serde(default)]
    healthy_threshold: Option<u32>,
    #[serde(default)]
    unhealthy_threshold: Option<u32>,
    /// A status (`200`) or text such as `2xx` or `200-399`.
    #[serde(default)]
    expected_status: Option<serde_yaml::Value>,
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

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a URL, or a map with `address` and `weight`")
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<BackendSpec, E> {
        Ok(BackendSpec {
            address: text.to_owned(),
            weight: None,
        })
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<BackendSpec, A::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Detailed {
            address: String,
            #[serde(default)]
            weight: Option<u32>,
        }
        let d = Detailed::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
        Ok(BackendSpec {
            address: d.address,
            weight: d.weight,
        })
    }
}

fn timeout_millis(Timeout(t): Timeout) -> u64 {
    millis(t)
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

/// Reads and parses the file at `path`; errors name the file (and the line, when YAML has one).
pub fn load(path: &Path, ids: BackendIds) -> anyhow::Result<Vec<StaticUpstream>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("could not read upstreams file {}", path.display()))?;
    parse(&text, ids).with_context(|| format!("invalid upstreams file {}", path.display()))
}

/// Parses the text of an upstreams file. The upstreams come out sorted by id.
pub fn parse(text: &str, ids: BackendIds) -> anyhow::Result<Vec<StaticUpstream>> {
    // An empty file (or a lone `---`) is a valid file with no upstreams.
    let entries: Option<BTreeMap<String, Entry>> =
        serde_yaml::from_str(text).map_err(|e| anyhow::anyhow!(describe(&e)))?;
    entries
        .unwrap_or_default()
        .into_iter()
        .map(|(id, entry)| {
            convert(id.clone(), entry, ids).with_context(|| format!("upstream `{id}`"))
        })
        .collect()
}

/// A YAML error's message, always with its line when it has a location.
fn describe(error: &serde_yaml::Error) -> String {
    let message = error.to_string();
    match error.location() {
        Some(location) if !message.contains("line ") => format!(
            "{message} at line {} column {}",
            location.line(),
            location.column()
        ),
        _ => message,
    }
}

/// A timeout in humantime syntax. Parsed in the visitor so a bad value's error carries the
/// value's own line (serde_yaml marks errors raised while visiting a scalar with its position).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Timeout(Duration);

impl<'de> Deserialize<'de> for Timeout {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(TimeoutVisitor)
    }
}

struct TimeoutVisitor;

impl serde::de::Visitor<'_> for TimeoutVisitor {
    type Value = Timeout;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a duration such as `10ms`, `5s` or `1m 30s`")
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Timeout, E> {
        let duration = humantime::parse_duration(text.trim()).map_err(|e| {
            E::custom(format!(
                "invalid duration `{text}` ({e}); expected e.g. `10ms`, `5s` or `1m 30s`"
            ))
        })?;
        if duration.is_zero() {
            return Err(E::custom("a duration must be more than 0"));
        }
        Ok(Timeout(duration))
    }
}

/// A duration in whole milliseconds (saturating).
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

fn convert(id: String, entry: Entry, ids: BackendIds) -> anyhow::Result<StaticUpstream> {
    if id.trim().is_empty() {
        bail!("the id (the entry's key) is empty");
    }
    let prefixes = entry
        .prefixes
        .iter()
        .map(|prefix| {
            let segment = prefix.trim().trim_matches('/');
            if segment.is_empty() || segment.contains('/') {
                bail!("prefix `{prefix}` is not a single path segment (e.g. `api`)");
            }
            Ok(segment.to_owned())
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let addresses = entry
        .backends
        .iter()
        .map(|spec| {
            let address = spec.address.trim();
            if !(address.starts_with("http://") || address.starts_with("https://")) {
                bail!("backend `{address}` is not an http:// or https:// URL");
            }
            if spec.weight == Some(0) {
                bail!("backend `{address}`: weight must be at least 1");
            }
            Ok(address)
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let backends = ids
        .assign(&addresses)
        .into_iter()
        .zip(&addresses)
        .zip(&entry.backends)
        .map(|((id, address), spec)| Backend {
            id,
            address: (*address).to_owned(),
            weight: spec.weight,
            extra: Object::new(),
        })
        .collect();
    let health_check = entry
        .health_check
        .map(|c| -> anyhow::Result<HealthCheck> {
            let expected_status = match c.expected_status {
                None => None,
                Some(serde_yaml::Value::String(s)) => Some(s),
                Some(serde_yaml::Value::Number(n)) => Some(n.to_string()),
                Some(_) => bail!("health_check.expected_status must be e.g. 200, 2xx or 200-399"),
            };
            Ok(HealthCheck {
                path: c.path,
                interval_ms: c.interval.map(timeout_millis),
                timeout_ms: c.timeout.map(timeout_millis),
                healthy_threshold: c.healthy_threshold,
                unhealthy_threshold: c.unhealthy_threshold,
                expected_status,
            })
        })
        .transpose()?;
    let upstream = Upstream {
        name: entry.name.unwrap_or_else(|| id.clone()),
        id,
        timeout_ms: entry.timeout.map(|Timeout(t)| millis(t)),
        protocols: entry.protocols,
        hostnames: entry.hostnames,
        prefixes,
        balancer: entry.balancer,
        backend_protocol: entry.backend_protocol,
        connect_timeout_ms: entry.connect_timeout.map(|Timeout(t)| millis(t)),
        max_connections_per_backend: entry.max_connections_per_backend,
        passive_health: entry.passive_health.map(|p| PassiveHealth {
            failures: p.failures,
            cooldown_ms: p.cooldown.map(timeout_millis),
        }),
        health_check,
        host_header: entry.host_header,
        extra: Object::new(),
    };
    Ok(StaticUpstream { upstream, backends })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// The original project's example file. Its backends are public hosts: parse it, never send
    /// traffic to them.
    fn fixture() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/original-static-upstreams.yml")
    }

    fn error_of(text: &str) -> String {
        format!("{:#}", parse(text, BackendIds::Url).unwrap_err())
    }

    #[test]
    fn parses_the_original_example_file() {
        let upstreams = load(&fixture(), BackendIds::Url).unwrap();
        assert_eq!(upstreams.len(), 2);

        let httpbin = &upstreams[0];
        assert_eq!(httpbin.upstream.id, "httpbin");
        assert_eq!(httpbin.upstream.name, "httpbin");
        assert_eq!(httpbin.upstream.timeout_ms, Some(5000));
        assert_eq!(httpbin.upstream.protocols, ["http-internal", "http-public"]);
        assert_eq!(httpbin.upstream.hostnames, ["httpbin", "httpbin.org"]);
        assert_eq!(httpbin.upstream.prefixes, ["httpbin"]);
        let ids: Vec<_> = httpbin.backends.iter().map(|b| b.id.as_str()).collect();
        assert_eq!(
            ids,
            ["https://httpbin.org", "https://httpbin.org#2"],
            "the repeated URL gets two ids"
        );
        assert!(httpbin
            .backends
            .iter()
            .all(|b| b.address == "https://httpbin.org"));

        let localhost = &upstreams[1];
        assert_eq!(localhost.upstream.id, "localhost");
        assert_eq!(localhost.upstream.timeout_ms, Some(10));
        assert!(localhost.upstream.hostnames.is_empty());
        assert_eq!(localhost.upstream.prefixes, ["localhost"]);
        assert_eq!(localhost.backends[0].address, "http://127.0.0.1:8080");
    }

    #[test]
    fn durations_parse() {
        for (text, ms) in [
            ("10ms", 10),
            ("5s", 5000),
            ("1m 30s", 90_000),
            ("2m", 120_000),
        ] {
            let yaml = format!("a:\n  timeout: {text}\n");
            assert_eq!(
                parse(&yaml, BackendIds::Url).unwrap()[0]
                    .upstream
                    .timeout_ms,
                Some(ms),
                "{text}"
            );
        }
        assert_eq!(
            parse("a: {}\n", BackendIds::Url).unwrap()[0]
                .upstream
                .timeout_ms,
            None
        );
        assert_eq!(
            parse("a:\n  timeout:\n", BackendIds::Url).unwrap()[0]
                .upstream
                .timeout_ms,
            None
        );
        let message = error_of("a:\n  timeout: 5\n");
        assert!(
            message.contains("line 2") && message.contains("`5`"),
            "{message}"
        );
        let message = error_of("a:\n  timeout: 0s\n");
        assert!(message.contains("more than 0"), "{message}");
    }

    #[test]
    fn backend_settings_pass_through() {
        let yaml = "a:\n  backend_protocol: h2c\n  connect_timeout: 250ms\n  max_connections_per_backend: 3\n";
        let upstream = &parse(yaml, BackendIds::Url).unwrap()[0].upstream;
        assert_eq!(upstream.backend_protocol.as_deref(), Some("h2c"));
        assert_eq!(upstream.connect_timeout_ms, Some(250));
        assert_eq!(upstream.max_connections_per_backend, Some(3));
        let upstream = &parse("a: {}\n", BackendIds::Url).unwrap()[0].upstream;
        assert_eq!(upstream.backend_protocol, None);
        assert_eq!(upstream.connect_timeout_ms, None);
        assert_eq!(upstream.max_connections_per_backend, None);
        let message = error_of("a:\n  connect_timeout: 0s\n");
        assert!(message.contains("more than 0"), "{message}");
    }

    #[test]
    fn a_bad_duration_names_its_line() {
        let message = error_of("a:\n  name: a\n  timeout: soon\n");
        assert!(message.contains("line 3"), "{message}");
        assert!(message.contains("soon"), "{message}");
    }

    #[test]
    fn a_syntax_error_names_its_line() {
        let message = error_of("a:\n  name: a\n  backends:\n    - http://x\n   - http://y\n");
        assert!(message.contains("line 5"), "{message}");
    }

    #[test]
    fn a_misspelt_key_names_its_line() {
        let message = error_of("a:\n  name: a\n  hostname: [x]\n");
        assert!(message.contains("line 3"), "{message}");
        assert!(message.contains("hostname"), "{message}");
    }

    #[test]
    fn a_bad_file_names_the_file_and_the_line() {
        let dir =
            std::env::temp_dir().join(format!("static-upstreams-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.yml");
        std::fs::write(&path, "a:\n  timeout: [1, 2]\n").unwrap();
        let message = format!("{:#}", load(&path, BackendIds::Url).unwrap_err());
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(message.contains("bad.yml"), "{message}");
        assert!(message.contains("line 2"), "{message}");
    }

    #[test]
    fn defaults_and_normalisation() {
        let upstreams = parse(
            "api:\n  prefixes: [/api/]\n  backends: [' http://10.0.0.1:80 ']\n",
            BackendIds::Url,
        )
        .unwrap();
        let api = &upstreams[0];
        assert_eq!(api.upstream.name, "api");
        assert_eq!(api.upstream.prefixes, ["api"]);
        assert_eq!(api.backends[0].address, "http://10.0.0.1:80");
        assert_eq!(api.backends[0].id, "http://10.0.0.1:80");
        assert!(parse("", BackendIds::Url).unwrap().is_empty());
        assert!(parse("---\n", BackendIds::Url).unwrap().is_empty());
    }

    #[test]
    fn host_header_passes_through() {
        let upstreams = parse(
            "a:\n  host_header: backend\nb:\n  host_header: api.internal:8080\nc: {}\n",
            BackendIds::Url,
        )
        .unwrap();
        let host = |i: usize| upstreams[i].upstream.host_header.as_deref();
        assert_eq!(host(0), Some("backend"));
        assert_eq!(host(1), Some("api.internal:8080"));
        assert_eq!(host(2), None);
    }

    #[test]
    fn semantic_errors_name_the_upstream() {
        let message = error_of("api:\n  prefixes: [a/b]\n");
        assert!(
            message.contains("upstream `api`") && message.contains("a/b"),
            "{message}"
        );
        let message = error_of("api:\n  backends: [10.0.0.1:80]\n");
        assert!(message.contains("not an http"), "{message}");
    }

    #[test]
    fn url_ids_survive_reordering_and_number_repeats() {
        let ids =
            BackendIds::Url.assign(&["http://a", "http://b", "http://a", "http://a#2", "http://a"]);
        assert_eq!(
            ids,
            [
                "http://a",
                "http://b",
                "http://a#2",
                "http://a#2#2",
                "http://a#3"
            ]
        );
        let reordered = BackendIds::Url.assign(&["http://b", "http://a"]);
        assert_eq!(reordered, ["http://b", "http://a"]);
        assert_eq!(
            BackendIds::Index.assign(&["http://a", "http://a"]),
            ["0", "1"]
        );
        assert_eq!(BackendIds::from_name("index"), Some(BackendIds::Index));
        assert_eq!(BackendIds::from_name("url"), Some(BackendIds::Url));
        assert_eq!(BackendIds::from_name("position"), None);
    }

    #[test]
    fn weights_and_health_settings_pass_through() {
        let yaml = "\
api:
  balancer: round_robin
  passive_health: { failures: 2, cooldown: 1s }
  health_check:
    path: /status/200
    interval: 500ms
    timeout: 250ms
    healthy_threshold: 1
    unhealthy_threshold: 4
    expected_status: 204
  backends:
    - http://127.0.0.1:1
    - address: http://127.0.0.1:2
      weight: 3
";
        let api = &parse(yaml, BackendIds::Url).unwrap()[0];
        assert_eq!(
            api.backends.iter().map(|b| b.weight).collect::<Vec<_>>(),
            [None, Some(3)]
        );
        assert_eq!(api.backends[1].address, "http://127.0.0.1:2");
        assert_eq!(
            api.upstream.passive_health,
            Some(PassiveHealth {
                failures: Some(2),
                cooldown_ms: Some(1000)
            })
        );
        assert_eq!(
            api.upstream.health_check,
            Some(HealthCheck {
                path: Some("/status/200".into()),
                interval_ms: Some(500),
                timeout_ms: Some(250),
                healthy_threshold: Some(1),
                unhealthy_threshold: Some(4),
                expected_status: Some("204".into()),
            })
        );
        let plain = &parse("a:\n  backends: [http://x]\n", BackendIds::Url).unwrap()[0];
        assert_eq!(plain.upstream.passive_health, None);
        assert_eq!(plain.upstream.health_check, None);

        let message = error_of("a:\n  backends:\n    - address: http://x\n      wieght: 2\n");
        assert!(message.contains("wieght"), "{message}");
        let message = error_of("a:\n  backends:\n    - {address: http://x, weight: 0}\n");
        assert!(message.contains("at least 1"), "{message}");
        let message = error_of("a:\n  health_check: {interval: soon}\n");
        assert!(message.contains("soon"), "{message}");
    }
}
