//! The headers gatekeeper itself sets on what it forwards: `X-Forwarded-For`,
//! `X-Forwarded-Proto` and `X-Forwarded-Host` on requests ([`ForwardedMode`]), `Via` on requests
//! and responses, and the `Host` a backend receives ([`HostHeader`], per upstream).
//!
//! Header values that do not depend on the request (the `Via` entries, `http`/`https`) are built
//! once, when the proxy starts. The client's address as a header value is cached per thread
//! (keep-alive connections send many requests from one address), so a request allocates only
//! to join an `X-Forwarded-For` or `Via` the client already sent.

use std::cell::RefCell;
use std::net::IpAddr;

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::Version;

pub use crate::upstream_settings::HostHeader;

use crate::registry::BackendEntry;
use crate::router::request_host;

/// `X-Forwarded-For`.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `X-Forwarded-Proto`.
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `X-Forwarded-Host`.
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// How the `X-Forwarded-*` request headers are written (setting `forwarded_headers`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ForwardedMode {
    /// Trust what the client sent (gatekeeper runs behind another proxy): the client's address
    /// is appended to `X-Forwarded-For`; `X-Forwarded-Proto` and `X-Forwarded-Host` are set only
    /// when the request has none. The default, as in Envoy and the usual nginx setup.
    #[default]
    Append,
    /// Trust nothing (gatekeeper is the edge): all three are replaced by what gatekeeper saw.
    Replace,
    /// Leave them as the client sent them.
    Off,
}

impl ForwardedMode {
    /// The setting's names.
    pub const NAMES: [&'static str; 3] = ["append", "replace", "off"];

    /// The setting's value for this mode.
    pub fn as_str(self) -> &'static str {
        match self {
            ForwardedMode::Append => "append",
            ForwardedMode::Replace => "replace",
            ForwardedMode::Off => "off",
        }
    }
}

impl std::str::FromStr for ForwardedMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "append" => Ok(ForwardedMode::Append),
            "replace" => Ok(ForwardedMode::Replace),
            "off" => Ok(ForwardedMode::Off),
            other => Err(format!(
                "`{other}` must be one of {}",
                ForwardedMode::NAMES.join(", ")
            )),
        }
    }
}

/// The settings of the forwarding headers (config keys `forwarded_headers` and `via`; checked
/// by [`crate::ProxyConfig::validate`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ForwardedConfig {
    /// How `X-Forwarded-For`, `-Proto` and `-Host` are written (default [`ForwardedMode::Append`]).
    #[serde(rename = "forwarded_headers", with = "mode_key")]
    pub mode: ForwardedMode,
    /// The name gatekeeper gives itself in `Via` (default `gatekeeper`); empty: no `Via`.
    pub via: String,
}

/// `forwarded_headers = "append" | "replace" | "off"`. The error names the key: the proxy's
/// config holds these keys flattened, where serde does not say which key failed.
mod mode_key {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::ForwardedMode;

    pub fn serialize<S: Serializer>(mode: &ForwardedMode, s: S) -> Result<S::Ok, S::Error> {
        mode.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<ForwardedMode, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(|e: String| serde::de::Error::custom(format!("forwarded_headers: {e}")))
    }
}

impl Default for ForwardedConfig {
    fn default() -> Self {
        ForwardedConfig {
            mode: ForwardedMode::Append,
            via: DEFAULT_VIA.to_string(),
        }
    }
}

/// The default `Via` name.
pub const DEFAULT_VIA: &str = "gatekeeper";

/// Whether `name` can be the name in a `Via` entry: an HTTP token or a `host[:port]` (letters,
/// digits and ``!#$%&'*+-.^_`|~:[]``), not empty.
pub fn valid_via_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:[]".contains(&b))
}

/// The `Via` entries of one proxy name, one per protocol version, built once.
#[derive(Debug, Clone)]
struct Via {
    http10: HeaderValue,
    http11: HeaderValue,
    http2: HeaderValue,
    http3: HeaderValue,
}

