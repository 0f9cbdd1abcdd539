//! Serving a plugin: read the environment, log to stderr, connect, handshake, answer the proxy's
//! calls until `stop` (or until the connection closes).

use std::future::Future;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use gatekeeper_rpc::error::error_object;
use gatekeeper_rpc::methods::{
    Configure, Empty, Handshake, HandshakeParams, Heartbeat, Method, ModifyErrorResponse,
    ModifyRequest, ModifyResponse, PluginType, Start, Stop,
};
use gatekeeper_rpc::peer::CloseReason;
use gatekeeper_rpc::{codes, Handler, IncomingRequest, Peer, PeerConfig, Reply, PROTOCOL_VERSION};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Notify;

use crate::env::PluginEnv;
use crate::error::{HookError, ServeError};
use crate::manager::Manager;
use crate::plugin::{ModifierPlugin, Plugin, UpstreamPlugin};

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
    exit_code(
        async {
            let (env, io) = connect(PluginType::Upstream).await?;
            run_upstream(plugin, io, &env).await
        }
        .await,
    )
}

/// Serves a modifier plugin for the life of the process; see [`serve_upstream`].
pub async fn serve_modifier<P: ModifierPlugin>(plugin: P) -> ExitCode {
    exit_code(
        async {
            let (env, io) = connect(PluginType::Modifier).await?;
            run_modifier(plugin, io, &env).await
        }
        .await,
    )
}

/// Serves an upstream plugin over an open connection (what [`serve_upstream`] does once
/// connected; useful for tests and other transports). Returns once `stop` has been answered or
/// the connection has closed.
pub async fn run_upstream<P, IO>(plugin: P, io: IO, env: &PluginEnv) -> Result<(), ServeError>
where
    P: UpstreamPlugin,
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    check_type(env, PluginType::Upstream)?;
    let stopped = Arc::new(Notify::new());
    let handler = UpstreamHandler {
        plugin: Arc::new(plugin),
        stopped: stopped.clone(),
    };
    run(Arc::new(handler), stopped, Vec::new(), io, env).await
}

/// Serves a modifier plugin over an open connection; see [`run_upstream`].
pub async fn run_modifier<P, IO>(plugin: P, io: IO, env: &PluginEnv) -> Result<(), ServeError>
where
    P: ModifierPlugin,
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    check_type(env, PluginType::Modifier)?;
    let hooks = plugin.hooks();
    let stopped = Arc::new(Notify::new());
    let handler = ModifierHandler {
        plugin: Arc::new(plugin),
        hooks,
        stopped: stopped.clone(),
    };
    let declared = hooks.iter().map(|h| (*h).to_owned()).collect();
    run(Arc::new(handler), stopped, declared, io, env).await
}

/// Sets up `tracing` to write to stderr, which gatekeeper reads into its own log (tagged with
/// the plugin's name, so lines carry no timestamp and no colours). The level comes from
/// `RUST_LOG` (default `info`). Does nothing if a global subscriber is already set.
/// [`serve_upstream`] and [`serve_modifier`] call it.
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

async fn connect(
    plugin_type: PluginType,
) -> Result<(PluginEnv, tokio::net::UnixStream), ServeError> {
    init_logging();
    let env = PluginEnv::from_env()?;
    check_type(&env, plugin_type)?;
    let io = tokio::net::UnixStream::connect(&env.socket)
        .await
        .map_err(|source| ServeError::Connect {
            path: env.socket.clone(),
            source,
        })?;
    Ok((env, io))
}

fn exit_code(outcome: Result<(), ServeError>) -> ExitCode {
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

async fn run<IO>(
    handler: Arc<dyn Handler>,
    stopped: Arc<Notify>,
    hooks: Vec<String>,
    io: IO,
    env: &PluginEnv,
) -> Result<(), ServeError>
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    if env.protocol_version != PROTOCOL_VERSION {
        tracing::warn!(
            proxy = env.protocol_version,
            plugin = PROTOCOL_VERSION,
            "gatekeeper speaks another protocol version; the handshake will likely be refused"
        );
    }
    let config = PeerConfig {
        max_line_bytes: env.max_line_bytes,
        name: env.name.clone(),
        ..PeerConfig::default()
    };
    let peer = Peer::spawn(io, handler, config);
    let params = HandshakeParams {
        token: env.token.clone(),
        protocol_version: PROTOCOL_VERSION,
        hooks,
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
        },
    }
}

