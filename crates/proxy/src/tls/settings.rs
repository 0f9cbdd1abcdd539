//! A TLS listener's settings besides its certificates ([`TlsSettings`]): the lowest TLS
//! version it accepts, its cipher suites, client certificate verification (mTLS) and the static
//! headers added to its responses. They are written in the listener's `[[tls]]` tables; a key
//! may be given in any of them, and a key given in several must have the same value
//! ([`check_listener_settings`]). Unset keys keep rustls' safe defaults: TLS 1.2 and 1.3, every
//! suite of the `ring` provider (AEAD with forward secrecy), no client certificates.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;

use http::{HeaderName, HeaderValue};
use rustls::crypto::CryptoProvider;
use rustls::SupportedCipherSuite;

use super::TlsCertificate;

/// The lowest TLS version a listener accepts (`min_version`, default `"1.2"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsMinVersion {
    /// TLS 1.2 and 1.3.
    #[default]
    Tls12,
    /// TLS 1.3 only.
    Tls13,
}

impl FromStr for TlsMinVersion {
    type Err = TlsSettingError;

    fn from_str(value: &str) -> Result<Self, TlsSettingError> {
        match value {
            "1.2" => Ok(TlsMinVersion::Tls12),
            "1.3" => Ok(TlsMinVersion::Tls13),
            other => Err(TlsSettingError::MinVersion(other.to_owned())),
        }
    }
}

impl std::fmt::Display for TlsMinVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TlsMinVersion::Tls12 => "1.2",
            TlsMinVersion::Tls13 => "1.3",
        })
    }
}

/// Whether a client must present a certificate signed by `client_ca` (`client_auth`, default
/// `"required"` when `client_ca` is set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// A handshake without a valid client certificate fails.
    #[default]
    Required,
    /// A client may present no certificate; one it presents must be valid.
    Optional,
}

impl FromStr for ClientAuth {
    type Err = TlsSettingError;

    fn from_str(value: &str) -> Result<Self, TlsSettingError> {
        match value {
            "required" => Ok(ClientAuth::Required),
            "optional" => Ok(ClientAuth::Optional),
            other => Err(TlsSettingError::ClientAuth(other.to_owned())),
        }
    }
}

impl std::fmt::Display for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ClientAuth::Required => "required",
            ClientAuth::Optional => "optional",
        })
    }
}

/// A TLS listener's settings as one `[[tls]]` table gives them (`None`: not given there).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsSettings {
    /// `min_version`: the lowest TLS version accepted (default 1.2).
    pub min_version: Option<TlsMinVersion>,
    /// `ciphers`: the cipher suites offered, by rustls name, in order of preference (default:
    /// all of [`cipher_suite_names`]).
    pub ciphers: Option<Vec<String>>,
    /// `client_ca`: PEM file of the CAs whose client certificates are accepted (default: no
    /// client certificates asked for).
    pub client_ca: Option<PathBuf>,
    /// `client_auth`: whether a client certificate is required (needs `client_ca`).
    pub client_auth: Option<ClientAuth>,
    /// `response_headers`: headers set on every response of the listener (replacing one of the
    /// same name).
    pub response_headers: Option<BTreeMap<String, String>>,
}

/// A TLS setting that cannot be used (the key is said where it is reported).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsSettingError {
    /// `min_version` is not `1.2` or `1.3`.
    #[error("`{0}` must be \"1.2\" or \"1.3\"")]
    MinVersion(String),
    /// `client_auth` is not `required` or `optional`.
    #[error("`{0}` must be \"required\" or \"optional\"")]
    ClientAuth(String),
    /// A cipher suite name rustls does not have.
    #[error("unknown cipher suite `{name}` (known: {known})")]
    UnknownCipher {
        /// The name given.
        name: String,
        /// The known names, comma-separated.
        known: String,
    },
    /// `ciphers` is empty.
    #[error("must name at least one cipher suite (known: {0})")]
    NoCiphers(String),
    /// `min_version = "1.3"` with only TLS 1.2 suites.
    #[error("no TLS 1.3 cipher suite, but min_version is 1.3 (TLS 1.3 suites: {0})")]
    NoTls13Cipher(String),
    /// `client_auth` without `client_ca`.
    #[error("needs client_ca (the CA file that signs client certificates)")]
    ClientAuthWithoutCa,
    /// A response header name that is not a valid header name.
    #[error("`{0}` is not a valid header name")]
    HeaderName(String),
    /// A response header the proxy manages itself.
    #[error("`{0}` cannot be set here (the proxy manages it)")]
    ManagedHeader(String),
    /// A response header value with characters a header cannot carry.
    #[error("the value of `{0}` is not a valid header value")]
    HeaderValue(String),
    /// Two tables of one listener give a key different values.
    #[error("differs from {first} for listener `{listener}` (give a listener's setting once, or the same in each of its [[tls]] tables)")]
    Conflict {
        /// The key of the first value (`tls[0].min_version`).
        first: String,
        /// The listener.
        listener: String,
    },
}