impl Via {
    fn new(name: &str) -> Option<Self> {
        let entry = |version: &str| HeaderValue::from_str(&format!("{version} {name}")).ok();
        Some(Via {
            http10: entry("1.0")?,
            http11: entry("1.1")?,
            http2: entry("2")?,
            http3: entry("3")?,
        })
    }

    /// The entry for a message received with `version`.
    fn entry(&self, version: Version) -> &HeaderValue {
        match version {
            Version::HTTP_09 | Version::HTTP_10 => &self.http10,
            Version::HTTP_2 => &self.http2,
            Version::HTTP_3 => &self.http3,
            _ => &self.http11,
        }
    }

    /// Adds this proxy's entry after any earlier ones (`Via` lists proxies in order).
    fn add(&self, headers: &mut HeaderMap, version: Version) {
        let entry = self.entry(version);
        append_to_list(headers, header::VIA, entry.as_bytes(), || entry.clone());
    }
}

/// Appends `item` to the comma-separated list header `name` (every line of it joined into
/// one); `alone` is the value when there is no earlier one.
fn append_to_list(
    headers: &mut HeaderMap,
    name: HeaderName,
    item: &[u8],
    alone: impl FnOnce() -> HeaderValue,
) {
    let mut joined: Option<BytesMut> = None;
    for earlier in headers.get_all(&name) {
        let buf = joined.get_or_insert_with(|| BytesMut::with_capacity(64));
        if !buf.is_empty() {
            buf.put_slice(b", ");
        }
        buf.put_slice(earlier.as_bytes());
    }
    let value = match joined {
        None => alone(),
        Some(mut buf) => {
            buf.put_slice(b", ");
            buf.put_slice(item);
            HeaderValue::from_maybe_shared(buf.freeze()).unwrap_or_else(|_| alone())
        }
    };
    headers.insert(name, value);
}

/// Why the forwarding settings cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("via: `{0}` is not a valid Via name (a token or host[:port], e.g. `gatekeeper`)")]
pub struct InvalidVia(pub String);

/// The forwarding headers, ready to apply: built once from a [`ForwardedConfig`].
#[derive(Debug, Clone)]
pub(crate) struct ForwardedHeaders {
    mode: ForwardedMode,
    via: Option<Via>,
}

impl Default for ForwardedHeaders {
    fn default() -> Self {
        ForwardedHeaders {
            mode: ForwardedMode::default(),
            via: Via::new(DEFAULT_VIA),
        }
    }
}

const HTTP: HeaderValue = HeaderValue::from_static("http");
const HTTPS: HeaderValue = HeaderValue::from_static("https");

impl ForwardedHeaders {
    /// Checks the settings and builds the constant header values.
    pub(crate) fn new(config: &ForwardedConfig) -> Result<Self, InvalidVia> {
        let via = if config.via.is_empty() {
            None
        } else if valid_via_name(&config.via) {
            Some(Via::new(&config.via).ok_or_else(|| InvalidVia(config.via.clone()))?)
        } else {
            return Err(InvalidVia(config.via.clone()));
        };
        Ok(ForwardedHeaders {
            mode: config.mode,
            via,
        })
    }

    /// Adds the forwarding headers to a client's request (after its hop-by-hop headers were
    /// removed, before any plugin sees it): the client's address `remote`, `tls` for the
    /// listener's scheme, and the client's `Host` (or the authority of an absolute-form URI).
    pub(crate) fn apply(&self, parts: &mut Parts, remote: IpAddr, tls: bool) {
        let proto = if tls { HTTPS } else { HTTP };
        match self.mode {
            ForwardedMode::Off => {}
            ForwardedMode::Append => {
                parts.headers.reserve(4);
                let ip = address_value(remote);
                append_to_list(&mut parts.headers, X_FORWARDED_FOR, ip.as_bytes(), || {
                    ip.clone()
                });
                if !parts.headers.contains_key(&X_FORWARDED_PROTO) {
                    parts.headers.insert(X_FORWARDED_PROTO, proto);
                }
                if !parts.headers.contains_key(&X_FORWARDED_HOST) {
                    if let Some(host) = client_host(parts) {
                        parts.headers.insert(X_FORWARDED_HOST, host);
                    }
                }
            }
            ForwardedMode::Replace => {
                parts.headers.reserve(4);
                parts.headers.insert(X_FORWARDED_FOR, address_value(remote));
                parts.headers.insert(X_FORWARDED_PROTO, proto);
                match client_host(parts) {
                    Some(host) => parts.headers.insert(X_FORWARDED_HOST, host),
                    None => parts.headers.remove(X_FORWARDED_HOST),
                };
            }
        }
        if let Some(via) = &self.via {
            via.add(&mut parts.headers, parts.version);
        }
    }

