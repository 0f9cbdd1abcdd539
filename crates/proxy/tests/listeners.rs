//! Listener changes while serving ([`ListenerControl::apply`]): added, removed, rebound and
//! kept listeners, failures that change nothing, TLS certificate swaps, and shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use gatekeeper_proxy::{
    ListenerConfig, ListenerControl, ListenerError, Proxy, ProxyConfig, Registry, TlsCertificate,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

fn listener(name: &str, addr: SocketAddr) -> ListenerConfig {
    ListenerConfig {
        name: name.into(),
        addr,
    }
}

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

struct Serving {
    control: ListenerControl,
    hits: Arc<AtomicUsize>,
    stop: Option<oneshot::Sender<()>>,
    done: JoinHandle<()>,
}

impl Serving {
    fn addr(&self, name: &str) -> SocketAddr {
        self.control
            .local_addrs()
            .into_iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("no listener {name}"))
            .1
    }

    fn names(&self) -> Vec<String> {
        self.control
            .local_addrs()
            .into_iter()
            .map(|(n, _)| n)
            .collect()
    }

    /// Stops serving and waits (bounded) for `serve` to return.
    async fn shut_down(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(10), self.done)
            .await
            .expect("serve did not return")
            .unwrap();
    }
}

/// A proxy with these listeners and certificates and upstream `api` on a live backend, bound
/// (start it with [`serve`]).
async fn bind(
    listeners: Vec<ListenerConfig>,
    tls: Vec<TlsCertificate>,
) -> (gatekeeper_proxy::BoundProxy, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let backend_addr = start_backend(hits.clone()).await;
    let registry = Arc::new(Registry::new());
    registry
        .add_upstream(upstream("api", "api", Some(5000)))
        .unwrap();
    registry
        .add_backend("api", backend("b1", backend_addr))
        .unwrap();
    let config = ProxyConfig {
        listeners,
        tls,
        ..ProxyConfig::default()
    };
    let bound = Proxy::new(config, registry, vec![]).bind().await.unwrap();
    (bound, hits)
}

fn serve(bound: gatekeeper_proxy::BoundProxy, hits: Arc<AtomicUsize>) -> Serving {
    let control = bound.listener_control();
    let (tx, rx) = oneshot::channel::<()>();
    let done = tokio::spawn(bound.serve(async move {
        let _ = rx.await;
    }));
    Serving {
        control,
        hits,
        stop: Some(tx),
        done,
    }
}

async fn start(listeners: Vec<ListenerConfig>) -> Serving {
    let (bound, hits) = bind(listeners, vec![]).await;
    serve(bound, hits)
}

async fn refused(addr: SocketAddr) -> bool {
    tokio::net::TcpStream::connect(addr).await.is_err()
}

async fn status(addr: SocketAddr) -> u16 {
    get(addr, "/api/x", None).await.0.as_u16()
}

