//! The test host (`gatekeeper_plugin_sdk::testing`) and the request and config helpers: every
//! case of `plugin-sdk/conformance/testhost.json`, then the host's lifecycle, calls, checks and
//! manager, through the public API.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: panicking is how it fails

use std::fmt;
use std::sync::{Arc, Mutex};

use gatekeeper_plugin_sdk::helpers::{cookies, query_params};
use gatekeeper_plugin_sdk::testing::{
    self, make_error, make_request, make_response, TestHostError,
};
use gatekeeper_plugin_sdk::{
    codes, config, HookError, HttpResponse, Manager, ModifierPlugin, ModifyErrorResponseParams,
    ModifyRequestParams, ModifyRequestResult, ModifyResponseResult, Object, Plugin, Upstream,
    UpstreamPlugin,
};
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

const TESTHOST_JSON: &str = include_str!("../../conformance/testhost.json");

/// Name-value pairs in the file's order, from a JSON object or an array of pairs.
#[derive(Debug, Default)]
struct Pairs(Vec<(String, String)>);

impl<'de> Deserialize<'de> for Pairs {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PairsVisitor;
        impl<'de> Visitor<'de> for PairsVisitor {
            type Value = Pairs;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of strings or an array of [name, value] pairs")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Pairs, A::Error> {
                let mut pairs = Vec::new();
                while let Some(pair) = map.next_entry::<String, String>()? {
                    pairs.push(pair);
                }
                Ok(Pairs(pairs))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Pairs, A::Error> {
                let mut pairs = Vec::new();
                while let Some(pair) = seq.next_element::<(String, String)>()? {
                    pairs.push(pair);
                }
                Ok(Pairs(pairs))
            }
        }
        deserializer.deserialize_any(PairsVisitor)
    }
}

#[derive(Deserialize)]
struct RequestArgs {
    method: Option<String>,
    path: Option<String>,
    headers: Option<Pairs>,
    cookies: Option<Pairs>,
    host: Option<String>,
    prefix: Option<String>,
    upstream: Option<String>,
    remote_addr: Option<String>,
    listener: Option<String>,
    context: Option<Object>,
    body: Option<String>,
}

#[derive(Deserialize)]
struct ResponseArgs {
    status: Option<u16>,
    headers: Option<Pairs>,
    body: Option<String>,
}

#[derive(Deserialize)]
struct BuilderCase<A> {
    name: String,
    args: A,
    expect: Object,
}

#[derive(Deserialize)]
struct CookieCase {
    name: String,
    headers: Vec<(String, String)>,
    expect: Value,
}

#[derive(Deserialize)]
struct QueryCase {
    name: String,
    query: Option<String>,
    expect: Value,
}

