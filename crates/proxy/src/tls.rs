//! TLS for listeners: a listener's certificates (chosen by SNI), its settings (lowest version,
//! cipher suites, client certificates, static response headers; [`settings`]) and swapping
//! them while it serves: a reload's [`ListenerControl::apply`](crate::ListenerControl::apply)
//! loads every TLS listener's files first and swaps them in only if all load.
//!
//! A TLS listener has one or more certificates. The client's SNI name picks the first one valid
//! for it (by its DNS subject alternative names, wildcards included); without SNI, or when no
//! certificate matches, the first certificate is served, with its OCSP response stapled if it has
//! one. ALPN offers `h2` and `http/1.1`.
//!
//! - [`certificate`]: reading certificates, keys, OCSP responses and the client CA file;
//! - [`settings`]: the listener settings of `[[tls]]` tables, checked;
//! - [`client_cert`]: the verified client certificate passed on in a request header.

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use http::HeaderMap;
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

mod certificate;
pub(crate) mod client_cert;
pub mod settings;

use certificate::{client_verifier, load_certificate, SniResolver};
use settings::{response_headers, ResponseHeaders, TlsSettingError, TlsSettings};

/// One certificate of a TLS listener (one `[[tls]]` table): the PEM files of its chain and
/// private key, its OCSP response, and the listener's settings this table gives. A listener
/// with at least one is a TLS listener.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsCertificate {
    /// The name of the listener that serves it.
    pub listener: String,
    /// PEM file with the certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM file with the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// DER file with the OCSP response stapled to this certificate (`ocsp`; default none).
    pub ocsp: Option<PathBuf>,
    /// The listener's settings as this table gives them.
    pub settings: TlsSettings,
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
        /// What is wrong, in words (`certificate::describe_pem_error`).
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
    /// The OCSP response file is not a DER OCSP response.
    #[error("listener `{listener}`: {} is not a DER OCSP response (make one with `openssl ocsp ... -respout FILE`)", path.display())]
    Ocsp {
        /// The listener.
        listener: String,
        /// The file.
        path: PathBuf,
    },
    /// The client CA file cannot verify client certificates.
    #[error("listener `{listener}`: client_ca {}: {what}", path.display())]
    ClientCa {
        /// The listener.
        listener: String,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// A setting of the listener cannot be used.
    #[error("listener `{listener}`: {key}: {source}")]
    Setting {
        /// The listener.
        listener: String,
        /// The key.
        key: String,
        /// What is wrong.
        #[source]
        source: TlsSettingError,
    },
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

/// Reads every listener's certificates, keys, OCSP responses and client CA files and checks its
/// settings, as starting the proxy would, and reports the first problem (for checking a
/// configuration before starting).
pub fn check_certificates(certificates: &[TlsCertificate]) -> Result<(), TlsError> {
    let mut listeners: Vec<&str> = Vec::new();
    for files in certificates {
        if !listeners.contains(&files.listener.as_str()) {
            listeners.push(&files.listener);
        }
    }
    for listener in listeners {
        let files = certificates.iter().filter(|c| c.listener == listener);
        Loaded::read(listener, files, Arc::new(SniResolver::default()))?;
    }
    Ok(())
}

/// A TLS listener's files read and its settings applied, not yet served.
struct Loaded {
    certificates: Vec<Arc<CertifiedKey>>,
    config: Arc<ServerConfig>,
    response_headers: Arc<ResponseHeaders>,
}

impl Loaded {
    /// Reads the tables `files` of `listener`; the configuration chooses certificates with
    /// `resolver` (where [`Loaded::certificates`] go when served).
    fn read<'a>(
        listener: &str,
        files: impl IntoIterator<Item = &'a TlsCertificate> + Clone,
        resolver: Arc<SniResolver>,
    ) -> Result<Loaded, TlsError> {
        let settings = TlsSettings::merged(files.clone());
        let setting_error = |key: &str, source| TlsError::Setting {
            listener: listener.to_owned(),
            key: key.to_owned(),
            source,
        };
        let provider = Arc::new(
            settings
                .provider()
                .map_err(|e| setting_error("ciphers", e))?,
        );
        let certificates = files
            .into_iter()
            .map(|files| load_certificate(listener, files, &provider))
            .collect::<Result<Vec<_>, _>>()?;
        let config_error = |source| TlsError::Config {
            listener: listener.to_owned(),
            source: Box::new(source),
        };
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(settings.versions())
            .map_err(config_error)?;
        let builder = match &settings.client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => builder.with_client_cert_verifier(client_verifier(
                listener,
                ca,
                settings.client_auth.unwrap_or_default(),
                provider,
            )?),
        };
        let mut config = builder.with_cert_resolver(resolver);
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let response_headers = match &settings.response_headers {
            Some(headers) => {
                response_headers(headers).map_err(|(key, e)| setting_error(&key, e))?
            }
            None => Vec::new(),
        };
        Ok(Loaded {
            certificates,
            config: Arc::new(config),
            response_headers: Arc::new(response_headers),
        })
    }
}

