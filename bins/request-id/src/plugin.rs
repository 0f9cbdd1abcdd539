//! The plugin: `modify_request` makes sure the request carries an id, `modify_response` copies it
//! onto the response.
//!
//! - The header is `x-request-id`, or the value of the config key `header`.
//! - A client-sent id is kept if it is 1 to [`MAX_ID_LEN`] visible ASCII characters; otherwise
//!   (absent, empty, too long, odd bytes) it is replaced by a fresh id: 32 random hex digits.
//! - The id is also stored in the request context as [`CONTEXT_KEY`], for later plugins.

use std::sync::{PoisonError, RwLock};

use gatekeeper_plugin_sdk::{
    header, set_header, HookError, HttpRequest, Method, ModifierPlugin, ModifyRequest,
    ModifyRequestParams, ModifyRequestResult, ModifyResponse, ModifyResponseParams,
    ModifyResponseResult, Object, Plugin,
};
use serde_json::Value;

/// The header used unless the config key `header` names another.
pub const DEFAULT_HEADER: &str = "x-request-id";
/// The config key naming the header.
pub const HEADER_KEY: &str = "header";
/// The request context key the id is stored under.
pub const CONTEXT_KEY: &str = "request_id";
/// The longest client-sent id that is kept.
pub const MAX_ID_LEN: usize = 128;

/// Adds and echoes a request id header.
#[derive(Debug)]
pub struct RequestId {
    /// The header name, lower-case.
    header: RwLock<String>,
}

impl Default for RequestId {
    fn default() -> Self {
        RequestId {
            header: RwLock::new(DEFAULT_HEADER.to_owned()),
        }
    }
}

impl RequestId {
    fn header_name(&self) -> String {
        self.header
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The id `request` already carries in `name`, if it is one worth keeping.
    fn existing_id(request: &HttpRequest, name: &str) -> Option<String> {
        header(&request.headers, name)
            .filter(|id| is_acceptable(id))
            .map(str::to_owned)
    }
}

/// Whether a client-sent id is kept: 1 to [`MAX_ID_LEN`] visible ASCII characters.
fn is_acceptable(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_ID_LEN && id.bytes().all(|b| b.is_ascii_graphic())
}

/// A fresh id: 128 random bits as 32 lower-case hex digits.
fn fresh_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// Whether `name` can be an HTTP header name (an RFC 9110 token).
fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

impl Plugin for RequestId {
    /// Accepts an optional `header` key naming the header to use.
    async fn configure(&self, config: Object) -> Result<(), HookError> {
        let name = match config.get(HEADER_KEY) {
            None => DEFAULT_HEADER.to_owned(),
            Some(Value::String(name)) if is_header_name(name) => name.to_ascii_lowercase(),
            Some(other) => {
                return Err(HookError::invalid_params(format!(
                    "config key `{HEADER_KEY}` must be a header name, got {other}"
                )))
            }
        };
        *self.header.write().unwrap_or_else(PoisonError::into_inner) = name;
        Ok(())
    }
}

impl ModifierPlugin for RequestId {
    fn hooks(&self) -> &'static [&'static str] {
        &[ModifyRequest::NAME, ModifyResponse::NAME]
    }

    /// Keeps or sets the id header, and records the id in the context.
    async fn modify_request(
        &self,
        params: ModifyRequestParams,
    ) -> Result<ModifyRequestResult, HookError> {
        let name = self.header_name();
        let mut request = params.request;
        let id = match RequestId::existing_id(&request, &name) {
            Some(id) => id,
            None => {
                let id = fresh_id();
                set_header(&mut request.headers, &name, id.as_str());
                id
            }
        };
        request
            .context
            .insert(CONTEXT_KEY.to_owned(), Value::String(id));
        Ok(ModifyRequestResult {
            patch: None,
            cache: None,
            request: Some(request),
            response: None,
        })
    }

