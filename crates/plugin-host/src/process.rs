//! Spawning a plugin process (environment, piped output, killed on drop), forwarding its
//! stdout and stderr to the log one line at a time, and killing and reaping it.

use std::io;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use gatekeeper_rpc::{env, framing};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::time::timeout;

use crate::error::StartError;
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

/// Spawns one instance of the plugin's command with the protocol's environment, and starts
/// forwarding its output to the log under `label`.
pub(crate) fn spawn(
    spec: &PluginSpec,
    label: &Arc<str>,
    instance: usize,
    socket: &Path,
    token: &str,
) -> Result<Child, StartError> {
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
        tokio::spawn(forward_lines(label.clone(), "stdout", stdout));
    }
    if let Some(stderr) = child.stderr.take() {
        tokio::spawn(forward_lines(label.clone(), "stderr", stderr));
    }
    Ok(child)
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
async fn forward_lines<R: AsyncRead + Unpin>(plugin: Arc<str>, stream: &'static str, output: R) {
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
                log_line(&plugin, stream, &line, cut);
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
            log_line(&plugin, stream, &line, cut);
            line.clear();
            cut = false;
        }
    }
}

fn log_line(plugin: &str, stream: &'static str, line: &[u8], cut: bool) {
    let line = String::from_utf8_lossy(line);
    let line = line.trim_end_matches('\r');
    if cut {
        tracing::info!(plugin = %plugin, stream, "{line}… (line cut)");
    } else {
        tracing::info!(plugin = %plugin, stream, "{line}");
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
        forward_lines(Arc::from("t"), "stdout", &data[..]).await;
    }
}