/// What a TLS listener serves now; replaced whole by a reload.
#[derive(Debug)]
struct ListenerTls {
    listener: Arc<str>,
    resolver: Arc<SniResolver>,
    config: ArcSwap<ServerConfig>,
    response_headers: ArcSwap<ResponseHeaders>,
}

impl ListenerTls {
    fn load(&self, files: &[TlsCertificate]) -> Result<Loaded, TlsError> {
        Loaded::read(&self.listener, files, self.resolver.clone())
    }
}

/// The TLS side of one listener: its certificates and settings, and an acceptor for each new
/// connection. Clones share them.
#[derive(Clone)]
pub(crate) struct TlsListener {
    inner: Arc<ListenerTls>,
}

impl std::fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsListener")
            .field("listener", &self.inner.listener)
            .field("certificates", &self.certificate_count())
            .finish_non_exhaustive()
    }
}

impl TlsListener {
    /// Loads the tables `files` of `listener` (at least one) and builds its TLS setup.
    pub(crate) fn new(listener: &str, files: Vec<TlsCertificate>) -> Result<Self, TlsError> {
        let resolver = Arc::new(SniResolver::default());
        let loaded = Loaded::read(listener, &files, resolver.clone())?;
        resolver.certificates.store(Arc::new(loaded.certificates));
        Ok(TlsListener {
            inner: Arc::new(ListenerTls {
                listener: Arc::from(listener),
                resolver,
                config: ArcSwap::new(loaded.config),
                response_headers: ArcSwap::new(loaded.response_headers),
            }),
        })
    }

    /// The acceptor that runs the handshake of a new connection, with the settings served now.
    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.inner.config.load_full())
    }

    /// Sets the listener's static response headers on `headers` (replacing those of the same
    /// name).
    pub(crate) fn add_response_headers(&self, headers: &mut HeaderMap) {
        for (name, value) in self.inner.response_headers.load().iter() {
            headers.insert(name.clone(), value.clone());
        }
    }

    /// How many certificates the listener serves now.
    pub(crate) fn certificate_count(&self) -> usize {
        self.inner.resolver.certificates.load().len()
    }

    /// Loads `files` as this listener's next certificates and settings, without serving them
    /// yet.
    pub(crate) fn prepare(&self, files: Vec<TlsCertificate>) -> Result<CertificateSwap, TlsError> {
        Ok(CertificateSwap {
            target: self.inner.clone(),
            loaded: self.inner.load(&files)?,
        })
    }
}

/// Certificates and settings loaded for a TLS listener, served once [`CertificateSwap::apply`]
/// runs.
pub(crate) struct CertificateSwap {
    target: Arc<ListenerTls>,
    loaded: Loaded,
}

impl CertificateSwap {
    /// How many certificates were loaded.
    pub(crate) fn len(&self) -> usize {
        self.loaded.certificates.len()
    }

    /// Serves the loaded certificates and settings to new handshakes (open connections keep
    /// theirs; their next responses get the new static headers); returns how many certificates
    /// are served now.
    pub(crate) fn apply(self) -> usize {
        let Loaded {
            certificates,
            config,
            response_headers,
        } = self.loaded;
        let count = certificates.len();
        self.target
            .resolver
            .certificates
            .store(Arc::new(certificates));
        self.target.config.store(config);
        self.target.response_headers.store(response_headers);
        count
    }
}

#[cfg(test)]
mod tests;