#[derive(Deserialize)]
struct ConfigCase {
    name: String,
    config: Object,
    key: String,
    r#type: String,
    default: Option<Value>,
    expect: Option<Value>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct Cases {
    make_request: Vec<BuilderCase<RequestArgs>>,
    make_response: Vec<BuilderCase<ResponseArgs>>,
    cookies: Vec<CookieCase>,
    query: Vec<QueryCase>,
    typed_config: Vec<ConfigCase>,
}

fn cases() -> Cases {
    serde_json::from_str(TESTHOST_JSON).expect("testhost.json parses")
}

/// Fails unless `actual` has exactly the fields of `expected` (an expected `null`: absent).
fn assert_same(name: &str, expected: &Object, actual: &Value) {
    let actual = actual.as_object().expect("an object");
    for (key, want) in expected {
        let got = actual.get(key).unwrap_or(&Value::Null);
        assert_eq!(got, want, "{name}: field `{key}`");
    }
    for (key, got) in actual {
        assert!(
            expected.contains_key(key) || got.is_null(),
            "{name}: unexpected field `{key}`: {got}"
        );
    }
}

#[test]
fn make_request_cases() {
    let cases = cases().make_request;
    assert!(!cases.is_empty());
    for case in cases {
        let a = case.args;
        let mut builder = make_request(
            a.method.as_deref().unwrap_or("GET"),
            a.path.as_deref().unwrap_or("/"),
        );
        for (name, value) in a.headers.unwrap_or_default().0 {
            builder = builder.header(&name, &value);
        }
        for (name, value) in a.cookies.unwrap_or_default().0 {
            builder = builder.cookie(&name, &value);
        }
        if let Some(host) = &a.host {
            builder = builder.host(host);
        }
        if let Some(prefix) = &a.prefix {
            builder = builder.prefix(prefix);
        }
        if let Some(upstream) = &a.upstream {
            builder = builder.upstream(upstream);
        }
        if let Some(remote_addr) = &a.remote_addr {
            builder = builder.remote_addr(remote_addr);
        }
        if let Some(listener) = &a.listener {
            builder = builder.listener(listener);
        }
        for (key, value) in a.context.unwrap_or_default() {
            builder = builder.context(&key, value);
        }
        if let Some(body) = &a.body {
            builder = builder.body(body);
        }
        let built = serde_json::to_value(builder.build()).unwrap();
        assert_same(&case.name, &case.expect, &built);
    }
}

#[test]
fn make_response_cases() {
    let cases = cases().make_response;
    assert!(!cases.is_empty());
    for case in cases {
        let mut builder = make_response(case.args.status.unwrap_or(200));
        for (name, value) in case.args.headers.unwrap_or_default().0 {
            builder = builder.header(&name, &value);
        }
        if let Some(body) = &case.args.body {
            builder = builder.body(body);
        }
        let built = serde_json::to_value(builder.build()).unwrap();
        assert_same(&case.name, &case.expect, &built);
    }
}

#[test]
fn cookie_cases() {
    let cases = cases().cookies;
    assert!(!cases.is_empty());
    for case in cases {
        let found: Object = cookies(&case.headers)
            .into_iter()
            .map(|(name, value)| (name, Value::String(value)))
            .collect();
        assert_eq!(Value::Object(found), case.expect, "{}", case.name);
    }
}

#[test]
fn query_cases() {
    let cases = cases().query;
    assert!(!cases.is_empty());
    for case in cases {
        let found: Object = query_params(case.query.as_deref())
            .into_iter()
            .map(|(name, values)| (name, json!(values)))
            .collect();
        assert_eq!(Value::Object(found), case.expect, "{}", case.name);
    }
}

/// `config_value` as the file names it: the reader of `kind`, then the default or `required`.
fn typed_value(
    config: &Object,
    key: &str,
    kind: &str,
    default: Option<Value>,
) -> Result<Value, HookError> {
    let read = match kind {
        "int" => config::int(config, key)?.map(|v| json!(v)),
        "float" => config::float(config, key)?.map(|v| json!(v)),
        "bool" => config::boolean(config, key)?.map(|v| json!(v)),
        "string" => config::string(config, key)?.map(|v| json!(v)),
        "list" => config::list(config, key)?.map(|v| json!(v)),
        "duration_ms" => config::duration_ms(config, key)?.map(|v| json!(v)),
        other => panic!("unknown config type {other}"),
    };
    config::required(key, read.or(default))
}

#[test]
fn typed_config_cases() {
    let cases = cases().typed_config;
    assert!(!cases.is_empty());
    for case in cases {
        let outcome = typed_value(&case.config, &case.key, &case.r#type, case.default);
        match (&case.error, outcome) {
            (Some(part), Err(error)) => {
                assert_eq!(error.code(), codes::INVALID_PARAMS, "{}", case.name);
                assert!(
                    error.message().contains(part.as_str()),
                    "{}: {}",
                    case.name,
                    error.message()
                );
            }
            (None, Ok(value)) => assert_eq!(Some(value), case.expect, "{}", case.name),
            (_, outcome) => panic!("{}: got {outcome:?}", case.name),
        }
    }
}

// ---- the host -------------------------------------------------------------------------------

/// Adds `x-greeting` from its config; answers 403 to `/forbidden`, fails `/fail`; records its
/// life.
#[derive(Clone, Default)]
struct Greeter {
    events: Arc<Mutex<Vec<&'static str>>>,
    greeting: Arc<Mutex<String>>,
}

impl Greeter {
    fn events(&self) -> Vec<&'static str> {
        self.events.lock().unwrap().clone()
    }
}

impl Plugin for Greeter {
    async fn configure(&self, config: Object) -> Result<(), HookError> {
        self.events.lock().unwrap().push("configure");
        if let Some(bad) = config.get("invalid") {
            return Err(HookError::invalid_params(format!("bad: {bad}")));
        }
        *self.greeting.lock().unwrap() =
            config::string(&config, "greeting")?.unwrap_or("hi".into());
        Ok(())
    }

    async fn check(&self, _config: Object) -> Result<(), HookError> {
        self.events.lock().unwrap().push("check");
        Ok(())
    }

    async fn start(&self) -> Result<(), HookError> {
        self.events.lock().unwrap().push("start");
        Ok(())
    }

    async fn stop(&self) -> Result<(), HookError> {
        self.events.lock().unwrap().push("stop");
        Ok(())
    }
}

impl ModifierPlugin for Greeter {
    fn hooks(&self) -> &'static [&'static str] {
        &["modify_request", "modify_error_response"]
    }

    async fn modify_request(
        &self,
        params: ModifyRequestParams,
    ) -> Result<ModifyRequestResult, HookError> {
        let mut request = params.request;
        match request.path.as_str() {
            "/forbidden" => Ok(ModifyRequestResult {
                response: Some(HttpResponse::new(403, vec![])),
                ..ModifyRequestResult::default()
            }),
            "/fail" => Err(HookError::new(codes::UNAVAILABLE, "not now")),
            _ => {
                let greeting = self.greeting.lock().unwrap().clone();
                request.headers.push(("x-greeting".into(), greeting));
                Ok(ModifyRequestResult {
                    request: Some(request),
                    ..ModifyRequestResult::default()
                })
            }
        }
    }

