//! Active health checks: a supervisor task follows the registry (looking again only at the
//! upstreams each burst of changes touched) and runs one probing task per backend of every
//! upstream that has a `health_check`. A probe is a plain HTTP/1.1 `GET` of the
//! check path on a new connection (`Connection: close`), bounded by the check's timeout; it
//! succeeds when the status is an expected one.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONNECTION, HOST, USER_AGENT};
use http::Request;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::{AbortHandle, JoinHandle, JoinSet};
use tokio::time::MissedTickBehavior;

use super::{report, ActiveCheck};
use crate::metrics::Metrics;
use crate::registry::{BackendEntry, Registry, RegistryChange, Snapshot};

/// The running checker; dropping it stops every check.
#[derive(Debug)]
pub struct HealthChecker {
    task: JoinHandle<()>,
}

impl Drop for HealthChecker {
    fn drop(&mut self) {
        // The supervisor owns the probing tasks (a JoinSet): aborting it aborts them too.
        self.task.abort();
    }
}

/// Starts the active health checks of `registry`'s upstreams (those with a `health_check`),
/// following registry changes; reports changes of health to `metrics`. Stops when the returned
/// handle is dropped. Must be called within a Tokio runtime.
pub fn spawn_checker(registry: Arc<Registry>, metrics: Metrics) -> HealthChecker {
    HealthChecker {
        task: tokio::spawn(supervise(registry, metrics)),
    }
}

/// A backend under check: which entry and settings its task uses.
struct Running {
    backend: Arc<BackendEntry>,
    check: Arc<ActiveCheck>,
    task: AbortHandle,
}

/// The checks running, by upstream id and backend id.
type RunningChecks = HashMap<String, HashMap<String, Running>>;

/// The upstream a registry change is about.
fn upstream_of(change: &RegistryChange) -> &str {
    match change {
        RegistryChange::UpstreamAdded(upstream) => &upstream.id,
        RegistryChange::UpstreamRemoved { id } => id,
        RegistryChange::BackendAdded { upstream_id, .. }
        | RegistryChange::BackendRemoved { upstream_id, .. } => upstream_id,
    }
}

