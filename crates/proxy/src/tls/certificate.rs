//! Reading a TLS listener's files: each certificate chain with its private key and its stapled
//! OCSP response, the CA file that verifies client certificates, and the SNI resolver that picks
//! a certificate per handshake. Every error names the listener and the file.

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;

use super::settings::ClientAuth;
use super::{TlsCertificate, TlsError};

/// Reads a file of `listener`.
fn read(listener: &str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        listener: listener.to_owned(),
        path: path.to_owned(),
        source,
    })
}

/// The error for a file of `listener` that is not valid PEM.
fn pem_error(listener: &str, path: &Path, source: &pem::Error) -> TlsError {
    TlsError::Pem {
        listener: listener.to_owned(),
        path: path.to_owned(),
        what: describe_pem_error(source),
    }
}

/// The certificates of a PEM file, in order (none is an error).
fn read_certificates(
    listener: &str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(listener, path)?;
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(listener, path, &e))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            listener: listener.to_owned(),
            path: path.to_owned(),
        });
    }
    Ok(chain)
}

/// Reads one certificate chain, its key (checking that they belong together) and its OCSP
/// response, if it has one.
pub(super) fn load_certificate(
    listener: &str,
    files: &TlsCertificate,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = read_certificates(listener, &files.cert)?;
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
    let key_pem = read(listener, &files.key)?;
    let key = match PrivateKeyDer::from_pem_slice(&key_pem) {
        Ok(key) => key,
        Err(pem::Error::NoItemsFound) => {
            return Err(TlsError::NoKey {
                listener: listener.to_owned(),
                path: files.key.clone(),
            })
        }
        Err(e) => return Err(pem_error(listener, &files.key, &e)),
    };
    let mut certified =
        CertifiedKey::from_der(chain, key, provider).map_err(|source| TlsError::Key {
            listener: listener.to_owned(),
            cert: files.cert.clone(),
            key: files.key.clone(),
            source: Box::new(source),
        })?;
    if let Some(ocsp) = &files.ocsp {
        certified.ocsp = Some(read_ocsp(listener, ocsp)?);
    }
    tracing::info!(listener, cert = %files.cert.display(), %names, ocsp = files.ocsp.is_some(), "TLS certificate loaded");
    Ok(Arc::new(certified))
}

/// A DER OCSP response, stapled as it is: only its outer shape is checked (a DER `SEQUENCE`);
/// the client judges its content.
fn read_ocsp(listener: &str, path: &Path) -> Result<Vec<u8>, TlsError> {
    let der = read(listener, path)?;
    // An OCSPResponse is a SEQUENCE (0x30) with a definite length.
    let sequence = der.first() == Some(&0x30) && der.len() > 2;
    if !sequence {
        return Err(TlsError::Ocsp {
            listener: listener.to_owned(),
            path: path.to_owned(),
        });
    }
    Ok(der)
}

/// The verifier of client certificates signed by the CAs in `ca` (a PEM file).
pub(super) fn client_verifier(
    listener: &str,
    ca: &Path,
    auth: ClientAuth,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let ca_error = |what: String| TlsError::ClientCa {
        listener: listener.to_owned(),
        path: ca.to_owned(),
        what,
    };
    let mut roots = RootCertStore::empty();
    for certificate in read_certificates(listener, ca)? {
        roots
            .add(certificate)
            .map_err(|e| ca_error(format!("not a usable CA certificate: {e}")))?;
    }
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    let builder = match auth {
        ClientAuth::Required => builder,
        ClientAuth::Optional => builder.allow_unauthenticated(),
    };
    builder.build().map_err(|e| ca_error(e.to_string()))
}

/// Whether `cert` is valid for the DNS name `name`.
fn valid_for(cert: &CertifiedKey, name: &ServerName<'_>) -> bool {
    cert.end_entity_cert()
        .ok()
        .and_then(|der| webpki::EndEntityCert::try_from(der).ok())
        .is_some_and(|leaf| leaf.verify_is_valid_for_subject_name(name).is_ok())
}

/// Picks a listener's certificate by SNI; the set can be replaced while handshakes run.
#[derive(Debug, Default)]
pub(super) struct SniResolver {
    pub(super) certificates: ArcSwap<Vec<Arc<CertifiedKey>>>,
}

impl SniResolver {
    /// The certificate for the SNI name `sni` (the first one valid for it), else the first.
    pub(super) fn choose(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
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

/// A PEM parse error in words: the bytes the parser quotes (a section label, a line) shown as text
/// (cut at 80 characters), not as a list of numbers.
pub(super) fn describe_pem_error(error: &pem::Error) -> String {
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
}
