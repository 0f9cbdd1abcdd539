//! The environment gatekeeper gives a plugin process: where to connect, the token to prove,
//! the plugin's name and type, the protocol version, the line limit and the low-latency mode's
//! budget.

use std::path::PathBuf;
use std::time::Duration;

use gatekeeper_rpc::env as vars;
use gatekeeper_rpc::framing::DEFAULT_MAX_LINE_BYTES;
use gatekeeper_rpc::methods::PluginType;

use crate::error::ServeError;

/// What gatekeeper told the plugin through its environment (see [`gatekeeper_rpc::env`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginEnv {
    /// Path of the Unix socket to connect to (`GATEKEEPER_SOCKET`).
    pub socket: PathBuf,
    /// The one-time token to send in the handshake (`GATEKEEPER_TOKEN`).
    pub token: String,
    /// The plugin's configured name (`GATEKEEPER_PLUGIN_NAME`), used in log lines.
    pub name: String,
    /// The type gatekeeper runs the plugin as (`GATEKEEPER_PLUGIN_TYPE`).
    pub plugin_type: PluginType,
    /// The protocol version the proxy speaks (`GATEKEEPER_PROTOCOL_VERSION`).
    pub protocol_version: u32,
    /// The longest line the proxy accepts (`GATEKEEPER_MAX_LINE_BYTES`); defaults to the
    /// protocol's default when unset.
    pub max_line_bytes: usize,
    /// How long to busy-poll the socket after answering, waiting for the next request
    /// (`GATEKEEPER_BUSY_POLL_US`, microseconds); `None` when unset or 0 (off).
    pub busy_poll: Option<Duration>,
}

impl PluginEnv {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ServeError> {
        PluginEnv::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the variables through `lookup` (a variable is unset when it returns `None`).
    ///
    /// `GATEKEEPER_SOCKET`, `GATEKEEPER_TOKEN`, `GATEKEEPER_PLUGIN_TYPE` and
    /// `GATEKEEPER_PROTOCOL_VERSION` are required; `GATEKEEPER_PLUGIN_NAME` defaults to the type
    /// and `GATEKEEPER_MAX_LINE_BYTES` to the protocol's default; `GATEKEEPER_BUSY_POLL_US` is
    /// optional (off when unset).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ServeError> {
        let required = |var: &'static str| {
            lookup(var)
                .filter(|value| !value.is_empty())
                .ok_or(ServeError::NotUnderGatekeeper { var })
        };
        let socket = PathBuf::from(required(vars::SOCKET)?);
        let token = required(vars::TOKEN)?;
        let type_value = required(vars::PLUGIN_TYPE)?;
        let plugin_type =
            type_value
                .parse::<PluginType>()
                .map_err(|reason| ServeError::InvalidEnv {
                    var: vars::PLUGIN_TYPE,
                    value: type_value.clone(),
                    reason,
                })?;
        let protocol_version =
            parse_number(vars::PROTOCOL_VERSION, required(vars::PROTOCOL_VERSION)?)?;
        let max_line_bytes = match lookup(vars::MAX_LINE_BYTES).filter(|v| !v.is_empty()) {
            Some(value) => parse_number(vars::MAX_LINE_BYTES, value)?,
            None => DEFAULT_MAX_LINE_BYTES,
        };
        let busy_poll = match lookup(vars::BUSY_POLL_US).filter(|v| !v.is_empty()) {
            Some(value) => parse_number::<u64>(vars::BUSY_POLL_US, value)?,
            None => 0,
        };
        let busy_poll = (busy_poll > 0).then(|| Duration::from_micros(busy_poll));
        let name = lookup(vars::PLUGIN_NAME)
            .filter(|value| !value.is_empty())
            .unwrap_or_else(|| plugin_type.as_str().to_owned());
        Ok(PluginEnv {
            socket,
            token,
            name,
            plugin_type,
            protocol_version,
            max_line_bytes,
            busy_poll,
        })
    }
}

fn parse_number<T>(var: &'static str, value: String) -> Result<T, ServeError>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    value
        .trim()
        .parse()
        .map_err(|e: T::Err| ServeError::InvalidEnv {
            var,
            reason: format!("expected a decimal integer ({e})"),
            value,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |name| map.get(name).cloned()
    }

    const FULL: &[(&str, &str)] = &[
        (vars::SOCKET, "/tmp/gk/p.sock"),
        (vars::TOKEN, "secret"),
        (vars::PLUGIN_NAME, "ids"),
        (vars::PLUGIN_TYPE, "modifier"),
        (vars::PROTOCOL_VERSION, "1"),
        (vars::MAX_LINE_BYTES, "1024"),
    ];

    #[test]
    fn reads_every_variable() {
        let env = PluginEnv::from_lookup(lookup(FULL)).unwrap();
        assert_eq!(env.socket, PathBuf::from("/tmp/gk/p.sock"));
        assert_eq!(env.token, "secret");
        assert_eq!(env.name, "ids");
        assert_eq!(env.plugin_type, PluginType::Modifier);
        assert_eq!(env.protocol_version, 1);
        assert_eq!(env.max_line_bytes, 1024);
        assert_eq!(env.busy_poll, None);
    }

    #[test]
    fn busy_poll_is_read_in_microseconds_and_zero_is_off() {
        let with = |value: &'static str| {
            let mut pairs = FULL.to_vec();
            pairs.push((vars::BUSY_POLL_US, value));
            PluginEnv::from_lookup(lookup(&pairs))
        };
        assert_eq!(
            with("200").unwrap().busy_poll,
            Some(Duration::from_micros(200))
        );
        assert_eq!(with("0").unwrap().busy_poll, None);
        let message = with("-1").unwrap_err().to_string();
        assert!(message.contains("GATEKEEPER_BUSY_POLL_US"), "{message}");
    }

    #[test]
    fn missing_socket_says_run_me_from_gatekeeper() {
        let err = PluginEnv::from_lookup(lookup(&FULL[1..])).unwrap_err();
        assert!(matches!(err, ServeError::NotUnderGatekeeper { var } if var == vars::SOCKET));
        let message = err.to_string();
        assert!(message.contains("GATEKEEPER_SOCKET"), "{message}");
        assert!(message.contains("run me from gatekeeper"), "{message}");
    }

    #[test]
    fn optional_variables_have_defaults() {
        let env = PluginEnv::from_lookup(lookup(&FULL[..5])).unwrap();
        assert_eq!(env.max_line_bytes, DEFAULT_MAX_LINE_BYTES);
        let without_name: Vec<_> = FULL
            .iter()
            .copied()
            .filter(|(k, _)| *k != vars::PLUGIN_NAME)
            .collect();
        assert_eq!(
            PluginEnv::from_lookup(lookup(&without_name)).unwrap().name,
            "modifier"
        );
    }

    #[test]
    fn bad_values_are_named() {
        let mut pairs = FULL.to_vec();
        pairs[4] = (vars::PROTOCOL_VERSION, "one");
        let message = PluginEnv::from_lookup(lookup(&pairs))
            .unwrap_err()
            .to_string();
        assert!(message.contains("GATEKEEPER_PROTOCOL_VERSION"), "{message}");
        pairs[4] = (vars::PROTOCOL_VERSION, "1");
        pairs[3] = (vars::PLUGIN_TYPE, "teapot");
        let message = PluginEnv::from_lookup(lookup(&pairs))
            .unwrap_err()
            .to_string();
        assert!(message.contains("teapot"), "{message}");
    }
}
