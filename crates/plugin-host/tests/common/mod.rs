//! Helpers shared by the plugin-host test crates: the fake plugin's specs, scratch directories,
//! waiting, a log capture to assert on log lines, and a manager that journals what it hears.

#![allow(dead_code)] // each test crate uses its own subset

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use gatekeeper_plugin_host::{Manager, PluginSpec};
use gatekeeper_rpc::methods::{
    AddBackendParams, AddUpstreamParams, ModifyRequestParams, PluginType, RemoveBackendParams,
    RemoveUpstreamParams,
};
use gatekeeper_rpc::types::HttpRequest;
use gatekeeper_rpc::ErrorObject;
use serde_json::Value;

/// Everything logged so far by every test of this crate.
static LOGS: Mutex<String> = Mutex::new(String::new());

/// A log writer that keeps a copy of each line (for [`logged`]) and prints it for the test harness.
struct Capture;

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        LOGS.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push_str(&text);
        eprint!("{text}");
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_writer(|| Capture)
        .with_ansi(false)
        .with_env_filter("gatekeeper_plugin_host=debug,gatekeeper_rpc=debug")
        .try_init();
}

/// Whether a log line contains every one of `needles`.
pub fn logged(needles: &[&str]) -> bool {
    LOGS.lock()
        .unwrap_or_else(|p| p.into_inner())
        .lines()
        .any(|line| needles.iter().all(|n| line.contains(n)))
}

/// How many log lines contain every one of `needles`.
pub fn count_logged(needles: &[&str]) -> usize {
    LOGS.lock()
        .unwrap_or_else(|p| p.into_inner())
        .lines()
        .filter(|line| needles.iter().all(|n| line.contains(n)))
        .count()
}

pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake_plugin.py")
}

/// A spec running the fake plugin in `mode`, with short timeouts.
pub fn spec(name: &str, plugin_type: PluginType, mode: &str, path: Option<&Path>) -> PluginSpec {
    let mut args = vec![script().display().to_string(), mode.to_owned()];
    if let Some(path) = path {
        args.push(path.display().to_string());
    }
    let mut spec = PluginSpec::new(name, plugin_type, "python3").with_args(args);
    spec.hook_timeout = Duration::from_secs(2);
    spec.heartbeat_interval = Duration::from_millis(200);
    spec.heartbeat_timeout = Duration::from_millis(200);
    spec.missed_heartbeats_allowed = 2;
    spec.start_timeout = Duration::from_secs(5);
    spec.stop_timeout = Duration::from_millis(500);
    spec.restart_backoff_min = Duration::from_millis(50);
    spec.restart_backoff_max = Duration::from_millis(500);
    spec
}

/// A scratch directory for one test, removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(test: &str) -> Scratch {
        let path = std::env::temp_dir().join(format!(
            "gatekeeper-plugin-host-test-{}-{test}-{:x}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&path).unwrap();
        Scratch(path)
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The JSON lines the plugin recorded so far.
pub fn records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

pub async fn eventually(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < timeout, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Whether the process is stopped (state `T` in /proc/PID/stat). SIGSTOP is delivered
/// asynchronously: `kill` returns before the target has stopped.
pub fn stopped(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let after_name = stat.rsplit_once(')')?.1;
            after_name
                .split_whitespace()
                .next()
                .map(|state| state == "T")
        })
        .unwrap_or(false)
}

pub fn kill9(pid: u32) {
    let killed = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
}

pub fn request() -> ModifyRequestParams {
    ModifyRequestParams {
        request: HttpRequest {
            method: "GET".into(),
            path: "/hello".into(),
            ..HttpRequest::default()
        },
    }
}

/// A manager that records the restart notifications and the upstreams pushed.
#[derive(Default)]
pub struct Journal(Mutex<Vec<String>>);

impl Journal {
    pub fn entries(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
    pub fn push(&self, entry: String) {
        self.0.lock().unwrap().push(entry);
    }
}

impl Manager for Journal {
    fn add_upstream(&self, _: &str, params: AddUpstreamParams) -> Result<(), ErrorObject> {
        self.push(format!("add {}", params.upstream.id));
        Ok(())
    }
    fn remove_upstream(&self, _: &str, _: RemoveUpstreamParams) -> Result<(), ErrorObject> {
        Ok(())
    }
    fn add_backend(&self, _: &str, _: AddBackendParams) -> Result<(), ErrorObject> {
        Ok(())
    }
    fn remove_backend(&self, _: &str, _: RemoveBackendParams) -> Result<(), ErrorObject> {
        Ok(())
    }
    fn restarting(&self, plugin: &str) {
        self.push(format!("restarting {plugin}"));
    }
    fn restarted(&self, plugin: &str) {
        self.push(format!("restarted {plugin}"));
    }
}
