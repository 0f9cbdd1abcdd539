//! Command-line flags, including the original project's pass-through plugin flags: any flag whose
//! name starts with a plugin type (`--upstream-file x`) becomes a key (`file`) in the config map
//! of every plugin of that type.

use std::path::PathBuf;

use clap::Parser;
use gatekeeper_rpc::methods::PluginType;
use serde_json::Value;

/// What `--version` prints after the name: the version and the git commit gatekeeper was built
/// from (`unknown` outside a git checkout; see build.rs), e.g. `0.1.0 (commit f5447f4)`.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("GATEKEEPER_COMMIT"),
    ")"
);

/// gatekeeper: a reverse proxy that leaves every decision to plugins.
#[derive(Debug, Parser)]
#[command(name = "gatekeeper", version = VERSION, about, after_help = PASS_THROUGH_HELP)]
pub struct Cli {
    /// TOML config file; flags override its settings.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Address to listen on, `[NAME=]IP:PORT` (repeatable). NAME is the listener name that
    /// upstreams' `protocols` refer to; default `http-public`.
    #[arg(long, value_name = "[NAME=]ADDR")]
    pub listen: Vec<String>,

    /// PEM certificate chain of a TLS listener, `[NAME=]FILE` (repeatable: several for one
    /// listener are chosen by SNI, the first is the default). Without NAME: the only listener.
    /// Pairs with the `--tls-key` of the same listener in the same position.
    #[arg(long, value_name = "[NAME=]FILE")]
    pub tls_cert: Vec<String>,

    /// PEM private key of a TLS listener, `[NAME=]FILE` (repeatable, one per `--tls-cert`).
    #[arg(long, value_name = "[NAME=]FILE")]
    pub tls_key: Vec<String>,

    /// Lowest TLS version of a TLS listener, `[NAME=]1.2|1.3` (like `min_version`; without
    /// NAME: the only TLS listener).
    #[arg(long, value_name = "[NAME=]VERSION")]
    pub tls_min_version: Vec<String>,

    /// PEM file of the CAs whose client certificates a TLS listener verifies (mTLS),
    /// `[NAME=]FILE` (like `client_ca`).
    #[arg(long, value_name = "[NAME=]FILE")]
    pub tls_client_ca: Vec<String>,

    /// Whether a client certificate is required, `[NAME=]required|optional` (like
    /// `client_auth`; needs a client CA).
    #[arg(long, value_name = "[NAME=]MODE")]
    pub tls_client_auth: Vec<String>,

    /// DER OCSP response stapled to a certificate, `[NAME=]FILE` (repeatable: the n-th of a
    /// listener goes with its n-th certificate; like `ocsp`).
    #[arg(long, value_name = "[NAME=]FILE")]
    pub tls_ocsp: Vec<String>,

    /// Header set on every response of a TLS listener, `[NAME=]HEADER:VALUE` (repeatable; like
    /// `response_headers`), e.g. `strict-transport-security:max-age=63072000`.
    #[arg(long, value_name = "[NAME=]HEADER:VALUE")]
    pub tls_response_header: Vec<String>,

    /// Upstream plugin command (repeatable): a path, or a name looked up next to this binary and
    /// then on PATH. Words after the first are its arguments.
    #[arg(long, value_name = "CMD")]
    pub upstream_plugin: Vec<String>,

    /// Modifier plugin command (repeatable), called in the order given.
    #[arg(long, value_name = "CMD")]
    pub modifier_plugin: Vec<String>,

    /// Router plugin command (at most one): picks the upstream of every request instead of the
    /// built-in prefix/hostname router.
    #[arg(long, value_name = "CMD")]
    pub router_plugin: Option<String>,

    /// Loadbalancer plugin command (at most one): picks the backend of every request instead of
    /// the upstream's built-in balancer.
    #[arg(long, value_name = "CMD")]
    pub loadbalancer_plugin: Option<String>,

    /// Metric plugin command (repeatable): receives batches of events and metrics.
    #[arg(long, value_name = "CMD")]
    pub metric_plugin: Vec<String>,

