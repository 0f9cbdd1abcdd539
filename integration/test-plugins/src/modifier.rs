//! `test-modifier`: a modifier whose behaviour the tests choose, for failure policies, timeouts,
//! declared hooks, several instances and context passing.
//!
//! Every declared hook records the call, sleeps `delay_ms`, then fails if `fail` is set, else:
//!
//! - `modify_request` sets the header `header` to this process's pid, and with `context_key`
//!   sets `context[context_key] = "set-by-<name>"` (`<name>` is the plugin's configured name);
//! - `modify_response`, with `context_key`, copies every request context entry into a response
//!   header `x-context-<key>` (string values as they are, others as JSON);
//! - `modify_error_response` changes nothing.
//!
//! Settings:
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `hooks` | all three | comma list of the hooks to declare. **Command line only** (`--hooks modify_request`): the handshake, which declares the hooks, comes before `configure`; a `hooks` in the config map that differs from what was declared fails `configure` |
//! | `delay_ms` | 0 | sleep in every hook (timeout tests) |
//! | `fail` | false | `true`: every hook answers a JSON-RPC error, code [`FAIL_CODE`] |
//! | `header` | `x-test-modifier` | request header set to the pid |
//! | `context_key` | none | see above |
//! | `file` | none | record to it |
//! | `cache_ms` | none | `modify_request` results carry `cache: {"ttl_ms": cache_ms, "key": cache_key}` |
//! | `cache_key` | `header:authorization` | comma list of cache key parts (with `cache_ms`) |
//!
//! Records, one per hook call, on arrival (before the delay):
//! `{"method":HOOK,"pid":PID,"name":NAME,"context":{…the request context as received…}}`.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use gatekeeper_plugin_sdk::{
    set_header, CacheInstruction, CacheKeyPart, HookError, HttpRequest, ModifierPlugin,
    ModifyErrorResponseParams, ModifyRequestParams, ModifyRequestResult, ModifyResponseParams,
    ModifyResponseResult, Object, Plugin, MODIFIER_HOOKS,
};
use serde_json::{json, Value};

use crate::{Recorder, Settings};

/// The code of the errors `fail = true` answers with.
pub const FAIL_CODE: i32 = -32050;
/// The request header set to the pid unless `header` names another.
pub const DEFAULT_HEADER: &str = "x-test-modifier";
/// The prefix of the response headers `modify_response` copies the context into.
pub const CONTEXT_HEADER_PREFIX: &str = "x-context-";

/// Reads a comma list of modifier hooks (empty items ignored), refusing unknown names.
pub fn parse_hooks(list: &str) -> Result<Vec<&'static str>, String> {
    let mut hooks = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let hook = MODIFIER_HOOKS.iter().find(|h| **h == name).ok_or_else(|| {
            format!(
                "unknown hook `{name}` (expected {})",
                MODIFIER_HOOKS.join(", ")
            )
        })?;
        if !hooks.contains(hook) {
            hooks.push(*hook);
        }
    }
    Ok(hooks)
}

