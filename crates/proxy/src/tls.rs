//! TLS for listeners: loading PEM certificate chains and private keys, choosing a listener's
//! certificate by SNI, and swapping a listener's certificates while it serves: a reload's
//! [`ListenerControl::apply`](crate::ListenerControl::apply) loads every TLS listener's files
//! first and swaps them in only if all load.
//!
//! A TLS listener has one or more certificates. The client's SNI name picks the first one valid
//! for it (by its DNS subject alternative names, wildcards included); without SNI, or when no
//! certificate matches, the first certificate is served. ALPN offers `h2` and `http/1.1`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

/// One certificate of a TLS listener: the PEM files of its chain and private key. A listener
/// with at least one is a TLS listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsCertificate {
    /// The name of the listener that serves it.
    pub listener: String,
    /// PEM file with the certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// A certificate or key that cannot be used. Every variant names the listener and the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read.
    #[error("listener `{listener}`: cannot read {}: {source}", path.display())]
    Read {
        /// The listener.
        listener: String,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The certificate file has no `CERTIFICATE` section.
    #[error("listener `{listener}`: {} holds no PEM certificate", path.display())]
    NoCertificate {
        /// The listener.
        listener: String,
        /// The file.
        path: PathBuf,
    },
    /// The key file has no private key section.
    #[error("listener `{listener}`: {} holds no PEM private key", path.display())]
    NoKey {
        /// The listener.
        listener: String,
        /// The file.
        path: PathBuf,
    },
    /// A file is not valid PEM.
    #[error("listener `{listener}`: {} is not valid PEM: {what}", path.display())]
    Pem {
        /// The listener.
        listener: String,
        /// The file.
        path: PathBuf,
        /// What is wrong, in words ([`describe_pem_error`]).
        what: String,
    },
    /// The leaf certificate is not a valid X.509 certificate.
    #[error("listener `{listener}`: {} is not a usable certificate: {source}", path.display())]
    Certificate {
        /// The listener.
        listener: String,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: webpki::Error,
    },
    /// The key is not supported or does not belong to the certificate.
    #[error("listener `{listener}`: key {} cannot be used with certificate {}: {source}", key.display(), cert.display())]
    Key {
        /// The listener.
        listener: String,
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What is wrong.
        #[source]
        source: Box<rustls::Error>,
    },
    /// Certificates are given for a listener that does not exist.
    #[error("TLS certificates are configured for `{0}`, which is not a listener")]
    UnknownListener(String),
    /// rustls refused the configuration.
    #[error("listener `{listener}`: cannot set up TLS: {source}")]
    Config {
        /// The listener.
        listener: String,
        /// The cause.
        #[source]
        source: Box<rustls::Error>,
    },
}

/// Reads one certificate chain and its key, checking that they belong together.
fn load_certificate(
    listener: &str,
    files: &TlsCertificate,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            listener: listener.to_owned(),
            path: path.to_owned(),
            source,
        })
    };
    let pem_error = |path: &Path, source: pem::Error| TlsError::Pem {
        listener: listener.to_owned(),
        path: path.to_owned(),
        what: describe_pem_error(&source),
    };
    let cert_pem = read(&files.cert)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(&files.cert, e))?;
    let Some(leaf) = chain.first() else {
        return Err(TlsError::NoCertificate {
            listener: listener.to_owned(),
            path: files.cert.clone(),
        });
    };
    let names = webpki::EndEntityCert::try_from(leaf)
        .map(|cert| cert.valid_dns_names().collect::<Vec<_>>().join(","))
        .map_err(|source| TlsError::Certificate {
            listener: listener.to_owned(),
            path: files.cert.clone(),
            source,
        })?;
    let key_pem = read(&files.key)?;
    let key = match PrivateKeyDer::from_pem_slice(&key_pem) {
        Ok(key) => key,
        Err(pem::Error::NoItemsFound) => {
            return Err(TlsError::NoKey {
                listener: listener.to_owned(),
                path: files.key.clone(),
            })
        }
        Err(e) => return Err(pem_error(&files.key, e)),
    };
    let certified =
        CertifiedKey::from_der(chain, key, provider).map_err(|source| TlsError::Key {
            listener: listener.to_owned(),
            cert: files.cert.clone(),
            key: files.key.clone(),
            source: Box::new(source),
        })?;
    tracing::info!(listener, cert = %files.cert.display(), %names, "TLS certificate loaded");
    Ok(Arc::new(certified))
}

/// Reads every certificate and key, as starting the proxy would, and reports the first one that
/// cannot be used (for checking a configuration before starting).
pub fn check_certificates(certificates: &[TlsCertificate]) -> Result<(), TlsError> {
    let provider = rustls::crypto::ring::default_provider();
    for files in certificates {
        load_certificate(&files.listener, files, &provider)?;
    }
    Ok(())
}