#[tokio::test]
async fn a_listener_added_while_serving_serves() {
    let proxy = start(vec![listener("a", any_port())]).await;
    let a = proxy.addr("a");
    let changes = proxy
        .control
        .apply(
            vec![listener("a", any_port()), listener("b", any_port())],
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(changes.added, ["b"]);
    assert_eq!(changes.kept, ["a"]);
    assert!(changes.removed.is_empty() && changes.rebound.is_empty());
    assert_eq!(proxy.names(), ["a", "b"]);
    assert_eq!(proxy.addr("a"), a, "a kept listener keeps its socket");
    assert_eq!(status(proxy.addr("b")).await, 200);
    assert_eq!(status(a).await, 200);
    proxy.shut_down().await;
}

#[tokio::test]
async fn a_removed_listener_refuses_connections_and_the_other_serves() {
    let proxy = start(vec![listener("a", any_port()), listener("b", any_port())]).await;
    let b = proxy.addr("b");
    assert_eq!(status(b).await, 200);
    let changes = proxy
        .control
        .apply(vec![listener("a", any_port())], vec![])
        .await
        .unwrap();
    assert_eq!(changes.removed, ["b"]);
    assert_eq!(changes.kept, ["a"]);
    assert_eq!(proxy.names(), ["a"]);
    assert!(refused(b).await, "the removed listener's socket is closed");
    assert_eq!(status(proxy.addr("a")).await, 200);
    proxy.shut_down().await;
}

#[tokio::test]
async fn a_request_in_flight_on_a_removed_listener_completes() {
    let proxy = start(vec![listener("a", any_port()), listener("b", any_port())]).await;
    let b = proxy.addr("b");
    let slow = tokio::spawn(async move { get(b, "/api/slow", None).await });
    let hits = proxy.hits.clone();
    eventually(|| (hits.load(Ordering::SeqCst) >= 1).then_some(())).await;
    let changes = proxy
        .control
        .apply(vec![listener("a", any_port())], vec![])
        .await
        .unwrap();
    assert_eq!(changes.removed, ["b"]);
    assert!(refused(b).await);
    let (status, _, body) = tokio::time::timeout(Duration::from_secs(10), slow)
        .await
        .expect("the in-flight request did not finish")
        .unwrap();
    assert_eq!(status, 200, "{body}");
    proxy.shut_down().await;
}

#[tokio::test]
async fn a_listener_is_rebound_to_a_new_port_and_back() {
    let proxy = start(vec![listener("a", any_port()), listener("b", any_port())]).await;
    let old = proxy.addr("a");

    // Configured 127.0.0.1:0 → the port it was bound to: the old socket must close first.
    let changes = proxy
        .control
        .apply(vec![listener("a", old), listener("b", any_port())], vec![])
        .await
        .unwrap();
    assert_eq!(changes.rebound, ["a"]);
    assert_eq!(changes.kept, ["b"]);
    assert_eq!(proxy.addr("a"), old);
    assert_eq!(status(old).await, 200);

    // A concrete port → any port: bound anew before the old one closes.
    let changes = proxy
        .control
        .apply(
            vec![listener("a", any_port()), listener("b", any_port())],
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(changes.rebound, ["a"]);
    let new = proxy.addr("a");
    assert_ne!(new, old);
    assert_eq!(proxy.names(), ["a", "b"]);
    assert!(refused(old).await);
    assert_eq!(status(new).await, 200);
    proxy.shut_down().await;
}

#[tokio::test]
async fn an_address_in_use_changes_nothing() {
    let proxy = start(vec![listener("a", any_port()), listener("b", any_port())]).await;
    let before = proxy.control.local_addrs();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap();

    // Added listener on a taken address; b would be removed.
    let err = proxy
        .control
        .apply(
            vec![listener("a", any_port()), listener("c", taken_addr)],
            vec![],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ListenerError::Bind { name, addr, .. } if name == "c" && *addr == taken_addr),
        "{err}"
    );
    assert!(err.to_string().contains(&taken_addr.to_string()), "{err}");
    assert_eq!(proxy.control.local_addrs(), before);
    for (_, addr) in &before {
        assert_eq!(status(*addr).await, 200);
    }

    // A listener moved to a taken address keeps its old one.
    let err = proxy
        .control
        .apply(
            vec![listener("a", taken_addr), listener("b", any_port())],
            vec![],
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, ListenerError::Bind { name, .. } if name == "a"),
        "{err}"
    );
    assert_eq!(proxy.control.local_addrs(), before);
    assert_eq!(status(before[0].1).await, 200);
    proxy.shut_down().await;
}

#[tokio::test]
async fn a_failed_rebind_restores_the_closed_listener() {
    let proxy = start(vec![listener("x", any_port())]).await;
    let x = proxy.addr("x");
    // Both new listeners want x's address: x is closed, y gets it, z cannot; x comes back.
    let err = proxy
        .control
        .apply(vec![listener("y", x), listener("z", x)], vec![])
        .await
        .unwrap_err();
    match &err {
        ListenerError::Rebind {
            name,
            restored,
            lost,
            ..
        } => {
            assert_eq!(name, "z");
            assert_eq!(restored, &["x"]);
            assert!(lost.is_empty());
        }
        other => panic!("unexpected error {other}"),
    }
    assert!(err.to_string().contains("bound again: x"), "{err}");
    assert_eq!(proxy.control.local_addrs(), [("x".to_string(), x)]);
    assert_eq!(status(x).await, 200);
    proxy.shut_down().await;
}

