//! The [`Handler`] of each plugin connection: checks the handshake (it must be the first call,
//! with the current token and protocol version), records the declared hooks (which want bodies,
//! which are not to be retried), tells the supervisor
//! about the new authenticated connection, and afterwards serves the manager methods to upstream
//! plugins and records `config_status` reports from any plugin. Nothing a plugin sends here can panic the host: bad params become error replies.
//!
//! Connections are strict peers ([`PeerConfig::close_on_violation`]): a protocol violation closes
//! the connection and is logged with the plugin's name.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use gatekeeper_rpc::busy_poll::BusyPollStats;
use gatekeeper_rpc::error::error_object;
use gatekeeper_rpc::message::to_raw;
use gatekeeper_rpc::methods::{
    body_hooks_of, hooks_of, ConfigStatus as ConfigStatusMethod, ConfigStatusParams, Handshake,
    HandshakeParams, HandshakeResult, ModifyRequest, PluginType,
};
use gatekeeper_rpc::parts::RequestPart;
use gatekeeper_rpc::peer::CloseReason;
use gatekeeper_rpc::{
    codes, Handler, IncomingRequest, Method, Peer, PeerConfig, Reply, PROTOCOL_VERSION,
};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

use crate::config_status::ConfigStatus;
use crate::manager::{is_manager_method, ManagerService};
use crate::process::token_matches;
use crate::state::{Declared, HookSet};
use crate::supervisor::start_watch::StartActivity;

/// A connection that passed its handshake.
#[derive(Debug)]
pub(crate) struct Authenticated {
    /// The connection.
    pub(crate) peer: Peer,
    /// The hooks it declared that are valid for the plugin's type, and which want bodies.
    pub(crate) hooks: Declared,
}

/// What every connection of one process of a plugin shares.
#[derive(Debug)]
pub(crate) struct SessionContext {
    /// The plugin's name, as sent in the handshake's answer.
    pub(crate) name: Arc<str>,
    /// The instance's name in logs (`name`, or `name#index`).
    pub(crate) label: Arc<str>,
    pub(crate) plugin_type: PluginType,
    /// The token given to this process.
    pub(crate) token: String,
    /// The manager, for upstream plugins only.
    pub(crate) manager: Option<Arc<ManagerService>>,
    /// Where the plugin's `config_status` reports go.
    pub(crate) config_status: Arc<ConfigStatus>,
    /// Where authenticated connections are announced.
    pub(crate) events: mpsc::UnboundedSender<Authenticated>,
    /// The busy-poll budget of the connections (the spec's `busy_poll_us`), `None` when off.
    pub(crate) busy_poll: Option<Duration>,
    /// Where the connections count their spins: one set of counters per plugin.
    pub(crate) busy_poll_stats: Arc<BusyPollStats>,
    /// When the process last made a call (its start is bounded by its silence).
    pub(crate) activity: Arc<StartActivity>,
}

/// Serves a new connection of a plugin instance: a strict peer whose handler checks the
/// handshake. It is closed if it does not complete its handshake within `handshake_limit`, and a
/// protocol violation that closes it is logged with the instance's label.
pub(crate) fn serve(stream: UnixStream, context: &Arc<SessionContext>, handshake_limit: Duration) {
    let label = context.label.clone();
    let session = Arc::new(Session::new(context.clone()));
    let config = PeerConfig {
        name: label.to_string(),
        close_on_violation: true,
        busy_poll: context.busy_poll,
        busy_poll_stats: Some(context.busy_poll_stats.clone()),
        ..PeerConfig::default()
    };
    let peer = Peer::spawn_unix(stream, session.clone(), config);
    tokio::spawn(async move {
        let reason = tokio::select! {
            reason = peer.closed() => reason,
            () = tokio::time::sleep(handshake_limit) => {
                if !session.is_authenticated() {
                    tracing::warn!(plugin = %label, "closing a connection that did not complete its handshake in time");
                    peer.close();
                }
                peer.closed().await
            }
        };
        if let CloseReason::ProtocolViolation(violation) = reason {
            tracing::warn!(plugin = %label, %violation, "the plugin broke the protocol: its connection is closed");
        }
    });
}

/// The handler of one connection.
#[derive(Debug)]
pub(crate) struct Session {
    context: Arc<SessionContext>,
    authenticated: AtomicBool,
    /// Hooks of a handshake just answered, announced to the supervisor once the answer is queued.
    accepted_hooks: Mutex<Option<Declared>>,
}

impl Session {
    pub(crate) fn new(context: Arc<SessionContext>) -> Session {
        Session {
            context,
            authenticated: AtomicBool::new(false),
            accepted_hooks: Mutex::new(None),
        }
    }

    /// Whether this connection passed its handshake.
    pub(crate) fn is_authenticated(&self) -> bool {
        self.authenticated.load(Ordering::Acquire)
    }