/// The cipher suites of the provider every listener uses (`ring`), in its order of preference.
fn all_cipher_suites() -> Vec<SupportedCipherSuite> {
    rustls::crypto::ring::default_provider().cipher_suites
}

/// The rustls name of a suite (`TLS13_AES_128_GCM_SHA256`).
fn suite_name(suite: &SupportedCipherSuite) -> String {
    format!("{:?}", suite.suite())
}

/// The names `ciphers` accepts, comma-separated.
pub fn cipher_suite_names() -> String {
    let names: Vec<String> = all_cipher_suites().iter().map(suite_name).collect();
    names.join(", ")
}

/// The suites `names` stand for, in their order; an unknown name is an error.
fn cipher_suites(names: &[String]) -> Result<Vec<SupportedCipherSuite>, TlsSettingError> {
    let all = all_cipher_suites();
    if names.is_empty() {
        return Err(TlsSettingError::NoCiphers(cipher_suite_names()));
    }
    names
        .iter()
        .map(|name| {
            all.iter()
                .find(|suite| suite_name(suite).eq_ignore_ascii_case(name.trim()))
                .copied()
                .ok_or_else(|| TlsSettingError::UnknownCipher {
                    name: name.clone(),
                    known: cipher_suite_names(),
                })
        })
        .collect()
}

/// Response headers the proxy writes itself, which a static header must not replace.
const MANAGED_HEADERS: [&str; 8] = [
    "connection",
    "content-length",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The static response headers, ready to set on responses.
pub(crate) type ResponseHeaders = Vec<(HeaderName, HeaderValue)>;

/// `response_headers` checked: valid names and values, none the proxy manages. The error is
/// prefixed with the header's key (`response_headers.NAME`).
pub(crate) fn response_headers(
    headers: &BTreeMap<String, String>,
) -> Result<ResponseHeaders, (String, TlsSettingError)> {
    headers
        .iter()
        .map(|(name, value)| {
            let key = format!("response_headers.{name}");
            let header = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| (key.clone(), TlsSettingError::HeaderName(name.clone())))?;
            if MANAGED_HEADERS.contains(&header.as_str()) {
                return Err((key, TlsSettingError::ManagedHeader(name.clone())));
            }
            let value = HeaderValue::from_str(value)
                .map_err(|_| (key, TlsSettingError::HeaderValue(name.clone())))?;
            Ok((header, value))
        })
        .collect()
}

/// The versions of `min_version = "1.3"`.
static TLS13_ONLY: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

impl TlsSettings {
    /// Checks the values of one table; the error comes with its key (`ciphers`,
    /// `response_headers.NAME`).
    pub fn validate(&self) -> Result<(), (String, TlsSettingError)> {
        if let Some(names) = &self.ciphers {
            let suites = cipher_suites(names).map_err(|e| ("ciphers".to_owned(), e))?;
            let tls13 = |s: &SupportedCipherSuite| s.version() == &rustls::version::TLS13;
            if self.min_version == Some(TlsMinVersion::Tls13) && !suites.iter().any(tls13) {
                let names: Vec<String> = all_cipher_suites()
                    .iter()
                    .filter(|s| tls13(s))
                    .map(suite_name)
                    .collect();
                return Err((
                    "ciphers".to_owned(),
                    TlsSettingError::NoTls13Cipher(names.join(", ")),
                ));
            }
        }
        if self.client_auth.is_some() && self.client_ca.is_none() {
            return Err((
                "client_auth".to_owned(),
                TlsSettingError::ClientAuthWithoutCa,
            ));
        }
        if let Some(headers) = &self.response_headers {
            response_headers(headers)?;
        }
        Ok(())
    }

