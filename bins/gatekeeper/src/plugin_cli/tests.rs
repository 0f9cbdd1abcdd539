//! Unit tests of `gatekeeper plugin`'s pure parts: flags, params, the built request, exit codes.

use clap::Parser;
use gatekeeper_plugin_host::Manager;
use gatekeeper_rpc::methods::{AddUpstreamParams, PluginType};
use serde_json::{json, Value};

use super::args::{Command, PluginCli};
use super::outcome::{Failure, BAD_RESULT, CRASH, ERROR_ANSWER, TIMEOUT, USAGE};
use super::recording_manager::RecordingManager;
use super::request::{access_log_params, checked_params, hook_of, request_params, RequestSpec};

#[test]
fn the_flags_of_call_parse() {
    let cli = PluginCli::try_parse_from([
        "plugin",
        "call",
        "python3 x.py",
        "--type",
        "modifier",
        "--hook",
        "modify_request",
        "-H",
        "a: b",
        "--header",
        "c: d",
        "--timeout",
        "250ms",
    ])
    .expect("valid flags");
    let Command::Call(args) = cli.command else {
        panic!("not call");
    };
    assert_eq!(args.target.plugin_type, PluginType::Modifier);
    assert_eq!(args.headers, ["a: b", "c: d"]);
    assert_eq!(args.target.timeout, std::time::Duration::from_millis(250));
    assert!(
        PluginCli::try_parse_from(["plugin", "call", "x", "--type", "nope", "--hook", "h"])
            .is_err()
    );
}

#[test]
fn a_built_request_is_what_the_proxy_sends() {
    let params = request_params(&RequestSpec {
        method: "post",
        path: "/api/x?q=1",
        host: "example.test",
        remote_addr: "10.0.0.1:5",
        headers: &["Authorization:  Bearer t ".to_owned()],
    })
    .expect("a request");
    let request = &params["request"];
    assert_eq!(request["method"], "POST");
    assert_eq!(request["path"], "/api/x");
    assert_eq!(request["query"], "q=1");
    assert_eq!(request["remote_addr"], "10.0.0.1:5");
    assert_eq!(
        request["headers"],
        json!([["host", "example.test"], ["authorization", "Bearer t"]])
    );
    let no_colon = RequestSpec {
        method: "GET",
        path: "/",
        host: "h",
        remote_addr: "1.2.3.4:5",
        headers: &["oops".to_owned()],
    };
    assert!(matches!(request_params(&no_colon), Err(Failure::Usage(_))));
}

#[test]
fn params_are_checked_and_filled_in_by_the_hook_type() {
    let method = hook_of(PluginType::Modifier, "modify_request").expect("a modifier hook");
    let raw = checked_params(method, &json!({"request": {"method": "GET", "path": "/"}}))
        .expect("valid params");
    let sent: Value = serde_json::from_str(raw.get()).expect("JSON");
    assert_eq!(sent["request"]["headers"], json!([]));
    assert!(checked_params(method, &json!({"request": {"path": 5}})).is_err());
    assert!(hook_of(PluginType::Modifier, "get_backend").is_err());
    assert!(hook_of(PluginType::Modifier, "handshake").is_err());
    assert!(hook_of(PluginType::Metric, "heartbeat").is_ok());
}

#[test]
fn an_access_log_line_is_a_request() {
    let params =
        access_log_params(&json!({"method": "DELETE", "host": "h:8", "path": "/a", "status": 200}))
            .expect("a request");
    assert_eq!(params["request"]["method"], "DELETE");
    assert_eq!(params["request"]["host"], "h:8");
    assert_eq!(params["request"]["path"], "/a");
}

#[test]
fn each_kind_of_failure_has_its_own_exit_code() {
    let codes = [
        Failure::ErrorAnswer {
            hook: "h".into(),
            code: -1,
            message: "m".into(),
            data: None,
        }
        .exit_code(),
        Failure::Usage(String::new()).exit_code(),
        Failure::BadResult(String::new()).exit_code(),
        Failure::Timeout(String::new()).exit_code(),
        Failure::Start(String::new()).exit_code(),
    ];
    assert_eq!(codes, [ERROR_ANSWER, USAGE, BAD_RESULT, TIMEOUT, CRASH]);
    let error = Failure::ErrorAnswer {
        hook: "h".into(),
        code: -32050,
        message: "no".into(),
        data: None,
    };
    assert_eq!(error.to_json()["error"]["code"], -32050);
    assert_eq!(
        Failure::Timeout("slow".into()).to_json()["error"]["kind"],
        "timeout"
    );
}

#[test]
fn the_recording_manager_accepts_and_records() {
    let manager = RecordingManager::default();
    let params: AddUpstreamParams =
        serde_json::from_value(json!({"upstream": {"id": "api", "prefixes": ["api"]}}))
            .expect("valid params");
    assert!(manager.add_upstream("p", params).is_ok());
    let calls = manager.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["method"], "add_upstream");
    assert_eq!(calls[0]["params"]["upstream"]["id"], "api");
}
