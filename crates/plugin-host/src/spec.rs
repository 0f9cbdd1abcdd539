//! [`PluginSpec`]: which command runs a plugin, its config, and every timeout of its lifecycle
//! and supervision (restart policy, standby processes, recycling); read from a `[[plugin]]`
//! table of the config file (keys `name`, `type`, `command`, `args`, `config`, `hook_timeout`,
//! `heartbeat_interval`, `instances`, `standby`, `restart_after_timeouts`,
//! `restart_after_errors`, `healthy_after`, `restart_backoff_min`, `restart_backoff_max`,
//! `start_attempts`, `start_timeout`, `start_max`, `max_memory`, `recycle_after`,
//! `busy_poll_us`; the other timings are not configurable) and
//! checked by [`PluginSpec::validate`].

use std::path::PathBuf;
use std::time::Duration;

use gatekeeper_rpc::methods::PluginType;
use gatekeeper_rpc::types::Object;
use serde::{Deserialize, Serialize};

/// Everything the host needs to run one plugin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginSpec {
    /// The plugin's name, unique within one host; used in logs and sent in the environment.
    /// In a config file it may be left out (empty): the caller names the plugin.
    #[serde(default)]
    pub name: String,
    /// The plugin's type; decides which hooks it may declare and whether it may call the manager.
    #[serde(rename = "type", with = "plugin_type")]
    pub plugin_type: PluginType,
    /// The executable to run (looked up in `PATH` if it has no slash).
    pub command: PathBuf,
    /// Arguments passed to the command.
    #[serde(default)]
    pub args: Vec<String>,
    /// The config map sent in `configure` (after every start).
    #[serde(default)]
    pub config: Object,
    /// How many processes of the plugin run side by side, each with its own socket, token and
    /// supervision; hook calls are spread over the ready ones. Default 1 (0 counts as 1; a
    /// config file may say 1 to 64).
    #[serde(default = "defaults::instances")]
    pub instances: usize,
    /// Spare processes kept started and ready (handshake, `configure`, `start` done) that take
    /// over at once when an instance's process dies or is recycled; a new spare is then
    /// started. Default 0. Not for upstream plugins (a spare would push upstreams too).
    #[serde(default)]
    pub standby: usize,
    /// Timeout of each hook call made through [`crate::PluginHandle::call`]. Default 1 s.
    #[serde(default = "defaults::hook_timeout", with = "duration")]
    pub hook_timeout: Duration,
    /// Time between two `heartbeat` calls. Default 5 s.
    #[serde(default = "defaults::heartbeat_interval", with = "duration")]
    pub heartbeat_interval: Duration,
    /// A process whose hook calls time out this many times in a row is taken as hung and
    /// restarted, without waiting for its heartbeats to go unanswered (0: never). Default 5.
    #[serde(default = "defaults::restart_after_timeouts")]
    pub restart_after_timeouts: u32,
    /// A process that answers this many hook calls in a row with a result of the wrong shape
    /// is restarted (each such call fails on its own, under the failure policy) (0: never).
    /// Default 5.
    #[serde(default = "defaults::restart_after_errors")]
    pub restart_after_errors: u32,
    /// A process that dies after running (ready) at least this long is restarted at once; one
    /// that dies sooner is in a crash loop and restarted after a backoff (per instance, from
    /// `restart_backoff_min` doubling up to `restart_backoff_max`, back to the minimum after
    /// a process runs this long). Default 500 ms.
    #[serde(default = "defaults::healthy_after", with = "duration")]
    pub healthy_after: Duration,
    /// First delay before restarting a process in a crash loop. Default 100 ms.
    #[serde(default = "defaults::restart_backoff_min", with = "duration")]
    pub restart_backoff_min: Duration,
    /// Largest delay before restarting a process in a crash loop. Default 10 s.
    #[serde(default = "defaults::restart_backoff_max", with = "duration")]
    pub restart_backoff_max: Duration,
    /// How many times gatekeeper tries to start each instance when it launches the plugin
    /// (at startup or reload) before giving up with the last exit status and stderr lines
    /// (at least 1). Default 3.
    #[serde(default = "defaults::start_attempts")]
    pub start_attempts: u32,
    /// A process whose resident memory (RSS) grows past this many bytes is replaced
    /// make-before-break (successor ready, calls moved, old one stopped). In a config file an
    /// integer (bytes) or a string with a unit: `"256MiB"`, `"1GB"`, `"512k"`. Default: none.
    #[serde(default, with = "bytes", skip_serializing_if = "Option::is_none")]
    pub max_memory: Option<u64>,
    /// A process that answered this many calls (an integer) or ran this long (a duration
    /// string, `"1h"`) is replaced make-before-break. Default: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recycle_after: Option<RecycleAfter>,
    /// The low-latency mode: microseconds the proxy's connection to the plugin, and the plugin
    /// (told in `GATEKEEPER_BUSY_POLL_US`), may spin on the socket instead of sleeping while a
    /// call waits for its answer (see [`gatekeeper_rpc::PeerConfig::busy_poll`]). 0 (the
    /// default): off; at most [`PluginSpec::MAX_BUSY_POLL_US`].
    #[serde(default, with = "busy_poll_us")]
    pub busy_poll_us: u32,
    /// Time a `heartbeat` may take before it counts as missed. Default 2 s.
    #[serde(skip, default = "defaults::heartbeat_timeout")]
    pub heartbeat_timeout: Duration,
    /// The plugin is restarted once this many consecutive heartbeats are missed (at least 1).
    /// Default 2.
    #[serde(skip, default = "defaults::missed_heartbeats_allowed")]
    pub missed_heartbeats_allowed: u32,
    /// The silence allowed while a process starts (spawn, handshake, `configure`, `start`):
    /// each call the plugin makes on any of its connections (a manager call, `config_status`;
    /// not the handshake) restarts this timer, so a plugin pushing a big registry inside `start`
    /// is not cut off; one that makes no call for this long fails to start (one that makes none
    /// at all: this long after its spawn). Default 10 s.
    #[serde(default = "defaults::start_timeout", with = "duration")]
    pub start_timeout: Duration,
    /// The most a start may take however busy the plugin is (from spawning the process to the
    /// answer to `start`): a plugin that keeps calling but never finishes `start` fails after
    /// this long. At least `start_timeout`. Default 5 min.
    #[serde(default = "defaults::start_max", with = "duration")]
    pub start_max: Duration,
    /// Time allowed for `stop` to be answered, then again for the process to exit, before it is
    /// killed. Default 3 s.
    #[serde(skip, default = "defaults::stop_timeout")]
    pub stop_timeout: Duration,
}

