//! The level of a line a plugin writes on stdout or stderr, so the host re-logs it at that
//! level (a plugin's ERROR stays an error in gatekeeper's log and the journal): a JSON log line's
//! `level` (or `levelname`, `severity`, `lvl`) field, else the first word of a text line after an
//! optional timestamp (`ERROR`, `WARN`, `[warning]`, `ERROR:root:…` as Python's logging writes,
//! ANSI colours ignored). A line with no level is logged at INFO.

use tracing::Level;

/// The level `line` names, if any.
pub(crate) fn level_of(line: &str) -> Option<Level> {
    let line = line.trim_start();
    if line.starts_with('{') {
        return json_level(line);
    }
    let plain = strip_ansi(line);
    let mut words = plain.split_whitespace();
    let mut word = words.next()?;
    // Skip up to two timestamp words (`2026-12-05T17:18:24Z`, `2026-12-05 17:18:24,123`).
    for _ in 0..2 {
        if word.starts_with(|c: char| c.is_ascii_digit()) {
            word = words.next()?;
        }
    }
    let word = word.trim_start_matches(['[', '<', '(']);
    let word = word.split([':', ']', '>', ')', '|']).next().unwrap_or(word);
    level_named(word)
}

/// The level of a JSON log line's level field.
fn json_level(line: &str) -> Option<Level> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    let object = value.as_object()?;
    ["level", "levelname", "severity", "lvl"]
        .iter()
        .find_map(|key| object.get(*key))
        .and_then(|level| match level {
            serde_json::Value::String(name) => level_named(name),
            // pino's numbers: 10 trace, 20 debug, 30 info, 40 warn, 50 error, 60 fatal.
            serde_json::Value::Number(n) => n.as_u64().map(|n| match n {
                0..=19 => Level::TRACE,
                20..=29 => Level::DEBUG,
                30..=39 => Level::INFO,
                40..=49 => Level::WARN,
                _ => Level::ERROR,
            }),
            _ => None,
        })
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
fn strip_ansi(line: &str) -> std::borrow::Cow<'_, str> {
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

    #[test]
    fn text_lines_name_their_level_in_their_first_word() {
        let cases = [
            (
                "ERROR static_upstreams::watch: bad file",
                Some(Level::ERROR),
            ),
            ("  WARN something", Some(Level::WARN)),
            ("2026-12-05T17:18:24.123Z ERROR x: y", Some(Level::ERROR)),
            ("2026-12-05 17:18:24,123 WARNING y", Some(Level::WARN)),
            ("ERROR:root:python says", Some(Level::ERROR)),
            ("[warning] bracketed", Some(Level::WARN)),
            ("\u{1b}[31mERROR\u{1b}[0m coloured", Some(Level::ERROR)),
            ("debug: details", Some(Level::DEBUG)),
            ("TRACE deep", Some(Level::TRACE)),
            ("info ok", Some(Level::INFO)),
            ("errors happen", None),
            ("listening on 127.0.0.1:1", None),
            ("", None),
            ("12345", None),
        ];
        for (line, level) in cases {
            assert_eq!(level_of(line), level, "{line:?}");
        }
    }

    #[test]
    fn json_lines_name_their_level_in_a_field() {
        assert_eq!(
            level_of(r#"{"level":"error","msg":"x"}"#),
            Some(Level::ERROR)
        );
        assert_eq!(
            level_of(r#"{"levelname":"WARNING","message":"x"}"#),
            Some(Level::WARN)
        );
        assert_eq!(level_of(r#"{"severity":"DEBUG"}"#), Some(Level::DEBUG));
        assert_eq!(level_of(r#"{"level":50,"msg":"pino"}"#), Some(Level::ERROR));
        assert_eq!(level_of(r#"{"level":30}"#), Some(Level::INFO));
        assert_eq!(level_of(r#"{"msg":"no level"}"#), None);
        assert_eq!(level_of("{not json"), None);
    }
}