#[tokio::test]
async fn invalid_sets_change_nothing() {
    let proxy = start(vec![listener("a", any_port())]).await;
    let before = proxy.control.local_addrs();
    let apply = |listeners, tls| proxy.control.apply(listeners, tls);
    assert!(matches!(
        apply(vec![], vec![]).await,
        Err(ListenerError::NoListeners)
    ));
    assert!(matches!(
        apply(
            vec![listener("b", any_port()), listener("b", any_port())],
            vec![]
        )
        .await,
        Err(ListenerError::DuplicateListener(_))
    ));
    let bad = TlsCertificate {
        listener: "b".into(),
        cert: fixture("missing.crt"),
        key: fixture("a.key"),
        ..TlsCertificate::default()
    };
    let err = apply(
        vec![listener("a", any_port()), listener("b", any_port())],
        vec![bad],
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("missing.crt"), "{err}");
    assert_eq!(proxy.control.local_addrs(), before);
    proxy.shut_down().await;
}

#[tokio::test]
async fn changes_before_serving_apply_once_serving() {
    let (bound, hits) = bind(vec![listener("a", any_port())], vec![]).await;
    let control = bound.listener_control();
    let changes = control
        .apply(vec![listener("b", any_port())], vec![])
        .await
        .unwrap();
    assert_eq!(changes.added, ["b"]);
    assert_eq!(changes.removed, ["a"]);
    assert_eq!(bound.local_addrs().len(), 1);
    let proxy = serve(bound, hits);
    assert_eq!(status(proxy.addr("b")).await, 200);
    proxy.shut_down().await;
}

#[tokio::test]
async fn shutdown_drains_added_listeners_and_returns() {
    let proxy = start(vec![listener("a", any_port())]).await;
    proxy
        .control
        .apply(
            vec![listener("a", any_port()), listener("b", any_port())],
            vec![],
        )
        .await
        .unwrap();
    let b = proxy.addr("b");
    let slow = tokio::spawn(async move { get(b, "/api/slow", None).await });
    let hits = proxy.hits.clone();
    eventually(|| (hits.load(Ordering::SeqCst) >= 1).then_some(())).await;
    let control = proxy.control.clone();
    proxy.shut_down().await;
    // Had serve not waited for the added listener's connection, it would have been dropped.
    let (status, _, body) = tokio::time::timeout(Duration::from_secs(10), slow)
        .await
        .expect("the request did not finish")
        .unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(refused(b).await);
    assert!(matches!(
        control.apply(vec![listener("a", any_port())], vec![]).await,
        Err(ListenerError::ShuttingDown)
    ));
}

