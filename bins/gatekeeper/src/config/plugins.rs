//! The plugins to run: the `[[plugin]]` tables, then the `--TYPE-plugin` flags, each with its
//! command resolved to a file and a unique name; the pass-through `--TYPE-KEY` flags go into
//! the config map of every plugin of that type, except `--TYPE-instances N`,
//! `--TYPE-standby N`, `--TYPE-busy-poll-us N`, `--TYPE-start-timeout D` and
//! `--TYPE-start-max D`, which set those settings of every plugin of that type.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use gatekeeper_plugin_host::PluginSpec;
use gatekeeper_proxy::{FailureConfig, FailurePolicy};
use gatekeeper_rpc::methods::PluginType;

use crate::cli::{Cli, PluginFlag};

/// One plugin to run: what the plugin host runs and what the proxy does when its hooks fail.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginConfig {
    /// Name, type, command, arguments, config map, timeouts, instances.
    pub spec: PluginSpec,
    /// The failure policy of its hooks.
    pub failure: FailurePolicy,
}

/// The plugins of the file (`[[plugin]]` tables, read but not resolved) and of the flags, in
/// this order: file, `--upstream-plugin`, `--router-plugin`, `--loadbalancer-plugin`,
/// `--modifier-plugin`, `--metric-plugin`.
pub fn resolve(cli: &Cli, file: Vec<PluginConfig>) -> Result<Vec<PluginConfig>> {
    let mut plugins: Vec<PluginConfig> = Vec::new();
    for (i, plugin) in file.into_iter().enumerate() {
        let plugin = from_table(&format!("plugin[{i}]"), plugin, &plugins)?;
        plugins.push(plugin);
    }
    let flags = cli
        .upstream_plugin
        .iter()
        .map(|spec| (PluginType::Upstream, spec))
        .chain(cli.router_plugin.iter().map(|s| (PluginType::Router, s)))
        .chain(
            cli.loadbalancer_plugin
                .iter()
                .map(|s| (PluginType::Loadbalancer, s)),
        )
        .chain(
            cli.modifier_plugin
                .iter()
                .map(|s| (PluginType::Modifier, s)),
        )
        .chain(cli.metric_plugin.iter().map(|s| (PluginType::Metric, s)));
    for (plugin_type, spec) in flags {
        let plugin = from_flag(plugin_type, spec, &plugins)?;
        plugins.push(plugin);
    }
    apply_pass_through_flags(cli, &mut plugins)?;
    at_most_one_router_and_loadbalancer(&plugins)?;
    Ok(plugins)
}

/// A `[[plugin]]` table's plugin with its command resolved and its name given.
fn from_table(key: &str, mut plugin: PluginConfig, taken: &[PluginConfig]) -> Result<PluginConfig> {
    let spec = &mut plugin.spec;
    let command = spec.command.to_string_lossy().into_owned();
    spec.command = resolve_command(&command).with_context(|| format!("{key}.command"))?;
    if spec.name.is_empty() {
        let name =
            default_name(&spec.command, &spec.args).unwrap_or_else(|| spec.plugin_type.to_string());
        spec.name = unique_name(&name, taken);
    } else if taken.iter().any(|o| o.spec.name == spec.name) {
        bail!("{key}.name: `{}` is used by another plugin", spec.name);
    }
    Ok(plugin)
}

/// A `--TYPE-plugin CMD [ARGS…]` flag's plugin, with the defaults of its type.
fn from_flag(plugin_type: PluginType, spec: &str, taken: &[PluginConfig]) -> Result<PluginConfig> {
    let key = format!("--{plugin_type}-plugin");
    let mut words = spec.split_whitespace();
    let command = words
        .next()
        .ok_or_else(|| anyhow!("{key}: empty command"))?;
    let resolved = resolve_command(command).with_context(|| key.clone())?;
    let args: Vec<String> = words.map(str::to_owned).collect();
    let name = default_name(&resolved, &args).unwrap_or_else(|| plugin_type.to_string());
    Ok(PluginConfig {
        spec: PluginSpec::new(unique_name(&name, taken), plugin_type, resolved).with_args(args),
        failure: FailureConfig::default_policy(plugin_type),
    })
}

/// The pass-through keys that are plugin settings rather than config-map keys (those with an
/// underscore in either spelling).
pub const SETTING_FLAGS: [&str; 8] = [
    "instances",
    "standby",
    "busy-poll-us",
    "busy_poll_us",
    "start-timeout",
    "start_timeout",
    "start-max",
    "start_max",
];

/// `--upstream-file x`: `file = "x"` in the config map of every upstream plugin;
/// `--modifier-instances 2`: `instances = 2` for every modifier plugin.
fn apply_pass_through_flags(cli: &Cli, plugins: &mut [PluginConfig]) -> Result<()> {
    for flag in &cli.plugin_flags {
        if !plugins
            .iter()
            .any(|p| p.spec.plugin_type == flag.plugin_type)
        {
            bail!(
                "--{}-{}: no {} plugin is configured to receive it",
                flag.plugin_type,
                flag.key,
                flag.plugin_type
            );
        }
        let of_type = plugins
            .iter_mut()
            .filter(|p| p.spec.plugin_type == flag.plugin_type);
        if SETTING_FLAGS.contains(&flag.key.as_str()) {
            for plugin in of_type {
                apply_setting_flag(flag, &mut plugin.spec)?;
            }
            continue;
        }
        for plugin in of_type {
            plugin
                .spec
                .config
                .insert(flag.key.clone(), flag.value.clone());
        }
    }
    Ok(())
}