async fn supervise(registry: Arc<Registry>, metrics: Metrics) {
    let (snapshot, mut changes) = registry.subscribe_with_snapshot();
    let mut running = RunningChecks::new();
    let mut tasks = JoinSet::new();
    let all: Vec<String> = snapshot.upstreams.keys().cloned().collect();
    reconcile(&snapshot, all, &mut running, &mut tasks, &metrics);
    loop {
        tokio::select! {
            change = changes.recv() => {
                let Some(change) = change else {
                    // The registry is gone: keep checking what there is until stopped.
                    std::future::pending::<()>().await;
                    return;
                };
                // Only the upstreams the changes touched are looked at again: a registry of
                // many upstreams under churn costs in proportion to the churn.
                let mut touched = BTreeSet::from([upstream_of(&change).to_owned()]);
                while let Ok(change) = changes.try_recv() {
                    touched.insert(upstream_of(&change).to_owned());
                }
                reconcile(&registry.snapshot(), touched, &mut running, &mut tasks, &metrics);
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
}

/// For each of `upstreams`: starts checks for its new backends (or all of them when its check
/// changed) and stops those of removed backends, or all of them when the upstream is gone or
/// has no `health_check`.
fn reconcile(
    snapshot: &Snapshot,
    upstreams: impl IntoIterator<Item = String>,
    running: &mut RunningChecks,
    tasks: &mut JoinSet<()>,
    metrics: &Metrics,
) {
    for id in upstreams {
        let entry = snapshot.upstream(&id);
        let check = entry.and_then(|u| u.health_check.clone());
        let wanted: HashMap<&str, &Arc<BackendEntry>> = match (entry, &check) {
            (Some(upstream), Some(_)) => upstream
                .backends
                .iter()
                .map(|b| (b.backend.id.as_str(), b))
                .collect(),
            _ => HashMap::new(),
        };
        let checks = running.entry(id.clone()).or_default();
        checks.retain(|backend_id, r| {
            let keep = wanted.get(backend_id.as_str()).is_some_and(|b| {
                Arc::ptr_eq(b, &r.backend)
                    && check.as_ref().is_some_and(|c| Arc::ptr_eq(c, &r.check))
            });
            if !keep {
                r.task.abort();
            }
            keep
        });
        if let Some(check) = &check {
            for (backend_id, backend) in wanted {
                if checks.contains_key(backend_id) {
                    continue;
                }
                let task = tasks.spawn(check_loop(
                    id.clone(),
                    backend.clone(),
                    check.clone(),
                    metrics.clone(),
                ));
                checks.insert(
                    backend_id.to_owned(),
                    Running {
                        backend: backend.clone(),
                        check: check.clone(),
                        task,
                    },
                );
            }
        }
        if checks.is_empty() {
            running.remove(&id);
        }
    }
}

/// Checks one backend every `check.interval` (the first time at once), forever.
async fn check_loop(
    upstream: String,
    backend: Arc<BackendEntry>,
    check: Arc<ActiveCheck>,
    metrics: Metrics,
) {
    let mut ticker = tokio::time::interval(check.interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let result = probe(&backend, &check).await;
        if let Err(e) = &result {
            tracing::debug!(upstream = %upstream, backend = %backend.backend.id, error = %e, "health check failed");
        }
        let reason = result.as_ref().err().map_or("", String::as_str);
        if let Some(t) = backend.health().record_check(result.is_ok(), &check) {
            report(&metrics, &upstream, &backend, t, reason);
        }
    }
}

/// One check: `Ok` when the backend answered with an expected status in time.
async fn probe(backend: &BackendEntry, check: &ActiveCheck) -> Result<(), String> {
    let path = format!("{}{}", backend.base_path, check.path);
    let request = Request::get(path)
        .header(HOST, backend.authority.as_str())
        .header(USER_AGENT, "gatekeeper-health-check")
        .header(CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("invalid check request: {e}"))?;
    let host = backend.authority.host().trim_matches(['[', ']']);
    let port = backend.authority.port_u16().unwrap_or(80);
    let attempt = async {
        let stream = TcpStream::connect((host, port))
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake failed: {e}"))?;
        let response = sender.send_request(request);
        tokio::pin!(connection, response);
        tokio::select! {
            biased;
            response = &mut response => response.map_err(|e| format!("request failed: {e}")),
            ended = &mut connection => match ended {
                // With `Connection: close` the connection may end as it hands over the response.
                Ok(()) => response.await.map_err(|e| format!("request failed: {e}")),
                Err(e) => Err(format!("connection failed: {e}")),
            },
        }
    };
    let response = tokio::time::timeout(check.timeout, attempt)
        .await
        .map_err(|_| format!("no answer within {:?}", check.timeout))??;
    let status = response.status().as_u16();
    if check.expected.contains(status) {
        Ok(())
    } else {
        Err(format!("unexpected status {status}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::ExpectedStatus;
    use gatekeeper_rpc::types::{Backend, HealthCheck, Upstream};
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// A backend that answers every request with `status` and counts the requests.
    async fn fixed_status(
        status: u16,
    ) -> (std::net::SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let _ = s.read(&mut buf).await;
                    let answer = format!(
                        "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    );
                    let _ = s.write_all(answer.as_bytes()).await;
                });
            }
        });
        (addr, hits)
    }

    fn backend(addr: std::net::SocketAddr) -> BackendEntry {
        BackendEntry::new(Backend {
            id: "b".into(),
            address: format!("http://{addr}"),
            weight: None,
            extra: Default::default(),
        })
        .unwrap()
    }

    fn check(ms: u64) -> ActiveCheck {
        ActiveCheck {
            path: "/health".into(),
            interval: Duration::from_millis(ms),
            timeout: Duration::from_millis(500),
            healthy_threshold: 1,
            unhealthy_threshold: 1,
            expected: ExpectedStatus::default(),
        }
    }

    #[tokio::test]
    async fn probe_outcomes() {
        let (ok, _) = fixed_status(204).await;
        assert_eq!(probe(&backend(ok), &check(100)).await, Ok(()));
        let (bad, _) = fixed_status(503).await;
        assert_eq!(
            probe(&backend(bad), &check(100)).await,
            Err("unexpected status 503".into())
        );
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        let e = probe(&backend(addr), &check(100)).await.unwrap_err();
        assert!(e.starts_with("cannot connect"), "{e}");
        // Accepts but never answers: the timeout ends the check.
        let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let e = probe(&backend(silent.local_addr().unwrap()), &check(100))
            .await
            .unwrap_err();
        assert!(e.starts_with("no answer"), "{e}");
    }

    #[tokio::test]
    async fn checker_follows_the_registry_and_stops_when_dropped() {
        let (bad, hits) = fixed_status(500).await;
        let registry = Arc::new(Registry::new());
        registry
            .add_upstream(Upstream {
                id: "u".into(),
                name: String::new(),
                timeout_ms: None,
                protocols: vec![],
                hostnames: vec![],
                prefixes: vec!["u".into()],
                balancer: None,
                backend_protocol: None,
                connect_timeout_ms: None,
                max_connections_per_backend: None,
                host_header: None,
                passive_health: None,
                health_check: Some(HealthCheck {
                    interval_ms: Some(20),
                    unhealthy_threshold: Some(2),
                    ..Default::default()
                }),
                extra: Default::default(),
            })
            .unwrap();
        let checker = spawn_checker(registry.clone(), Metrics::disabled());
        // Added after the checker started: it picks the backend up.
        registry
            .add_backend(
                "u",
                Backend {
                    id: "b".into(),
                    address: format!("http://{bad}"),
                    weight: None,
                    extra: Default::default(),
                },
            )
            .unwrap();
        let entry = registry.snapshot().upstream("u").unwrap().backends[0].clone();
        for _ in 0..100 {
            if !entry.is_available() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!entry.is_available(), "taken out after 2 failed checks");
        drop(checker);
        tokio::time::sleep(Duration::from_millis(50)).await;
        let seen = hits.load(std::sync::atomic::Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            hits.load(std::sync::atomic::Ordering::SeqCst),
            seen,
            "stopped"
        );
    }
}