#[tokio::test]
async fn a_socket_from_systemd_is_never_rebound_or_closed() {
    let hits = Arc::new(AtomicUsize::new(0));
    let backend_addr = start_backend(hits.clone()).await;
    let registry = Arc::new(Registry::new());
    registry
        .add_upstream(upstream("api", "api", Some(5000)))
        .unwrap();
    registry
        .add_backend("api", backend("b1", backend_addr))
        .unwrap();
    let passed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let passed_addr = passed.local_addr().unwrap();
    let config = ProxyConfig {
        listeners: vec![listener("sd", "127.0.0.1:1".parse().unwrap())],
        ..ProxyConfig::default()
    };
    let bound = Proxy::new(config, registry, vec![])
        .with_listener_socket("sd", passed)
        .bind()
        .await
        .unwrap();
    let proxy = serve(bound, hits);

    // A new address: the passed socket stays, with a warning.
    let changes = proxy
        .control
        .apply(
            vec![listener("sd", any_port()), listener("other", any_port())],
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(changes.kept, ["sd"]);
    assert_eq!(changes.added, ["other"]);
    assert!(changes.rebound.is_empty());
    assert_eq!(changes.warnings.len(), 1, "{:?}", changes.warnings);
    assert!(
        changes.warnings[0].contains("systemd"),
        "{:?}",
        changes.warnings
    );
    assert_eq!(proxy.addr("sd"), passed_addr);
    assert_eq!(status(passed_addr).await, 200);

    // No longer configured: it keeps serving (listed last), with a warning.
    let changes = proxy
        .control
        .apply(vec![listener("other", any_port())], vec![])
        .await
        .unwrap();
    assert!(changes.removed.is_empty());
    assert_eq!(changes.warnings.len(), 1, "{:?}", changes.warnings);
    assert_eq!(proxy.names(), ["other", "sd"]);
    assert_eq!(status(passed_addr).await, 200);
    proxy.shut_down().await;
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/tls")
        .join(name)
}

fn certificate(listener: &str, name: &str) -> TlsCertificate {
    TlsCertificate {
        listener: listener.into(),
        cert: fixture(&format!("{name}.crt")),
        key: fixture(&format!("{name}.key")),
        ..TlsCertificate::default()
    }
}

/// Accepts any server certificate: the test looks at which one it got.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The leaf certificate the listener at `addr` serves (no SNI).
async fn served_certificate(addr: SocketAddr) -> CertificateDer<'static> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::IpAddress(addr.ip().into());
    let tls = tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp))
        .await
        .expect("handshake timed out")
        .unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}

fn leaf(name: &str) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(fixture(&format!("{name}.crt"))).unwrap()
}

#[tokio::test]
async fn a_kept_tls_listener_serves_its_new_certificates() {
    let (bound, hits) = bind(
        vec![listener("https", any_port()), listener("http", any_port())],
        vec![certificate("https", "a")],
    )
    .await;
    let proxy = serve(bound, hits);
    let https = proxy.addr("https");
    assert_eq!(served_certificate(https).await, leaf("a"));

    let changes = proxy
        .control
        .apply(
            vec![listener("https", any_port()), listener("http", any_port())],
            vec![certificate("https", "b")],
        )
        .await
        .unwrap();
    assert_eq!(changes.kept, ["https", "http"]);
    assert_eq!(changes.certificates_reloaded, 1);
    assert!(changes.same_listeners());
    assert_eq!(proxy.addr("https"), https);
    assert_eq!(served_certificate(https).await, leaf("b"));
    // The same set again re-reads the new files.
    let again = proxy
        .control
        .apply(
            vec![listener("https", any_port()), listener("http", any_port())],
            vec![certificate("https", "b")],
        )
        .await
        .unwrap();
    assert_eq!(again.certificates_reloaded, 1);
    assert_eq!(served_certificate(https).await, leaf("b"));

    // A bad key: nothing changes.
    let bad = TlsCertificate {
        listener: "https".into(),
        cert: fixture("a.crt"),
        key: fixture("b.key"),
        ..TlsCertificate::default()
    };
    assert!(matches!(
        proxy
            .control
            .apply(
                vec![listener("https", any_port()), listener("http", any_port())],
                vec![bad],
            )
            .await,
        Err(ListenerError::Tls(_))
    ));
    assert_eq!(served_certificate(https).await, leaf("b"));

    // Plain → TLS is a rebind; the new socket serves TLS.
    let changes = proxy
        .control
        .apply(
            vec![listener("https", any_port()), listener("http", any_port())],
            vec![certificate("https", "b"), certificate("http", "a")],
        )
        .await
        .unwrap();
    assert_eq!(changes.rebound, ["http"]);
    assert_eq!(changes.certificates_reloaded, 2);
    assert_eq!(served_certificate(proxy.addr("http")).await, leaf("a"));
    proxy.shut_down().await;
}
