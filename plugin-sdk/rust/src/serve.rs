//! Serving a plugin: read the environment, log to stderr, connect, handshake, answer the proxy's
//! calls until `stop` (or until the connection closes).
//!
//! Every plugin type is served the same way; the `serve_*` and `run_*` functions differ only in
//! the [`Dispatch`] adapter that maps the type's hooks to its trait.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use gatekeeper_rpc::methods::{
    hooks_of, Handshake, HandshakeParams, Method, ModifyRequest, PluginType, Stop,
};
use gatekeeper_rpc::parts::RequestPart;
use gatekeeper_rpc::peer::CloseReason;
use gatekeeper_rpc::{Handler, IncomingRequest, Peer, PeerConfig, Reply, PROTOCOL_VERSION};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::UnixStream;
use tokio::sync::Notify;

use crate::dispatch::{self, Dispatch};
use crate::env::PluginEnv;
use crate::error::ServeError;
use crate::loadbalancer::AsLoadBalancer;
use crate::loadbalancer::LoadBalancerPlugin;
use crate::manager::ConfigReporter;
use crate::metric::AsMetric;
use crate::metric::MetricPlugin;
use crate::plugin::{AsModifier, AsUpstream};
use crate::plugin::{ModifierPlugin, Plugin, UpstreamPlugin};
use crate::router::AsRouter;
use crate::router::RouterPlugin;

/// How long the handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// After answering `stop`, how long to wait for the answer to be written before closing anyway.
const STOP_GRACE: Duration = Duration::from_millis(250);

/// Serves an upstream plugin for the life of the process: sets up logging to stderr, reads the
/// environment gatekeeper set, connects, handshakes, answers calls until `stop` has been answered
/// or the connection closes.
///
/// Returns the process's exit code: success after a normal end, failure (with the error printed
/// on stderr) when the plugin was not started by gatekeeper or the connection failed. Use it as
/// the whole of `main`: `async fn main() -> ExitCode { serve_upstream(MyPlugin::default()).await }`.
pub async fn serve_upstream<P: UpstreamPlugin>(plugin: P) -> ExitCode {
    serve(AsUpstream(plugin)).await
}

/// Serves a modifier plugin for the life of the process; see [`serve_upstream`].
pub async fn serve_modifier<P: ModifierPlugin>(plugin: P) -> ExitCode {
    serve(AsModifier(plugin)).await
}

/// Serves a router plugin for the life of the process; see [`serve_upstream`].
pub async fn serve_router<P: RouterPlugin>(plugin: P) -> ExitCode {
    serve(AsRouter(plugin)).await
}

/// Serves a loadbalancer plugin for the life of the process; see [`serve_upstream`].
pub async fn serve_loadbalancer<P: LoadBalancerPlugin>(plugin: P) -> ExitCode {
    serve(AsLoadBalancer(plugin)).await
}

/// Serves a metric plugin for the life of the process; see [`serve_upstream`].
pub async fn serve_metric<P: MetricPlugin>(plugin: P) -> ExitCode {
    serve(AsMetric(plugin)).await
}

/// Serves an upstream plugin over an open connection (what [`serve_upstream`] does once
/// connected; useful for tests and other transports). Returns once `stop` has been answered or
/// the connection has closed.
pub async fn run_upstream<P, IO>(plugin: P, io: IO, env: &PluginEnv) -> Result<(), ServeError>
where
    P: UpstreamPlugin,
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    run(AsUpstream(plugin), io, env).await
}

/// Serves a modifier plugin over an open connection; see [`run_upstream`].
pub async fn run_modifier<P, IO>(plugin: P, io: IO, env: &PluginEnv) -> Result<(), ServeError>
where
    P: ModifierPlugin,
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    run(AsModifier(plugin), io, env).await
}

/// Serves a router plugin over an open connection; see [`run_upstream`].
pub async fn run_router<P, IO>(plugin: P, io: IO, env: &PluginEnv) -> Result<(), ServeError>
where
    P: RouterPlugin,
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    run(AsRouter(plugin), io, env).await
}

/// Serves a loadbalancer plugin over an open connection; see [`run_upstream`].
pub async fn run_loadbalancer<P, IO>(plugin: P, io: IO, env: &PluginEnv) -> Result<(), ServeError>
where
    P: LoadBalancerPlugin,
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    run(AsLoadBalancer(plugin), io, env).await
}

/// Serves a metric plugin over an open connection; see [`run_upstream`].
pub async fn run_metric<P, IO>(plugin: P, io: IO, env: &PluginEnv) -> Result<(), ServeError>
where
    P: MetricPlugin,
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    run(AsMetric(plugin), io, env).await
}

/// Sets up `tracing` to write to stderr, which gatekeeper reads into its own log (tagged with
/// the plugin's name, so lines carry no timestamp and no colours). The level comes from
/// `RUST_LOG` (default `info`). Does nothing if a global subscriber is already set.
/// The `serve_*` functions and [`connect`] call it.
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .without_time()
        .try_init();
}

