//! `gatekeeper plugin replay`: starts the plugin, sends every call of a JSON-lines file in
//! order, prints one line per call (the result, or `{"error": {"kind", "message", …}}`), stops
//! the plugin. A line is `{"hook": H, "params": P}`, or an access-log line (no `hook`; its
//! `method`, `host`, `path`) sent as `modify_request` to a modifier and `route_request` to a
//! router. Blank lines and lines starting with `#` are skipped. A plugin that goes down stops
//! the replay (the lines after it are not sent).

use serde_json::Value;

use super::args::{read_text, ReplayArgs};
use super::call::print_json;
use super::outcome::Failure;
use super::request::{access_log_params, checked_params, hook_of, request_hook};
use super::session::Session;
use super::Outcome;

/// Runs `replay`.
pub async fn run(args: &ReplayArgs) -> Outcome<()> {
    let text = match args.file.as_str() {
        "-" => read_text("FILE", "-")?,
        path => read_text("FILE", &format!("@{path}"))?,
    };
    let plugin_type = args.target.plugin_type;
    // Every line is read and checked before the plugin starts.
    let mut calls = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad =
            |what: String| Failure::Usage(format!("{}: line {}: {what}", args.file, index + 1));
        let value: Value = serde_json::from_str(line).map_err(|e| bad(format!("not JSON: {e}")))?;
        let (hook, params) = match value.get("hook").and_then(Value::as_str) {
            Some(hook) => (
                hook.to_owned(),
                value
                    .get("params")
                    .cloned()
                    .unwrap_or_else(|| serde_json::json!({})),
            ),
            None => {
                let hook = request_hook(plugin_type).ok_or_else(|| {
                    bad(format!(
                        "no `hook`, and a {plugin_type} plugin takes no request"
                    ))
                })?;
                (
                    hook.to_owned(),
                    access_log_params(&value).map_err(|e| bad(e.to_string()))?,
                )
            }
        };
        let method = hook_of(plugin_type, &hook).map_err(|e| bad(e.to_string()))?;
        let params = checked_params(method, &params).map_err(|e| bad(e.to_string()))?;
        calls.push((method, params));
    }
    let mut session = Session::start(&args.target).await?;
    let mut down = None;
    for (method, params) in &calls {
        match session.call(method, params).await {
            Ok(result) => print_json(&result),
            Err(failure) => {
                print_json(&failure.to_json());
                if let Failure::Start(_) = failure {
                    down = Some(failure);
                    break;
                }
            }
        }
    }
    session.stop().await;
    down.map_or(Ok(()), Err)
}