/// The defaults of [`PluginSpec`], the one place they are written.
mod defaults {
    use std::time::Duration;

    pub fn instances() -> usize {
        1
    }
    pub fn hook_timeout() -> Duration {
        Duration::from_secs(1)
    }
    pub fn heartbeat_interval() -> Duration {
        Duration::from_secs(5)
    }
    pub fn restart_after_timeouts() -> u32 {
        5
    }
    pub fn heartbeat_timeout() -> Duration {
        Duration::from_secs(2)
    }
    pub fn missed_heartbeats_allowed() -> u32 {
        2
    }
    pub fn start_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub fn start_max() -> Duration {
        Duration::from_secs(5 * 60)
    }
    pub fn stop_timeout() -> Duration {
        Duration::from_secs(3)
    }
    pub fn restart_backoff_min() -> Duration {
        Duration::from_millis(100)
    }
    pub fn restart_backoff_max() -> Duration {
        Duration::from_secs(10)
    }
    pub fn restart_after_errors() -> u32 {
        5
    }
    pub fn healthy_after() -> Duration {
        Duration::from_millis(500)
    }
    pub fn start_attempts() -> u32 {
        3
    }
}

/// A config value of the plugin host out of bounds ([`PluginSpec::validate`],
/// [`crate::options::HostConfig::validate`]); the message starts with its key (in a plugin
/// table for a spec).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `instances` is not from 1 to [`PluginSpec::MAX_INSTANCES`].
    #[error("instances: {0} must be from 1 to {max}", max = PluginSpec::MAX_INSTANCES)]
    Instances(usize),
    /// A duration that must be more than 0 is 0.
    #[error("{0}: must be more than 0")]
    Zero(&'static str),
    /// A path that must not be empty is.
    #[error("{0}: must not be empty")]
    Empty(&'static str),
    /// `standby` is more than [`PluginSpec::MAX_INSTANCES`].
    #[error("standby: {0} must be from 0 to {max}", max = PluginSpec::MAX_INSTANCES)]
    Standby(usize),
    /// `standby` on an upstream plugin.
    #[error("standby: upstream plugins cannot have standby processes (a spare would push upstreams too)")]
    StandbyUpstream,
    /// `restart_backoff_min` is more than `restart_backoff_max`.
    #[error("restart_backoff_min: must not be more than restart_backoff_max")]
    Backoff,
    /// A count that must be more than 0 is 0.
    #[error("{0}: must be at least 1")]
    ZeroCount(&'static str),
    /// `start_max` is less than `start_timeout`.
    #[error("start_max: must not be less than start_timeout")]
    StartMax,
    /// `busy_poll_us` is not from 0 to [`PluginSpec::MAX_BUSY_POLL_US`].
    #[error("busy_poll_us: {0} must be from 0 (off) to {max} microseconds", max = PluginSpec::MAX_BUSY_POLL_US)]
    BusyPoll(i64),
}

impl PluginSpec {
    /// A spec with no arguments, an empty config and the default timeouts.
    pub fn new(
        name: impl Into<String>,
        plugin_type: PluginType,
        command: impl Into<PathBuf>,
    ) -> Self {
        PluginSpec {
            name: name.into(),
            plugin_type,
            command: command.into(),
            args: Vec::new(),
            config: Object::new(),
            instances: defaults::instances(),
            standby: 0,
            restart_after_errors: defaults::restart_after_errors(),
            healthy_after: defaults::healthy_after(),
            start_attempts: defaults::start_attempts(),
            max_memory: None,
            recycle_after: None,
            busy_poll_us: 0,
            hook_timeout: defaults::hook_timeout(),
            heartbeat_interval: defaults::heartbeat_interval(),
            restart_after_timeouts: defaults::restart_after_timeouts(),
            heartbeat_timeout: defaults::heartbeat_timeout(),
            missed_heartbeats_allowed: defaults::missed_heartbeats_allowed(),
            start_timeout: defaults::start_timeout(),
            start_max: defaults::start_max(),
            stop_timeout: defaults::stop_timeout(),
            restart_backoff_min: defaults::restart_backoff_min(),
            restart_backoff_max: defaults::restart_backoff_max(),
        }
    }

    /// The most `instances` a config file may ask for.
    pub const MAX_INSTANCES: usize = 64;

    /// The most `busy_poll_us` a config file may ask for: a spin holds a core for up to this
    /// long per call.
    pub const MAX_BUSY_POLL_US: u32 = 1000;

    /// The busy-poll budget of the plugin's connections (`busy_poll_us`), `None` when off.
    pub fn busy_poll(&self) -> Option<Duration> {
        (self.busy_poll_us > 0).then(|| Duration::from_micros(u64::from(self.busy_poll_us)))
    }

    /// Checks the configurable values; the error names the first bad key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=Self::MAX_INSTANCES).contains(&self.instances) {
            return Err(ConfigError::Instances(self.instances));
        }
        if self.heartbeat_interval.is_zero() {
            return Err(ConfigError::Zero("heartbeat_interval"));
        }
        if self.standby > Self::MAX_INSTANCES {
            return Err(ConfigError::Standby(self.standby));
        }
        if self.standby > 0 && self.plugin_type == PluginType::Upstream {
            return Err(ConfigError::StandbyUpstream);
        }
        if self.restart_backoff_min > self.restart_backoff_max {
            return Err(ConfigError::Backoff);
        }
        if self.start_attempts == 0 {
            return Err(ConfigError::ZeroCount("start_attempts"));
        }
        if self.start_timeout.is_zero() {
            return Err(ConfigError::Zero("start_timeout"));
        }
        if self.start_max < self.start_timeout {
            return Err(ConfigError::StartMax);
        }
        if self.busy_poll_us > Self::MAX_BUSY_POLL_US {
            return Err(ConfigError::BusyPoll(i64::from(self.busy_poll_us)));
        }
        if self.max_memory == Some(0) {
            return Err(ConfigError::Zero("max_memory"));
        }
        match self.recycle_after {
            Some(RecycleAfter::Calls(0)) => return Err(ConfigError::ZeroCount("recycle_after")),
            Some(RecycleAfter::Time(time)) if time.is_zero() => {
                return Err(ConfigError::Zero("recycle_after"))
            }
            _ => {}
        }
        Ok(())
    }

    /// Sets the arguments (builder style).
    pub fn with_args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.args = args.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the config map (builder style).
    pub fn with_config(mut self, config: Object) -> Self {
        self.config = config;
        self
    }

    /// Sets the number of processes (builder style).
    pub fn with_instances(mut self, instances: usize) -> Self {
        self.instances = instances;
        self
    }
}

