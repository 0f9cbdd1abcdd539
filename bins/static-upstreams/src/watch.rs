//! Reloading the upstreams file when it changes.
//!
//! The file's directory is watched (with `notify`: inotify on Linux), not the file itself, so
//! editors and tools that replace the file (write a temporary file, rename it over the old one)
//! keep being seen. When the file is a symlink, its target's directory is watched too, and
//! names starting with `..` count as the file (Kubernetes swaps a mounted ConfigMap through a
//! `..data` symlink). Events are debounced: the file is read once no event for it has arrived
//! for [`DEBOUNCE`].
//!
//! Only changes count: reading the file (which inotify reports too, as an access) does not, and
//! a file whose content is the same as at the last read is not looked at again.
//!
//! A reload parses and checks the whole file and, if it differs from what the proxy has
//! ([`DesiredState::changes_to`], logged), pushes it whole in one `apply_batch` with `replace: true`
//! ([`crate::push`]): the proxy applies it all or nothing. A file that does not check (or cannot
//! be read), or that the proxy refuses (an item it does not accept, e.g. an `https://` backend,
//! or a prefix another plugin's upstream holds), changes nothing: the last good state keeps
//! serving, the error (file, line and key; or the refused items) is logged once per change of
//! the file, and reported to the proxy with `config_status` (shown by `gatekeeper ctl plugins`
//! and its metrics); a later good version applies and clears it. A push that got no answer is
//! tried again at the next event, even if the file is the same.

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gatekeeper_plugin_sdk::desired::DesiredState;
use gatekeeper_plugin_sdk::Manager;
use notify::event::{AccessKind, AccessMode};
use notify::{Event, EventKind, RecursiveMode, Watcher as _};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::file::{self, BackendIds};
use crate::push::{push, PushError};

/// How long the file must be quiet before it is read again.
pub const DEBOUNCE: Duration = Duration::from_millis(200);

/// Reads the file again and pushes what changed.
#[derive(Debug)]
pub struct Reloader {
    path: PathBuf,
    ids: BackendIds,
    manager: Manager,
    /// What the proxy has from this plugin: the last version it accepted.
    applied: DesiredState,
    /// What the last read found: the file's text, or why it could not be read. A read that finds
    /// the same is not acted on again.
    last_read: Option<Result<String, String>>,
    /// Whether the proxy was last told that the file is rejected.
    rejected: bool,
}

impl Reloader {
    /// A reloader for the file at `path`, whose content `applied` (read from `text`) the proxy
    /// already has.
    pub fn new(
        path: PathBuf,
        ids: BackendIds,
        manager: Manager,
        applied: DesiredState,
        text: String,
    ) -> Self {
        Reloader {
            path,
            ids,
            manager,
            applied,
            last_read: Some(Ok(text)),
            rejected: false,
        }
    }

    /// Reads, parses and checks the file, and pushes the difference to what the proxy has. A
    /// bad or unreadable file changes nothing: it is logged and reported once per change.
    pub async fn reload(&mut self) {
        let read = file::read(&self.path).map_err(|e| e.to_string());
        if self.last_read.as_ref() == Some(&read) {
            tracing::debug!(file = %self.path.display(), "upstreams file read: unchanged");
            return;
        }
        self.last_read = Some(read.clone());
        let checked = read
            .and_then(|text| file::check(&self.path, &text, self.ids).map_err(|e| e.to_string()));
        let checked = match checked {
            Ok(upstreams) => match self.apply(file::desired(upstreams)).await {
                Ok(()) => Ok(()),
                Err(PushError::NotAnswered(e)) => {
                    // Not a verdict on the file: try again at the next event.
                    tracing::error!("upstreams file not applied (gatekeeper did not answer), keeping the last good state: {e}");
                    self.last_read = None;
                    return;
                }
                Err(refused) => Err(refused.to_string()),
            },
            Err(message) => Err(message),
        };
        match checked {
            Ok(()) => {
                if self.rejected {
                    self.report(None).await;
                }
            }
            Err(message) => {
                tracing::error!(
                    "upstreams file not applied, keeping the last good state: {message}"
                );
                self.report(Some(message)).await;
            }
        }
    }

    /// Tells the proxy that the file is rejected (`Some`) or accepted again (`None`).
    async fn report(&mut self, error: Option<String>) {
        let rejected = error.is_some();
        let sent = match error {
            Some(message) => self.manager.report_config_error(message).await,
            None => self.manager.report_config_ok().await,
        };
        match sent {
            Ok(()) => self.rejected = rejected,
            Err(e) => {
                tracing::warn!("could not report the upstreams file's state to gatekeeper: {e}")
            }
        }
    }

    /// Pushes `target` as the whole state if it differs from what the proxy has, and records it
    /// once the proxy accepted it.
    async fn apply(&mut self, target: DesiredState) -> Result<(), PushError> {
        let changes = self.applied.changes_to(&target);
        if changes.is_empty() {
            tracing::debug!(file = %self.path.display(), "upstreams file read: no change");
            return Ok(());
        }
        for change in &changes {
            tracing::debug!("{change}");
        }
        let result = push(&self.manager, &target).await?;
        self.applied = target;
        tracing::info!(
            file = %self.path.display(),
            changes = changes.len(),
            upstreams = self.applied.len(),
            ?result,
            "applied the upstreams file"
        );
        Ok(())
    }
}

