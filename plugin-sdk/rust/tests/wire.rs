//! The shared conformance suite's `wire.json` (plugin-sdk/conformance), run against the Rust
//! conformance plugin ([`gatekeeper_plugin_sdk::conformance`]) in memory: the plugin is served
//! over one end of a duplex pipe, and this file plays the proxy on the other end with raw
//! NDJSON lines, step by step, as `plugin-sdk/conformance/README.md` specifies.
//!
//! The cases live only in the JSON file (every SDK reads the same one); nothing of them is
//! copied here. A failure names the case, the step (its index and JSON) and what arrived.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a test crate: panicking is how it fails

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use gatekeeper_plugin_sdk::{conformance, PluginEnv, PluginType, ServeError, PROTOCOL_VERSION};
use serde_json::{Map, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream, ReadHalf, WriteHalf};
use tokio::task::JoinHandle;

/// The token every case's plugin is given.
const TOKEN: &str = "t";
/// The most a whole case may take.
const CASE_TIMEOUT: Duration = Duration::from_secs(10);
/// The most one expected message (or the end of the connection) may take to arrive.
const READ_TIMEOUT: Duration = Duration::from_secs(3);
/// After `close` or `expect_closed`: how long serving may take to return (the README's bound).
const SERVE_END_TIMEOUT: Duration = Duration::from_secs(2);

fn wire_json() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../conformance/wire.json")
}