/// Answers one call of method `M`: parses its params, runs `hook`, encodes the outcome.
async fn answer<M, F, Fut>(request: &IncomingRequest, hook: F) -> Reply
where
    M: Method,
    F: FnOnce(M::Params) -> Fut,
    Fut: Future<Output = Result<M::Result, HookError>>,
{
    let params = request.parse_params::<M::Params>()?;
    encode(M::NAME, hook(params).await)
}

/// Answers a lifecycle call of method `M`, whose result is `{}`.
async fn answer_empty<M, F, Fut>(request: &IncomingRequest, hook: F) -> Reply
where
    M: Method<Result = Empty>,
    F: FnOnce(M::Params) -> Fut,
    Fut: Future<Output = Result<(), HookError>>,
{
    answer::<M, _, _>(request, |params| async move {
        hook(params).await.map(|()| Empty {})
    })
    .await
}

fn encode<T: Serialize>(method: &str, outcome: Result<T, HookError>) -> Reply {
    match outcome {
        Ok(result) => serde_json::value::to_raw_value(&result).map_err(|e| {
            error_object(
                codes::INTERNAL_ERROR,
                format!("could not encode the result of `{method}`: {e}"),
            )
        }),
        Err(error) => {
            tracing::warn!(method, %error, "answering with an error");
            Err(error.into())
        }
    }
}

/// Answers the lifecycle methods every plugin shares (`start` is per plugin type).
async fn lifecycle<P: Plugin>(plugin: &P, request: IncomingRequest) -> Reply {
    match request.method.as_str() {
        Configure::NAME => {
            answer_empty::<Configure, _, _>(&request, |p| plugin.configure(p.config)).await
        }
        Heartbeat::NAME => answer_empty::<Heartbeat, _, _>(&request, |_| plugin.heartbeat()).await,
        Stop::NAME => answer_empty::<Stop, _, _>(&request, |_| plugin.stop()).await,
        other => Err(error_object(
            codes::METHOD_NOT_FOUND,
            format!("method not found: {other}"),
        )),
    }
}

struct UpstreamHandler<P> {
    plugin: Arc<P>,
    stopped: Arc<Notify>,
}

impl<P: UpstreamPlugin> Handler for UpstreamHandler<P> {
    fn handle_request(&self, request: IncomingRequest) -> BoxFuture<'static, Reply> {
        let plugin = self.plugin.clone();
        Box::pin(async move {
            if request.method == Start::NAME {
                let manager = Manager::new(request.peer.clone());
                answer_empty::<Start, _, _>(&request, |_| async {
                    plugin.start().await?;
                    plugin.start_upstreams(manager).await
                })
                .await
            } else {
                lifecycle(&*plugin, request).await
            }
        })
    }

    /// Once the answer to `stop` is queued: close after writing it, and let `serve` return.
    fn after_reply(&self, method: &str, _succeeded: bool, peer: &gatekeeper_rpc::Peer) {
        if method == Stop::NAME {
            peer.close_after_flush();
            self.stopped.notify_one();
        }
    }
}

struct ModifierHandler<P> {
    plugin: Arc<P>,
    hooks: &'static [&'static str],
    stopped: Arc<Notify>,
}

impl<P: ModifierPlugin> Handler for ModifierHandler<P> {
    fn handle_request(&self, request: IncomingRequest) -> BoxFuture<'static, Reply> {
        let plugin = self.plugin.clone();
        let hooks = self.hooks;
        Box::pin(async move {
            let method = request.method.as_str();
            let is_hook = [
                ModifyRequest::NAME,
                ModifyResponse::NAME,
                ModifyErrorResponse::NAME,
            ]
            .contains(&method);
            if is_hook && !hooks.contains(&method) {
                return Err(error_object(
                    codes::METHOD_NOT_FOUND,
                    format!("`{method}` was not declared in the handshake"),
                ));
            }
            match method {
                ModifyRequest::NAME => {
                    answer::<ModifyRequest, _, _>(&request, |p| plugin.modify_request(p)).await
                }
                ModifyResponse::NAME => {
                    answer::<ModifyResponse, _, _>(&request, |p| plugin.modify_response(p)).await
                }
                ModifyErrorResponse::NAME => {
                    answer::<ModifyErrorResponse, _, _>(&request, |p| {
                        plugin.modify_error_response(p)
                    })
                    .await
                }
                Start::NAME => answer_empty::<Start, _, _>(&request, |_| plugin.start()).await,
                _ => lifecycle(&*plugin, request).await,
            }
        })
    }

    /// Once the answer to `stop` is queued: close after writing it, and let `serve` return.
    fn after_reply(&self, method: &str, _succeeded: bool, peer: &gatekeeper_rpc::Peer) {
        if method == Stop::NAME {
            peer.close_after_flush();
            self.stopped.notify_one();
        }
    }
}