    /// The settings of a listener from its tables `files`: each key from the first table that
    /// gives it.
    pub(crate) fn merged<'a>(files: impl IntoIterator<Item = &'a TlsCertificate>) -> Self {
        let mut merged = TlsSettings::default();
        for file in files {
            let given = &file.settings;
            merged.min_version = merged.min_version.or(given.min_version);
            merged.ciphers = merged.ciphers.or_else(|| given.ciphers.clone());
            merged.client_ca = merged.client_ca.or_else(|| given.client_ca.clone());
            merged.client_auth = merged.client_auth.or(given.client_auth);
            merged.response_headers = merged
                .response_headers
                .or_else(|| given.response_headers.clone());
        }
        merged
    }

    /// The crypto provider with the configured suites (all of `ring`'s by default).
    pub(crate) fn provider(&self) -> Result<CryptoProvider, TlsSettingError> {
        let mut provider = rustls::crypto::ring::default_provider();
        if let Some(names) = &self.ciphers {
            provider.cipher_suites = cipher_suites(names)?;
        }
        Ok(provider)
    }

    /// The TLS versions accepted.
    pub(crate) fn versions(&self) -> &'static [&'static rustls::SupportedProtocolVersion] {
        match self.min_version.unwrap_or_default() {
            TlsMinVersion::Tls12 => rustls::DEFAULT_VERSIONS,
            TlsMinVersion::Tls13 => TLS13_ONLY,
        }
    }
}

/// Checks every table's settings and that the tables of one listener agree: the error names the
/// key (`tls[1].min_version`).
pub fn check_listener_settings(tables: &[TlsCertificate]) -> Result<(), (String, TlsSettingError)> {
    for (i, table) in tables.iter().enumerate() {
        table
            .settings
            .validate()
            .map_err(|(key, e)| (format!("tls[{i}].{key}"), e))?;
        let given = &table.settings;
        for (j, earlier) in tables[..i].iter().enumerate() {
            if earlier.listener != table.listener {
                continue;
            }
            let before = &earlier.settings;
            let differs = [
                (
                    "min_version",
                    differ(&before.min_version, &given.min_version),
                ),
                ("ciphers", differ(&before.ciphers, &given.ciphers)),
                ("client_ca", differ(&before.client_ca, &given.client_ca)),
                (
                    "client_auth",
                    differ(&before.client_auth, &given.client_auth),
                ),
                (
                    "response_headers",
                    differ(&before.response_headers, &given.response_headers),
                ),
            ];
            if let Some((key, _)) = differs.into_iter().find(|(_, differs)| *differs) {
                return Err((
                    format!("tls[{i}].{key}"),
                    TlsSettingError::Conflict {
                        first: format!("tls[{j}].{key}"),
                        listener: table.listener.clone(),
                    },
                ));
            }
        }
    }
    Ok(())
}

