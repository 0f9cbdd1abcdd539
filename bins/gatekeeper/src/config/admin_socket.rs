//! Where the admin socket is and who may use it: the `admin_socket`, `admin_socket_mode` and
//! `admin_socket_group` keys, else a default that `gatekeeper ctl` finds by the same rules.
//!
//! The default never lies in a directory other users can write to: it is
//! `<socket_dir>/admin.sock`, else `$RUNTIME_DIRECTORY/admin.sock` (systemd's
//! `RuntimeDirectory=`), else `admin.sock` in a private directory of this user
//! (`$XDG_RUNTIME_DIR/gatekeeper/`, else `<temp dir>/gatekeeper-<uid>/`), made 0700 and
//! refused when someone else owns it or others can use it.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};

use super::file::{read_table, FileConfig, OwnConfig};

/// File name of the admin socket in its directory.
pub const ADMIN_SOCKET_NAME: &str = "admin.sock";
/// Where the shipped systemd unit's `RuntimeDirectory=gatekeeper` puts the admin socket;
/// `gatekeeper ctl` tries it when the default path has no socket.
pub const UNIT_ADMIN_SOCKET: &str = "/run/gatekeeper/admin.sock";

/// The admin socket gatekeeper serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSocket {
    /// The socket file.
    pub path: PathBuf,
    /// Whether `path` is the default (not configured): failing to bind it is then a warning.
    pub is_default: bool,
    /// Whether `path`'s directory is gatekeeper's own private directory in a shared place
    /// (made 0700, or 0710 with a group; refused when another user owns it or others can
    /// use it).
    pub private_dir: bool,
    /// The socket file's mode: 0o600 (default) or 0o660.
    pub mode: u32,
    /// The socket's (and the private directory's) group, when one is configured.
    pub group: Option<u32>,
}

/// The admin socket: `configured` (the `admin_socket` key or `--admin-socket`; `""` disables
/// it, `None` returned), else the default (see the module doc).
pub fn admin_socket_path(
    configured: Option<&Path>,
    socket_dir: Option<&Path>,
) -> Option<AdminSocket> {
    let socket = |path: PathBuf, is_default: bool, private_dir: bool| AdminSocket {
        path,
        is_default,
        private_dir,
        mode: 0o600,
        group: None,
    };
    if let Some(path) = configured {
        return (!path.as_os_str().is_empty()).then(|| socket(path.to_path_buf(), false, false));
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
    Some(match (socket_dir, runtime_directory) {
        (Some(dir), _) => socket(dir.join(ADMIN_SOCKET_NAME), true, false),
        (None, Some(dir)) => socket(dir.join(ADMIN_SOCKET_NAME), true, false),
        (None, None) => {
            let dir = match env_dir("XDG_RUNTIME_DIR") {
                Some(dir) => dir.join("gatekeeper"),
                None => std::env::temp_dir().join(format!("gatekeeper-{}", nix::unistd::geteuid())),
            };
            socket(dir.join(ADMIN_SOCKET_NAME), true, true)
        }
    })
}

/// The admin socket as the config's own keys say, with its access (mode and group) checked.
pub fn admin_socket_of_settings(
    own: &OwnConfig,
    socket_dir: Option<&Path>,
) -> Result<Option<AdminSocket>> {
    let mode = match own.admin_socket_mode.as_deref() {
        None | Some("0600" | "600") => 0o600,
        Some("0660" | "660") => 0o660,
        Some(other) => bail!("admin_socket_mode: `{other}` must be \"0600\" or \"0660\""),
    };
    let group = match own.admin_socket_group.as_deref() {
        None | Some("") => None,
        Some(name) => Some(group_id(name)?),
    };
    if mode == 0o660 && group.is_none() {
        bail!("admin_socket_mode: \"0660\" needs admin_socket_group (the group given access)");
    }
    Ok(
        admin_socket_path(own.admin_socket.as_deref(), socket_dir).map(|socket| AdminSocket {
            mode,
            group,
            ..socket
        }),
    )
}

/// A group's id from its name or number.
fn group_id(name: &str) -> Result<u32> {
    if let Ok(gid) = name.parse::<u32>() {
        return Ok(gid);
    }
    match nix::unistd::Group::from_name(name) {
        Ok(Some(group)) => Ok(group.gid.as_raw()),
        Ok(None) => Err(anyhow!("admin_socket_group: there is no group `{name}`")),
        Err(e) => Err(anyhow!("admin_socket_group: cannot look up `{name}`: {e}")),
    }
}

/// The admin sockets `gatekeeper ctl` tries, in order, for a gatekeeper started with this
/// config file (if any) and `--socket-dir` (if any): the path gatekeeper computes, then, when
/// that is the default, the shipped unit's [`UNIT_ADMIN_SOCKET`]. Empty when the socket is
/// disabled.
pub fn admin_socket_candidates(
    config: Option<&Path>,
    socket_dir: Option<&Path>,
) -> Result<Vec<PathBuf>> {
    let file = FileConfig::from_table(read_table(config)?)?;
    let socket_dir = socket_dir.or(file.host.socket_dir.as_deref());
    let Some(socket) = admin_socket_path(file.own.admin_socket.as_deref(), socket_dir) else {
        return Ok(Vec::new());
    };
    let mut candidates = vec![socket.path];
    if socket.is_default && !candidates.iter().any(|p| p == Path::new(UNIT_ADMIN_SOCKET)) {
        candidates.push(PathBuf::from(UNIT_ADMIN_SOCKET));
    }
    Ok(candidates)
}
