//! The protocol table: every method of the protocol, once, with its facts.
//!
//! [`METHODS`] is the one list of methods. Each entry gives a method's name, its [`Kind`], the
//! plugin types that may declare it as a hook (the proxy then calls it on them) and the plugin
//! types that call it on the proxy, whether it may carry bodies, and its params and result types
//! (through the zero-sized type implementing [`Method`], so a call reads
//! `peer.request::<Configure>(&params, timeout)` and the types cannot drift apart).
//!
//! Everything else that lists methods is derived from it: [`hooks_of`], [`body_hooks_of`],
//! [`MANAGER_METHODS`], the per-type hook lists ([`MODIFIER_HOOKS`], …), the generated schema
//! `plugin-sdk/protocol.json` ([`crate::schema`]), and through that file the Python and Node
//! SDKs' method lists.

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::DeserializeOwned;
use serde::Serialize;

pub use crate::params::*;

/// A method of the protocol.
pub trait Method {
    /// The method name on the wire.
    const NAME: &'static str;
    /// The params object.
    type Params: Serialize + DeserializeOwned + JsonSchema + Send + Sync;
    /// The result.
    type Result: Serialize + DeserializeOwned + JsonSchema + Send;
}

/// What part of the protocol a method belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// `handshake`: the plugin's first call on each connection.
    Handshake,
    /// Called by the proxy on every plugin, whatever its type, without being declared.
    Lifecycle,
    /// Called by the proxy on a plugin only if the plugin declared it in its handshake.
    Hook,
    /// Called by upstream plugins on the proxy to change its registry (some are also hooks of
    /// other plugin types, with the same params).
    Manager,
    /// Called by any plugin type on the proxy to report its own state (e.g. `config_status`).
    Status,
}

/// Which way a method's requests go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// The proxy calls the plugin.
    ProxyToPlugin,
    /// The plugin calls the proxy.
    PluginToProxy,
    /// Both: e.g. `add_upstream`, which upstream plugins call and the proxy calls on routers.
    Both,
}

/// One row of the protocol table.
#[derive(Debug, Clone, Copy)]
pub struct MethodInfo {
    /// The method name on the wire.
    pub name: &'static str,
    /// What part of the protocol it belongs to.
    pub kind: Kind,
    /// The plugin types that may declare it as a hook in their handshake (the proxy calls it
    /// on them only if they do). Empty for lifecycle methods, which every type receives.
    pub declared_by: &'static [PluginType],
    /// The plugin types that call it on the proxy.
    pub called_by: &'static [PluginType],
    /// Whether a plugin may ask for bodies in it (`bodies` in the handshake).
    pub bodies: bool,
    /// One-line description.
    pub doc: &'static str,
    /// The JSON Schema of its params.
    pub params_schema: fn(&mut SchemaGenerator) -> Schema,
    /// The JSON Schema of its result.
    pub result_schema: fn(&mut SchemaGenerator) -> Schema,
    /// Parses params into its Rust params type (for checks of examples and tests).
    pub check_params: fn(&str) -> Result<(), serde_json::Error>,
    /// Parses a result into its Rust result type (for checks of examples and tests).
    pub check_result: fn(&str) -> Result<(), serde_json::Error>,
    /// Parses params into its Rust params type and writes them back, defaults filled in, as
    /// the proxy sends them (`gatekeeper plugin call`'s `--input`).
    pub normalize_params: fn(&str) -> Result<serde_json::Value, serde_json::Error>,
}

impl MethodInfo {
    /// The plugin types the proxy calls it on: every type for lifecycle methods, else the types
    /// that may declare it.
    pub fn received_by(&self) -> &'static [PluginType] {
        match self.kind {
            Kind::Lifecycle => &PluginType::ALL,
            _ => self.declared_by,
        }
    }

    /// Which way its requests go.
    pub fn direction(&self) -> Direction {
        match (self.received_by().is_empty(), self.called_by.is_empty()) {
            (false, false) => Direction::Both,
            (true, _) => Direction::PluginToProxy,
            (false, true) => Direction::ProxyToPlugin,
        }
    }
}

fn schema_of<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

fn check<T: DeserializeOwned>(json: &str) -> Result<(), serde_json::Error> {
    serde_json::from_str::<T>(json).map(drop)
}

