//! The before-ready replay: [`BeforeReady`] runs on every (re)start of every instance of a plugin,
//! after `start` succeeded and before the instance takes hook calls, with an
//! [`InstanceConnection`] to make typed calls on that instance alone. A restarted router plugin
//! gets the current upstreams this way, a loadbalancer plugin the current backends.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use gatekeeper_rpc::methods::PluginType;
use gatekeeper_rpc::{CallError, Method, Peer};

use crate::state::Declared;

/// Runs on every start of every instance, after `start` and before the instance is ready, and
/// when a standby spare takes an instance over (at the takeover, so it gets the current state).
///
/// An error (or running past the spec's `start_timeout`, which bounds the replay on its own)
/// fails the start: the process is killed and started again (the first start up to
/// `start_attempts` times; a failed takeover falls back to a normal restart).
/// Closures `Fn(InstanceConnection) -> BoxFuture<'static, Result<(), CallError>>` implement it.
pub trait BeforeReady: Send + Sync + 'static {
    /// Brings a freshly started instance up to date.
    fn before_ready(
        &self,
        instance: InstanceConnection,
    ) -> BoxFuture<'static, Result<(), CallError>>;
}

impl<F> BeforeReady for F
where
    F: Fn(InstanceConnection) -> BoxFuture<'static, Result<(), CallError>> + Send + Sync + 'static,
{
    fn before_ready(
        &self,
        instance: InstanceConnection,
    ) -> BoxFuture<'static, Result<(), CallError>> {
        self(instance)
    }
}

/// The control connection of one instance being started, for [`BeforeReady`].
#[derive(Debug, Clone)]
pub struct InstanceConnection {
    pub(crate) plugin: Arc<str>,
    pub(crate) plugin_type: PluginType,
    pub(crate) instance: usize,
    pub(crate) restarts: u64,
    pub(crate) pid: Option<u32>,
    pub(crate) hooks: Arc<Declared>,
    pub(crate) hook_timeout: Duration,
    pub(crate) peer: Peer,
}

impl InstanceConnection {
    /// The plugin's name.
    pub fn plugin(&self) -> &str {
        &self.plugin
    }

    /// The plugin's type.
    pub fn plugin_type(&self) -> PluginType {
        self.plugin_type
    }

    /// Which instance this is (from 0).
    pub fn instance(&self) -> usize {
        self.instance
    }

    /// How many times this instance was restarted: 0 on its first start.
    pub fn restarts(&self) -> u64 {
        self.restarts
    }

    /// The process id of the instance's process.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// Whether the instance declared `hook` in its handshake. [`InstanceConnection::call`] does
    /// not check: call only what the plugin declared.
    pub fn has_hook(&self, hook: &str) -> bool {
        self.hooks.contains(hook)
    }

    /// Whether the instance declared that `hook` wants the body.
    pub fn wants_body(&self, hook: &str) -> bool {
        self.hooks.wants_body(hook)
    }

    /// Resolves when this connection closes (the process went away or is being replaced).
    pub async fn closed(&self) {
        self.peer.closed().await;
    }

    /// The spec's hook timeout, which [`InstanceConnection::call`] uses.
    pub fn hook_timeout(&self) -> Duration {
        self.hook_timeout
    }

    /// Calls a method on this instance with the hook timeout.
    pub async fn call<M: Method>(&self, params: &M::Params) -> Result<M::Result, CallError> {
        self.call_with_timeout::<M>(params, self.hook_timeout).await
    }

    /// Calls a method on this instance with its own timeout. A result of the wrong type closes
    /// the connection as a protocol violation (the start then fails).
    pub async fn call_with_timeout<M: Method>(
        &self,
        params: &M::Params,
        timeout: Duration,
    ) -> Result<M::Result, CallError> {
        let outcome = self.peer.request::<M>(params, timeout).await;
        if let Err(error @ CallError::InvalidResult { .. }) = &outcome {
            tracing::warn!(plugin = %self.plugin, instance = self.instance, %error, "plugin answered with a result of the wrong type: closing its connection");
            self.peer.close_for_violation(error.to_string());
        }
        outcome
    }
}