/// Whether `cert` is valid for the DNS name `name`.
fn valid_for(cert: &CertifiedKey, name: &ServerName<'_>) -> bool {
    cert.end_entity_cert()
        .ok()
        .and_then(|der| webpki::EndEntityCert::try_from(der).ok())
        .is_some_and(|leaf| leaf.verify_is_valid_for_subject_name(name).is_ok())
}

/// Picks a listener's certificate by SNI; the set can be replaced while handshakes run.
#[derive(Debug)]
struct SniResolver {
    certificates: ArcSwap<Vec<Arc<CertifiedKey>>>,
}

impl SniResolver {
    /// The certificate for the SNI name `sni` (the first one valid for it), else the first.
    fn choose(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        let certificates = self.certificates.load();
        let matching = sni
            .and_then(|sni| ServerName::try_from(sni).ok())
            .and_then(|name| certificates.iter().find(|c| valid_for(c, &name)));
        matching.or_else(|| certificates.first()).cloned()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.choose(client_hello.server_name())
    }
}

/// A TLS listener's certificates: how they are loaded and what is served now.
#[derive(Debug)]
struct ListenerCertificates {
    listener: Arc<str>,
    provider: Arc<CryptoProvider>,
    resolver: Arc<SniResolver>,
}

impl ListenerCertificates {
    fn load_files(&self, files: &[TlsCertificate]) -> Result<Vec<Arc<CertifiedKey>>, TlsError> {
        files
            .iter()
            .map(|files| load_certificate(&self.listener, files, &self.provider))
            .collect()
    }
}

/// The TLS side of one listener: the acceptor for its connections and its certificates. Clones
/// share the certificates.
#[derive(Clone)]
pub(crate) struct TlsListener {
    acceptor: TlsAcceptor,
    certificates: Arc<ListenerCertificates>,
}

impl std::fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsListener")
            .field("listener", &self.certificates.listener)
            .field("certificates", &self.certificate_count())
            .finish_non_exhaustive()
    }
}

impl TlsListener {
    /// Loads the certificates `files` of `listener` (at least one) and builds its TLS setup.
    pub(crate) fn new(listener: &str, files: Vec<TlsCertificate>) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let resolver = Arc::new(SniResolver {
            certificates: ArcSwap::from_pointee(Vec::new()),
        });
        let certificates = Arc::new(ListenerCertificates {
            listener: Arc::from(listener),
            provider: provider.clone(),
            resolver: resolver.clone(),
        });
        resolver
            .certificates
            .store(Arc::new(certificates.load_files(&files)?));
        let config_error = |source| TlsError::Config {
            listener: listener.to_owned(),
            source: Box::new(source),
        };
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(config_error)?
            .with_no_client_auth()
            .with_cert_resolver(resolver);
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(TlsListener {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            certificates,
        })
    }

    /// The acceptor that runs the handshake of a new connection.
    pub(crate) fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    /// How many certificates the listener serves now.
    pub(crate) fn certificate_count(&self) -> usize {
        self.certificates.resolver.certificates.load().len()
    }

    /// Loads `files` as this listener's next certificates, without serving them yet.
    pub(crate) fn prepare(&self, files: Vec<TlsCertificate>) -> Result<CertificateSwap, TlsError> {
        let loaded = self.certificates.load_files(&files)?;
        Ok(CertificateSwap {
            target: self.certificates.clone(),
            loaded,
        })
    }
}

/// Certificates loaded for a TLS listener, served once [`CertificateSwap::apply`] runs.
pub(crate) struct CertificateSwap {
    target: Arc<ListenerCertificates>,
    loaded: Vec<Arc<CertifiedKey>>,
}

impl CertificateSwap {
    /// How many certificates were loaded.
    pub(crate) fn len(&self) -> usize {
        self.loaded.len()
    }

    /// Serves the loaded certificates to new handshakes (open connections keep theirs); returns
    /// how many certificates are served now.
    pub(crate) fn apply(self) -> usize {
        let count = self.loaded.len();
        self.target
            .resolver
            .certificates
            .store(Arc::new(self.loaded));
        count
    }
}