    fn handshake(&self, request: &IncomingRequest) -> Reply {
        let context = &self.context;
        let params: HandshakeParams = request.parse_params()?;
        if !token_matches(&context.token, &params.token) {
            tracing::warn!(plugin = %context.label, "refusing a connection: wrong token");
            return Err(error_object(codes::UNAUTHORIZED, "wrong token"));
        }
        if params.protocol_version != PROTOCOL_VERSION {
            tracing::warn!(plugin = %context.label, version = params.protocol_version, "refusing a connection: unsupported protocol version");
            return Err(error_object(
                codes::UNSUPPORTED_VERSION,
                format!(
                    "protocol version {} is not supported; this proxy speaks {PROTOCOL_VERSION}",
                    params.protocol_version
                ),
            ));
        }
        if self.authenticated.swap(true, Ordering::AcqRel) {
            return Err(error_object(
                codes::INVALID_REQUEST,
                "this connection already completed its handshake",
            ));
        }
        let valid = hooks_of(context.plugin_type);
        let mut hooks = HookSet::default();
        for hook in params.hooks {
            if valid.contains(&hook.as_str()) {
                hooks.insert(hook);
            } else {
                tracing::warn!(plugin = %context.label, %hook, plugin_type = %context.plugin_type, "ignoring a hook this plugin type does not have");
            }
        }
        let bodies = declared_bodies(context, &hooks, params.bodies);
        let no_retry = declared_no_retry(context, &hooks, params.no_retry);
        let parts = declared_parts(context, &hooks, params.parts);
        *self
            .accepted_hooks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Declared {
            hooks,
            bodies,
            no_retry,
            parts,
        });
        to_raw(&HandshakeResult {
            protocol_version: PROTOCOL_VERSION,
            name: context.name.to_string(),
            plugin_type: context.plugin_type,
        })
        .map_err(|e| error_object(codes::INTERNAL_ERROR, e.to_string()))
    }
}

impl Session {
    /// Records a `config_status` report (any plugin type may send one) and answers `{}`.
    fn config_status(&self, request: &IncomingRequest) -> Reply {
        let params: ConfigStatusParams = request.parse_params()?;
        self.context
            .config_status
            .report(&self.context.label, params.error);
        to_raw(&gatekeeper_rpc::methods::Empty {})
            .map_err(|e| error_object(codes::INTERNAL_ERROR, e.to_string()))
    }
}

/// The hooks of `bodies` that are valid body hooks of the plugin's type and declared in `hooks`;
/// others are ignored with a warning.
fn declared_bodies(context: &SessionContext, hooks: &HookSet, bodies: Vec<String>) -> HookSet {
    let valid = body_hooks_of(context.plugin_type);
    let mut wanted = HookSet::default();
    for hook in bodies {
        if valid.contains(&hook.as_str()) && hooks.contains(&hook) {
            wanted.insert(hook);
        } else {
            tracing::warn!(plugin = %context.label, %hook, plugin_type = %context.plugin_type, "ignoring a body request for a hook that is not declared or gets no body");
        }
    }
    wanted
}

/// The `parts` of declared hooks that take parts (`modify_request`); others are ignored with a
/// warning.
fn declared_parts(
    context: &SessionContext,
    hooks: &HookSet,
    parts: BTreeMap<String, Vec<RequestPart>>,
) -> Vec<(String, Arc<[RequestPart]>)> {
    let mut kept = Vec::new();
    for (hook, parts) in parts {
        if hook == ModifyRequest::NAME && hooks.contains(&hook) {
            kept.push((hook, Arc::from(parts)));
        } else {
            tracing::warn!(plugin = %context.label, %hook, "ignoring `parts` for a hook that is not declared or takes no parts (only modify_request does)");
        }
    }
    kept
}

/// The hooks of `no_retry` that are declared in `hooks` (so valid for the plugin's type); others
/// are ignored with a warning.
fn declared_no_retry(context: &SessionContext, hooks: &HookSet, no_retry: Vec<String>) -> HookSet {
    let mut kept = HookSet::default();
    for hook in no_retry {
        if hooks.contains(&hook) {
            kept.insert(hook);
        } else {
            tracing::warn!(plugin = %context.label, %hook, plugin_type = %context.plugin_type, "ignoring `no_retry` for a hook that is not declared");
        }
    }
    kept
}

impl Handler for Session {
    /// After a handshake's answer is queued: announce the connection to the supervisor (whose
    /// first call, `configure`, then reaches the plugin after the answer), or, if the handshake
    /// was refused, close the connection once the refusal is written.
    fn after_reply(&self, method: &str, succeeded: bool, peer: &Peer) {
        if method != Handshake::NAME {
            return;
        }
        let hooks = self
            .accepted_hooks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        match hooks {
            Some(hooks) if succeeded => {
                let event = Authenticated {
                    peer: peer.clone(),
                    hooks,
                };
                // The supervisor may be gone (restart, shutdown): the connection is then useless.
                if let Err(mpsc::error::SendError(event)) = self.context.events.send(event) {
                    event.peer.close();
                }
            }
            // A second handshake on an authenticated connection is refused but harmless.
            _ if self.is_authenticated() => {}
            _ => peer.close_after_flush(),
        }
    }

    fn handle_request(&self, request: IncomingRequest) -> BoxFuture<'static, Reply> {
        if request.method == Handshake::NAME {
            let reply = self.handshake(&request);
            return Box::pin(async move { reply });
        }
        if !self.is_authenticated() {
            let reply = Err(error_object(
                codes::UNAUTHORIZED,
                format!("`{}` before a successful handshake", request.method),
            ));
            return Box::pin(async move { reply });
        }
        // Any call of an authenticated connection but the handshake is progress (see
        // `start_timeout`): a plugin making none fails at spawn + `start_timeout`, as always.
        self.context.activity.touch();
        if request.method == ConfigStatusMethod::NAME {
            let reply = self.config_status(&request);
            return Box::pin(async move { reply });
        }
        match &self.context.manager {
            Some(manager) if is_manager_method(&request.method) => {
                let reply = manager.call(&request.method, request.params.as_deref());
                Box::pin(async move { reply })
            }
            _ => {
                let reply = Err(error_object(
                    codes::METHOD_NOT_FOUND,
                    format!("method not found: {}", request.method),
                ));
                Box::pin(async move { reply })
            }
        }
    }
}
