//! The failure policy keys of a `[[plugin]]` table ([`FailureConfig`]): `failure = "open" |
//! "closed"` (default per plugin type) and `failure_status = N` (default 503), and how a
//! [`FailurePolicy`] is printed in the effective settings.

use gatekeeper_rpc::methods::PluginType;
use serde::{Deserialize, Serialize, Serializer};

use super::ConfigError;
use crate::port::FailurePolicy;

/// What happens to a request when a plugin's hook fails: the `failure` (`"open"` or
/// `"closed"`) and `failure_status` (default 503) keys of a `[[plugin]]` table. Without
/// `failure`, the plugin type's default ([`FailureConfig::default_policy`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FailureConfig {
    /// `open` or `closed`; `None`: the plugin type's default.
    #[serde(with = "failure_mode")]
    pub failure: Option<FailureMode>,
    /// The status of a request refused by a failed plugin that fails closed (200 to 599;
    /// `None`: 503).
    pub failure_status: Option<u16>,
}

/// The `failure` key: whether a failed hook is skipped or refuses the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureMode {
    /// Skip the plugin for this request.
    Open,
    /// Answer the request with `failure_status`.
    Closed,
}

impl FailureMode {
    fn as_str(self) -> &'static str {
        match self {
            FailureMode::Open => "open",
            FailureMode::Closed => "closed",
        }
    }
}

impl std::str::FromStr for FailureMode {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, ConfigError> {
        match s {
            "open" => Ok(FailureMode::Open),
            "closed" => Ok(FailureMode::Closed),
            other => Err(ConfigError::FailureMode(other.to_owned())),
        }
    }
}

impl FailureConfig {
    /// The status a plugin that fails closed answers with when `failure_status` is not set.
    pub const DEFAULT_STATUS: u16 = 503;

    /// The failure policy of a plugin type without `failure`: modifiers fail closed (an auth
    /// plugin that is down must not let requests through); routers and loadbalancers fail open
    /// (the built-in one takes over); upstream and metric plugins have no per-request hooks.
    pub fn default_mode(plugin_type: PluginType) -> FailureMode {
        match plugin_type {
            PluginType::Modifier => FailureMode::Closed,
            _ => FailureMode::Open,
        }
    }

    /// Checks `failure_status` (the error's key is relative to the plugin table).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let status = self.failure_status.unwrap_or(Self::DEFAULT_STATUS);
        if !(200..=599).contains(&status) {
            return Err(ConfigError::FailureStatus(status));
        }
        Ok(())
    }

    /// The policy of a plugin of this type.
    pub fn policy(&self, plugin_type: PluginType) -> FailurePolicy {
        match self.failure.unwrap_or(Self::default_mode(plugin_type)) {
            FailureMode::Open => FailurePolicy::Open,
            FailureMode::Closed => FailurePolicy::Closed {
                status: self.failure_status.unwrap_or(Self::DEFAULT_STATUS),
            },
        }
    }

    /// The default policy of a plugin type ([`FailureConfig::default_mode`], status 503).
    pub fn default_policy(plugin_type: PluginType) -> FailurePolicy {
        FailureConfig::default().policy(plugin_type)
    }
}

/// `{"policy": "open"}` or `{"policy": "closed", "status": 503}` (in the effective settings).
impl Serialize for FailurePolicy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "lowercase", tag = "policy")]
        enum Tagged {
            Open,
            Closed { status: u16 },
        }
        match *self {
            FailurePolicy::Open => Tagged::Open,
            FailurePolicy::Closed { status } => Tagged::Closed { status },
        }
        .serialize(s)
    }
}

/// `failure = "open" | "closed"`.
mod failure_mode {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::FailureMode;

    pub fn serialize<S: Serializer>(mode: &Option<FailureMode>, s: S) -> Result<S::Ok, S::Error> {
        match mode {
            Some(mode) => s.serialize_str(mode.as_str()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<FailureMode>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(text) => text.parse().map(Some).map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}