/// When a process is replaced make-before-break ([`PluginSpec::recycle_after`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecycleAfter {
    /// After answering this many calls made through the plugin's handles.
    Calls(u64),
    /// After running this long.
    Time(Duration),
}

impl Serialize for RecycleAfter {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            RecycleAfter::Calls(calls) => s.serialize_u64(*calls),
            RecycleAfter::Time(time) => duration::serialize(time, s),
        }
    }
}

impl<'de> Deserialize<'de> for RecycleAfter {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Calls(u64),
            Text(String),
        }
        match Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom(
                "recycle_after: expected a number of calls (100000) or a duration (\"1h\")",
            )
        })? {
            Raw::Calls(calls) => Ok(RecycleAfter::Calls(calls)),
            Raw::Text(text) => humantime::parse_duration(&text)
                .map(RecycleAfter::Time)
                .map_err(|_| {
                    serde::de::Error::custom(format!(
                        "recycle_after: `{text}` is neither a number of calls nor a duration (examples: 100000, 30m, 1h)"
                    ))
                }),
        }
    }
}

/// Byte sizes: an integer, or a string with a unit (`k`/`KB`/`KiB`, `M…`, `G…`; the
/// 1000-based and 1024-based units as written).
pub fn parse_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "kib" => 1 << 10,
        "m" | "mb" => 1_000_000,
        "mib" => 1 << 20,
        "g" | "gb" => 1_000_000_000,
        "gib" => 1 << 30,
        _ => return None,
    };
    number.checked_mul(factor)
}

