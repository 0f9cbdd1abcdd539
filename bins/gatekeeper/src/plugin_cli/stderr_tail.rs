//! The log of `gatekeeper plugin`: gatekeeper's own lines to stderr at `--log` (default
//! `warn`), and the plugin's last stderr lines and exit status kept whatever the filter
//! ([`last_lines`], [`last_exit_status`]), and the protocol violation the connection was closed
//! for ([`last_violation`]), and what the host's handshake checks refused or ignored
//! ([`session_warnings`]), so a crash is reported with them.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Mutex;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// How many of the plugin's last stderr lines are kept.
const TAIL: usize = 10;

static LINES: Mutex<VecDeque<String>> = Mutex::new(VecDeque::new());
/// The exit status the host last logged for a process that went down.
static EXIT_STATUS: Mutex<Option<String>> = Mutex::new(None);
/// The protocol violation the connection to the plugin was last closed for.
static VIOLATION: Mutex<Option<String>> = Mutex::new(None);
/// The warnings of the host's session module: what it refused or ignored in the handshake.
static SESSION_WARNINGS: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// The target of the host's handshake checks.
const SESSION_TARGET: &str = "gatekeeper_plugin_host::session";
/// The fields of a session warning worth showing.
const DETAIL_FIELDS: [&str; 4] = ["hook", "version", "plugin_type", "violation"];

/// Sets up the log: `filter` (or `RUST_LOG`, or `warn`) for stderr; the tail of the plugin's
/// stderr always.
pub fn init_logging(filter: Option<&str>) {
    let filter = filter
        .map(EnvFilter::new)
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new("warn"));
    let shown = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_filter(filter);
    // Another subscriber already set (tests) is fine: the tail is then empty.
    let _ = tracing_subscriber::registry()
        .with(shown)
        .with(StderrTail)
        .try_init();
}

/// The plugin's last stderr lines, oldest first.
pub fn last_lines() -> Vec<String> {
    LINES
        .lock()
        .map(|lines| lines.iter().cloned().collect())
        .unwrap_or_default()
}

/// The exit status the host last logged for a plugin process that went down, if any.
pub fn last_exit_status() -> Option<String> {
    EXIT_STATUS.lock().ok().and_then(|status| status.clone())
}

/// The protocol violation the host last closed the plugin's connection for, if any.
pub fn last_violation() -> Option<String> {
    VIOLATION
        .lock()
        .ok()
        .and_then(|violation| violation.clone())
}

/// What the host's handshake checks refused or ignored, in its words (e.g. `ignoring a hook
/// this plugin type does not have (hook = get_backend, plugin_type = modifier)`), in order.
pub fn session_warnings() -> Vec<String> {
    SESSION_WARNINGS
        .lock()
        .map(|w| w.clone())
        .unwrap_or_default()
}

/// Keeps the message of each event the plugin host logs for a plugin's stderr line.
struct StderrTail;

impl<S: Subscriber> Layer<S> for StderrTail {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let mut line = LineOf::default();
        event.record(&mut line);
        if let (Some(status), Ok(mut last)) = (line.exit_status, EXIT_STATUS.lock()) {
            *last = Some(status);
        }
        if let (Some(violation), Ok(mut last)) = (line.violation.clone(), VIOLATION.lock()) {
            *last = Some(violation);
        }
        let metadata = event.metadata();
        if metadata.target() == SESSION_TARGET && *metadata.level() <= tracing::Level::WARN {
            if let Ok(mut warnings) = SESSION_WARNINGS.lock() {
                let message = line.message.clone().unwrap_or_default();
                warnings.push(if line.details.is_empty() {
                    message
                } else {
                    format!("{message} ({})", line.details.join(", "))
                });
            }
        }
        if !line.from_stderr {
            return;
        }
        if let (Some(message), Ok(mut lines)) = (line.message, LINES.lock()) {
            if lines.len() == TAIL {
                lines.pop_front();
            }
            lines.push_back(message);
        }
    }
}

/// The fields of a plugin output event: its `stream` and its message.
#[derive(Default)]
struct LineOf {
    from_stderr: bool,
    message: Option<String>,
    exit_status: Option<String>,
    violation: Option<String>,
    details: Vec<String>,
}

impl Visit for LineOf {
    fn record_str(&mut self, field: &Field, value: &str) {
        if DETAIL_FIELDS.contains(&field.name()) {
            self.details.push(format!("{} = {value}", field.name()));
        }
        match field.name() {
            "stream" => self.from_stderr = value == "stderr",
            "violation" => self.violation = Some(value.to_owned()),
            _ => {}
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.record_debug(field, &value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if DETAIL_FIELDS.contains(&field.name()) {
            self.details.push(format!("{} = {value:?}", field.name()));
        }
        match field.name() {
            "message" => self.message = Some(format!("{value:?}")),
            "exit_status" => self.exit_status = Some(format!("{value:?}")),
            "violation" => self.violation = Some(format!("{value:?}")),
            _ => {}
        }
    }
}