#[tokio::test]
async fn every_wire_case_passes() {
    let path = wire_json();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let cases: Vec<Value> = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{} is not a JSON list: {e}", path.display()));
    assert!(!cases.is_empty(), "{} has no cases", path.display());

    let mut failures = Vec::new();
    for (n, case) in cases.iter().enumerate() {
        let name = case["name"]
            .as_str()
            .map_or_else(|| format!("case #{n}"), str::to_owned);
        let step = Arc::new(AtomicUsize::new(0));
        let outcome = tokio::time::timeout(CASE_TIMEOUT, run_case(case, step.clone())).await;
        let failure = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(error)) => Some(error),
            Err(_) => {
                let at = step.load(Ordering::SeqCst);
                Some(format!(
                    "timed out after {CASE_TIMEOUT:?} at step {at}: {}",
                    case["steps"][at]
                ))
            }
        };
        match failure {
            None => eprintln!("ok   {name}"),
            Some(error) => {
                eprintln!("FAIL {name}: {error}");
                failures.push(format!("case `{name}`: {error}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} wire cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

// ---- one case ---------------------------------------------------------------------------------

/// The proxy's end of the connection, and the plugin being served on the other end.
struct Proxy {
    reader: Option<BufReader<ReadHalf<DuplexStream>>>,
    writer: Option<WriteHalf<DuplexStream>>,
    serving: Option<JoinHandle<Result<(), ServeError>>>,
    /// The last message expected, which a `reply` step answers.
    last: Option<Value>,
}

/// Plays `case`'s steps; `step` tells the caller which step is running (for a timeout).
async fn run_case(case: &Value, step: Arc<AtomicUsize>) -> Result<(), String> {
    let plugin_type: PluginType = serde_json::from_value(case["plugin_type"].clone())
        .map_err(|e| format!("bad plugin_type {}: {e}", case["plugin_type"]))?;
    let steps = case["steps"]
        .as_array()
        .ok_or("the case has no `steps` list")?;
    let env = PluginEnv {
        socket: "/nonexistent".into(),
        token: TOKEN.to_owned(),
        name: "conformance".to_owned(),
        plugin_type,
        protocol_version: PROTOCOL_VERSION,
        max_line_bytes: 16 << 20,
        busy_poll: None,
    };
    let (proxy_io, plugin_io) = tokio::io::duplex(1 << 20);
    let serving = tokio::spawn(async move { conformance::run(plugin_io, &env).await });
    let (reader, writer) = tokio::io::split(proxy_io);
    let mut proxy = Proxy {
        reader: Some(BufReader::new(reader)),
        writer: Some(writer),
        serving: Some(serving),
        last: None,
    };
    let outcome = async {
        for (n, step_value) in steps.iter().enumerate() {
            step.store(n, Ordering::SeqCst);
            proxy
                .play(step_value)
                .await
                .map_err(|error| format!("step {n} {step_value}: {error}"))?;
        }
        Ok(())
    }
    .await;
    // Whatever is left of the plugin goes with the case.
    if let Some(serving) = proxy.serving.take() {
        serving.abort();
    }
    outcome
}

impl Proxy {
    async fn play(&mut self, step: &Value) -> Result<(), String> {
        let step = step.as_object().ok_or("a step must be an object")?;
        if step.len() != 1 {
            return Err("a step must have exactly one key".into());
        }
        let (kind, arg) = step.iter().next().unwrap();
        match kind.as_str() {
            "expect" => {
                let message = self.read().await?.ok_or(
                    "the plugin closed the connection instead of sending the expected message",
                )?;
                matches(arg, Some(&message), "$")
                    .map_err(|e| format!("{e}\n  received: {message}"))?;
                self.last = Some(message);
                Ok(())
            }
            "reply" => {
                let last = self.last.as_ref().ok_or("no message was expected before")?;
                let id = match last.get("id") {
                    Some(id) if !id.is_null() && last.get("method").is_some() => id.clone(),
                    _ => return Err(format!("the last message expected is no request: {last}")),
                };
                let mut reply = Map::new();
                reply.insert("jsonrpc".into(), "2.0".into());
                reply.insert("id".into(), id);
                let fields = arg.as_object().ok_or("`reply` must be an object")?;
                reply.extend(fields.clone());
                self.write(&Value::Object(reply)).await
            }
            "send" => self.write(arg).await,
            "expect_unordered" => {
                let expected = arg.as_array().ok_or("`expect_unordered` must be a list")?;
                let mut received = Vec::new();
                for _ in expected {
                    match self.read().await? {
                        Some(message) => received.push(message),
                        None => {
                            return Err(format!(
                                "the plugin closed the connection after {} of {} messages: {}",
                                received.len(),
                                expected.len(),
                                Value::Array(received)
                            ))
                        }
                    }
                }
                let mut taken = vec![false; received.len()];
                if !assign(expected, &received, &mut taken) {
                    return Err(format!(
                        "the messages do not match in any order\n  received: {}",
                        Value::Array(received)
                    ));
                }
                self.last = received.pop();
                Ok(())
            }
            "expect_closed" => {
                if arg != &Value::Bool(true) {
                    return Err("`expect_closed` must be true".into());
                }
                if let Some(message) = self.read().await? {
                    return Err(format!(
                        "expected the plugin to close the connection, received: {message}"
                    ));
                }
                self.serve_ends().await
            }
            "close" => {
                if arg != &Value::Bool(true) {
                    return Err("`close` must be true".into());
                }
                self.reader = None;
                self.writer = None;
                self.serve_ends().await
            }
            other => Err(format!("unknown step `{other}`")),
        }
    }

    /// The next message from the plugin; `None` when it closed the connection.
    async fn read(&mut self) -> Result<Option<Value>, String> {
        let reader = self
            .reader
            .as_mut()
            .ok_or("the proxy side is already closed")?;
        loop {
            let mut line = String::new();
            let read = tokio::time::timeout(READ_TIMEOUT, reader.read_line(&mut line))
                .await
                .map_err(|_| format!("nothing arrived within {READ_TIMEOUT:?}"))?
                .map_err(|e| format!("reading from the plugin failed: {e}"))?;
            if read == 0 {
                return Ok(None);
            }
            if !line.ends_with('\n') {
                return Err(format!("the plugin closed mid-line: {line:?}"));
            }
            let line = line.trim_end_matches(['\n', '\r']);
            if line.is_empty() {
                continue; // empty lines are ignored (docs/protocol.md, Framing)
            }
            return serde_json::from_str(line)
                .map(Some)
                .map_err(|e| format!("the plugin sent a line that is not JSON ({e}): {line}"));
        }
    }

    async fn write(&mut self, message: &Value) -> Result<(), String> {
        let writer = self
            .writer
            .as_mut()
            .ok_or("the proxy side is already closed")?;
        let mut line = serde_json::to_string(message).map_err(|e| e.to_string())?;
        line.push('\n');
        writer
            .write_all(line.as_bytes())
            .await
            .map_err(|e| format!("writing to the plugin failed: {e}"))
    }

    /// Serving must return success within [`SERVE_END_TIMEOUT`].
    async fn serve_ends(&mut self) -> Result<(), String> {
        let serving = self.serving.take().ok_or("serving has already ended")?;
        match tokio::time::timeout(SERVE_END_TIMEOUT, serving).await {
            Err(_) => Err(format!(
                "serving did not return within {SERVE_END_TIMEOUT:?}"
            )),
            Ok(Err(join)) => Err(format!("serving panicked: {join}")),
            Ok(Ok(Err(error))) => Err(format!("serving returned an error: {error}")),
            Ok(Ok(Ok(()))) => Ok(()),
        }
    }
}

// ---- matching ---------------------------------------------------------------------------------

/// Whether `actual` (`None`: the field is absent) matches `expected`, by the README's rules:
/// objects are subsets, recursively; `"$any"` matches any present value; `null` matches absent or
/// `null`; `{"$contains": [...]}` matches an array holding those elements in any order; other
/// arrays match element by element, with the same length. On a mismatch, says where.
fn matches(expected: &Value, actual: Option<&Value>, path: &str) -> Result<(), String> {
    if expected.is_null() {
        return match actual {
            None | Some(Value::Null) => Ok(()),
            Some(actual) => Err(format!("{path}: expected null or absent, got {actual}")),
        };
    }
    let Some(actual) = actual else {
        return Err(format!("{path}: missing (expected {expected})"));
    };
    match expected {
        Value::String(s) if s == "$any" => Ok(()),
        Value::Object(fields) if is_contains(expected) => {
            let wanted = fields["$contains"].as_array().unwrap();
            let Value::Array(items) = actual else {
                return Err(format!("{path}: expected an array, got {actual}"));
            };
            let mut taken = vec![false; items.len()];
            if assign(wanted, items, &mut taken) {
                Ok(())
            } else {
                Err(format!(
                    "{path}: expected an array containing {} (in any order), got {actual}",
                    Value::Array(wanted.clone())
                ))
            }
        }
        Value::Object(fields) => {
            let Value::Object(actual_fields) = actual else {
                return Err(format!("{path}: expected an object, got {actual}"));
            };
            for (key, value) in fields {
                matches(value, actual_fields.get(key), &format!("{path}.{key}"))?;
            }
            Ok(())
        }
        Value::Array(items) => {
            let Value::Array(actual_items) = actual else {
                return Err(format!("{path}: expected an array, got {actual}"));
            };
            if items.len() != actual_items.len() {
                return Err(format!(
                    "{path}: expected {} elements ({expected}), got {} ({actual})",
                    items.len(),
                    actual_items.len()
                ));
            }
            for (n, (item, actual_item)) in items.iter().zip(actual_items).enumerate() {
                matches(item, Some(actual_item), &format!("{path}[{n}]"))?;
            }
            Ok(())
        }
        Value::Number(number) => match actual {
            Value::Number(actual_number) if same_number(number, actual_number) => Ok(()),
            _ => Err(format!("{path}: expected {expected}, got {actual}")),
        },
        _ if expected == actual => Ok(()),
        _ => Err(format!("{path}: expected {expected}, got {actual}")),
    }
}

fn is_contains(value: &Value) -> bool {
    value.as_object().is_some_and(|fields| {
        fields.len() == 1 && fields.get("$contains").is_some_and(Value::is_array)
    })
}

/// JSON has one number type: `1` and `1.0` are equal.
fn same_number(a: &serde_json::Number, b: &serde_json::Number) -> bool {
    match (a.as_i64(), b.as_i64(), a.as_u64(), b.as_u64()) {
        (Some(x), Some(y), _, _) => x == y,
        (_, _, Some(x), Some(y)) => x == y,
        _ => a.as_f64() == b.as_f64(),
    }
}

/// Whether every pattern of `wanted` matches a different element of `items` not yet `taken`
/// (a backtracking search, so overlapping patterns such as `"$any"` cannot steal a match).
fn assign(wanted: &[Value], items: &[Value], taken: &mut [bool]) -> bool {
    let Some((first, rest)) = wanted.split_first() else {
        return true;
    };
    for n in 0..items.len() {
        if !taken[n] && matches(first, Some(&items[n]), "$").is_ok() {
            taken[n] = true;
            if assign(rest, items, taken) {
                return true;
            }
            taken[n] = false;
        }
    }
    false
}

// ---- the matcher itself -----------------------------------------------------------------------

#[test]
fn the_matching_rules() {
    use serde_json::json;
    let ok = |e: Value, a: Value| matches(&e, Some(&a), "$").is_ok();
    assert!(ok(json!({"a": 1}), json!({"a": 1, "b": 2})));
    assert!(!ok(json!({"a": 1, "c": 3}), json!({"a": 1})));
    assert!(ok(json!({"a": "$any"}), json!({"a": null})));
    assert!(!ok(json!({"a": "$any"}), json!({})));
    assert!(ok(json!({"a": null}), json!({})));
    assert!(ok(json!({"a": null}), json!({"a": null})));
    assert!(!ok(json!({"a": null}), json!({"a": "x"})));
    assert!(ok(json!({"a": 1}), json!({"a": 1.0})));
    assert!(ok(json!([[1, 2]]), json!([[1, 2]])));
    assert!(!ok(json!([[1, 2]]), json!([[1, 2], [3]])));
    assert!(!ok(json!([1, 2]), json!([2, 1])));
    assert!(ok(
        json!({"$contains": [[3], [1, 2]]}),
        json!([[1, 2], [0], [3]])
    ));
    assert!(ok(json!({"$contains": []}), json!([])));
    assert!(!ok(json!({"$contains": []}), json!({})));
    assert!(!ok(json!({"$contains": [1, 1]}), json!([1, 2])));
    assert!(ok(json!({"$contains": ["$any", 1]}), json!([1, 2])));
}
