//! `gatekeeper plugin check`: runs the plugin's lifecycle (handshake, `configure`, `start`,
//! `heartbeat`, `stop`) and prints one JSON object: what the plugin declared (`hooks`,
//! `bodies`, the request `fields` of each hook), the manager calls an upstream plugin made
//! (accepted and recorded), a config rejection it reported with `config_status` (it still
//! serves), each lifecycle step's outcome, and the `problems` found (empty when
//! `ok`). The exit code is that of the first problem's kind (0 when there is none).

use gatekeeper_rpc::methods::{hooks_of, Heartbeat};
use gatekeeper_rpc::Method;
use serde_json::{json, Map, Value};

use super::args::TargetArgs;
use super::call::print_json;
use super::outcome::Failure;
use super::request::{checked_params, hook_of};
use super::session::Session;
use super::stderr_tail::{last_violation, session_warnings};
use super::Outcome;

/// The lifecycle steps, in order.
const STEPS: [&str; 5] = ["handshake", "configure", "start", "heartbeat", "stop"];

/// Runs `check`.
pub async fn run(args: &TargetArgs) -> Outcome<()> {
    let spec = args.spec()?;
    let mut report = json!({
        "plugin": spec.name,
        "type": args.plugin_type.as_str(),
        "ok": false,
        "lifecycle": {},
        "hooks": [],
        "bodies": [],
        "fields": {},
        "manager_calls": [],
        "config_rejected": null,
        "problems": [],
    });
    let outcome = lifecycle(args, &mut report).await;
    let mut lifecycle = Map::new();
    let reached = report["reached"].as_u64().unwrap_or(0) as usize;
    for (i, step) in STEPS.iter().enumerate() {
        let state = if i < reached {
            "ok"
        } else if i == reached && outcome.is_err() {
            "failed"
        } else {
            "not reached"
        };
        lifecycle.insert((*step).to_owned(), json!(state));
    }
    if let Some(object) = report.as_object_mut() {
        object.remove("reached");
    }
    report["lifecycle"] = Value::Object(lifecycle);
    // What the host refused or ignored in the handshake (a hook the type does not have, an
    // unsupported version, …) is a protocol problem even when the plugin otherwise runs.
    let mut problems: Vec<Value> = Vec::new();
    if let Err(failure) = &outcome {
        problems.push(json!({"kind": failure.kind(), "message": failure.to_string()}));
    }
    let warnings = session_warnings();
    for warning in &warnings {
        problems.push(json!({"kind": "protocol", "message": warning}));
    }
    let outcome = match (outcome, warnings.first()) {
        (Ok(()), Some(first)) => Err(Failure::Protocol(first.clone())),
        (outcome, _) => outcome,
    };
    report["ok"] = json!(outcome.is_ok());
    report["problems"] = Value::Array(problems);
    print_json(&report);
    outcome
}

/// Runs the lifecycle, filling `report`; `report["reached"]` counts the steps done.
async fn lifecycle(args: &TargetArgs, report: &mut Value) -> Outcome<()> {
    let mut session = Session::start(args).await.map_err(|failure| {
        // A refused config fails at `configure`; anything else at the handshake.
        report["reached"] = json!(if matches!(failure, Failure::ConfigRefused(_)) {
            1
        } else {
            0
        });
        failure
    })?;
    report["reached"] = json!(3);
    declared(&session, args, report);
    report["manager_calls"] = json!(session.manager_calls());
    // A plugin that started but reported its config rejected (`config_status`) still serves;
    // shown, not a problem.
    report["config_rejected"] = json!(session
        .handle()
        .state()
        .config_error
        .map(|rejection| rejection.message));
    let heartbeat = match hook_of(args.plugin_type, Heartbeat::NAME)
        .and_then(|method| checked_params(method, &json!({})).map(|params| (method, params)))
    {
        Ok((method, params)) => session.call(method, &params).await.map(drop),
        Err(e) => Err(e),
    };
    if heartbeat.is_ok() {
        report["reached"] = json!(4);
    }
    session.stop().await;
    // A violation the host saw without a call failing (e.g. a stray line after `start`).
    let heartbeat = heartbeat.and_then(|()| match last_violation() {
        Some(violation) => Err(Failure::Protocol(format!(
            "{violation} (a protocol violation: gatekeeper closes the connection)"
        ))),
        None => Ok(()),
    });
    heartbeat.map_err(|failure| match failure {
        Failure::BadResult(message) => Failure::Protocol(message),
        other => other,
    })?;
    report["reached"] = json!(5);
    Ok(())
}

/// What the plugin declared in its handshake: hooks, bodies, and each hook's request fields
/// (`null`: the whole request).
fn declared(session: &Session, args: &TargetArgs, report: &mut Value) {
    let handle = session.handle();
    let hooks: Vec<&str> = hooks_of(args.plugin_type)
        .iter()
        .copied()
        .filter(|hook| handle.has_hook(hook))
        .collect();
    let bodies: Vec<&str> = hooks
        .iter()
        .copied()
        .filter(|hook| handle.wants_body(hook))
        .collect();
    let mut fields = Map::new();
    for hook in &hooks {
        let parts = handle
            .request_parts(hook)
            .map(|parts| json!(parts.iter().cloned().map(String::from).collect::<Vec<_>>()));
        fields.insert((*hook).to_owned(), parts.unwrap_or(Value::Null));
    }
    report["hooks"] = json!(hooks);
    report["bodies"] = json!(bodies);
    report["fields"] = Value::Object(fields);
}