/// `--TYPE-instances N`, `--TYPE-standby N`, `--TYPE-busy-poll-us N`, `--TYPE-start-timeout D`
/// or `--TYPE-start-max D` on one plugin, checked; the error names the flag.
fn apply_setting_flag(flag: &PluginFlag, spec: &mut PluginSpec) -> Result<()> {
    let name = format!("--{}-{}", flag.plugin_type, flag.key);
    let number = |value: &serde_json::Value| -> Result<i64> {
        value
            .as_str()
            .and_then(|text| text.trim().parse().ok())
            .ok_or_else(|| anyhow!("{name}: expected a number, got {value}"))
    };
    let setting = flag.key.replace('-', "_");
    let duration = |value: &serde_json::Value| -> Result<std::time::Duration> {
        value
            .as_str()
            .and_then(|text| humantime::parse_duration(text.trim()).ok())
            .ok_or_else(|| {
                anyhow!("{name}: expected a duration (examples: 500ms, 5s, 1m), got {value}")
            })
    };
    match setting.as_str() {
        "start_timeout" => spec.start_timeout = duration(&flag.value)?,
        "start_max" => spec.start_max = duration(&flag.value)?,
        "busy_poll_us" => {
            let us = number(&flag.value)?;
            spec.busy_poll_us =
                u32::try_from(us).map_err(|_| anyhow!("{name}: {}", busy_poll_range(us)))?;
        }
        _ => {
            let count = usize::try_from(number(&flag.value)?)
                .map_err(|_| anyhow!("{name}: expected a number, got {}", flag.value))?;
            if setting == "instances" {
                spec.instances = count;
            } else {
                spec.standby = count;
            }
        }
    }
    spec.validate().map_err(|e| {
        let message = e.to_string();
        let what = message
            .strip_prefix(&format!("{setting}: "))
            .unwrap_or(&message);
        anyhow!("{name}: {what}")
    })
}

/// The range message of `busy_poll_us` for `value`, without the key.
fn busy_poll_range(value: i64) -> String {
    let message = gatekeeper_plugin_host::spec::ConfigError::BusyPoll(value).to_string();
    message
        .strip_prefix("busy_poll_us: ")
        .unwrap_or(&message)
        .to_owned()
}

fn at_most_one_router_and_loadbalancer(plugins: &[PluginConfig]) -> Result<()> {
    for single in [PluginType::Router, PluginType::Loadbalancer] {
        let named: Vec<&str> = plugins
            .iter()
            .filter(|p| p.spec.plugin_type == single)
            .map(|p| p.spec.name.as_str())
            .collect();
        if named.len() > 1 {
            bail!(
                "at most one {single} plugin may run; configured: {}",
                named.join(", ")
            );
        }
    }
    Ok(())
}

/// Finds a plugin command: a path (contains `/`) as is; otherwise next to the gatekeeper binary,
/// then on PATH.
pub fn resolve_command(command: &str) -> Result<PathBuf> {
    let executable = |path: &Path| {
        path.is_file() && nix::unistd::access(path, nix::unistd::AccessFlags::X_OK).is_ok()
    };
    if command.contains('/') {
        let path = PathBuf::from(command);
        if executable(&path) {
            return Ok(path);
        }
        if path.is_file() {
            bail!("plugin command `{command}` is not executable (chmod +x, or name its interpreter: command = \"python3\", args = [\"{command}\"])");
        }
        bail!("plugin command `{command}` not found");
    }
    let beside_us = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf));
    let path_dirs = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    beside_us
        .into_iter()
        .chain(path_dirs)
        .map(|dir| dir.join(command))
        .find(|candidate| executable(candidate))
        .ok_or_else(|| {
            anyhow!("plugin command `{command}` not found (as an executable file) next to gatekeeper or on PATH")
        })
}

/// Interpreters whose script, not themselves, names a plugin (`python3 auth.py` is `auth`).
const INTERPRETERS: [&str; 9] = [
    "python", "python3", "node", "ruby", "perl", "bash", "sh", "env", "php",
];

/// A plugin's default name: the command's file name without extension, or for an interpreter
/// the script's.
pub fn default_name(command: &Path, args: &[String]) -> Option<String> {
    let stem = |p: &Path| p.file_stem().map(|s| s.to_string_lossy().into_owned());
    let own = stem(command)?;
    if INTERPRETERS.contains(&own.as_str()) {
        let script = args
            .iter()
            .find(|a| !a.starts_with('-') && !a.contains('='));
        if let Some(script) = script.and_then(|s| stem(Path::new(s))) {
            return Some(script);
        }
    }
    Some(own)
}

/// `wanted`, or `wanted-2`, `wanted-3`… if taken.
fn unique_name(wanted: &str, taken: &[PluginConfig]) -> String {
    let mut name = wanted.to_owned();
    let mut n = 2;
    while taken.iter().any(|p| p.spec.name == name) {
        name = format!("{wanted}-{n}");
        n += 1;
    }
    name
}