fn normalize<T: DeserializeOwned + Serialize>(
    json: &str,
) -> Result<serde_json::Value, serde_json::Error> {
    serde_json::to_value(serde_json::from_str::<T>(json)?)
}

/// Defines each method's type (implementing [`Method`]) and the [`METHODS`] table from one list.
macro_rules! protocol {
    ($(
        $(#[doc = $doc:literal])*
        $ty:ident $name:literal ($params:ty => $result:ty) {
            kind: $kind:ident,
            declared_by: [$($declared:ident),*],
            called_by: [$($caller:ident),*],
            bodies: $bodies:literal $(,)?
        }
    )+) => {
        $(
            $(#[doc = $doc])*
            #[derive(Debug, Clone, Copy)]
            pub struct $ty;
            impl Method for $ty {
                const NAME: &'static str = $name;
                type Params = $params;
                type Result = $result;
            }
        )+

        /// The protocol table: every method, in the order the per-type hook lists give them.
        pub const METHODS: &[MethodInfo] = &[$(
            MethodInfo {
                name: $name,
                kind: Kind::$kind,
                declared_by: &[$(PluginType::$declared),*],
                called_by: &[$(PluginType::$caller),*],
                bodies: $bodies,
                doc: concat!($($doc),*),
                params_schema: schema_of::<$params>,
                result_schema: schema_of::<$result>,
                check_params: check::<$params>,
                check_result: check::<$result>,
                normalize_params: normalize::<$params>,
            },
        )+];
    };
}

protocol! {
    /// plugin → proxy: prove the token, agree on the version, declare the hooks.
    Handshake "handshake" (HandshakeParams => HandshakeResult) {
        kind: Handshake,
        declared_by: [],
        called_by: [Upstream, Modifier, Router, Loadbalancer, Metric],
        bodies: false,
    }
    /// proxy → plugin: the plugin's configuration, before `start` (and again after a restart).
    Configure "configure" (ConfigureParams => Empty) {
        kind: Lifecycle, declared_by: [], called_by: [], bodies: false,
    }
    /// proxy → plugin: begin work (an upstream plugin pushes its upstreams now).
    Start "start" (Empty => Empty) {
        kind: Lifecycle, declared_by: [], called_by: [], bodies: false,
    }
    /// proxy → plugin: liveness check, on an interval.
    Heartbeat "heartbeat" (Empty => Empty) {
        kind: Lifecycle, declared_by: [], called_by: [], bodies: false,
    }
    /// proxy → plugin: stop work; the plugin should exit soon after answering.
    Stop "stop" (Empty => Empty) {
        kind: Lifecycle, declared_by: [], called_by: [], bodies: false,
    }
    /// upstream plugin → proxy: add or replace an upstream; proxy → router plugin: an upstream
    /// exists (keeps the router in step with the registry).
    AddUpstream "add_upstream" (AddUpstreamParams => Empty) {
        kind: Manager, declared_by: [Router], called_by: [Upstream], bodies: false,
    }
    /// upstream plugin → proxy: remove an upstream and its backends; proxy → router plugin: an
    /// upstream is gone.
    RemoveUpstream "remove_upstream" (RemoveUpstreamParams => Empty) {
        kind: Manager, declared_by: [Router], called_by: [Upstream], bodies: false,
    }
    /// upstream plugin → proxy: add or replace a backend of an upstream; proxy → loadbalancer
    /// plugin: a backend exists.
    AddBackend "add_backend" (AddBackendParams => Empty) {
        kind: Manager, declared_by: [Loadbalancer], called_by: [Upstream], bodies: false,
    }
    /// upstream plugin → proxy: remove a backend; proxy → loadbalancer plugin: a backend is gone.
    RemoveBackend "remove_backend" (RemoveBackendParams => Empty) {
        kind: Manager, declared_by: [Loadbalancer], called_by: [Upstream], bodies: false,
    }
    /// upstream plugin → proxy: many `add_upstream`, `remove_upstream`, `add_backend` and
    /// `remove_backend` changes applied as one, in order, all or none (or, with `replace`, the
    /// plugin's whole desired state). Routers and loadbalancers still get the single changes.
    ApplyBatch "apply_batch" (ApplyBatchParams => ApplyBatchResult) {
        kind: Manager, declared_by: [], called_by: [Upstream], bodies: false,
    }
    /// proxy → plugin: change the request before it is forwarded, or answer it directly.
    ModifyRequest "modify_request" (ModifyRequestParams => ModifyRequestResult) {
        kind: Hook, declared_by: [Modifier], called_by: [], bodies: true,
    }
    /// proxy → plugin: change the backend's response (status and headers) before the client gets it.
    ModifyResponse "modify_response" (ModifyResponseParams => ModifyResponseResult) {
        kind: Hook, declared_by: [Modifier], called_by: [], bodies: true,
    }
    /// proxy → plugin: change an error response the proxy generated.
    ModifyErrorResponse "modify_error_response" (ModifyErrorResponseParams => ModifyResponseResult) {
        kind: Hook, declared_by: [Modifier], called_by: [], bodies: true,
    }
    /// proxy → router plugin: pick the upstream for a request.
    RouteRequest "route_request" (RouteRequestParams => RouteRequestResult) {
        kind: Hook, declared_by: [Router], called_by: [], bodies: false,
    }
    /// proxy → metric plugin: a batch of events.
    EventMetricHook "event_metric" (EventMetricParams => Empty) {
        kind: Hook, declared_by: [Metric], called_by: [], bodies: false,
    }
    /// proxy → metric plugin: a batch of timings of internal operations.
    ProfilingMetricHook "profiling_metric" (ProfilingMetricParams => Empty) {
        kind: Hook, declared_by: [Metric], called_by: [], bodies: false,
    }
    /// proxy → metric plugin: a batch of plugin calls.
    PluginMetricHook "plugin_metric" (PluginMetricParams => Empty) {
        kind: Hook, declared_by: [Metric], called_by: [], bodies: false,
    }
    /// proxy → metric plugin: a batch of finished requests.
    RequestMetricHook "request_metric" (RequestMetricParams => Empty) {
        kind: Hook, declared_by: [Metric], called_by: [], bodies: false,
    }
    /// proxy → metric, loadbalancer or upstream plugin: a batch of backend outcomes.
    UpstreamMetricHook "upstream_metric" (UpstreamMetricParams => Empty) {
        kind: Hook, declared_by: [Upstream, Loadbalancer, Metric], called_by: [], bodies: false,
    }
    /// proxy → loadbalancer plugin: pick the backend of an upstream for a request.
    GetBackend "get_backend" (GetBackendParams => GetBackendResult) {
        kind: Hook, declared_by: [Loadbalancer], called_by: [], bodies: false,
    }
    /// any plugin → proxy: the plugin's config state after a change it made on its own (a
    /// watched file): `error` says why the new config was rejected (the plugin keeps its last
    /// good state), `null` that the current config is accepted.
    ConfigStatus "config_status" (ConfigStatusParams => Empty) {
        kind: Status,
        declared_by: [],
        called_by: [Upstream, Modifier, Router, Loadbalancer, Metric],
        bodies: false,
    }
}

/// The row of the table for a method name.
pub fn method_info(name: &str) -> Option<&'static MethodInfo> {
    METHODS.iter().find(|m| m.name == name)
}

// ---- lists derived from the table, at compile time ---------------------------------------------

/// Which rows of the table a derived list keeps.
#[derive(Clone, Copy)]
enum Select {
    HooksOf(PluginType),
    BodyHooksOf(PluginType),
    Manager,
}

const fn contains(types: &[PluginType], wanted: PluginType) -> bool {
    let mut i = 0;
    while i < types.len() {
        if types[i] as u8 == wanted as u8 {
            return true;
        }
        i += 1;
    }
    false
}

const fn selected(method: &MethodInfo, select: Select) -> bool {
    match select {
        Select::HooksOf(t) => contains(method.declared_by, t),
        Select::BodyHooksOf(t) => method.bodies && contains(method.declared_by, t),
        Select::Manager => matches!(method.kind, Kind::Manager),
    }
}

const fn count(select: Select) -> usize {
    let (mut i, mut n) = (0, 0);
    while i < METHODS.len() {
        if selected(&METHODS[i], select) {
            n += 1;
        }
        i += 1;
    }
    n
}

const fn names<const N: usize>(select: Select) -> [&'static str; N] {
    let mut out = [""; N];
    let (mut i, mut n) = (0, 0);
    while i < METHODS.len() {
        if selected(&METHODS[i], select) {
            out[n] = METHODS[i].name;
            n += 1;
        }
        i += 1;
    }
    out
}

macro_rules! derived {
    ($(#[$doc:meta])* $name:ident = $select:expr) => {
        $(#[$doc])*
        pub const $name: &[&str] = &names::<{ count($select) }>($select);
    };
}

derived!(
    /// The hooks an upstream plugin may declare.
    UPSTREAM_HOOKS = Select::HooksOf(PluginType::Upstream)
);
derived!(
    /// The hooks a modifier may declare, in the order the proxy's request path reaches them.
    MODIFIER_HOOKS = Select::HooksOf(PluginType::Modifier)
);
derived!(
    /// The hooks a router may declare.
    ROUTER_HOOKS = Select::HooksOf(PluginType::Router)
);
derived!(
    /// The hooks a loadbalancer may declare.
    LOADBALANCER_HOOKS = Select::HooksOf(PluginType::Loadbalancer)
);
derived!(
    /// The hooks a metric plugin may declare.
    METRIC_HOOKS = Select::HooksOf(PluginType::Metric)
);
derived!(
    /// The hooks a modifier may want the body of.
    MODIFIER_BODY_HOOKS = Select::BodyHooksOf(PluginType::Modifier)
);
derived!(
    /// The manager methods: what upstream plugins call on the proxy to change its registry.
    MANAGER_METHODS = Select::Manager
);

/// The hooks each plugin type may declare in its handshake.
pub fn hooks_of(plugin_type: PluginType) -> &'static [&'static str] {
    match plugin_type {
        PluginType::Upstream => UPSTREAM_HOOKS,
        PluginType::Modifier => MODIFIER_HOOKS,
        PluginType::Router => ROUTER_HOOKS,
        PluginType::Loadbalancer => LOADBALANCER_HOOKS,
        PluginType::Metric => METRIC_HOOKS,
    }
}

/// The hooks of a plugin type that may declare they want the body (`bodies` in the handshake):
/// the modifier hooks; no other type gets bodies.
pub fn body_hooks_of(plugin_type: PluginType) -> &'static [&'static str] {
    match plugin_type {
        PluginType::Modifier => MODIFIER_BODY_HOOKS,
        _ => &[],
    }
}

/// Whether `method` is one of the [`MANAGER_METHODS`].
pub fn is_manager_method(method: &str) -> bool {
    MANAGER_METHODS.contains(&method)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_lists_keep_the_order_of_the_protocol() {
        assert_eq!(
            hooks_of(PluginType::Loadbalancer),
            [
                "add_backend",
                "remove_backend",
                "upstream_metric",
                "get_backend"
            ]
        );
        assert_eq!(
            hooks_of(PluginType::Router),
            ["add_upstream", "remove_upstream", "route_request"]
        );
        assert_eq!(hooks_of(PluginType::Upstream), ["upstream_metric"]);
        assert_eq!(
            MANAGER_METHODS,
            [
                "add_upstream",
                "remove_upstream",
                "add_backend",
                "remove_backend",
                "apply_batch"
            ]
        );
        // A batch's changes are the other manager methods.
        assert_eq!(MANAGER_CHANGE_METHODS, MANAGER_METHODS[..4]);
        assert_eq!(body_hooks_of(PluginType::Modifier), MODIFIER_HOOKS);
        assert!(body_hooks_of(PluginType::Router).is_empty());
    }

    #[test]
    fn names_are_unique_and_directions_follow_the_callers() {
        for (i, m) in METHODS.iter().enumerate() {
            assert!(METHODS[..i].iter().all(|o| o.name != m.name), "{}", m.name);
        }
        let direction = |name| method_info(name).map(MethodInfo::direction);
        assert_eq!(direction("add_upstream"), Some(Direction::Both));
        assert_eq!(direction("handshake"), Some(Direction::PluginToProxy));
        assert_eq!(direction("stop"), Some(Direction::ProxyToPlugin));
        assert_eq!(direction("get_backend"), Some(Direction::ProxyToPlugin));
        assert_eq!(method_info("stop").map(|m| m.received_by().len()), Some(5));
    }
}
