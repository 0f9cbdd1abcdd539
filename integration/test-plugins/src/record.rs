//! [`Recorder`]: appends what a plugin receives to a file, one JSON object per line.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::{Mutex, PoisonError};

use gatekeeper_plugin_sdk::HookError;
use serde_json::Value;

/// Appends JSON lines to the file named by the setting `file`, or records nothing when unset.
///
/// Each line is written with one `write` on a file opened for appending, so lines from several
/// processes sharing a file (two instances, two plugins) never interleave, and flushed at once so
/// a test can read the file while the plugin runs.
#[derive(Debug, Default)]
pub struct Recorder {
    file: Mutex<Option<File>>,
}

impl Recorder {
    /// Starts recording to `path` (created if missing, appended to), or stops recording (`None`).
    pub fn open(&self, path: Option<&str>) -> Result<(), HookError> {
        let file = match path {
            Some(path) => Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| {
                        HookError::invalid_params(format!("cannot open `file` {path}: {e}"))
                    })?,
            ),
            None => None,
        };
        *self.file.lock().unwrap_or_else(PoisonError::into_inner) = file;
        Ok(())
    }

    /// Appends `entry` as one line. A failed write is logged, not returned: recording must not
    /// change how the plugin answers.
    pub fn record(&self, entry: &Value) {
        let mut file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(file) = file.as_mut() else {
            return;
        };
        let mut line = entry.to_string();
        line.push('\n');
        if let Err(error) = file.write_all(line.as_bytes()).and_then(|()| file.flush()) {
            tracing::warn!(%error, "could not record a call");
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fresh path in the temp dir (the file is not created).
    pub(crate) fn temp_file(name: &str) -> PathBuf {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!(
            "gatekeeper-test-plugins-{}-{n}-{name}.jsonl",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&path);
        path
    }

    /// The JSON lines of a recorded file.
    pub(crate) fn lines(path: &std::path::Path) -> Vec<Value> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn appends_one_line_per_entry_and_nothing_without_a_file() {
        let recorder = Recorder::default();
        recorder.record(&json!({"lost": true}));
        let path = temp_file("recorder");
        recorder.open(path.to_str()).unwrap();
        recorder.record(&json!({"method": "a"}));
        recorder.record(&json!({"method": "b", "n": 2}));
        assert_eq!(
            lines(&path),
            vec![json!({"method": "a"}), json!({"method": "b", "n": 2})]
        );
        let _ = std::fs::remove_file(path);
    }
}