/// The low-level way in, for a plugin that speaks the protocol itself (see docs/protocol.md)
/// instead of implementing a trait: sets up logging ([`init_logging`]), reads the environment,
/// checks that gatekeeper runs the program as a `plugin_type` plugin, and connects to the
/// socket. What comes next is the caller's: the `handshake` with [`PluginEnv::token`], then
/// answering calls (e.g. with a [`rpc::Peer`](crate::rpc::Peer), or raw lines).
pub async fn connect(plugin_type: PluginType) -> Result<(PluginEnv, UnixStream), ServeError> {
    init_logging();
    let env = PluginEnv::from_env()?;
    check_type(&env, plugin_type)?;
    let io = UnixStream::connect(&env.socket)
        .await
        .map_err(|source| ServeError::Connect {
            path: env.socket.clone(),
            source,
        })?;
    Ok((env, io))
}

async fn serve<D: Dispatch>(dispatch: D) -> ExitCode {
    let outcome = async {
        let (env, io) = connect(D::TYPE).await?;
        // Over the Unix socket itself, so the peer can busy-poll it when asked to.
        run_with(dispatch, &env, |handler, config| {
            Peer::spawn_unix(io, handler, config)
        })
        .await
    }
    .await;
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // Straight to stderr: logging may be filtered, and this is the one line that matters.
            // (Every `ServeError` message already includes its source.)
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn check_type(env: &PluginEnv, actual: PluginType) -> Result<(), ServeError> {
    if env.plugin_type == actual {
        Ok(())
    } else {
        Err(ServeError::WrongType {
            configured: env.plugin_type.to_string(),
            actual: actual.as_str(),
        })
    }
}

/// Serves `dispatch` over `io`: handshake with its declared hooks, then answer calls until
/// `stop` has been answered or the connection closes.
async fn run<D, IO>(dispatch: D, io: IO, env: &PluginEnv) -> Result<(), ServeError>
where
    D: Dispatch,
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    run_with(dispatch, env, |handler, config| {
        Peer::spawn(io, handler, config)
    })
    .await
}