/// `Option<u64>` bytes as an integer or a string with a unit ([`parse_bytes`]).
mod bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(bytes) => s.serialize_u64(*bytes),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom("max_memory: expected a size: 268435456 or \"256MiB\"")
        })? {
            Raw::Number(n) => Ok(Some(n)),
            Raw::Text(text) => super::parse_bytes(&text).map(Some).ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "max_memory: `{text}` is not a size (examples: 256MiB, 1GB, 512k)"
                ))
            }),
        }
    }
}

/// `busy_poll_us = 200`: a whole number of microseconds; a negative or fractional one is refused
/// with the key's own message (the upper bound is [`PluginSpec::validate`]'s).
mod busy_poll_us {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::{ConfigError, PluginSpec};

    pub fn serialize<S: Serializer>(us: &u32, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(*us)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        let value = i64::deserialize(d).map_err(|_| {
            serde::de::Error::custom(format!(
                "busy_poll_us: expected a whole number of microseconds from 0 (off) to {}",
                PluginSpec::MAX_BUSY_POLL_US
            ))
        })?;
        u32::try_from(value)
            .ok()
            .filter(|us| *us <= PluginSpec::MAX_BUSY_POLL_US)
            .ok_or_else(|| serde::de::Error::custom(ConfigError::BusyPoll(value)))
    }
}

