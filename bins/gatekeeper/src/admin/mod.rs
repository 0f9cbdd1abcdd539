//! Operations endpoints: the admin socket (JSON over HTTP/1.1 on a Unix socket, mode 0600, for
//! `gatekeeper ctl`) and the Prometheus metrics listener. [`Operations`] binds both before the
//! plugins start (so `ctl wait-ready` can watch the start), learns the plugins, listeners and
//! metrics pipeline once gatekeeper is ready (and again after each reload), and stops serving (removing the socket) when
//! dropped.
//!
//! - [`routes`]: what each admin path answers;
//! - [`listing`]: upstreams and backends a page at a time (filters, limit, cursor);
//! - [`http`]: the small HTTP server both endpoints use.

pub mod http;
pub mod listing;
pub mod routes;

use std::fs::Permissions;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use arc_swap::{ArcSwap, ArcSwapOption};
use gatekeeper_plugin_host::PluginHandle;
use gatekeeper_proxy::{Metrics, MetricsExporter, Registry};
use tokio::net::{TcpListener, UnixListener, UnixStream};
use tokio::task::JoinHandle;

use crate::config::{AdminSocket, Settings};
use crate::plugins::PluginCaches;
use crate::prometheus::{Prometheus, PrometheusExporter};

/// What exists once gatekeeper is ready.
pub struct Live {
    /// Every plugin, in the configured order.
    pub plugins: Vec<PluginHandle>,
    /// The plugins' decision caches.
    pub caches: PluginCaches,
    /// Every listener's name and bound address.
    pub listeners: Vec<(String, SocketAddr)>,
    /// The metrics pipeline (for its dropped-records count).
    pub metrics: Metrics,
}

/// What the admin routes read.
pub struct Admin {
    /// When gatekeeper started.
    pub started: Instant,
    /// The upstreams and backends.
    pub registry: Arc<Registry>,
    /// The effective settings, as `--check` prints them (the running ones after a reload).
    pub config: ArcSwap<serde_json::Value>,
    /// Set once gatekeeper is ready; replaced after each reload.
    pub live: ArcSwapOption<Live>,
    /// The Prometheus metrics, when `metrics_listen` is set.
    pub prometheus: Option<Arc<Prometheus>>,
    /// Set when shutdown has begun: gatekeeper no longer accepts connections.
    pub draining: Arc<AtomicBool>,
}

/// The running operations endpoints; dropping it stops them and removes the admin socket.
/// Shared (in an `Arc`) by startup and the reloader.
pub struct Operations {
    admin: Arc<Admin>,
    tasks: Vec<JoinHandle<()>>,
    socket: Option<PathBuf>,
}

impl Operations {
    /// Binds the admin socket and the metrics listener (as configured) and starts serving.
    /// A configured socket or metrics address that cannot be bound is an error; the default
    /// admin socket only a warning.
    pub async fn start(settings: &Settings, registry: &Arc<Registry>) -> Result<Operations> {
        let prometheus = settings.metrics_listen.map(|_| Arc::new(Prometheus::new()));
        let admin = Arc::new(Admin {
            started: Instant::now(),
            registry: registry.clone(),
            config: ArcSwap::from_pointee(serde_json::to_value(settings).unwrap_or_default()),
            live: ArcSwapOption::empty(),
            prometheus: prometheus.clone(),
            draining: Arc::new(AtomicBool::new(false)),
        });
        let mut operations = Operations {
            admin: admin.clone(),
            tasks: Vec::new(),
            socket: None,
        };
        if let Some(socket) = &settings.admin_socket {
            let path = &socket.path;
            match bind_admin_socket(socket).await {
                Ok(listener) => {
                    let handler: http::Handler = Arc::new(move |method, path, query| {
                        routes::handle(&admin, method, path, query)
                    });
                    operations
                        .tasks
                        .push(tokio::spawn(http::serve_unix(listener, handler)));
                    operations.socket = Some(path.clone());
                    tracing::info!(path = %path.display(), "admin socket listening");
                }
                Err(e) if socket.is_default => {
                    tracing::warn!(path = %path.display(), error = %e, "admin socket not available (set admin_socket to choose another path, or \"\" to disable it)");
                }
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("admin_socket: cannot listen on {}", path.display())
                    })
                }
            }
        }
        if let (Some(addr), Some(prometheus)) = (settings.metrics_listen, prometheus) {
            let listener = TcpListener::bind(addr)
                .await
                .with_context(|| format!("metrics_listen: cannot listen on {addr}"))?;
            let handler: http::Handler = Arc::new(move |method, path, _query| {
                routes::metrics_only(&prometheus, method, path)
            });
            operations
                .tasks
                .push(tokio::spawn(http::serve_tcp(listener, handler)));
            tracing::info!(%addr, "Prometheus metrics listening");
        }
        Ok(operations)
    }

    /// The exporter feeding the Prometheus request metrics, when `metrics_listen` is set.
    pub fn exporter(&self) -> Option<Arc<dyn MetricsExporter>> {
        let prometheus = self.admin.prometheus.clone()?;
        Some(Arc::new(PrometheusExporter::new(prometheus)))
    }

    /// A flag to set when shutdown begins: `/status` then says `ready: false, draining: true`.
    pub fn draining_flag(&self) -> Arc<AtomicBool> {
        self.admin.draining.clone()
    }

    /// The settings in effect after a reload.
    pub fn set_config(&self, settings: &Settings) {
        self.admin
            .config
            .store(Arc::new(serde_json::to_value(settings).unwrap_or_default()));
    }

    /// Counts a configuration reload in the Prometheus metrics: `ok` when everything applied.
    pub fn count_reload(&self, ok: bool) {
        if let Some(prometheus) = &self.admin.prometheus {
            prometheus.count_reload(ok);
        }
    }

    /// Gatekeeper is ready, or a reload changed what runs: these are its plugins, listeners and
    /// metrics pipeline.
    pub fn ready(
        &self,
        plugins: Vec<PluginHandle>,
        caches: PluginCaches,
        listeners: Vec<(String, SocketAddr)>,
        metrics: Metrics,
    ) {
        if let Some(prometheus) = &self.admin.prometheus {
            prometheus.attach(
                self.admin.registry.clone(),
                plugins.clone(),
                caches.clone(),
                metrics.clone(),
            );
        }
        self.admin.live.store(Some(Arc::new(Live {
            plugins,
            caches,
            listeners,
            metrics,
        })));
    }
}