/// [`run`] with the connection's peer started by `spawn` (e.g. [`Peer::spawn_unix`], which can
/// busy-poll: the environment's `GATEKEEPER_BUSY_POLL_US` is in the config it is given).
async fn run_with<D, S>(dispatch: D, env: &PluginEnv, spawn: S) -> Result<(), ServeError>
where
    D: Dispatch,
    S: FnOnce(Arc<dyn Handler>, PeerConfig) -> Peer,
{
    check_type(env, D::TYPE)?;
    if env.protocol_version != PROTOCOL_VERSION {
        tracing::warn!(
            proxy = env.protocol_version,
            plugin = PROTOCOL_VERSION,
            "gatekeeper speaks another protocol version; the handshake will likely be refused"
        );
    }
    let hooks: Vec<String> = dispatch.hooks().iter().map(|h| (*h).to_owned()).collect();
    for warning in declaration_warnings(D::TYPE, &hooks) {
        tracing::warn!("{warning}");
    }
    let dispatch_bodies: Vec<String> = dispatch.bodies().iter().map(|h| (*h).to_owned()).collect();
    for hook in dispatch_bodies.iter().filter(|h| !hooks.contains(h)) {
        tracing::warn!(
            hook,
            "wanting the body of a hook that is not declared; gatekeeper ignores it"
        );
    }
    let no_retry: Vec<String> = dispatch
        .plugin()
        .no_retry()
        .iter()
        .map(|h| (*h).to_owned())
        .collect();
    for hook in no_retry.iter().filter(|h| !hooks.contains(h)) {
        tracing::warn!(
            hook,
            "`no_retry` for a hook that is not declared; gatekeeper ignores it"
        );
    }
    let parts = declared_parts(dispatch.request_parts(), &hooks);
    let stopped = Arc::new(Notify::new());
    let dispatch = Arc::new(dispatch);
    let handler = PluginHandler {
        dispatch: dispatch.clone(),
        stopped: stopped.clone(),
    };
    let config = PeerConfig {
        max_line_bytes: env.max_line_bytes,
        name: env.name.clone(),
        busy_poll: env.busy_poll,
        ..PeerConfig::default()
    };
    let peer = spawn(Arc::new(handler), config);
    dispatch
        .plugin()
        .config_reporter(ConfigReporter::new(peer.clone()));
    let params = HandshakeParams {
        token: env.token.clone(),
        protocol_version: PROTOCOL_VERSION,
        hooks,
        bodies: dispatch_bodies,
        no_retry,
        parts,
    };
    let accepted = match peer.request::<Handshake>(&params, HANDSHAKE_TIMEOUT).await {
        Ok(accepted) => accepted,
        Err(error) => {
            peer.close();
            return Err(ServeError::Handshake(error));
        }
    };
    tracing::debug!(name = %accepted.name, r#type = %accepted.plugin_type, "handshake accepted");
    tokio::select! {
        () = stopped.notified() => {
            // The answer to `stop` is queued and the connection closes once it is written.
            let _ = tokio::time::timeout(STOP_GRACE, peer.closed()).await;
            peer.close();
            tracing::debug!("stopped");
            Ok(())
        }
        reason = peer.closed() => match reason {
            CloseReason::Eof | CloseReason::Local => {
                tracing::info!("gatekeeper closed the connection");
                Ok(())
            }
            CloseReason::Io(error) => {
                tracing::warn!(%error, "the connection to gatekeeper broke");
                Ok(())
            }
            CloseReason::LineTooLong => Err(ServeError::Connection(format!(
                "gatekeeper sent a line over the {}-byte limit",
                env.max_line_bytes
            ))),
            CloseReason::ProtocolViolation(what) => Err(ServeError::Connection(format!(
                "gatekeeper broke the protocol: {what}"
            ))),
            // Reasons the SDK never closes with itself.
            reason @ (CloseReason::Hung(_) | CloseReason::Failing(_)) => Err(
                ServeError::Connection(format!("the connection closed: {reason}")),
            ),
        },
    }
}

/// What looks wrong in the hooks a plugin of `plugin_type` declares, for warnings at startup:
/// none at all (for a type whose hooks are how it works: gatekeeper never calls it), and each
/// name that is not a hook of the type (gatekeeper ignores it), with the hook it is close to
/// (`modify_requets`: a misspelling of `modify_request`?) or the type it is a hook of.
pub(crate) fn declaration_warnings(plugin_type: PluginType, hooks: &[String]) -> Vec<String> {
    let valid = hooks_of(plugin_type);
    let mut warnings = Vec::new();
    if hooks.is_empty() && plugin_type != PluginType::Upstream {
        warnings.push(format!(
            "this {plugin_type} plugin declares no hooks, so gatekeeper never calls it: declare \
             some of {} in `hooks()`",
            valid.join(", ")
        ));
    }
    for hook in hooks.iter().filter(|h| !valid.contains(&h.as_str())) {
        let close = valid
            .iter()
            .map(|name| (strsim::jaro_winkler(hook, name), *name))
            .filter(|(score, _)| *score >= 0.9)
            .max_by(|a, b| a.0.total_cmp(&b.0));
        let owner = PluginType::ALL
            .iter()
            .find(|other| hooks_of(**other).contains(&hook.as_str()));
        let hint = match (close, owner) {
            (Some((_, name)), _) => format!(" (a misspelling of `{name}`?)"),
            (None, Some(other)) => format!(" (it is a hook of {other} plugins)"),
            (None, None) => String::new(),
        };
        warnings.push(format!(
            "declaring `{hook}`, which {plugin_type} plugins do not have; gatekeeper ignores it{hint}"
        ));
    }
    warnings
}

/// The connection's handler for every plugin type: each request on its own task, answered by
/// [`dispatch::handle`].
struct PluginHandler<D> {
    dispatch: Arc<D>,
    stopped: Arc<Notify>,
}

impl<D: Dispatch> Handler for PluginHandler<D> {
    fn handle_request(&self, request: IncomingRequest) -> BoxFuture<'static, Reply> {
        let dispatch = self.dispatch.clone();
        Box::pin(async move { dispatch::handle(&*dispatch, &request).await })
    }

    /// Once the answer to `stop` is queued: close after writing it, and let `run` return.
    fn after_reply(&self, method: &str, _succeeded: bool, peer: &Peer) {
        if method == Stop::NAME {
            peer.close_after_flush();
            self.stopped.notify_one();
        }
    }
}

/// The handshake's `parts`: `modify_request`'s, when it is declared and every part is known (an
/// unknown one is logged and the whole request asked for instead).
fn declared_parts(names: &[&str], hooks: &[String]) -> BTreeMap<String, Vec<RequestPart>> {
    let mut parts = BTreeMap::new();
    if names.is_empty() || !hooks.iter().any(|h| h == ModifyRequest::NAME) {
        return parts;
    }
    match names
        .iter()
        .map(|name| RequestPart::try_from((*name).to_owned()))
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(list) => {
            parts.insert(ModifyRequest::NAME.to_owned(), list);
        }
        Err(error) => {
            tracing::error!(%error, "request_parts: asking for the whole request instead");
        }
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warnings(plugin_type: PluginType, hooks: &[&str]) -> Vec<String> {
        let hooks: Vec<String> = hooks.iter().map(|h| (*h).to_owned()).collect();
        declaration_warnings(plugin_type, &hooks)
    }

    #[test]
    fn no_hooks_warns_except_for_upstream_plugins() {
        let found = warnings(PluginType::Modifier, &[]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("declares no hooks"), "{found:?}");
        assert!(warnings(PluginType::Upstream, &[]).is_empty());
        assert!(warnings(PluginType::Router, &["route_request"]).is_empty());
    }

    #[test]
    fn a_misspelled_hook_names_the_hook_it_is_close_to() {
        let found = warnings(PluginType::Modifier, &["modify_requets"]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("`modify_requets`"), "{found:?}");
        assert!(
            found[0].contains("misspelling of `modify_request`"),
            "{found:?}"
        );
    }

    #[test]
    fn a_hook_of_another_type_says_whose_it_is() {
        let found = warnings(PluginType::Modifier, &["modify_request", "route_request"]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("hook of router plugins"), "{found:?}");
    }
}
