//! The private socket directory: created with mode 0700 under a root (the caller's,
//! `$XDG_RUNTIME_DIR`, or the system temp dir), named `gatekeeper-<pid>-<random>`, removed with
//! everything in it when dropped. Also binds the listening sockets (mode 0600): one per plugin
//! process, named after its instance ([`socket_file_name`]) and generation ([`generation_path`]).

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

/// Binds a listening socket at `path` with mode 0600, replacing a stale file.
pub(crate) fn bind_socket(path: &Path) -> io::Result<UnixListener> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = UnixListener::bind(path)?;
    fs::set_permissions(path, Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// The socket path of process `generation` of an instance whose base socket is `base`: the
/// base itself for generation 0, else `<base stem>.<tag><generation>.sock` next to it (`g` for
/// an instance's later processes, `s` for standby spares).
pub(crate) fn generation_path(base: &Path, tag: char, generation: u64) -> PathBuf {
    if generation == 0 && tag == 'g' {
        return base.to_owned();
    }
    let name = base
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.strip_suffix(".sock").unwrap_or(&name);
    base.with_file_name(format!("{stem}.{tag}{generation}.sock"))
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