impl Drop for Operations {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        if let Some(path) = &self.socket {
            if let Err(e) = std::fs::remove_file(path) {
                tracing::debug!(path = %path.display(), error = %e, "could not remove the admin socket");
            }
        }
    }
}

/// Binds the admin socket with its mode (0600 by default): bound under a temporary name,
/// restricted (mode, group), then renamed, so that it is never reachable with looser
/// permissions. A socket file left by a gatekeeper that is gone is replaced; one that still
/// answers is not (two gatekeepers would fight over it). A directory gatekeeper makes for it is
/// private (0700, 0710 with a group); the default private directory is refused when another
/// user owns it or others can use it.
async fn bind_admin_socket(socket: &AdminSocket) -> io::Result<UnixListener> {
    let path = &socket.path;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        prepare_directory(dir, socket)?;
    }
    if path.exists() {
        if UnixStream::connect(path).await.is_ok() {
            return Err(io::Error::new(
                io::ErrorKind::AddrInUse,
                "another process is serving this socket",
            ));
        }
        std::fs::remove_file(path)?;
    }
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(format!(".{}.tmp", std::process::id()));
    let temporary = PathBuf::from(temporary);
    let _ = std::fs::remove_file(&temporary);
    let listener = UnixListener::bind(&temporary)?;
    let restricted = std::fs::set_permissions(&temporary, Permissions::from_mode(socket.mode))
        .and_then(|()| give_group(&temporary, socket.group))
        .and_then(|()| std::fs::rename(&temporary, path));
    if let Err(e) = restricted {
        let _ = std::fs::remove_file(&temporary);
        return Err(e);
    }
    Ok(listener)
}

/// Makes the socket's directory if it is missing (private: 0700, or 0710 with the socket's
/// group, so that the group can reach the socket and nothing else); checks the default
/// private directory when it exists already.
fn prepare_directory(dir: &Path, socket: &AdminSocket) -> io::Result<()> {
    let mode = if socket.group.is_some() { 0o710 } else { 0o700 };
    if !dir.exists() {
        if let Some(parent) = dir.parent() {
            std::fs::create_dir_all(parent)?;
        }
        match std::fs::DirBuilder::new().mode(mode).create(dir) {
            Ok(()) => {
                // The umask may have taken bits away from `mode`: set it as meant.
                std::fs::set_permissions(dir, Permissions::from_mode(mode))?;
                give_group(dir, socket.group)?;
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    if socket.private_dir {
        let metadata = std::fs::symlink_metadata(dir)?;
        let others = if socket.group.is_some() { 0o067 } else { 0o077 };
        let uid = nix::unistd::geteuid().as_raw();
        if !metadata.is_dir() || metadata.uid() != uid || metadata.mode() & others != 0 {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{} is not a private directory of this user (uid {uid}): owner uid {}, mode {:o}",
                    dir.display(),
                    metadata.uid(),
                    metadata.mode() & 0o7777
                ),
            ));
        }
    }
    Ok(())
}

/// Gives `path` to `group` (gatekeeper must be in it, or root).
fn give_group(path: &Path, group: Option<u32>) -> io::Result<()> {
    let Some(gid) = group else { return Ok(()) };
    nix::unistd::chown(path, None, Some(nix::unistd::Gid::from_raw(gid))).map_err(|e| {
        io::Error::other(format!(
            "cannot give {} to group {gid}: {e}",
            path.display()
        ))
    })
}