/// `type = "modifier"`, with the message of [`PluginType`]'s `FromStr`.
mod plugin_type {
    use gatekeeper_rpc::methods::PluginType;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(t: &PluginType, s: S) -> Result<S::Ok, S::Error> {
        t.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PluginType, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

/// Durations as humantime strings (`"250ms"`).
mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(|_| {
            serde::de::Error::custom(format!(
                "`{text}` is not a duration (examples: 500ms, 5s, 1m)"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_plugin_table_gives_a_spec_with_the_defaults_of_new() {
        let spec: PluginSpec = serde_json::from_value(serde_json::json!({
            "type": "modifier",
            "command": "/bin/sh",
        }))
        .unwrap();
        assert_eq!(spec, PluginSpec::new("", PluginType::Modifier, "/bin/sh"));
        spec.validate().unwrap();
        let spec: PluginSpec = serde_json::from_value(serde_json::json!({
            "name": "auth", "type": "router", "command": "x", "args": ["-v"],
            "hook_timeout": "250ms", "heartbeat_interval": "1s", "instances": 3,
            "restart_after_timeouts": 0, "config": {"a": 1},
        }))
        .unwrap();
        assert_eq!(spec.hook_timeout, Duration::from_millis(250));
        assert_eq!((spec.instances, spec.restart_after_timeouts), (3, 0));
        let back: PluginSpec =
            serde_json::from_value(serde_json::to_value(&spec).unwrap()).unwrap();
        assert_eq!(back, spec);
    }

    #[test]
    fn bad_values_say_what_is_wrong() {
        let err = |value: serde_json::Value| {
            serde_json::from_value::<PluginSpec>(value)
                .unwrap_err()
                .to_string()
        };
        assert!(err(serde_json::json!({"type": "teapot", "command": "x"}))
            .contains("unknown plugin type `teapot`"));
        assert!(
            err(serde_json::json!({"type": "metric", "command": "x", "hook_timeout": "soon"}))
                .contains("`soon` is not a duration")
        );
        let spec = PluginSpec::new("a", PluginType::Metric, "x").with_instances(65);
        assert_eq!(
            spec.validate().unwrap_err().to_string(),
            "instances: 65 must be from 1 to 64"
        );
    }

    #[test]
    fn every_supervision_key_round_trips() {
        let table = serde_json::json!({
            "name": "hog", "type": "modifier", "command": "x",
            "instances": 2, "standby": 1,
            "restart_after_timeouts": 4, "restart_after_errors": 7,
            "healthy_after": "2s", "restart_backoff_min": "50ms", "restart_backoff_max": "3s",
            "start_attempts": 5, "max_memory": "256MiB", "recycle_after": 1000,
            "start_timeout": "2s", "start_max": "1m",
        });
        let spec: PluginSpec = serde_json::from_value(table).unwrap();
        spec.validate().unwrap();
        assert_eq!((spec.standby, spec.restart_after_errors), (1, 7));
        assert_eq!(spec.healthy_after, Duration::from_secs(2));
        assert_eq!(
            (spec.restart_backoff_min, spec.restart_backoff_max),
            (Duration::from_millis(50), Duration::from_secs(3))
        );
        assert_eq!(spec.start_attempts, 5);
        assert_eq!(
            (spec.start_timeout, spec.start_max),
            (Duration::from_secs(2), Duration::from_secs(60))
        );
        assert_eq!(spec.max_memory, Some(256 << 20));
        assert_eq!(spec.recycle_after, Some(RecycleAfter::Calls(1000)));
        let back: PluginSpec =
            serde_json::from_value(serde_json::to_value(&spec).unwrap()).unwrap();
        assert_eq!(back, spec);

        let timed: PluginSpec = serde_json::from_value(serde_json::json!({
            "type": "modifier", "command": "x", "recycle_after": "1h", "max_memory": 1000,
        }))
        .unwrap();
        assert_eq!(
            timed.recycle_after,
            Some(RecycleAfter::Time(Duration::from_secs(3600)))
        );
        assert_eq!(timed.max_memory, Some(1000));
        let back: PluginSpec =
            serde_json::from_value(serde_json::to_value(&timed).unwrap()).unwrap();
        assert_eq!(back, timed);
    }

    #[test]
    fn busy_poll_us_is_off_by_default_and_bounded() {
        let parse = |extra: serde_json::Value| {
            let mut table = serde_json::json!({"type": "modifier", "command": "x"});
            if let (Some(table), Some(extra)) = (table.as_object_mut(), extra.as_object()) {
                table.extend(extra.clone());
            }
            serde_json::from_value::<PluginSpec>(table)
        };
        let off = parse(serde_json::json!({})).unwrap();
        assert_eq!((off.busy_poll_us, off.busy_poll()), (0, None));
        let on = parse(serde_json::json!({"busy_poll_us": 200})).unwrap();
        on.validate().unwrap();
        assert_eq!(on.busy_poll(), Some(Duration::from_micros(200)));
        let back: PluginSpec = serde_json::from_value(serde_json::to_value(&on).unwrap()).unwrap();
        assert_eq!(back, on);
        for bad in [
            serde_json::json!(-1),
            serde_json::json!(1001),
            serde_json::json!("x"),
        ] {
            let message = parse(serde_json::json!({ "busy_poll_us": bad }))
                .unwrap_err()
                .to_string();
            assert!(message.starts_with("busy_poll_us: "), "{bad}: {message}");
        }
        let built = PluginSpec {
            busy_poll_us: 5000,
            ..PluginSpec::new("a", PluginType::Modifier, "x")
        };
        assert_eq!(
            built.validate().unwrap_err().to_string(),
            "busy_poll_us: 5000 must be from 0 (off) to 1000 microseconds"
        );
    }

    #[test]
    fn bad_supervision_values_name_their_key() {
        let parse = |extra: serde_json::Value| {
            let mut table = serde_json::json!({"type": "modifier", "command": "x"});
            if let (Some(table), Some(extra)) = (table.as_object_mut(), extra.as_object()) {
                table.extend(extra.clone());
            }
            serde_json::from_value::<PluginSpec>(table)
        };
        let error = |extra| parse(extra).unwrap_err().to_string();
        assert!(error(serde_json::json!({"max_memory": "lots"})).starts_with("max_memory: "));
        assert!(error(serde_json::json!({"max_memory": true})).starts_with("max_memory: "));
        assert!(error(serde_json::json!({"recycle_after": "often"})).starts_with("recycle_after: "));
        assert!(error(serde_json::json!({"recycle_after": [1]})).starts_with("recycle_after: "));
        let invalid = |extra| parse(extra).unwrap().validate().unwrap_err().to_string();
        for (extra, key) in [
            (serde_json::json!({"standby": 65}), "standby: "),
            (serde_json::json!({"start_attempts": 0}), "start_attempts: "),
            (
                serde_json::json!({"start_timeout": "0s"}),
                "start_timeout: ",
            ),
            (
                serde_json::json!({"start_timeout": "1m", "start_max": "30s"}),
                "start_max: ",
            ),
            // The default start_max (5 min) is less than this start_timeout.
            (serde_json::json!({"start_timeout": "10m"}), "start_max: "),
            (serde_json::json!({"max_memory": 0}), "max_memory: "),
            (serde_json::json!({"recycle_after": 0}), "recycle_after: "),
            (
                serde_json::json!({"recycle_after": "0s"}),
                "recycle_after: ",
            ),
            (
                serde_json::json!({"restart_backoff_min": "2s", "restart_backoff_max": "1s"}),
                "restart_backoff_min: ",
            ),
        ] {
            let message = invalid(extra.clone());
            assert!(message.starts_with(key), "{extra}: {message}");
        }
        let upstream = PluginSpec {
            standby: 1,
            ..PluginSpec::new("u", PluginType::Upstream, "x")
        };
        assert!(upstream
            .validate()
            .unwrap_err()
            .to_string()
            .starts_with("standby: "));
    }
}