    /// Sets the request's id on the response (from the request header, else the context).
    async fn modify_response(
        &self,
        params: ModifyResponseParams,
    ) -> Result<ModifyResponseResult, HookError> {
        let name = self.header_name();
        let request = &params.request;
        let id = RequestId::existing_id(request, &name).or_else(|| {
            request
                .context
                .get(CONTEXT_KEY)
                .and_then(Value::as_str)
                .filter(|id| is_acceptable(id))
                .map(str::to_owned)
        });
        let Some(id) = id else {
            // modify_request did not run for this request (e.g. it failed open): nothing to echo.
            return Ok(ModifyResponseResult::default());
        };
        let mut response = params.response;
        set_header(&mut response.headers, &name, id);
        Ok(ModifyResponseResult {
            response: Some(response),
            patch: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatekeeper_plugin_sdk::{HttpResponse, MODIFIER_HOOKS};
    use serde_json::json;

    fn request(headers: &[(&str, &str)]) -> HttpRequest {
        HttpRequest {
            method: "GET".into(),
            path: "/".into(),
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            ..HttpRequest::default()
        }
    }

    async fn modified(plugin: &RequestId, request: HttpRequest) -> HttpRequest {
        let result = plugin
            .modify_request(ModifyRequestParams { request })
            .await
            .unwrap();
        assert!(result.response.is_none());
        result.request.expect("the request is returned")
    }

    fn response() -> HttpResponse {
        HttpResponse {
            status: 200,
            headers: vec![("content-type".into(), "text/plain".into())],
            body: None,
            body_base64: None,
            body_omitted: false,
        }
    }

    #[test]
    fn declares_only_request_and_response_hooks() {
        let hooks = RequestId::default().hooks();
        assert_eq!(hooks, ["modify_request", "modify_response"]);
        assert!(hooks.iter().all(|h| MODIFIER_HOOKS.contains(h)));
    }

    #[tokio::test]
    async fn sets_a_fresh_id_when_absent() {
        let plugin = RequestId::default();
        let first = modified(&plugin, request(&[("accept", "*/*")])).await;
        let id = header(&first.headers, "x-request-id").unwrap().to_owned();
        assert_eq!(id.len(), 32);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(first.context[CONTEXT_KEY], json!(id));
        assert_eq!(header(&first.headers, "accept"), Some("*/*"));

        let second = modified(&plugin, request(&[])).await;
        assert_ne!(header(&second.headers, "x-request-id"), Some(id.as_str()));
    }

    #[tokio::test]
    async fn keeps_a_sane_client_id_and_replaces_a_bad_one() {
        let plugin = RequestId::default();
        let kept = modified(&plugin, request(&[("X-Request-Id", "abc-123")])).await;
        assert_eq!(header(&kept.headers, "x-request-id"), Some("abc-123"));
        assert_eq!(kept.context[CONTEXT_KEY], json!("abc-123"));

        let long = "a".repeat(MAX_ID_LEN + 1);
        for bad in ["", "has space", long.as_str()] {
            let replaced = modified(&plugin, request(&[("x-request-id", bad)])).await;
            let values: Vec<_> = replaced
                .headers
                .iter()
                .filter(|(n, _)| n == "x-request-id")
                .collect();
            assert_eq!(values.len(), 1, "{bad:?}");
            assert_eq!(values[0].1.len(), 32, "{bad:?}");
        }
    }

    #[tokio::test]
    async fn echoes_the_id_on_the_response() {
        let plugin = RequestId::default();
        let request = modified(&plugin, request(&[])).await;
        let id = header(&request.headers, "x-request-id").unwrap().to_owned();
        let result = plugin
            .modify_response(ModifyResponseParams {
                request,
                response: response(),
            })
            .await
            .unwrap();
        let response = result.response.expect("a changed response");
        assert_eq!(header(&response.headers, "x-request-id"), Some(id.as_str()));
        assert_eq!(
            header(&response.headers, "content-type"),
            Some("text/plain")
        );
    }

    #[tokio::test]
    async fn falls_back_to_the_context_and_else_changes_nothing() {
        let plugin = RequestId::default();
        let mut with_context = request(&[]);
        with_context
            .context
            .insert(CONTEXT_KEY.into(), json!("from-context"));
        let result = plugin
            .modify_response(ModifyResponseParams {
                request: with_context,
                response: response(),
            })
            .await
            .unwrap();
        let headers = result.response.unwrap().headers;
        assert_eq!(header(&headers, "x-request-id"), Some("from-context"));

        let result = plugin
            .modify_response(ModifyResponseParams {
                request: request(&[]),
                response: response(),
            })
            .await
            .unwrap();
        assert!(result.response.is_none());
    }

    #[tokio::test]
    async fn the_header_is_configurable() {
        let plugin = RequestId::default();
        let mut config = Object::new();
        config.insert(HEADER_KEY.into(), json!("X-Correlation-Id"));
        plugin.configure(config).await.unwrap();
        let request = modified(&plugin, request(&[])).await;
        assert!(header(&request.headers, "x-correlation-id").is_some());
        assert!(header(&request.headers, "x-request-id").is_none());

        let mut config = Object::new();
        config.insert(HEADER_KEY.into(), json!("bad header"));
        let err = plugin.configure(config).await.unwrap_err();
        assert!(err.message().contains("header name"), "{err}");
    }
}
