//! Where the admin socket is: the `admin_socket` key, else a default that `gatekeeper ctl` finds
//! by the same rules.

use std::path::{Path, PathBuf};

use anyhow::Result;

use super::file::{read_table, FileConfig};

/// File name of the admin socket in `socket_dir` or `$RUNTIME_DIRECTORY`.
pub const ADMIN_SOCKET_NAME: &str = "admin.sock";
/// File name of the admin socket in `$XDG_RUNTIME_DIR` or the temp dir (shared directories).
pub const SHARED_ADMIN_SOCKET_NAME: &str = "gatekeeper-admin.sock";

/// The admin socket's path and whether it is the default: `configured` (the `admin_socket`
/// key; `""` disables it), else `<socket_dir>/admin.sock`, else `$RUNTIME_DIRECTORY/admin.sock`
/// (systemd's `RuntimeDirectory=`), else `$XDG_RUNTIME_DIR/gatekeeper-admin.sock`, else
/// `<temp dir>/gatekeeper-admin.sock`. `gatekeeper ctl` uses the same rules.
pub fn admin_socket_path(
    configured: Option<&Path>,
    socket_dir: Option<&Path>,
) -> (Option<PathBuf>, bool) {
    if let Some(path) = configured {
        return (
            (!path.as_os_str().is_empty()).then(|| path.to_path_buf()),
            false,
        );
    }
    let env_dir = |name: &str| {
        std::env::var_os(name)
            .map(PathBuf::from)
            .filter(|p| !p.as_os_str().is_empty())
    };
    // systemd gives several directories separated by ':' when several are configured.
    let runtime_directory = env_dir("RUNTIME_DIRECTORY").map(|p| {
        let text = p.to_string_lossy().into_owned();
        PathBuf::from(text.split(':').next().unwrap_or_default())
    });
    let path = match (socket_dir, runtime_directory) {
        (Some(dir), _) => dir.join(ADMIN_SOCKET_NAME),
        (None, Some(dir)) => dir.join(ADMIN_SOCKET_NAME),
        (None, None) => env_dir("XDG_RUNTIME_DIR")
            .unwrap_or_else(std::env::temp_dir)
            .join(SHARED_ADMIN_SOCKET_NAME),
    };
    (Some(path), true)
}

/// The admin socket of a gatekeeper started with this config file (if any) and `--socket-dir`
/// (if any), for `gatekeeper ctl`.
pub fn admin_socket_of(
    config: Option<&Path>,
    socket_dir: Option<&Path>,
) -> Result<Option<PathBuf>> {
    let file = FileConfig::from_table(read_table(config)?)?;
    let socket_dir = socket_dir.or(file.host.socket_dir.as_deref());
    Ok(admin_socket_path(file.own.admin_socket.as_deref(), socket_dir).0)
}