    /// Directory in which to create the private plugin socket directory (default:
    /// $XDG_RUNTIME_DIR, else the system temp dir).
    #[arg(long, value_name = "DIR")]
    pub socket_dir: Option<PathBuf>,

    /// The admin socket `gatekeeper ctl` talks to (like the `admin_socket` key; `""` disables
    /// it; `gatekeeper ctl --socket PATH` finds it).
    // Read as an OsString: clap's PathBuf parser refuses the empty value that disables it.
    #[arg(long, value_name = "PATH", value_parser = clap::value_parser!(std::ffi::OsString))]
    pub admin_socket: Option<std::ffi::OsString>,

    /// Time a backend has to answer with headers when its upstream sets no timeout (e.g. `30s`).
    #[arg(long, value_name = "DURATION")]
    pub default_timeout: Option<String>,

    /// Time allowed to open a backend connection when its upstream sets no connect timeout
    /// (e.g. `5s`, the default).
    #[arg(long, value_name = "DURATION")]
    pub connect_timeout: Option<String>,
    /// Largest body, in bytes, sent to a modifier that wants bodies (default 1048576 = 1 MiB;
    /// at most 8388608): larger request bodies get 413, larger response bodies stream past.
    #[arg(long, value_name = "BYTES")]
    pub max_plugin_body: Option<usize>,
    /// Client connections open at once per client address (0: no limit, the default); more
    /// are closed at accept, before any plugin runs.
    #[arg(long, value_name = "N")]
    pub max_connections_per_client: Option<usize>,
    /// Requests per second per client address (0: no limit, the default); over it: 429 with
    /// Retry-After, before any plugin runs.
    #[arg(long, value_name = "N")]
    pub client_request_rate: Option<u32>,
    /// Requests a client may send at once before `--client-request-rate` applies (0, the
    /// default: the same as the rate).
    #[arg(long, value_name = "N")]
    pub client_request_burst: Option<u32>,

    /// Worker threads serving requests (default: one per CPU core).
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,

    /// Log filter in RUST_LOG syntax (e.g. `info`, `gatekeeper_proxy=debug`); RUST_LOG wins.
    #[arg(long, value_name = "FILTER")]
    pub log: Option<String>,

    /// Log format: `text`, `json` (one object per line) or `journald` (no timestamps, `<N>`
    /// priority prefixes). Default `text`, or `journald` when stderr is systemd's journal.
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,

    /// Do not start: check the config and flags, print the effective settings as JSON, exit.
    #[arg(long)]
    pub check: bool,

    /// Pass-through plugin flags, collected before clap parses the rest.
    #[arg(skip)]
    pub plugin_flags: Vec<PluginFlag>,
}

const PASS_THROUGH_HELP: &str = "\
Commands:
  gatekeeper check [FLAGS]   Checks the config (file and flags) without starting; `--json` prints
                             the effective settings. Exit status 1 on an error.
  gatekeeper ctl COMMAND     Talks to a running gatekeeper over its admin socket: status, plugins,
                             upstreams, reload, … (`gatekeeper ctl --help`).
  gatekeeper plugin COMMAND  Drives one plugin from the shell, started as gatekeeper starts it:
                             `call` a hook, `check` its lifecycle, `replay` a file of calls
                             (`gatekeeper plugin --help`).

Plugin flags:
  --<type>-<key> VALUE    Any other flag starting with a plugin type (upstream, modifier, router,
                          loadbalancer, metric) sets <key> in the config map of every plugin of
                          that type, e.g. `--upstream-file upstreams.yml` gives {\"file\": \"upstreams.yml\"}.
                          `--<type>-<key>=VALUE` works too; a flag with no value sets true.
  --<type>-instances N    Not a config key: runs N processes (1 to 64) of every plugin of that
                          type, like `instances = N` in its [[plugin]] table (e.g.
                          `--modifier-instances 2`).
  --<type>-standby N      Not a config key: keeps N spare processes (0 to 64) of every plugin of
                          that type started and ready to take over when one dies, like
                          `standby = N` (e.g. `--modifier-standby 1`; not for upstream plugins).
  --<type>-busy-poll-us N Not a config key: the low-latency mode for every plugin of that type,
                          like `busy_poll_us = N` (0, off, to 1000 microseconds; e.g.
                          `--modifier-busy-poll-us 200`).
  --<type>-start-timeout D, --<type>-start-max D
                          Not config keys: the start limits of every plugin of that type, like
                          `start_timeout`/`start_max` (e.g. `--upstream-start-timeout 30s`).";

/// One pass-through flag: `--upstream-file x` → `{type: upstream, key: "file", value: "x"}`.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginFlag {
    /// The plugin type the flag is for.
    pub plugin_type: PluginType,
    /// The key in the config map.
    pub key: String,
    /// The value (a string, or `true` for a bare flag).
    pub value: Value,
}