    async fn modify_error_response(
        &self,
        params: ModifyErrorResponseParams,
    ) -> Result<ModifyResponseResult, HookError> {
        let mut response = params.response;
        response.body = Some(params.error.kind);
        Ok(ModifyResponseResult {
            response: Some(response),
            patch: None,
        })
    }
}

#[tokio::test]
async fn a_call_goes_through_the_whole_lifecycle_and_the_json_round_trip() {
    let plugin = Greeter::default();
    let host = testing::modifier(plugin.clone(), json!({"greeting": 5}))
        .await
        .unwrap();
    assert_eq!(plugin.events(), ["configure", "start"]);
    assert_eq!(
        host.declared().unwrap().hooks,
        ["modify_request", "modify_error_response"]
    );
    let result = host
        .modify_request(make_request("GET", "/a").build())
        .await
        .unwrap();
    // The SDK sends the returned request as a patch of what changed.
    assert_eq!(
        serde_json::to_value(&result).unwrap(),
        json!({"patch": {"set_headers": {"x-greeting": "5"}}})
    );
    let denied = host
        .modify_request(make_request("GET", "/forbidden").build())
        .await
        .unwrap();
    assert_eq!(denied.response.map(|r| r.status), Some(403));
    let error = host
        .modify_error_response(
            make_request("GET", "/").build(),
            make_response(502).build(),
            make_error("timeout", "slow"),
        )
        .await
        .unwrap();
    assert_eq!(
        error.response.and_then(|r| r.body).as_deref(),
        Some("timeout")
    );
    host.heartbeat().await.unwrap();
    host.stop().await.unwrap();
    assert_eq!(plugin.events(), ["configure", "start", "stop"]);
}

#[tokio::test]
async fn check_mode_configures_with_check_and_never_starts() {
    let plugin = Greeter::default();
    let host = testing::builder()
        .check()
        .modifier(plugin.clone())
        .await
        .unwrap();
    host.stop().await.unwrap();
    assert_eq!(plugin.events(), ["check", "stop"]);
}

#[tokio::test]
async fn a_refused_config_is_the_plugins_error() {
    let plugin = Greeter::default();
    let error = testing::modifier(plugin.clone(), json!({"invalid": "x"}))
        .await
        .err()
        .unwrap();
    assert_eq!(error.code(), Some(codes::INVALID_PARAMS), "{error}");
    assert!(error.to_string().contains("bad: \"x\""), "{error}");
    assert_eq!(plugin.events(), ["configure"]);
}

#[tokio::test]
async fn errors_undeclared_hooks_and_bad_params_are_reported() {
    let host = testing::modifier(Greeter::default(), json!({}))
        .await
        .unwrap();
    let error = host
        .modify_request(make_request("GET", "/fail").build())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, TestHostError::ErrorAnswer { code, message, .. } if *code == codes::UNAVAILABLE && message == "not now"),
        "{error}"
    );
    let error = host
        .modify_response(make_request("GET", "/").build(), make_response(200).build())
        .await
        .unwrap_err();
    assert!(
        matches!(error, TestHostError::NotDeclared { .. }),
        "{error}"
    );
    let error = host
        .call_json(
            "modify_request",
            &json!({"request": {"method": "GET", "path": "/", "headers": "x"}}),
        )
        .await
        .unwrap_err();
    assert!(matches!(error, TestHostError::BadParams { .. }), "{error}");
    host.stop().await.unwrap();
}

/// Pushes one upstream, then a batch, and reports a config error.
struct Registry;

impl Plugin for Registry {}

impl UpstreamPlugin for Registry {
    async fn start_upstreams(&self, manager: Manager) -> Result<(), HookError> {
        let upstream: Upstream =
            serde_json::from_value(json!({"id": "api", "prefixes": ["api"]})).unwrap();
        manager.add_upstream(upstream).await?;
        Ok(())
    }
}

#[tokio::test]
async fn manager_calls_are_answered_and_recorded() {
    let host = testing::upstream(Registry, json!({})).await.unwrap();
    let calls = host.manager_calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0]["method"], "add_upstream");
    assert_eq!(calls[0]["params"]["upstream"]["prefixes"], json!(["api"]));
    host.stop().await.unwrap();

    let refused = testing::builder()
        .manager(|method, _| {
            Err(gatekeeper_plugin_sdk::rpc::error::error_object(
                codes::CONFLICT,
                format!("{method}: exists"),
            ))
        })
        .upstream(Registry)
        .await
        .err()
        .unwrap();
    assert_eq!(refused.code(), Some(codes::CONFLICT), "{refused}");
}
