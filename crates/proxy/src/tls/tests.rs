//! Tests of TLS listeners: SNI choice, load errors, reloads, OCSP stapling, client CA files,
//! static response headers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use super::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/tls")
        .join(name)
}

fn files(cert: &str, key: &str) -> TlsCertificate {
    TlsCertificate {
        listener: "https".into(),
        cert: fixture(cert),
        key: fixture(key),
        ..TlsCertificate::default()
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
    names(&listener.inner.resolver.choose(sni).unwrap())
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
            ..TlsCertificate::default()
        }],
    )
    .unwrap();
    let files = vec![TlsCertificate {
        listener: "https".into(),
        cert: cert.clone(),
        key: key.clone(),
        ..TlsCertificate::default()
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

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gk-tls-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn an_ocsp_response_is_stapled_to_its_certificate_and_a_bad_one_refused() {
    let dir = temp_dir("ocsp");
    let response = dir.join("a.ocsp");
    std::fs::write(&response, [0x30, 0x03, 0x0a, 0x01, 0x06]).unwrap();
    let with_ocsp = TlsCertificate {
        ocsp: Some(response.clone()),
        ..files("a.crt", "a.key")
    };
    let listener =
        TlsListener::new("https", vec![with_ocsp.clone(), files("b.crt", "b.key")]).unwrap();
    let chosen = |sni| listener.inner.resolver.choose(Some(sni)).unwrap();
    assert_eq!(
        chosen("a.test").ocsp.as_deref(),
        Some(&[0x30, 0x03, 0x0a, 0x01, 0x06][..])
    );
    assert_eq!(chosen("b.test").ocsp, None);

    // Re-read on reload: a new response is stapled, a file that is not DER refused.
    std::fs::write(&response, [0x30, 0x01, 0x00]).unwrap();
    listener.prepare(vec![with_ocsp.clone()]).unwrap().apply();
    assert_eq!(
        chosen("a.test").ocsp.as_deref(),
        Some(&[0x30, 0x01, 0x00][..])
    );
    std::fs::write(&response, "-----BEGIN OCSP-----").unwrap();
    let e = listener.prepare(vec![with_ocsp]).err().unwrap();
    assert!(matches!(e, TlsError::Ocsp { .. }), "{e}");
    assert!(e.to_string().contains("a.ocsp"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_client_ca_file_is_read_and_its_errors_name_it() {
    let with_ca = |ca: &str| TlsCertificate {
        settings: TlsSettings {
            client_ca: Some(fixture(ca)),
            client_auth: Some(settings::ClientAuth::Optional),
            ..TlsSettings::default()
        },
        ..files("a.crt", "a.key")
    };
    TlsListener::new("https", vec![with_ca("b.crt")]).unwrap();
    check_certificates(&[with_ca("b.crt")]).unwrap();
    let missing = check_certificates(&[with_ca("missing-ca.pem")])
        .unwrap_err()
        .to_string();
    assert!(missing.contains("missing-ca.pem"), "{missing}");
    let not_pem = check_certificates(&[with_ca("README.md")])
        .unwrap_err()
        .to_string();
    assert!(
        not_pem.contains("README.md") && not_pem.contains("no PEM certificate"),
        "{not_pem}"
    );
}

#[test]
fn static_response_headers_replace_the_backend_s_and_reload_with_the_files() {
    let with_headers = |value: &str| TlsCertificate {
        settings: TlsSettings {
            response_headers: Some(
                [("strict-transport-security".to_owned(), value.to_owned())].into(),
            ),
            ..TlsSettings::default()
        },
        ..files("a.crt", "a.key")
    };
    let listener = TlsListener::new("https", vec![with_headers("max-age=1")]).unwrap();
    let mut headers = HeaderMap::new();
    headers.append("strict-transport-security", "max-age=0".parse().unwrap());
    headers.append("strict-transport-security", "from-backend".parse().unwrap());
    headers.append("x-other", "kept".parse().unwrap());
    listener.add_response_headers(&mut headers);
    let hsts: Vec<_> = headers
        .get_all("strict-transport-security")
        .iter()
        .collect();
    assert_eq!(hsts, ["max-age=1"]);
    assert_eq!(headers["x-other"], "kept");

    listener
        .prepare(vec![with_headers("max-age=63072000")])
        .unwrap()
        .apply();
    listener.add_response_headers(&mut headers);
    assert_eq!(headers["strict-transport-security"], "max-age=63072000");
    // Without the key, nothing is added.
    listener
        .prepare(vec![files("a.crt", "a.key")])
        .unwrap()
        .apply();
    let mut fresh = HeaderMap::new();
    listener.add_response_headers(&mut fresh);
    assert!(fresh.is_empty());
}

#[test]
fn check_certificates_applies_each_listener_s_settings() {
    let tls13_with_tls12_suites = TlsCertificate {
        settings: TlsSettings {
            min_version: Some(settings::TlsMinVersion::Tls13),
            ciphers: Some(vec!["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".into()]),
            ..TlsSettings::default()
        },
        ..files("a.crt", "a.key")
    };
    let e = check_certificates(&[tls13_with_tls12_suites]).unwrap_err();
    assert!(e.to_string().contains("listener `https`"), "{e}");
    let mut other = files("b.crt", "b.key");
    other.listener = "other".into();
    check_certificates(&[files("a.crt", "a.key"), other]).unwrap();
}