/// Both tables give the key, with different values.
fn differ<T: PartialEq>(a: &Option<T>, b: &Option<T>) -> bool {
    matches!((a, b), (Some(a), Some(b)) if a != b)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn table(listener: &str, settings: TlsSettings) -> TlsCertificate {
        TlsCertificate {
            listener: listener.into(),
            settings,
            ..TlsCertificate::default()
        }
    }

    #[test]
    fn versions_and_client_auth_parse_their_words_only() {
        assert_eq!(
            "1.3".parse::<TlsMinVersion>().unwrap(),
            TlsMinVersion::Tls13
        );
        assert_eq!(
            "1.2".parse::<TlsMinVersion>().unwrap(),
            TlsMinVersion::Tls12
        );
        let e = "1.1".parse::<TlsMinVersion>().unwrap_err().to_string();
        assert_eq!(e, "`1.1` must be \"1.2\" or \"1.3\"");
        assert_eq!(
            "optional".parse::<ClientAuth>().unwrap(),
            ClientAuth::Optional
        );
        assert!("yes".parse::<ClientAuth>().is_err());
        let defaults = TlsSettings::default();
        assert_eq!(defaults.versions().len(), 2);
        let tls13 = TlsSettings {
            min_version: Some(TlsMinVersion::Tls13),
            ..TlsSettings::default()
        };
        assert_eq!(tls13.versions(), [&rustls::version::TLS13]);
    }

    #[test]
    fn ciphers_are_rustls_names_and_unknown_ones_list_the_known() {
        let known = cipher_suite_names();
        assert!(known.contains("TLS13_AES_128_GCM_SHA256"), "{known}");
        assert!(
            known.contains("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"),
            "{known}"
        );
        let settings = |names: &[&str], min_version| TlsSettings {
            ciphers: Some(names.iter().map(|n| n.to_string()).collect()),
            min_version,
            ..TlsSettings::default()
        };
        let chosen = settings(
            &["TLS13_CHACHA20_POLY1305_SHA256", "TLS13_AES_128_GCM_SHA256"],
            None,
        );
        chosen.validate().unwrap();
        let provider = chosen.provider().unwrap();
        let names: Vec<String> = provider.cipher_suites.iter().map(suite_name).collect();
        assert_eq!(
            names,
            ["TLS13_CHACHA20_POLY1305_SHA256", "TLS13_AES_128_GCM_SHA256"]
        );
        let (key, e) = settings(&["TLS_RSA_WITH_RC4_128_MD5"], None)
            .validate()
            .unwrap_err();
        assert_eq!(key, "ciphers");
        let e = e.to_string();
        assert!(
            e.contains("`TLS_RSA_WITH_RC4_128_MD5`") && e.contains("TLS13_AES_256_GCM_SHA384"),
            "{e}"
        );
        assert!(settings(&[], None).validate().is_err());
        let tls12_only = settings(
            &["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"],
            Some(TlsMinVersion::Tls13),
        );
        let (key, e) = tls12_only.validate().unwrap_err();
        assert_eq!(key, "ciphers");
        assert!(matches!(e, TlsSettingError::NoTls13Cipher(_)), "{e}");
    }

    #[test]
    fn response_headers_are_checked_and_managed_ones_refused() {
        let headers = |pairs: &[(&str, &str)]| TlsSettings {
            response_headers: Some(
                pairs
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..TlsSettings::default()
        };
        headers(&[("Strict-Transport-Security", "max-age=63072000")])
            .validate()
            .unwrap();
        let (key, e) = headers(&[("bad name", "x")]).validate().unwrap_err();
        assert_eq!(key, "response_headers.bad name");
        assert!(matches!(e, TlsSettingError::HeaderName(_)));
        let (key, e) = headers(&[("content-length", "1")]).validate().unwrap_err();
        assert_eq!(key, "response_headers.content-length");
        assert!(matches!(e, TlsSettingError::ManagedHeader(_)));
        let (_, e) = headers(&[("x-a", "line\nbreak")]).validate().unwrap_err();
        assert!(matches!(e, TlsSettingError::HeaderValue(_)));
    }

    #[test]
    fn client_auth_needs_a_ca() {
        let settings = TlsSettings {
            client_auth: Some(ClientAuth::Optional),
            ..TlsSettings::default()
        };
        assert_eq!(
            settings.validate().unwrap_err(),
            (
                "client_auth".to_owned(),
                TlsSettingError::ClientAuthWithoutCa
            )
        );
    }

    #[test]
    fn a_listener_s_tables_merge_and_must_agree() {
        let v13 = TlsSettings {
            min_version: Some(TlsMinVersion::Tls13),
            ..TlsSettings::default()
        };
        let v12 = TlsSettings {
            min_version: Some(TlsMinVersion::Tls12),
            ..TlsSettings::default()
        };
        let ca = TlsSettings {
            client_ca: Some("/ca.pem".into()),
            ..TlsSettings::default()
        };
        // Given once, or the same twice, or on another listener: fine.
        let tables = [
            table("a", v13.clone()),
            table("a", ca.clone()),
            table("a", v13.clone()),
            table("b", v12.clone()),
        ];
        check_listener_settings(&tables).unwrap();
        let merged = TlsSettings::merged(tables.iter().filter(|t| t.listener == "a"));
        assert_eq!(merged.min_version, Some(TlsMinVersion::Tls13));
        assert_eq!(merged.client_ca, Some("/ca.pem".into()));
        // Two values for one listener: the second table's key is named.
        let (key, e) = check_listener_settings(&[table("a", v13), table("b", ca), table("a", v12)])
            .unwrap_err();
        assert_eq!(key, "tls[2].min_version");
        assert_eq!(
            e,
            TlsSettingError::Conflict {
                first: "tls[0].min_version".into(),
                listener: "a".into()
            }
        );
    }
}
