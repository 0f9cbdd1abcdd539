//! Reading a line a plugin writes on stdout or stderr as a log record, so the host re-logs it
//! at the level it names (a plugin's ERROR stays an error in gatekeeper's log and the journal,
//! and `--log warn` keeps it) with the message alone:
//!
//! - a text line whose first word (after up to two timestamp words, ANSI colours ignored) is a
//!   level: `ERROR`, `WARN`/`WARNING`, `INFO`, `DEBUG`, `TRACE` and their usual synonyms, bare
//!   in capitals, or in any case in brackets (`[error]`) or followed by `:` (`ERROR:root:msg`,
//!   Python logging's default; `error: ...`). A bare word in other case is a sentence ("Error
//!   handling changed"), logged at INFO as written. That covers the three SDKs' own loggers (Rust's `tracing` ` WARN target: msg`,
//!   Python's `WARNING name: msg`, Node's `WARN gatekeeper-plugin-sdk: msg`). The message is
//!   the rest of the line;
//! - a JSON object with a `level` (or `levelname`, `severity`, `lvl`) field, a name or a pino
//!   number. The message is its `msg` or `message` (or `tracing`'s `fields.message`), followed
//!   by its other fields as `key=value`, except the timestamp (`time`, `timestamp`, `ts`):
//!   gatekeeper stamps every line itself.
//!
//! Any other line is logged at INFO exactly as written.

use std::borrow::Cow;

use serde_json::{Map, Value};
use tracing::Level;

/// A plugin's output line read as a log record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PluginLogLine<'a> {
    /// The level the line names, INFO if none.
    pub(crate) level: Level,
    /// What to log: the line without its timestamp and level, or the whole line.
    pub(crate) message: Cow<'a, str>,
}

/// Reads `line` as a log record (see the module's documentation).
pub(crate) fn parse_log_line(line: &str) -> PluginLogLine<'_> {
    let trimmed = line.trim_start();
    let named = if trimmed.starts_with('{') {
        json_record(trimmed)
    } else {
        text_record(trimmed)
    };
    match named {
        Some((level, message)) => PluginLogLine {
            level,
            message: message.into(),
        },
        None => PluginLogLine {
            level: Level::INFO,
            message: line.into(),
        },
    }
}

/// The level and message of a text line that starts with a level word.
fn text_record(line: &str) -> Option<(Level, String)> {
    let plain = strip_ansi(line);
    let mut rest = plain.trim_start();
    // Skip up to two timestamp words (`2026-12-05T17:18:24Z`, `2026-12-05 17:18:24,123`).
    for _ in 0..2 {
        if rest.starts_with(|c: char| c.is_ascii_digit()) {
            rest = rest
                .split_once(char::is_whitespace)
                .map_or("", |(_, after)| after.trim_start());
        }
    }
    let word = rest.split(char::is_whitespace).next().unwrap_or(rest);
    let opened = word.trim_start_matches(['[', '<', '(']);
    let name = opened
        .split([':', ']', '>', ')', '|'])
        .next()
        .unwrap_or(opened);
    let after = &rest[word.len() - opened.len() + name.len()..];
    // A bare word counts only in capitals: "Error handling changed" is a sentence, not a level;
    // in brackets or before a `:` any case does (`[warn]`, `error: ...`).
    let marked = opened.len() < word.len() || after.starts_with([':', ']', '>', ')', '|']);
    if !marked && name.chars().any(|c| c.is_ascii_lowercase()) {
        return None;
    }
    let level = level_named(name)?;
    let message = after
        .trim_start_matches([':', ']', '>', ')', '|'])
        .trim_start();
    let message = if message.is_empty() { rest } else { message };
    Some((level, message.to_owned()))
}

/// Fields naming a JSON log line's level, the first present wins.
const LEVEL_FIELDS: [&str; 4] = ["level", "levelname", "severity", "lvl"];
/// Fields holding a JSON log line's message, the first present wins.
const MESSAGE_FIELDS: [&str; 2] = ["msg", "message"];
/// Fields of a JSON log line left out of the message: gatekeeper stamps every line itself.
const TIMESTAMP_FIELDS: [&str; 3] = ["time", "timestamp", "ts"];

