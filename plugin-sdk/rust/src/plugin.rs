//! The plugin traits: [`Plugin`] (the lifecycle every plugin shares), [`UpstreamPlugin`] and
//! [`ModifierPlugin`]. The other types have their own modules: [`RouterPlugin`](crate::RouterPlugin),
//! [`LoadBalancerPlugin`](crate::LoadBalancerPlugin), [`MetricPlugin`](crate::MetricPlugin).
//!
//! Every method has a default, so a plugin implements only what it needs. Methods are declared
//! as `fn ..(&self, ..) -> impl Future<Output = ..> + Send`; implement them with `async fn`.
//! Calls arrive concurrently (each request runs on its own task), hence `&self` and
//! `Send + Sync`: keep mutable state behind a `Mutex`, an `RwLock` or atomics.

use std::future::Future;

use futures::future::BoxFuture;
use gatekeeper_rpc::methods::{
    ModifyErrorResponse, ModifyErrorResponseParams, ModifyRequest, ModifyRequestParams,
    ModifyRequestResult, ModifyResponse, ModifyResponseParams, ModifyResponseResult, PluginType,
    UpstreamMetricHook, UpstreamMetricParams,
};
use gatekeeper_rpc::patch::{RequestPatch, ResponsePatch};
use gatekeeper_rpc::types::{HttpResponse, Object};
use gatekeeper_rpc::{IncomingRequest, Reply};

use crate::dispatch::{adapter, Dispatch};
use crate::error::HookError;
use crate::manager::{ConfigReporter, Manager};

/// The lifecycle every plugin shares. The proxy calls, in order: `configure`, `start`,
/// `heartbeat` on an interval while the plugin runs, and finally `stop`.
pub trait Plugin: Send + Sync + 'static {
    /// Runs once after the handshake, before `start`, with the plugin's config map (keys and
    /// values from gatekeeper's command line and config file). Validate it here: an error is
    /// reported by gatekeeper and the plugin is not started.
    ///
    /// Default: accepts any config and ignores it.
    fn configure(&self, config: Object) -> impl Future<Output = Result<(), HookError>> + Send {
        async move {
            let _ = config;
            Ok(())
        }
    }

    /// Answers `configure` with `check: true` (sent by `gatekeeper check`): read and check the
    /// config and every file it names, act on nothing (no listening, connecting or pushing);
    /// return an error saying what is wrong, with file, line and key where there are some.
    /// `stop` follows, never `start`.
    ///
    /// Default: runs [`configure`](Self::configure), which must act on nothing anyway.
    fn check(&self, config: Object) -> impl Future<Output = Result<(), HookError>> + Send {
        self.configure(config)
    }

    /// Gets the handle to report config changes the plugin makes on its own with
    /// (`config_status`: a watched file rejected, or accepted again), once, before the
    /// handshake. Keep it if you need it.
    ///
    /// Default: drops it.
    fn config_reporter(&self, reporter: ConfigReporter) {
        let _ = reporter;
    }

    /// Runs once, after `configure`: begin work. For an upstream plugin,
    /// [`UpstreamPlugin::start_upstreams`] runs right after this returns `Ok`.
    ///
    /// Default: does nothing.
    fn start(&self) -> impl Future<Output = Result<(), HookError>> + Send {
        async { Ok(()) }
    }

    /// Runs on an interval while the plugin runs. An error, or no answer within the proxy's
    /// timeout, counts as a missed heartbeat; a plugin that misses several is restarted.
    ///
    /// Default: answers that all is well.
    fn heartbeat(&self) -> impl Future<Output = Result<(), HookError>> + Send {
        async { Ok(()) }
    }

    /// Runs once, when gatekeeper stops the plugin: release resources, flush buffers. Once it
    /// has been answered (error or not) the SDK ends serving and the process exits.
    ///
    /// Default: does nothing.
    fn stop(&self) -> impl Future<Output = Result<(), HookError>> + Send {
        async { Ok(()) }
    }

    /// The declared hooks gatekeeper must not send twice, sent in the handshake (`no_retry`).
    /// By default a hook call in flight on a process that dies (or stalls while another
    /// instance is ready) is sent once more to another process, so a hook may run twice for
    /// one request; name a hook here when running it twice would do harm (e.g. it charges a
    /// payment). Such a call fails instead, under the plugin's failure policy.
    ///
    /// Default: none (every hook may be retried).
    fn no_retry(&self) -> &'static [&'static str] {
        &[]
    }
}