    /// Adds `Via` to a backend's response received with `version`.
    pub(crate) fn apply_response(&self, headers: &mut HeaderMap, version: Version) {
        if let Some(via) = &self.via {
            via.add(headers, version);
        }
    }
}

thread_local! {
    /// The last client address [`address_value`] formatted on this thread.
    static LAST_ADDRESS: RefCell<Option<(IpAddr, HeaderValue)>> = const { RefCell::new(None) };
}

/// A client's address as a header value (IPv4-mapped IPv6 addresses as IPv4), reusing the last
/// one formatted on this thread when it is the same address.
fn address_value(remote: IpAddr) -> HeaderValue {
    let remote = remote.to_canonical();
    let format = || {
        // An address's text is always a valid header value.
        HeaderValue::from_maybe_shared(Bytes::from(remote.to_string()))
            .unwrap_or(HeaderValue::from_static("unknown"))
    };
    LAST_ADDRESS
        .try_with(|last| {
            let Ok(mut last) = last.try_borrow_mut() else {
                return format();
            };
            match &*last {
                Some((ip, value)) if *ip == remote => value.clone(),
                _ => {
                    let value = format();
                    *last = Some((remote, value.clone()));
                    value
                }
            }
        })
        .unwrap_or_else(|_| format())
}

/// The client's `Host` header, or the authority of an absolute-form request URI.
fn client_host(parts: &Parts) -> Option<HeaderValue> {
    match parts.headers.get(header::HOST) {
        Some(host) => Some(host.clone()),
        None => request_host(parts).and_then(|h| HeaderValue::from_str(h).ok()),
    }
}

/// Applying an upstream's `host_header` setting (parsed with the upstream's other settings).
impl HostHeader {
    /// Sets the `Host` of a request forwarded to `backend`.
    pub(crate) fn apply(&self, headers: &mut HeaderMap, backend: &BackendEntry) {
        match self {
            HostHeader::Preserve => {}
            HostHeader::Backend => {
                if let Ok(value) = HeaderValue::from_str(backend.authority.as_str()) {
                    headers.insert(header::HOST, value);
                }
            }
            HostHeader::Literal(value) => {
                headers.insert(header::HOST, value.clone());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use gatekeeper_rpc::types::Backend;
    use http::Request;

    fn parts(headers: &[(&str, &str)]) -> Parts {
        let mut request = Request::get("/x");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(()).unwrap().into_parts().0
    }

    fn values(parts: &Parts, name: &str) -> Vec<String> {
        parts
            .headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap().to_string())
            .collect()
    }

    fn headers(mode: ForwardedMode, via: &str) -> ForwardedHeaders {
        ForwardedHeaders::new(&ForwardedConfig {
            mode,
            via: via.into(),
        })
        .unwrap()
    }

    const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 7));

    #[test]
    fn append_adds_to_earlier_values_and_keeps_proto_and_host() {
        let mut p = parts(&[
            ("host", "site.test"),
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-for", "2.2.2.2, 3.3.3.3"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "outer.test"),
            ("via", "1.0 edge"),
        ]);
        headers(ForwardedMode::Append, "gatekeeper").apply(&mut p, CLIENT, false);
        assert_eq!(
            values(&p, "x-forwarded-for"),
            ["1.1.1.1, 2.2.2.2, 3.3.3.3, 10.0.0.7"]
        );
        assert_eq!(values(&p, "x-forwarded-proto"), ["https"]);
        assert_eq!(values(&p, "x-forwarded-host"), ["outer.test"]);
        assert_eq!(values(&p, "via"), ["1.0 edge, 1.1 gatekeeper"]);
    }