/// The level and message (with the other fields) of a JSON object line with a level field.
fn json_record(line: &str) -> Option<(Level, String)> {
    let value: Value = serde_json::from_str(line).ok()?;
    let mut object = value.as_object()?.clone();
    let level_key = LEVEL_FIELDS.iter().find(|key| object.contains_key(**key))?;
    let level = object
        .remove(*level_key)
        .and_then(|level| json_level(&level))?;
    for key in TIMESTAMP_FIELDS {
        object.remove(key);
    }
    let mut message = take_message(&mut object);
    // tracing-subscriber's JSON puts the message and the event's fields under `fields`.
    if let Some(Value::Object(mut fields)) = object.remove("fields") {
        if message.is_none() {
            message = take_message(&mut fields);
        }
        object.extend(fields);
    }
    let mut text = message.unwrap_or_default();
    for (key, value) in &object {
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(key);
        text.push('=');
        text.push_str(&field_text(value));
    }
    Some((
        level,
        if text.is_empty() {
            line.to_owned()
        } else {
            text
        },
    ))
}

/// Removes and returns the first message field of `object` (a non-string one as JSON).
fn take_message(object: &mut Map<String, Value>) -> Option<String> {
    let key = MESSAGE_FIELDS
        .iter()
        .find(|key| object.contains_key(**key))?;
    object.remove(*key).map(|value| match value {
        Value::String(text) => text,
        other => other.to_string(),
    })
}

/// A field's value as it is shown in the message: a plain word as is, anything else as JSON.
fn field_text(value: &Value) -> String {
    match value {
        Value::String(text)
            if !text.is_empty()
                && !text
                    .chars()
                    .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '=') =>
        {
            text.clone()
        }
        other => other.to_string(),
    }
}

/// The level of a JSON log line's level field: a name, or pino's number.
fn json_level(level: &Value) -> Option<Level> {
    match level {
        Value::String(name) => level_named(name),
        // pino's numbers: 10 trace, 20 debug, 30 info, 40 warn, 50 error, 60 fatal.
        Value::Number(n) => n.as_u64().map(|n| match n {
            0..=19 => Level::TRACE,
            20..=29 => Level::DEBUG,
            30..=39 => Level::INFO,
            40..=49 => Level::WARN,
            _ => Level::ERROR,
        }),
        _ => None,
    }
}

fn level_named(word: &str) -> Option<Level> {
    match word.to_ascii_uppercase().as_str() {
        "ERROR" | "ERR" | "FATAL" | "CRITICAL" | "CRIT" | "PANIC" | "EMERG" | "ALERT" => {
            Some(Level::ERROR)
        }
        "WARN" | "WARNING" => Some(Level::WARN),
        "INFO" | "NOTICE" => Some(Level::INFO),
        "DEBUG" => Some(Level::DEBUG),
        "TRACE" => Some(Level::TRACE),
        _ => None,
    }
}