/// A plugin that feeds the proxy upstreams and backends through a [`Manager`].
///
/// The proxy's `start` call runs [`Plugin::start`], then [`start_upstreams`](Self::start_upstreams)
/// with a manager, and is answered when both have returned. A plugin with a fixed list pushes it
/// all in `start_upstreams` (an error then fails `start`); a plugin that discovers changes over
/// time keeps a clone of the manager in a task it spawns there.
///
/// An upstream plugin may also receive the outcomes of requests to backends (e.g. to drop a
/// failing backend from what it pushes): implement [`upstream_metric`](Self::upstream_metric)
/// and declare it in [`hooks`](Self::hooks).
pub trait UpstreamPlugin: Plugin {
    /// Pushes the initial upstreams and backends, and sets up later updates. The manager's
    /// calls go to the proxy while the proxy waits for `start`; a failed call converts into a
    /// [`HookError`] with `?`.
    fn start_upstreams(
        &self,
        manager: Manager,
    ) -> impl Future<Output = Result<(), HookError>> + Send;

    /// The hooks this plugin implements, sent in the handshake: the only one an upstream plugin
    /// may declare is [`UpstreamMetricHook::NAME`](crate::UpstreamMetricHook).
    ///
    /// Default: none. Override it to receive [`upstream_metric`](Self::upstream_metric).
    fn hooks(&self) -> &'static [&'static str] {
        &[]
    }

    /// Runs when the proxy flushes its buffer of backend outcomes (only if declared in
    /// [`hooks`](Self::hooks)): a batch of [`UpstreamMetric`](crate::UpstreamMetric)s, oldest
    /// first. The proxy does not wait on it for any request.
    ///
    /// Default: ignores the batch.
    fn upstream_metric(
        &self,
        params: UpstreamMetricParams,
    ) -> impl Future<Output = Result<(), HookError>> + Send {
        async move {
            let _ = params;
            Ok(())
        }
    }
}

/// Every hook a modifier can implement (from the protocol table).
pub use gatekeeper_rpc::methods::MODIFIER_HOOKS;

/// A plugin that changes requests and responses, or answers requests itself.
///
/// Each modifier sees what the previous one (in gatekeeper's configured order) left. A hook
/// returns only what it changes: the defaults return an empty result, which leaves the request
/// or response as it is.
pub trait ModifierPlugin: Plugin {
    /// The hooks this plugin implements, sent in the handshake: the proxy never calls the others
    /// (and the SDK refuses them). Names are the method names, e.g. [`ModifyRequest::NAME`](crate::Method::NAME).
    ///
    /// Default: all three ([`MODIFIER_HOOKS`]). Declare fewer to save the proxy round trips.
    fn hooks(&self) -> &'static [&'static str] {
        MODIFIER_HOOKS
    }

    /// The declared hooks that want the body, sent in the handshake (`bodies`): the request
    /// body in [`modify_request`](Self::modify_request), the response body in
    /// [`modify_response`](Self::modify_response) and
    /// [`modify_error_response`](Self::modify_error_response), as `body_base64`, up to
    /// gatekeeper's `max_plugin_body`. Read it with `body_bytes()` and replace it with
    /// `set_body_bytes()` on [`HttpRequest`](crate::HttpRequest) and
    /// [`HttpResponse`](crate::HttpResponse); a returned request or response without
    /// `body_base64` leaves the body unchanged.
    ///
    /// Default: none (bodies stream past the plugin, which costs nothing).
    fn bodies(&self) -> &'static [&'static str] {
        &[]
    }

    /// The parts of the request [`modify_request`](Self::modify_request) needs, sent in the
    /// handshake (`parts`): `method`, `path`, `query`, `host`, `headers` (all), `header:NAME`,
    /// `client`, `context`, `upstream`. gatekeeper then sends only those (with `method` and
    /// `path`; the body follows [`bodies`](Self::bodies)), which saves it building and writing
    /// the rest; the hook must then answer with a patch, a response or nothing (a returned
    /// request is sent as a patch by the SDK; one whose body changed cannot be).
    ///
    /// Default: none declared (the whole request is sent).
    fn request_parts(&self) -> &'static [&'static str] {
        &[]
    }

    /// Runs for every request after routing, before a backend is picked. Return a changed
    /// `request` to replace it, or a `response` to answer the client directly (later modifiers
    /// and the backend are then skipped). The SDK sends a returned request as a `patch` of what
    /// changed; return [`ModifyRequestResult::patch`] to say the changes yourself.
    ///
    /// Default: leaves the request unchanged.
    fn modify_request(
        &self,
        params: ModifyRequestParams,
    ) -> impl Future<Output = Result<ModifyRequestResult, HookError>> + Send {
        async move {
            let _ = params;
            Ok(ModifyRequestResult::default())
        }
    }

    /// Runs for every response (status and headers; the body only if declared in
    /// [`bodies`](Self::bodies), else it streams past) before the client gets it, including
    /// responses a modifier gave directly. The SDK sends a returned response whose body did
    /// not change as a `patch` of its status and headers.
    ///
    /// Default: leaves the response unchanged.
    fn modify_response(
        &self,
        params: ModifyResponseParams,
    ) -> impl Future<Output = Result<ModifyResponseResult, HookError>> + Send {
        async move {
            let _ = params;
            Ok(ModifyResponseResult::default())
        }
    }

    /// Runs for every error response the proxy generates (no route, no backend, backend
    /// unreachable, timeout, ...), with what went wrong.
    ///
    /// Default: leaves the response unchanged.
    fn modify_error_response(
        &self,
        params: ModifyErrorResponseParams,
    ) -> impl Future<Output = Result<ModifyResponseResult, HookError>> + Send {
        async move {
            let _ = params;
            Ok(ModifyResponseResult::default())
        }
    }
}