    #[test]
    fn append_sets_what_is_missing() {
        let mut p = parts(&[("host", "site.test:8080")]);
        headers(ForwardedMode::Append, "gk").apply(&mut p, CLIENT, true);
        assert_eq!(values(&p, "x-forwarded-for"), ["10.0.0.7"]);
        assert_eq!(values(&p, "x-forwarded-proto"), ["https"]);
        assert_eq!(values(&p, "x-forwarded-host"), ["site.test:8080"]);
        assert_eq!(values(&p, "via"), ["1.1 gk"]);
    }

    #[test]
    fn replace_trusts_nothing() {
        let mut p = parts(&[
            ("host", "site.test"),
            ("x-forwarded-for", "1.1.1.1"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "spoofed.test"),
        ]);
        let mapped: IpAddr = "::ffff:10.0.0.7".parse().unwrap();
        headers(ForwardedMode::Replace, "").apply(&mut p, mapped, false);
        assert_eq!(values(&p, "x-forwarded-for"), ["10.0.0.7"]);
        assert_eq!(values(&p, "x-forwarded-proto"), ["http"]);
        assert_eq!(values(&p, "x-forwarded-host"), ["site.test"]);
        assert!(values(&p, "via").is_empty());
    }

    #[test]
    fn off_leaves_them_alone() {
        let mut p = parts(&[("x-forwarded-for", "1.1.1.1")]);
        let mut p10 = parts(&[]);
        p10.version = Version::HTTP_10;
        let h = headers(ForwardedMode::Off, "gatekeeper");
        h.apply(&mut p, CLIENT, false);
        h.apply(&mut p10, CLIENT, false);
        assert_eq!(values(&p, "x-forwarded-for"), ["1.1.1.1"]);
        assert!(values(&p, "x-forwarded-proto").is_empty());
        assert_eq!(values(&p10, "via"), ["1.0 gatekeeper"]);
    }

    #[test]
    fn cached_addresses_follow_the_client() {
        let other: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(address_value(CLIENT), "10.0.0.7");
        assert_eq!(address_value(CLIENT), "10.0.0.7");
        assert_eq!(address_value(other), "2001:db8::1");
        assert_eq!(address_value(CLIENT), "10.0.0.7");
    }

    #[test]
    fn via_names_are_checked() {
        for good in ["gatekeeper", "gk-1.example:8080", "[::1]:80"] {
            assert!(valid_via_name(good), "{good}");
        }
        for bad in ["", "two words", "a,b", "x\ny", "(comment)"] {
            assert!(!valid_via_name(bad), "{bad}");
            let config = ForwardedConfig {
                mode: ForwardedMode::Append,
                via: bad.into(),
            };
            assert_eq!(ForwardedHeaders::new(&config).is_err(), !bad.is_empty());
        }
    }

    #[test]
    fn host_header_modes() {
        let backend = BackendEntry::new(Backend {
            id: "b".into(),
            address: "http://127.0.0.1:9000/base".into(),
            weight: None,
            extra: Default::default(),
        })
        .unwrap();
        let host = |mode: &HostHeader| {
            let mut h = HeaderMap::new();
            h.insert(header::HOST, HeaderValue::from_static("client.test"));
            mode.apply(&mut h, &backend);
            values_of(&h)
        };
        fn values_of(h: &HeaderMap) -> Vec<String> {
            h.get_all(header::HOST)
                .iter()
                .map(|v| v.to_str().unwrap().to_string())
                .collect()
        }
        assert_eq!(host(&HostHeader::parse(None).unwrap()), ["client.test"]);
        assert_eq!(
            host(&HostHeader::parse(Some("preserve")).unwrap()),
            ["client.test"]
        );
        assert_eq!(
            host(&HostHeader::parse(Some("backend")).unwrap()),
            ["127.0.0.1:9000"]
        );
        assert_eq!(
            host(&HostHeader::parse(Some("api.internal:8443")).unwrap()),
            ["api.internal:8443"]
        );
        for bad in ["", "two words", "a/b", "user@host", "x\ny"] {
            assert!(HostHeader::parse(Some(bad)).is_err(), "{bad}");
        }
    }
}
