//! The access log: one line per finished or refused request, in Common Log Format, as a JSON
//! object or as `key=value` text (those two with the fields of `access_log_fields`, see
//! [`fields`]), written to a file or stdout. It is a [`MetricsExporter`] of request records, so it rides the
//! batched metrics pipeline: the request path never waits for the disk, and a full buffer drops
//! lines (counted as dropped metrics) instead of slowing requests.

use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use gatekeeper_proxy::{MetricKind, MetricsExporter};
use gatekeeper_rpc::metrics::RequestMetric;
use serde::Serialize;
use time::macros::format_description;
use time::OffsetDateTime;

pub mod fields;

pub use self::fields::{AccessLogField, DEFAULT_FIELDS};

/// What the access log writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessLogFormat {
    /// No access log (the default).
    #[default]
    Off,
    /// Common Log Format: `client - - [time] "METHOD /path?query VERSION" status bytes`.
    Common,
    /// One JSON object per request, with the fields of `access_log_fields`.
    Json,
    /// One line of `key=value` pairs per request (logfmt), with the fields of
    /// `access_log_fields`.
    Text,
}

impl FromStr for AccessLogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "off" => Ok(AccessLogFormat::Off),
            "common" => Ok(AccessLogFormat::Common),
            "json" => Ok(AccessLogFormat::Json),
            "text" => Ok(AccessLogFormat::Text),
            other => Err(format!(
                "`{other}` must be \"off\", \"common\", \"json\" or \"text\""
            )),
        }
    }
}

/// The `access_log_file` value that means stdout.
pub const STDOUT: &str = "-";

/// Writes request records as access log lines.
pub struct AccessLog {
    format: AccessLogFormat,
    fields: Vec<AccessLogField>,
    out: Arc<Mutex<Box<dyn Write + Send>>>,
}

impl AccessLog {
    /// The access log of this format (`json` and `text` with these fields), appending to
    /// `file` (`-`: stdout); `None` when `off`.
    pub fn open(
        format: AccessLogFormat,
        fields: &[AccessLogField],
        file: &Path,
    ) -> std::io::Result<Option<AccessLog>> {
        if format == AccessLogFormat::Off {
            return Ok(None);
        }
        let out: Box<dyn Write + Send> = if file == Path::new(STDOUT) {
            Box::new(std::io::stdout())
        } else {
            Box::new(OpenOptions::new().create(true).append(true).open(file)?)
        };
        Ok(Some(AccessLog {
            format,
            fields: fields.to_vec(),
            out: Arc::new(Mutex::new(out)),
        }))
    }

    /// The lines of a batch, each ending in a newline.
    fn lines(&self, batch: &[RequestMetric]) -> String {
        let mut text = String::with_capacity(batch.len() * 128);
        for record in batch {
            match self.format {
                AccessLogFormat::Common => common_line(record, &mut text),
                AccessLogFormat::Json => fields::json_line(&self.fields, record, &mut text),
                AccessLogFormat::Text => fields::text_line(&self.fields, record, &mut text),
                AccessLogFormat::Off => {}
            }
        }
        text
    }
}

fn utc(time_ms: u64) -> OffsetDateTime {
    let nanos = i128::from(time_ms) * 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Puts `text` in a quoted CLF field with `"`, `\` and control characters escaped.
fn push_escaped(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
}

/// `127.0.0.1 - - [25/Nov/2026:10:00:00 +0000] "GET /path?q HTTP/1.1" 200 1234`.
fn common_line(r: &RequestMetric, out: &mut String) {
    let time = utc(r.time_ms)
        .format(format_description!(
            "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000"
        ))
        .unwrap_or_default();
    let _ = write!(
        out,
        "{} - - [{time}] \"",
        r.client.as_deref().unwrap_or("-")
    );
    push_escaped(&r.method, out);
    out.push(' ');
    push_escaped(&r.path, out);
    if let Some(query) = &r.query {
        out.push('?');
        push_escaped(query, out);
    }
    out.push(' ');
    push_escaped(r.version.as_deref().unwrap_or("-"), out);
    let _ = write!(out, "\" {} ", r.status);
    if r.bytes_out == 0 {
        out.push('-');
    } else {
        let _ = write!(out, "{}", r.bytes_out);
    }
    out.push('\n');
}

impl MetricsExporter for AccessLog {
    fn wants(&self, kind: MetricKind) -> bool {
        kind == MetricKind::Request
    }

    fn export_requests(&self, batch: Vec<RequestMetric>) -> BoxFuture<'static, ()> {
        let text = self.lines(&batch);
        let out = self.out.clone();
        Box::pin(async move {
            let written = tokio::task::spawn_blocking(move || {
                let mut out = out.lock().unwrap_or_else(|e| e.into_inner());
                out.write_all(text.as_bytes())?;
                out.flush()
            })
            .await;
            match written {
                Ok(Ok(())) => {}
                Ok(Err(error)) => tracing::warn!(%error, "access log lines not written"),
                Err(error) => tracing::warn!(%error, "access log writer failed"),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use gatekeeper_rpc::metrics::Phases;

    use super::*;

    fn record() -> RequestMetric {
        RequestMetric {
            time_ms: 1_795_600_800_123,
            listener: "http-public".into(),
            method: "GET".into(),
            host: "localhost".into(),
            path: "/a\"b".into(),
            status: 200,
            upstream: Some("echo".into()),
            backend: Some("0".into()),
            bytes_in: 0,
            bytes_out: 1234,
            error: None,
            phases: Phases {
                total_us: 1500,
                ..Phases::default()
            },
            client: Some("127.0.0.1".into()),
            query: Some("q=1".into()),
            version: Some("HTTP/1.1".into()),
            ..RequestMetric::default()
        }
    }

    #[test]
    fn common_log_format() {
        let mut line = String::new();
        common_line(&record(), &mut line);
        assert_eq!(
            line,
            "127.0.0.1 - - [25/Nov/2026:10:00:00 +0000] \"GET /a\\\"b?q=1 HTTP/1.1\" 200 1234\n"
        );
        let mut empty = String::new();
        common_line(
            &RequestMetric {
                bytes_out: 0,
                client: None,
                ..record()
            },
            &mut empty,
        );
        assert!(empty.starts_with("- - - [") && empty.ends_with("\" 200 -\n"));
    }

    #[test]
    fn json_lines() {
        let mut line = String::new();
        fields::json_line(&DEFAULT_FIELDS, &record(), &mut line);
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["time"], "2026-11-25T10:00:00.123Z");
        assert_eq!(value["path"], "/a\"b");
        assert_eq!(value["query"], "q=1");
        assert_eq!(value["status"], 200);
        assert_eq!(value["duration_us"], 1500);
        assert_eq!(value["client"], "127.0.0.1");
    }

    #[test]
    fn formats_parse() {
        assert_eq!("common".parse(), Ok(AccessLogFormat::Common));
        assert_eq!("off".parse(), Ok(AccessLogFormat::Off));
        assert!("combined".parse::<AccessLogFormat>().is_err());
        assert_eq!("text".parse(), Ok(AccessLogFormat::Text));
    }
}