/// How the SDK sends a modifier's results: a returned whole request or response becomes a
/// `patch` of what changed (the proxy then re-reads only that), unless it changed what a patch
/// cannot carry (a body, the host, ...). Plugin authors return whole values or patches alike.
trait SendsPatches: ModifierPlugin {
    /// [`ModifierPlugin::modify_request`], its returned request sent as a patch when it can be.
    fn modify_request_as_patch(
        &self,
        params: ModifyRequestParams,
    ) -> impl Future<Output = Result<ModifyRequestResult, HookError>> + Send {
        async move {
            let sent = params.request.clone();
            let mut result = self.modify_request(params).await?;
            if let (Some(returned), None) = (&result.request, &result.patch) {
                if let Some(patch) = RequestPatch::between(&sent, returned) {
                    result.request = None;
                    result.patch = (!patch.is_empty()).then_some(patch);
                }
            }
            Ok(result)
        }
    }

    /// [`ModifierPlugin::modify_response`], its returned response sent as a patch when it can be.
    fn modify_response_as_patch(
        &self,
        params: ModifyResponseParams,
    ) -> impl Future<Output = Result<ModifyResponseResult, HookError>> + Send {
        async move {
            let sent = params.response.clone();
            let result = self.modify_response(params).await?;
            Ok(response_as_patch(&sent, result))
        }
    }

    /// [`ModifierPlugin::modify_error_response`], its returned response sent as a patch when it
    /// can be.
    fn modify_error_response_as_patch(
        &self,
        params: ModifyErrorResponseParams,
    ) -> impl Future<Output = Result<ModifyResponseResult, HookError>> + Send {
        async move {
            let sent = params.response.clone();
            let result = self.modify_error_response(params).await?;
            Ok(response_as_patch(&sent, result))
        }
    }
}

impl<P: ModifierPlugin> SendsPatches for P {}

/// A returned whole response as a patch of its status and headers, when the body is unchanged.
fn response_as_patch(
    sent: &HttpResponse,
    mut result: ModifyResponseResult,
) -> ModifyResponseResult {
    if let (Some(returned), None) = (&result.response, &result.patch) {
        if let Some(patch) = ResponsePatch::between(sent, returned) {
            result.response = None;
            result.patch = (!patch.is_empty()).then_some(patch);
        }
    }
    result
}

adapter!(
    /// A [`ModifierPlugin`] being served.
    AsModifier: ModifierPlugin as PluginType::Modifier, bodies: bodies, parts: request_parts, {
        ModifyRequest => answer(modify_request_as_patch),
        ModifyResponse => answer(modify_response_as_patch),
        ModifyErrorResponse => answer(modify_error_response_as_patch),
    }
);

/// An [`UpstreamPlugin`] being served.
pub(crate) struct AsUpstream<P>(pub(crate) P);

impl<P: UpstreamPlugin> Dispatch for AsUpstream<P> {
    const TYPE: PluginType = PluginType::Upstream;
    type Plugin = P;

    fn plugin(&self) -> &P {
        &self.0
    }

    fn hooks(&self) -> &'static [&'static str] {
        self.0.hooks()
    }

    fn hook<'a>(&'a self, request: &'a IncomingRequest) -> Option<BoxFuture<'a, Reply>> {
        let plugin = &self.0;
        crate::dispatch::hooks!(request, {
            UpstreamMetricHook => answer_empty(|p| plugin.upstream_metric(p)),
        })
    }

    /// [`Plugin::start`], then [`UpstreamPlugin::start_upstreams`] with a manager calling back
    /// on the connection `start` arrived on.
    fn start<'a>(&'a self, request: &'a IncomingRequest) -> BoxFuture<'a, Result<(), HookError>> {
        let manager = Manager::new(request.peer.clone());
        Box::pin(async move {
            self.0.start().await?;
            self.0.start_upstreams(manager).await
        })
    }
}