/// A PEM parse error in words: the bytes the parser quotes (a section label, a line) shown as text
/// (cut at 80 characters), not as a list of numbers.
fn describe_pem_error(error: &pem::Error) -> String {
    let text = |bytes: &[u8]| {
        let text = String::from_utf8_lossy(bytes);
        let text = text.trim();
        match text.char_indices().nth(80) {
            Some((cut, _)) => format!("{}…", &text[..cut]),
            None => text.to_owned(),
        }
    };
    match error {
        pem::Error::MissingSectionEnd { end_marker } => {
            format!("its {} section has no END line", text(end_marker))
        }
        pem::Error::IllegalSectionStart { line } => {
            format!("a section starts with a malformed line `{}`", text(line))
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/tls")
            .join(name)
    }

    #[test]
    fn pem_errors_quote_the_file_as_text() {
        let unterminated = b"-----BEGIN CERTIFICATE-----\nMIIB\n";
        let error = CertificateDer::pem_slice_iter(unterminated)
            .collect::<Result<Vec<_>, _>>()
            .unwrap_err();
        let what = describe_pem_error(&error);
        assert_eq!(what, "its CERTIFICATE section has no END line");
        let bad_start = b"-----BEGIN CERTIFICATE\nMIIB\n";
        if let Err(error) = CertificateDer::pem_slice_iter(bad_start).collect::<Result<Vec<_>, _>>()
        {
            let what = describe_pem_error(&error);
            assert!(!what.contains("[45"), "{what}");
        }
    }

    fn files(cert: &str, key: &str) -> TlsCertificate {
        TlsCertificate {
            listener: "https".into(),
            cert: fixture(cert),
            key: fixture(key),
        }
    }

    fn names(cert: &CertifiedKey) -> Vec<String> {
        let der = cert.end_entity_cert().unwrap();
        webpki::EndEntityCert::try_from(der)
            .unwrap()
            .valid_dns_names()
            .map(str::to_owned)
            .collect()
    }

    fn served(listener: &TlsListener, sni: Option<&str>) -> Vec<String> {
        names(&listener.certificates.resolver.choose(sni).unwrap())
    }

    #[test]
    fn sni_picks_the_matching_certificate_and_defaults_to_the_first() {
        let listener = TlsListener::new(
            "https",
            vec![files("a.crt", "a.key"), files("b.crt", "b.key")],
        )
        .unwrap();
        assert_eq!(served(&listener, Some("a.test")), ["a.test"]);
        assert_eq!(served(&listener, Some("b.test")), ["b.test", "*.b.test"]);
        assert_eq!(served(&listener, Some("x.b.test")), ["b.test", "*.b.test"]);
        assert_eq!(served(&listener, Some("B.TEST")), ["b.test", "*.b.test"]);
        assert_eq!(served(&listener, Some("other.test")), ["a.test"]);
        assert_eq!(served(&listener, None), ["a.test"]);
        assert_eq!(served(&listener, Some("y.x.b.test")), ["a.test"]);
    }

    #[test]
    fn load_errors_name_the_listener_and_file() {
        let err = |cert: &str, key: &str| {
            TlsListener::new("https", vec![files(cert, key)])
                .unwrap_err()
                .to_string()
        };
        let missing = err("missing.crt", "a.key");
        assert!(
            missing.contains("listener `https`") && missing.contains("missing.crt"),
            "{missing}"
        );
        let swapped = err("a.key", "a.crt");
        assert!(
            swapped.contains("a.key") && swapped.contains("no PEM certificate"),
            "{swapped}"
        );
        let no_key = err("a.crt", "b.crt");
        assert!(
            no_key.contains("b.crt") && no_key.contains("no PEM private key"),
            "{no_key}"
        );
        let mismatch = err("a.crt", "b.key");
        assert!(
            mismatch.contains("b.key") && mismatch.contains("a.crt"),
            "{mismatch}"
        );
        let not_pem = err("README.md", "a.key");
        assert!(not_pem.contains("README.md"), "{not_pem}");
    }

    #[test]
    fn a_certificate_swap_is_loaded_first_and_applied_whole() {
        let dir = std::env::temp_dir().join(format!("gk-tls-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        std::fs::copy(fixture("a.crt"), &cert).unwrap();
        std::fs::copy(fixture("a.key"), &key).unwrap();
        let listener = TlsListener::new(
            "https",
            vec![TlsCertificate {
                listener: "https".into(),
                cert: cert.clone(),
                key: key.clone(),
            }],
        )
        .unwrap();
        let files = vec![TlsCertificate {
            listener: "https".into(),
            cert: cert.clone(),
            key: key.clone(),
        }];
        assert_eq!(served(&listener, Some("b.test")), ["a.test"]);

        // A certificate without its key: loading fails and the old certificate stays.
        std::fs::copy(fixture("b.crt"), &cert).unwrap();
        let e = listener.prepare(files.clone()).err().unwrap().to_string();
        assert!(e.contains("key.pem"), "{e}");
        assert_eq!(served(&listener, Some("b.test")), ["a.test"]);

        std::fs::copy(fixture("b.key"), &key).unwrap();
        assert_eq!(listener.prepare(files).unwrap().apply(), 1);
        assert_eq!(served(&listener, Some("b.test")), ["b.test", "*.b.test"]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
