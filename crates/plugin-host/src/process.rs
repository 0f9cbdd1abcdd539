//! Spawning a plugin process (environment, piped output, killed on drop), forwarding its
//! stdout and stderr to the log one line at a time (keeping the last [`STDERR_TAIL`] stderr
//! lines for start errors), reading its resident memory, and killing and reaping it.

use std::collections::VecDeque;
use std::io;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gatekeeper_rpc::{env, framing};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio::time::timeout;
use tracing::Level;

use crate::error::StartError;
use crate::plugin_log::parse_log_line;
use crate::spec::PluginSpec;

/// Longest line of plugin output logged as is; longer lines are cut.
pub(crate) const MAX_LOG_LINE: usize = 8 * 1024;

/// A fresh one-time token: 32 hex characters (128 random bits).
pub(crate) fn new_token() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares two tokens in time independent of where they differ.
pub(crate) fn token_matches(expected: &str, given: &str) -> bool {
    let (a, b) = (expected.as_bytes(), given.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Upper bound on waiting for a killed process to be reaped.
const REAP_TIMEOUT: Duration = Duration::from_secs(5);

/// What systemd hands gatekeeper itself (readiness socket, watchdog, passed listening sockets):
/// a plugin must not act on them (notify systemd in gatekeeper's name, or take its sockets).
const SERVICE_MANAGER_VARIABLES: [&str; 6] = [
    "NOTIFY_SOCKET",
    "WATCHDOG_PID",
    "WATCHDOG_USEC",
    "LISTEN_FDS",
    "LISTEN_PID",
    "LISTEN_FDNAMES",
];

/// How many of a process's last stderr lines are kept for its start error.
pub(crate) const STDERR_TAIL: usize = 10;
/// How long a start error waits for the stderr of a process that exited to be read to its end.
const STDERR_DRAIN: Duration = Duration::from_millis(300);

/// The last [`STDERR_TAIL`] lines a process wrote to stderr (each cut to [`MAX_LOG_LINE`]).
#[derive(Debug, Default)]
pub(crate) struct StderrTail {
    lines: Mutex<VecDeque<String>>,
}

impl StderrTail {
    fn push(&self, line: &str) {
        let mut lines = self
            .lines
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if lines.len() == STDERR_TAIL {
            lines.pop_front();
        }
        lines.push_back(line.to_owned());
    }

    /// The lines kept, oldest first.
    pub(crate) fn lines(&self) -> Vec<String> {
        self.lines
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

/// A spawned plugin process and the task forwarding its stderr.
#[derive(Debug)]
pub(crate) struct Spawned {
    pub(crate) child: Child,
    pub(crate) stderr: Arc<StderrTail>,
    stderr_task: Option<JoinHandle<()>>,
}

impl Spawned {
    /// The last stderr lines of a process that exited, once its stderr is read to its end (or
    /// a short while passed: a grandchild may hold it open).
    pub(crate) async fn stderr_after_exit(&mut self) -> Vec<String> {
        if let Some(task) = self.stderr_task.as_mut() {
            if timeout(STDERR_DRAIN, task).await.is_ok() {
                self.stderr_task = None;
            }
        }
        self.stderr.lines()
    }
}

/// Spawns one instance of the plugin's command with the protocol's environment, and starts
/// forwarding its output to the log under `label`.
pub(crate) fn spawn(
    spec: &PluginSpec,
    label: &Arc<str>,
    instance: usize,
    socket: &Path,
    token: &str,
) -> Result<Spawned, StartError> {
    let mut command = Command::new(&spec.command);
    for variable in SERVICE_MANAGER_VARIABLES {
        command.env_remove(variable);
    }
    command
        .args(&spec.args)
        .env(env::SOCKET, socket)
        .env(env::TOKEN, token)
        .env(env::PLUGIN_NAME, &spec.name)
        .env(env::PLUGIN_INSTANCE, instance.to_string())
        .env(env::PLUGIN_TYPE, spec.plugin_type.as_str())
        .env(env::BUSY_POLL_US, spec.busy_poll_us.to_string())
        .env(
            env::PROTOCOL_VERSION,
            gatekeeper_rpc::PROTOCOL_VERSION.to_string(),
        )
        .env(
            env::MAX_LINE_BYTES,
            framing::DEFAULT_MAX_LINE_BYTES.to_string(),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|source| StartError::Spawn {
        command: spec.command.clone(),
        source,
    })?;
    if let Some(stdout) = child.stdout.take() {
        tokio::spawn(forward_lines(label.clone(), "stdout", stdout, None));
    }
    let tail = Arc::new(StderrTail::default());
    let stderr_task = child.stderr.take().map(|stderr| {
        tokio::spawn(forward_lines(
            label.clone(),
            "stderr",
            stderr,
            Some(tail.clone()),
        ))
    });
    Ok(Spawned {
        child,
        stderr: tail,
        stderr_task,
    })
}

/// The resident memory (RSS) of a process in bytes, from the `VmRSS` line of
/// `/proc/<pid>/status` (in kB there, whatever the page size); `None` where there is no such
/// file (not Linux, or the process is gone).
pub(crate) fn resident_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

/// Kills a process and reaps it; returns its exit status as text.
pub(crate) async fn kill(child: &mut Child) -> String {
    if let Ok(Some(status)) = child.try_wait() {
        return status.to_string();
    }
    if let Err(e) = child.start_kill() {
        tracing::debug!(error = %e, "could not kill a plugin process");
    }
    match timeout(REAP_TIMEOUT, child.wait()).await {
        Ok(status) => describe(status),
        Err(_) => "unknown (not reaped after kill)".to_owned(),
    }
}

/// An exit status as text.
pub(crate) fn describe(status: io::Result<ExitStatus>) -> String {
    match status {
        Ok(status) => status.to_string(),
        Err(e) => format!("unknown ({e})"),
    }
}

/// Logs each line read from `output` until it ends. Lines longer than [`MAX_LOG_LINE`] are cut
/// (the rest of the line is skipped without buffering it); invalid UTF-8 is replaced.
async fn forward_lines<R: AsyncRead + Unpin>(
    plugin: Arc<str>,
    stream: &'static str,
    output: R,
    tail: Option<Arc<StderrTail>>,
) {
    let mut reader = BufReader::new(output);
    let mut line: Vec<u8> = Vec::new();
    let mut cut = false;
    loop {
        let chunk = match reader.fill_buf().await {
            Ok(chunk) => chunk,
            Err(e) => {
                tracing::debug!(plugin = %plugin, stream, error = %e, "stopped reading plugin output");
                break;
            }
        };
        if chunk.is_empty() {
            if !line.is_empty() || cut {
                log_line(&plugin, stream, &line, cut, tail.as_deref());
            }
            break;
        }
        let (taken, end_of_line) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        let content = &chunk[..if end_of_line { taken - 1 } else { taken }];
        let room = MAX_LOG_LINE.saturating_sub(line.len());
        if content.len() > room {
            cut = true;
        }
        line.extend_from_slice(&content[..content.len().min(room)]);
        reader.consume(taken);
        if end_of_line {
            log_line(&plugin, stream, &line, cut, tail.as_deref());
            line.clear();
            cut = false;
        }
    }
}

fn log_line(plugin: &str, stream: &'static str, line: &[u8], cut: bool, tail: Option<&StderrTail>) {
    let line = String::from_utf8_lossy(line);
    let line = line.trim_end_matches('\r');
    if let Some(tail) = tail {
        tail.push(line);
    }
    let cut = if cut { "… (line cut)" } else { "" };
    // At the level the line names (a plugin's ERROR is an error here too), else INFO; the
    // message without the plugin's own timestamp and level word.
    let record = parse_log_line(line);
    let message = record.message;
    match record.level {
        Level::ERROR => tracing::error!(plugin = %plugin, stream, "{message}{cut}"),
        Level::WARN => tracing::warn!(plugin = %plugin, stream, "{message}{cut}"),
        Level::INFO => tracing::info!(plugin = %plugin, stream, "{message}{cut}"),
        Level::DEBUG => tracing::debug!(plugin = %plugin, stream, "{message}{cut}"),
        Level::TRACE => tracing::trace!(plugin = %plugin, stream, "{message}{cut}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_fresh_hex() {
        let a = new_token();
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, new_token());
        assert!(token_matches(&a, &a.clone()));
        assert!(!token_matches(&a, "nope"));
    }

    #[tokio::test]
    async fn forwards_long_and_invalid_lines_without_panicking() {
        let mut data = vec![b'x'; MAX_LOG_LINE * 3];
        data.extend_from_slice(b"\n\xff\xfe bad utf8\r\nlast without newline");
        let tail = Arc::new(StderrTail::default());
        forward_lines(Arc::from("t"), "stderr", &data[..], Some(tail.clone())).await;
        let lines = tail.lines();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[2], "last without newline");
    }

    #[test]
    fn the_stderr_tail_keeps_the_last_lines() {
        let tail = StderrTail::default();
        for i in 0..STDERR_TAIL + 5 {
            tail.push(&format!("line {i}"));
        }
        let lines = tail.lines();
        assert_eq!(lines.len(), STDERR_TAIL);
        assert_eq!(lines[0], "line 5");
    }

    #[test]
    fn reads_its_own_resident_memory() {
        if cfg!(target_os = "linux") {
            let rss = resident_bytes(std::process::id()).unwrap();
            assert!(rss > 0);
        }
    }
}
