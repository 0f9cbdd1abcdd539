//! `test-router`: a router plugin that routes by the request header `x-route`.
//!
//! - `route_request`: the upstream is the value of `x-route` (unchecked: an id gatekeeper does
//!   not know is its 404); no header means no route (`"upstream": null`, a 404). The path is left
//!   as it is (no prefix stripped).
//! - `add_upstream` and `remove_upstream` only record.
//!
//! Settings: `file` (record to it).
//!
//! Records: `{"method":"add_upstream","id":ID}`, `{"method":"remove_upstream","id":ID}`,
//! `{"method":"route_request","path":PATH,"upstream":ID|null}`.

use gatekeeper_plugin_sdk::{
    header, AddUpstreamParams, HookError, Object, Plugin, RemoveUpstreamParams, RouteRequestParams,
    RouteRequestResult, RouterPlugin,
};
use serde_json::json;

use crate::{Recorder, Settings};

/// The header naming the upstream.
pub const ROUTE_HEADER: &str = "x-route";

/// The router.
#[derive(Debug, Default)]
pub struct TestRouter {
    args: Settings,
    recorder: Recorder,
}

impl TestRouter {
    /// A router whose command-line settings are `args`.
    pub fn new(args: Settings) -> Self {
        TestRouter {
            args,
            recorder: Recorder::default(),
        }
    }
}

impl Plugin for TestRouter {
    async fn configure(&self, config: Object) -> Result<(), HookError> {
        let settings = Settings::from_config(&config).overridden_by(&self.args);
        self.recorder.open(settings.get("file"))
    }
}

impl RouterPlugin for TestRouter {
    async fn add_upstream(&self, params: AddUpstreamParams) -> Result<(), HookError> {
        self.recorder
            .record(&json!({"method": "add_upstream", "id": params.upstream.id}));
        Ok(())
    }

    async fn remove_upstream(&self, params: RemoveUpstreamParams) -> Result<(), HookError> {
        self.recorder
            .record(&json!({"method": "remove_upstream", "id": params.id}));
        Ok(())
    }

    async fn route_request(
        &self,
        params: RouteRequestParams,
    ) -> Result<RouteRequestResult, HookError> {
        let request = params.request;
        let upstream = header(&request.headers, ROUTE_HEADER).map(str::to_owned);
        self.recorder.record(&json!({
            "method": "route_request",
            "path": request.path,
            "upstream": upstream,
        }));
        Ok(RouteRequestResult {
            upstream,
            ..RouteRequestResult::default()
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::record::tests::{lines, temp_file};
    use gatekeeper_plugin_sdk::{HttpRequest, Upstream};

    fn request(headers: &[(&str, &str)]) -> RouteRequestParams {
        RouteRequestParams {
            request: HttpRequest {
                method: "GET".into(),
                path: "/x".into(),
                headers: headers
                    .iter()
                    .map(|(n, v)| ((*n).into(), (*v).into()))
                    .collect(),
                ..HttpRequest::default()
            },
        }
    }

    #[tokio::test]
    async fn routes_by_header_and_records() {
        let path = temp_file("router");
        let router = TestRouter::default();
        let mut config = Object::new();
        config.insert("file".into(), json!(path.to_str().unwrap()));
        router.configure(config).await.unwrap();
        let upstream: Upstream = serde_json::from_value(json!({"id": "api"})).unwrap();
        router
            .add_upstream(AddUpstreamParams { upstream })
            .await
            .unwrap();
        let routed = router
            .route_request(request(&[("x-route", "api")]))
            .await
            .unwrap();
        assert_eq!(routed.upstream.as_deref(), Some("api"));
        assert_eq!(routed.prefixless_path, None);
        let unrouted = router.route_request(request(&[])).await.unwrap();
        assert_eq!(unrouted, RouteRequestResult::default());
        router
            .remove_upstream(RemoveUpstreamParams { id: "api".into() })
            .await
            .unwrap();
        assert_eq!(
            lines(&path),
            vec![
                json!({"method": "add_upstream", "id": "api"}),
                json!({"method": "route_request", "path": "/x", "upstream": "api"}),
                json!({"method": "route_request", "path": "/x", "upstream": null}),
                json!({"method": "remove_upstream", "id": "api"}),
            ]
        );
        let _ = std::fs::remove_file(path);
    }
}
