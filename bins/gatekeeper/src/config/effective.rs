//! The effective settings as JSON, as `--check`, `gatekeeper check --json` and the admin
//! socket's `config` print them, and as a reload compares them (each top-level key is one
//! setting). The shape is the one these outputs have always had: listeners as `{name, addr}`,
//! `metrics` and `passive_health` as objects, durations as `"30s"`.

use std::time::Duration;

use serde::{Serialize, Serializer};
use serde_json::{json, Value};

use super::{PluginConfig, Settings};

fn duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

fn plugin(p: &PluginConfig) -> Value {
    let spec = &p.spec;
    json!({
        "name": spec.name,
        "plugin_type": spec.plugin_type,
        "command": spec.command,
        "args": spec.args,
        "config": spec.config,
        "failure": p.failure,
        "hook_timeout": duration(spec.hook_timeout),
        "heartbeat_interval": duration(spec.heartbeat_interval),
        "instances": spec.instances,
        "restart_after_timeouts": spec.restart_after_timeouts,
    })
}

impl Settings {
    /// The settings as JSON.
    pub fn to_json(&self) -> Value {
        let proxy = &self.proxy;
        json!({
            "listeners": proxy.listeners,
            "default_timeout": duration(proxy.default_timeout),
            "connect_timeout": duration(proxy.connect_timeout),
            "header_read_timeout": duration(proxy.header_read_timeout),
            "tls": proxy.tls.iter().map(|t| json!({
                "listener": t.listener, "cert": t.cert, "key": t.key,
            })).collect::<Vec<_>>(),
            "keepalive_idle": duration(proxy.keepalive_idle),
            "max_header_bytes": proxy.max_header_bytes,
            "max_connections": proxy.max_connections,
            "socket_dir": self.host.socket_dir,
            "log": self.log,
            "workers": self.workers,
            "max_plugin_body": proxy.max_plugin_body,
            "plugins": self.plugins.iter().map(plugin).collect::<Vec<_>>(),
            "metrics": {
                "batch_size": self.metrics.batch_size,
                "flush_interval": duration(self.metrics.flush_interval),
                "buffer": self.metrics.buffer,
            },
            "passive_health": {
                "failures": proxy.passive_health_failures,
                "cooldown": duration(proxy.passive_health_cooldown),
            },
            "forwarded_headers": proxy.forwarded.mode,
            "via": proxy.forwarded.via,
            "log_format": self.log_format,
            "access_log": self.access_log,
            "access_log_file": self.access_log_file,
            "admin_socket": self.admin_socket,
            "metrics_listen": self.metrics_listen,
            "shutdown_grace": duration(proxy.shutdown_grace),
        })
    }
}

impl Serialize for Settings {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_json().serialize(s)
    }
}
