//! gatekeeper's own log (and the plugins' stderr, which the plugin host re-logs): the log format
//! (`text`, `json`, `journald`), its default under systemd, and installing the subscriber.

use std::fmt;
use std::io::IsTerminal;
use std::str::FromStr;

use serde::Serialize;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines with a timestamp (colours on a terminal).
    Text,
    /// One JSON object per line (`timestamp`, `level`, `target`, `fields`).
    Json,
    /// For journald: no timestamp (the journal adds its own), no colours, the level as a
    /// `<N>` syslog priority prefix that systemd turns into the entry's priority.
    Journald,
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            "journald" => Ok(LogFormat::Journald),
            other => Err(format!(
                "`{other}` must be \"text\", \"json\" or \"journald\""
            )),
        }
    }
}

impl LogFormat {
    /// The format when none is given: `journald` when stderr is the journal stream systemd
    /// announced in `JOURNAL_STREAM` (`DEVICE:INODE` of the stream), else `text`.
    pub fn detect() -> LogFormat {
        let announced = std::env::var("JOURNAL_STREAM").ok();
        let stderr = stderr_identity();
        if is_journal_stream(announced.as_deref(), stderr.as_deref()) {
            LogFormat::Journald
        } else {
            LogFormat::Text
        }
    }
}

/// `DEVICE:INODE` of this process's stderr, as systemd writes it in `JOURNAL_STREAM`.
fn stderr_identity() -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata("/proc/self/fd/2").ok()?;
    Some(format!("{}:{}", meta.dev(), meta.ino()))
}

/// Whether stderr is the announced journal stream. A `JOURNAL_STREAM` inherited by a process
/// whose stderr was redirected elsewhere does not count; when stderr cannot be looked at, the
/// announcement is believed.
fn is_journal_stream(announced: Option<&str>, stderr: Option<&str>) -> bool {
    match (announced, stderr) {
        (None, _) => false,
        (Some(announced), Some(stderr)) => announced.trim() == stderr,
        (Some(_), None) => true,
    }
}

/// Installs the global subscriber: `RUST_LOG` if set and not blank, else `filter`, else `info`.
pub fn init(filter: &str, format: LogFormat) {
    let rust_log = std::env::var("RUST_LOG").ok();
    let chosen = effective_filter(rust_log.as_deref(), filter);
    let filter = EnvFilter::try_new(chosen)
        .or_else(|_| EnvFilter::try_new(filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().with_ansi(false).init(),
        LogFormat::Journald => builder.with_ansi(false).event_format(JournaldFormat).init(),
    }
}

/// The filter to use: `rust_log` (the `RUST_LOG` variable) unless it is unset or blank (an empty
/// `RUST_LOG=` would otherwise silence every line), else the `--log` filter; `info` if that is
/// blank too.
fn effective_filter<'a>(rust_log: Option<&'a str>, flag: &'a str) -> &'a str {
    match rust_log.map(str::trim) {
        Some(env) if !env.is_empty() => env,
        _ if !flag.trim().is_empty() => flag,
        _ => "info",
    }
}

/// The syslog priority of a level (sd-daemon(3) prefixes).
fn priority(level: Level) -> u8 {
    match level {
        Level::ERROR => 3,
        Level::WARN => 4,
        Level::INFO => 6,
        Level::DEBUG | Level::TRACE => 7,
    }
}

/// `<6>target: message key=value …`: what journald wants on a stream.
struct JournaldFormat;

impl<S, N> FormatEvent<S, N> for JournaldFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        write!(writer, "<{}>{}: ", priority(*meta.level()), meta.target())?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blank_rust_log_does_not_silence_the_log() {
        assert_eq!(effective_filter(None, "warn"), "warn");
        assert_eq!(effective_filter(Some(""), "warn"), "warn");
        assert_eq!(effective_filter(Some("  "), "warn"), "warn");
        assert_eq!(effective_filter(Some("debug"), "warn"), "debug");
        assert_eq!(effective_filter(Some(""), ""), "info");
    }

    #[test]
    fn formats_parse() {
        assert_eq!("json".parse(), Ok(LogFormat::Json));
        assert_eq!("journald".parse(), Ok(LogFormat::Journald));
        assert_eq!("text".parse(), Ok(LogFormat::Text));
        assert!("xml".parse::<LogFormat>().is_err());
    }

    #[test]
    fn the_journal_is_detected_only_on_its_own_stream() {
        assert!(!is_journal_stream(None, Some("8:12")));
        assert!(is_journal_stream(Some("8:12"), Some("8:12")));
        assert!(!is_journal_stream(Some("8:12"), Some("8:13")));
        assert!(is_journal_stream(Some("8:12"), None));
    }

    #[test]
    fn levels_map_to_syslog_priorities() {
        assert_eq!(priority(Level::ERROR), 3);
        assert_eq!(priority(Level::WARN), 4);
        assert_eq!(priority(Level::INFO), 6);
        assert_eq!(priority(Level::DEBUG), 7);
    }
}