/// The `cache` of `modify_request` results: `cache_ms` and `cache_key` (none without `cache_ms`).
fn cache_instruction(settings: &Settings) -> Result<Option<CacheInstruction>, HookError> {
    if settings.get("cache_ms").is_none() {
        return Ok(None);
    }
    let ttl = settings.millis("cache_ms")?;
    let key = settings
        .get("cache_key")
        .unwrap_or("header:authorization")
        .split(',')
        .map(|part| CacheKeyPart::try_from(part.trim().to_owned()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(HookError::invalid_params)?;
    Ok(Some(CacheInstruction {
        ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
        key,
    }))
}

/// What `configure` decided.
#[derive(Debug, Clone, Default)]
struct Behaviour {
    delay: Duration,
    fail: bool,
    header: String,
    context_key: Option<String>,
    cache: Option<CacheInstruction>,
}

/// The modifier.
#[derive(Debug)]
pub struct TestModifier {
    name: String,
    hooks: &'static [&'static str],
    args: Settings,
    behaviour: RwLock<Arc<Behaviour>>,
    recorder: Recorder,
    /// This process's id, read once (the header and records carry it; a `getpid` per hook
    /// call showed up in the bench's syscall counts).
    pid: u32,
}

impl TestModifier {
    /// A modifier named `name` (for `set-by-<name>` and records) whose command-line settings are
    /// `args`; its hooks are the command line's `hooks`, or all three.
    pub fn new(name: impl Into<String>, args: Settings) -> Result<Self, String> {
        let hooks = match args.get("hooks") {
            // Once per process: the handshake wants a `'static` list.
            Some(list) => &*parse_hooks(list)?.leak(),
            None => MODIFIER_HOOKS,
        };
        Ok(TestModifier {
            name: name.into(),
            hooks,
            args,
            behaviour: RwLock::new(Arc::new(Behaviour {
                header: DEFAULT_HEADER.to_owned(),
                ..Behaviour::default()
            })),
            recorder: Recorder::default(),
            pid: std::process::id(),
        })
    }

    fn behaviour(&self) -> Arc<Behaviour> {
        self.behaviour
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// What every hook does first: record, wait, fail if told to.
    async fn enter(
        &self,
        method: &str,
        request: &HttpRequest,
    ) -> Result<Arc<Behaviour>, HookError> {
        let behaviour = self.behaviour();
        self.recorder.record(&json!({
            "method": method,
            "pid": self.pid,
            "name": self.name,
            "context": request.context,
        }));
        if !behaviour.delay.is_zero() {
            tokio::time::sleep(behaviour.delay).await;
        }
        if behaviour.fail {
            return Err(HookError::new(
                FAIL_CODE,
                format!(
                    "{}: `{method}` fails as configured (fail = true)",
                    self.name
                ),
            ));
        }
        Ok(behaviour)
    }
}

impl Plugin for TestModifier {
    async fn configure(&self, config: Object) -> Result<(), HookError> {
        let from_config = Settings::from_config(&config);
        if let Some(list) = from_config.get("hooks") {
            let wanted = parse_hooks(list).map_err(HookError::invalid_params)?;
            let mut declared = self.hooks.to_vec();
            let mut sorted = wanted.clone();
            declared.sort_unstable();
            sorted.sort_unstable();
            if declared != sorted {
                return Err(HookError::invalid_params(format!(
                    "`hooks` ({list}) must be given on the command line \
                     (`test-modifier --hooks {list}`): hooks are declared in the handshake, \
                     before configure; declared: {}",
                    self.hooks.join(",")
                )));
            }
        }
        let settings = from_config.overridden_by(&self.args);
        let behaviour = Behaviour {
            delay: settings.millis("delay_ms")?,
            fail: settings.flag("fail"),
            header: settings.get("header").unwrap_or(DEFAULT_HEADER).to_owned(),
            context_key: settings.get("context_key").map(str::to_owned),
            cache: cache_instruction(&settings)?,
        };
        self.recorder.open(settings.get("file"))?;
        *self
            .behaviour
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Arc::new(behaviour);
        Ok(())
    }
}

impl ModifierPlugin for TestModifier {
    fn hooks(&self) -> &'static [&'static str] {
        self.hooks
    }

    async fn modify_request(
        &self,
        params: ModifyRequestParams,
    ) -> Result<ModifyRequestResult, HookError> {
        let mut request = params.request;
        let behaviour = self.enter("modify_request", &request).await?;
        set_header(
            &mut request.headers,
            &behaviour.header,
            self.pid.to_string(),
        );
        if let Some(key) = &behaviour.context_key {
            request
                .context
                .insert(key.clone(), json!(format!("set-by-{}", self.name)));
        }
        Ok(ModifyRequestResult {
            patch: None,
            cache: behaviour.cache.clone(),
            request: Some(request),
            response: None,
        })
    }

    async fn modify_response(
        &self,
        params: ModifyResponseParams,
    ) -> Result<ModifyResponseResult, HookError> {
        let behaviour = self.enter("modify_response", &params.request).await?;
        if behaviour.context_key.is_none() {
            return Ok(ModifyResponseResult::default());
        }
        let mut response = params.response;
        for (key, value) in &params.request.context {
            let value = match value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            set_header(
                &mut response.headers,
                &format!("{CONTEXT_HEADER_PREFIX}{key}"),
                value,
            );
        }
        Ok(ModifyResponseResult {
            response: Some(response),
            patch: None,
        })
    }

    async fn modify_error_response(
        &self,
        params: ModifyErrorResponseParams,
    ) -> Result<ModifyResponseResult, HookError> {
        self.enter("modify_error_response", &params.request).await?;
        Ok(ModifyResponseResult::default())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::record::tests::{lines, temp_file};
    use gatekeeper_plugin_sdk::{header, HttpResponse};

    fn modifier(args: &[&str]) -> TestModifier {
        let args = Settings::from_args(args.iter().map(|a| (*a).to_owned())).unwrap();
        TestModifier::new("m1", args).unwrap()
    }

    fn config(pairs: Value) -> Object {
        pairs.as_object().unwrap().clone()
    }

    fn request() -> ModifyRequestParams {
        ModifyRequestParams {
            request: HttpRequest {
                method: "GET".into(),
                path: "/".into(),
                ..HttpRequest::default()
            },
        }
    }

    #[test]
    fn hooks_come_from_the_command_line() {
        assert_eq!(modifier(&[]).hooks(), MODIFIER_HOOKS);
        assert_eq!(
            modifier(&["--hooks", "modify_response, modify_request"]).hooks(),
            ["modify_response", "modify_request"]
        );
        assert!(modifier(&["--hooks", ""]).hooks().is_empty());
        assert!(parse_hooks("modify_request,route_request").is_err());
    }

    #[tokio::test]
    async fn a_hooks_config_that_was_not_declared_fails_configure() {
        let m = modifier(&["--hooks", "modify_request"]);
        m.configure(config(json!({"hooks": "modify_request"})))
            .await
            .unwrap();
        let err = m
            .configure(config(json!({"hooks": "modify_response"})))
            .await
            .unwrap_err();
        assert!(err.message().contains("command line"), "{err}");
    }

    #[tokio::test]
    async fn sets_the_pid_header_and_passes_context_to_the_response() {
        let path = temp_file("modifier");
        let m = modifier(&["--context_key", "a"]);
        m.configure(config(
            json!({"file": path.to_str().unwrap(), "header": "x-pid"}),
        ))
        .await
        .unwrap();
        let changed = m.modify_request(request()).await.unwrap().request.unwrap();
        let pid = std::process::id().to_string();
        assert_eq!(header(&changed.headers, "x-pid"), Some(pid.as_str()));
        assert_eq!(changed.context["a"], "set-by-m1");

        let mut forwarded = changed;
        forwarded.context.insert("n".into(), json!(2));
        let params = ModifyResponseParams {
            request: forwarded,
            response: HttpResponse {
                status: 200,
                headers: vec![],
                body: None,
                body_base64: None,
                body_omitted: false,
            },
        };
        let response = m.modify_response(params).await.unwrap().response.unwrap();
        assert_eq!(header(&response.headers, "x-context-a"), Some("set-by-m1"));
        assert_eq!(header(&response.headers, "x-context-n"), Some("2"));

        let records = lines(&path);
        assert_eq!(records.len(), 2);
        assert_eq!(records[0]["method"], "modify_request");
        assert_eq!(records[0]["pid"], json!(std::process::id()));
        assert_eq!(records[0]["context"], json!({}));
        assert_eq!(records[1]["method"], "modify_response");
        assert_eq!(records[1]["context"], json!({"a": "set-by-m1", "n": 2}));
        let _ = std::fs::remove_file(path);
    }

    #[tokio::test]
    async fn fail_and_delay() {
        let m = modifier(&[]);
        m.configure(config(json!({"fail": "true", "delay_ms": "30"})))
            .await
            .unwrap();
        let started = std::time::Instant::now();
        let err = m.modify_request(request()).await.unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(30));
        assert_eq!(err.code(), FAIL_CODE);
        assert!(m
            .configure(config(json!({"delay_ms": "soon"})))
            .await
            .is_err());
    }
}
