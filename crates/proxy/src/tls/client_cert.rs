//! The client certificate of an mTLS connection as the request path passes it on: its subject
//! in the `x-client-cert-subject` request header, which plugins see and the backend gets. The
//! header is removed from every request first, so that a client cannot send its own.

use http::{HeaderMap, HeaderName, HeaderValue};
use rustls::pki_types::CertificateDer;

/// The request header that carries the verified client certificate's subject.
pub const CLIENT_CERT_SUBJECT: HeaderName = HeaderName::from_static("x-client-cert-subject");

/// The subject of a client's leaf certificate (`CN=client, O=Example`), as a header value:
/// characters outside printable ASCII are written `\xNN` (UTF-8 bytes). `None` if the
/// certificate cannot be parsed (rustls verified it, so this is not expected).
pub(crate) fn subject_of(certificate: &CertificateDer<'_>) -> Option<HeaderValue> {
    let (_, parsed) = x509_parser::parse_x509_certificate(certificate.as_ref()).ok()?;
    let subject = parsed.subject().to_string();
    let mut text = String::with_capacity(subject.len());
    for byte in subject.bytes() {
        match byte {
            b' '..=b'~' => text.push(char::from(byte)),
            other => text.push_str(&format!("\\x{other:02X}")),
        }
    }
    HeaderValue::from_str(&text).ok()
}

/// Sets the request's `x-client-cert-subject` to `subject`, removing any the client sent.
pub(crate) fn set_client_cert_header(headers: &mut HeaderMap, subject: Option<&HeaderValue>) {
    headers.remove(CLIENT_CERT_SUBJECT);
    if let Some(subject) = subject {
        headers.insert(CLIENT_CERT_SUBJECT, subject.clone());
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use rustls::pki_types::pem::PemObject;

    use super::*;

    #[test]
    fn the_subject_is_read_and_a_client_sent_header_replaced() {
        let pem =
            std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/tls/a.crt"))
                .unwrap();
        let der = CertificateDer::from_pem_slice(&pem).unwrap();
        let subject = subject_of(&der).unwrap();
        assert!(
            subject.to_str().unwrap().contains("CN=a.test"),
            "{subject:?}"
        );

        let mut headers = HeaderMap::new();
        headers.append(CLIENT_CERT_SUBJECT, HeaderValue::from_static("CN=forged"));
        headers.append(CLIENT_CERT_SUBJECT, HeaderValue::from_static("CN=forged2"));
        set_client_cert_header(&mut headers, Some(&subject));
        assert_eq!(
            headers
                .get_all(CLIENT_CERT_SUBJECT)
                .iter()
                .collect::<Vec<_>>(),
            [&subject]
        );
        set_client_cert_header(&mut headers, None);
        assert!(headers.get(CLIENT_CERT_SUBJECT).is_none());
        assert!(subject_of(&CertificateDer::from(vec![0x30, 0x01])).is_none());
    }
}
