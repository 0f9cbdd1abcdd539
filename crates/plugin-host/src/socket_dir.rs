//! The private socket directory: created with mode 0700 under a root (the caller's,
//! `$XDG_RUNTIME_DIR`, or the system temp dir), named `gatekeeper-<pid>-<random>`, removed with
//! everything in it when dropped. Also binds the per-plugin listening sockets (mode 0600).

use std::fs::{self, DirBuilder, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tokio::net::UnixListener;

/// A private directory that is removed on drop.
#[derive(Debug)]
pub(crate) struct SocketDir {
    path: PathBuf,
}

impl SocketDir {
    /// Creates a fresh directory under `root`, or under `$XDG_RUNTIME_DIR` / the temp dir.
    pub(crate) fn create(root: Option<PathBuf>) -> Result<SocketDir, (PathBuf, io::Error)> {
        let root = root
            .or_else(|| std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from))
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(std::env::temp_dir);
        let mut last_error = None;
        for _ in 0..8 {
            let suffix: u32 = rand::random();
            let path = root.join(format!("gatekeeper-{}-{suffix:08x}", std::process::id()));
            match DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => {
                    // The umask can only remove bits; set the mode explicitly anyway.
                    let dir = SocketDir { path };
                    fs::set_permissions(&dir.path, Permissions::from_mode(0o700))
                        .map_err(|e| (root.clone(), e))?;
                    return Ok(dir);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last_error = Some(e),
                Err(e) => return Err((root, e)),
            }
        }
        let error = last_error.unwrap_or_else(|| io::Error::other("no unique name found"));
        Err((root, error))
    }

    /// The directory's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Binds a listening socket named `file_name` in the directory, with mode 0600.
    pub(crate) fn bind(
        &self,
        file_name: &str,
    ) -> Result<(UnixListener, PathBuf), (PathBuf, io::Error)> {
        let path = self.path.join(file_name);
        let fail = |e| (path.clone(), e);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(fail(e)),
        }
        let listener = UnixListener::bind(&path).map_err(fail)?;
        fs::set_permissions(&path, Permissions::from_mode(0o600)).map_err(fail)?;
        Ok((listener, path))
    }

    /// Removes the directory and everything in it (idempotent).
    pub(crate) fn remove(&self) {
        match fs::remove_dir_all(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "could not remove the plugin socket directory")
            }
        }
    }
}

impl Drop for SocketDir {
    fn drop(&mut self) {
        self.remove();
    }
}

/// A socket file name for instance `instance` (of `instances`) of the `index`-th plugin: short
/// (socket paths are limited to about 100 bytes) and readable.
pub(crate) fn socket_file_name(
    index: usize,
    instance: usize,
    instances: usize,
    plugin: &str,
) -> String {
    let clean: String = plugin
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(24)
        .collect();
    if instances <= 1 {
        format!("{index}-{clean}.sock")
    } else {
        format!("{index}-{clean}.{instance}.sock")
    }
}