/// `line` without ANSI escape sequences (`ESC [ … letter`).
fn strip_ansi(line: &str) -> Cow<'_, str> {
    if !line.contains('\u{1b}') {
        return line.into();
    }
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for next in chars.by_ref() {
                if next.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(line: &str) -> (Level, String) {
        let record = parse_log_line(line);
        (record.level, record.message.into_owned())
    }

    #[test]
    fn text_lines_name_their_level_in_their_first_word() {
        let cases = [
            // Rust SDK (tracing's fmt, no time, no colours).
            (
                "ERROR static_upstreams::watch: bad file",
                Level::ERROR,
                "static_upstreams::watch: bad file",
            ),
            (
                " WARN my_plugin: slow backend n=3",
                Level::WARN,
                "my_plugin: slow backend n=3",
            ),
            // Python SDK, then Python logging's default format.
            (
                "WARNING gatekeeper_plugin: x",
                Level::WARN,
                "gatekeeper_plugin: x",
            ),
            ("ERROR:root:python says", Level::ERROR, "root:python says"),
            ("CRITICAL:app:down", Level::ERROR, "app:down"),
            // Node SDK.
            (
                "ERROR gatekeeper-plugin-sdk: hook failed",
                Level::ERROR,
                "gatekeeper-plugin-sdk: hook failed",
            ),
            ("  WARN something", Level::WARN, "something"),
            ("2026-12-05T17:18:24.123Z ERROR x: y", Level::ERROR, "x: y"),
            ("2026-12-05 17:18:24,123 WARNING y", Level::WARN, "y"),
            ("[warning] bracketed", Level::WARN, "bracketed"),
            (
                "[ERROR]: bracketed and colon",
                Level::ERROR,
                "bracketed and colon",
            ),
            ("<debug> angled", Level::DEBUG, "angled"),
            (
                "\u{1b}[31mERROR\u{1b}[0m coloured",
                Level::ERROR,
                "coloured",
            ),
            ("debug: details", Level::DEBUG, "details"),
            (
                "Error: connection refused",
                Level::ERROR,
                "connection refused",
            ),
            ("TRACE deep", Level::TRACE, "deep"),
            ("[info] ok", Level::INFO, "ok"),
            ("ERROR", Level::ERROR, "ERROR"),
            ("error:", Level::ERROR, "error:"),
            // No level: INFO, the line as written.
            ("errors happen", Level::INFO, "errors happen"),
            // A sentence starting with a level word in other case than capitals.
            (
                "Error handling changed",
                Level::INFO,
                "Error handling changed",
            ),
            ("Info about x", Level::INFO, "Info about x"),
            ("warning signs", Level::INFO, "warning signs"),
            (
                "listening on 127.0.0.1:1",
                Level::INFO,
                "listening on 127.0.0.1:1",
            ),
            ("", Level::INFO, ""),
            ("12345", Level::INFO, "12345"),
            (
                "2026-12-05 17:18:24 started",
                Level::INFO,
                "2026-12-05 17:18:24 started",
            ),
            ("  indented", Level::INFO, "  indented"),
        ];
        for (line, level, message) in cases {
            assert_eq!(read(line), (level, message.to_owned()), "{line:?}");
        }
    }

    #[test]
    fn json_lines_name_their_level_in_a_field() {
        let cases = [
            (r#"{"level":"warn","msg":"x"}"#, Level::WARN, "x"),
            (
                r#"{"level":"error","msg":"x","upstream":"api","tries":3}"#,
                Level::ERROR,
                "x tries=3 upstream=api",
            ),
            (r#"{"levelname":"WARNING","message":"x"}"#, Level::WARN, "x"),
            (
                r#"{"severity":"DEBUG","msg":"a b","who":"two words"}"#,
                Level::DEBUG,
                r#"a b who="two words""#,
            ),
            (
                r#"{"lvl":"info","msg":"m","nested":{"a":[1]}}"#,
                Level::INFO,
                r#"m nested={"a":[1]}"#,
            ),
            // pino: a number, with time, pid and hostname.
            (
                r#"{"level":50,"time":1733500000000,"pid":7,"hostname":"h","msg":"pino"}"#,
                Level::ERROR,
                "pino hostname=h pid=7",
            ),
            (r#"{"level":30,"msg":"ok"}"#, Level::INFO, "ok"),
            // tracing-subscriber's JSON format.
            (
                r#"{"timestamp":"2026-12-06T06:00:00Z","level":"WARN","fields":{"message":"slow","ms":250},"target":"my_plugin"}"#,
                Level::WARN,
                "slow ms=250 target=my_plugin",
            ),
            (r#"{"level":"error"}"#, Level::ERROR, r#"{"level":"error"}"#),
            (
                r#"{"level":"error","extra":""}"#,
                Level::ERROR,
                r#"extra="""#,
            ),
        ];
        for (line, level, message) in cases {
            assert_eq!(read(line), (level, message.to_owned()), "{line}");
        }
    }

    #[test]
    fn json_lines_without_a_known_level_are_info_as_written() {
        for line in [
            r#"{"msg":"no level"}"#,
            r#"{"level":"loud","msg":"unknown level"}"#,
            r#"{"level":true}"#,
            "{not json",
            "[1,2]",
        ] {
            assert_eq!(read(line), (Level::INFO, line.to_owned()), "{line}");
        }
    }
}