/// The directories to watch and the file names in them that count as the file.
#[derive(Debug, PartialEq)]
struct Targets {
    dirs: Vec<PathBuf>,
    names: HashSet<OsString>,
}

impl Targets {
    fn of(path: &Path) -> Targets {
        let mut targets = Targets {
            dirs: Vec::new(),
            names: HashSet::new(),
        };
        targets.add(path);
        if let Ok(real) = std::fs::canonicalize(path) {
            targets.add(&real);
        }
        targets
    }

    fn add(&mut self, path: &Path) {
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let dir = std::fs::canonicalize(&dir).unwrap_or(dir);
        if !self.dirs.contains(&dir) {
            self.dirs.push(dir);
        }
        if let Some(name) = path.file_name() {
            self.names.insert(name.to_owned());
        }
    }

    /// Whether an event may concern the file: not a mere read of it (opening it, or closing it
    /// without writing, which the reloader's own reads cause too).
    fn concerns(&self, event: &Event) -> bool {
        if let EventKind::Access(access) = event.kind {
            if !matches!(access, AccessKind::Close(AccessMode::Write)) {
                return false;
            }
        }
        event.need_rescan()
            || event.paths.is_empty()
            || event.paths.iter().any(|path| {
                path.file_name().is_some_and(|name| {
                    self.names.contains(name) || name.to_string_lossy().starts_with("..")
                })
            })
    }
}

/// Starts watching the file of `reloader` and reloading it on changes, on a task of its own that
/// lives as long as the process. The file is also read once right away, for changes made since
/// it was first loaded.
pub fn spawn(mut reloader: Reloader) -> notify::Result<()> {
    let targets = Targets::of(&reloader.path);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<Event>| {
        // Fails only once the task is gone, i.e. at exit.
        let _ = tx.send(event);
    })?;
    for dir in &targets.dirs {
        watcher.watch(dir, RecursiveMode::NonRecursive)?;
    }
    tracing::info!(
        file = %reloader.path.display(),
        dirs = ?targets.dirs,
        "watching the upstreams file for changes"
    );
    let concerns = move |event: &notify::Result<Event>| match event {
        Ok(event) => targets.concerns(event),
        Err(error) => {
            tracing::warn!(%error, "file watch error; reading the file again");
            true
        }
    };
    tokio::spawn(async move {
        // The watcher stops when dropped: keep it for the task's life.
        let _watcher = watcher;
        reloader.reload().await;
        while let Some(event) = rx.recv().await {
            if !concerns(&event) {
                continue;
            }
            let mut deadline = Instant::now() + DEBOUNCE;
            loop {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(event)) => {
                        if concerns(&event) {
                            deadline = Instant::now() + DEBOUNCE;
                        }
                    }
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            reloader.reload().await;
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use notify::event::{CreateKind, EventKind, ModifyKind};

    fn event(kind: EventKind, paths: &[&str]) -> Event {
        let mut event = Event::new(kind);
        for path in paths {
            event = event.add_path(PathBuf::from(path));
        }
        event
    }

    #[test]
    fn only_events_about_the_file_count() {
        let dir =
            std::env::temp_dir().join(format!("static-upstreams-watch-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let targets = Targets::of(&dir.join("upstreams.yml"));
        std::fs::remove_dir_all(&dir).unwrap();
        let modify = EventKind::Modify(ModifyKind::Any);
        let create = EventKind::Create(CreateKind::File);
        assert!(targets.concerns(&event(modify, &["/x/upstreams.yml"])));
        assert!(targets.concerns(&event(
            create,
            &["/x/.upstreams.yml.swp", "/x/upstreams.yml"]
        )));
        assert!(targets.concerns(&event(create, &["/x/..data"])));
        assert!(targets.concerns(&event(modify, &[])));
        assert!(!targets.concerns(&event(modify, &["/x/gatekeeper.log"])));
        assert!(!targets.concerns(&event(modify, &["/x/upstreams.yml.bak"])));
        let read = EventKind::Access(AccessKind::Open(AccessMode::Any));
        assert!(!targets.concerns(&event(read, &["/x/upstreams.yml"])));
        let read = EventKind::Access(AccessKind::Close(AccessMode::Read));
        assert!(!targets.concerns(&event(read, &["/x/upstreams.yml"])));
        let written = EventKind::Access(AccessKind::Close(AccessMode::Write));
        assert!(targets.concerns(&event(written, &["/x/upstreams.yml"])));
    }

    #[test]
    fn a_bare_file_name_watches_the_current_directory() {
        let targets = Targets::of(Path::new("no-such-file.yml"));
        let here = std::fs::canonicalize(".").unwrap();
        assert_eq!(targets.dirs, [here]);
        assert!(targets.names.contains(&OsString::from("no-such-file.yml")));
    }
}