/// Flags owned by gatekeeper itself that start with a plugin type's name.
fn is_own_flag(name: &str) -> bool {
    PluginType::ALL
        .iter()
        .any(|t| name == format!("{}-plugin", t.as_str()))
}

/// Splits `args` into the plugin pass-through flags and the rest (for clap).
pub fn split_plugin_flags(args: Vec<String>) -> (Vec<String>, Vec<PluginFlag>) {
    let mut rest = Vec::with_capacity(args.len());
    let mut flags = Vec::new();
    let mut iter = args.into_iter().peekable();
    while let Some(arg) = iter.next() {
        let Some(name) = arg.strip_prefix("--") else {
            rest.push(arg);
            continue;
        };
        let (name, inline_value) = match name.split_once('=') {
            Some((n, v)) => (n.to_owned(), Some(v.to_owned())),
            None => (name.to_owned(), None),
        };
        let matched = PluginType::ALL.into_iter().find_map(|t| {
            name.strip_prefix(t.as_str())
                .and_then(|s| s.strip_prefix('-'))
                .filter(|key| !key.is_empty())
                .map(|key| (t, key.to_owned()))
        });
        match matched {
            Some((plugin_type, key)) if !is_own_flag(&name) => {
                let value = match inline_value {
                    Some(v) => Value::String(v),
                    None => match iter.peek() {
                        Some(next) if !next.starts_with("--") => {
                            Value::String(iter.next().unwrap_or_default())
                        }
                        _ => Value::Bool(true),
                    },
                };
                flags.push(PluginFlag {
                    plugin_type,
                    key,
                    value,
                });
            }
            _ => rest.push(arg),
        }
    }
    (rest, flags)
}

impl Cli {
    /// Parses the process arguments; exits with clap's message on bad flags.
    pub fn from_env() -> Cli {
        Cli::from_args(std::env::args().collect())
    }

    /// Parses these arguments (the program name first); exits with clap's message on bad flags.
    pub fn from_args(args: Vec<String>) -> Cli {
        let (rest, plugin_flags) = split_plugin_flags(args);
        let mut cli = Cli::parse_from(rest);
        cli.plugin_flags = plugin_flags;
        cli
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn plugin_flags_are_split_off() {
        let (rest, flags) = split_plugin_flags(args(
            "gk --listen 127.0.0.1:1 --upstream-plugin static-upstreams --upstream-file u.yml --modifier-header=x-a --modifier-verbose --log info",
        ));
        assert_eq!(
            rest,
            args("gk --listen 127.0.0.1:1 --upstream-plugin static-upstreams --log info")
        );
        assert_eq!(
            flags,
            vec![
                PluginFlag {
                    plugin_type: PluginType::Upstream,
                    key: "file".into(),
                    value: Value::String("u.yml".into())
                },
                PluginFlag {
                    plugin_type: PluginType::Modifier,
                    key: "header".into(),
                    value: Value::String("x-a".into())
                },
                PluginFlag {
                    plugin_type: PluginType::Modifier,
                    key: "verbose".into(),
                    value: Value::Bool(true)
                },
            ]
        );
    }

    #[test]
    fn own_flags_parse() {
        let (rest, _) = split_plugin_flags(args(
            "gk --listen a=127.0.0.1:1 --listen 127.0.0.1:2 --modifier-plugin request-id",
        ));
        let cli = Cli::parse_from(rest);
        assert_eq!(cli.listen, vec!["a=127.0.0.1:1", "127.0.0.1:2"]);
        assert_eq!(cli.modifier_plugin, vec!["request-id"]);
    }
}
