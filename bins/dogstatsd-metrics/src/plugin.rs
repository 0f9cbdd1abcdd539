//! The plugin: `configure` reads the config and opens the UDP socket; each metric hook formats
//! its batch ([`crate::format`]), packs the lines into datagrams and sends them without waiting.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use gatekeeper_plugin_sdk::{
    EventMetricHook, EventMetricParams, HookError, Method, MetricPlugin, Object, Plugin,
    PluginMetricHook, PluginMetricParams, RequestMetricHook, RequestMetricParams,
    UpstreamMetricHook, UpstreamMetricParams,
};
use serde_json::Value;

use crate::format::{pack, parse_tags, Formatter, MAX_DATAGRAM_BYTES};

/// Where lines go when the config names no `address`: a local Datadog agent.
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:8125";

/// The prefix of every metric name when the config names none.
pub const DEFAULT_PREFIX: &str = "gatekeeper.";

/// The hooks declared: every metric kind but profiling (internal timings Datadog users rarely
/// chart; skipping them saves gatekeeper the batches).
const HOOKS: &[&str] = &[
    EventMetricHook::NAME,
    PluginMetricHook::NAME,
    RequestMetricHook::NAME,
    UpstreamMetricHook::NAME,
];

/// The configured sender: a non-blocking UDP socket connected to the agent, and the formatter.
/// A plain std socket on purpose: a send is one non-blocking system call, with no wait for the
/// runtime's reactor to report the socket writable.
#[derive(Debug)]
struct Sender {
    socket: UdpSocket,
    formatter: Formatter,
}

/// Sends gatekeeper's metrics to a DogStatsD agent.
#[derive(Debug, Default)]
pub struct DogStatsd {
    /// Set by `configure`.
    sender: Mutex<Option<Arc<Sender>>>,
    /// Datagrams sent.
    sent: AtomicU64,
    /// Datagrams the socket refused (agent down, buffer full, …) and that were dropped.
    dropped: AtomicU64,
}

impl DogStatsd {
    fn sender(&self) -> Option<Arc<Sender>> {
        self.sender
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Formats a batch with `format` and sends it; does nothing before `configure`.
    fn send<T>(&self, records: &[T], format: impl Fn(&Formatter, &T, &mut Vec<String>)) {
        let Some(sender) = self.sender() else {
            tracing::debug!("metrics before configure: dropped");
            return;
        };
        let mut lines = Vec::with_capacity(records.len() * 2);
        for record in records {
            format(&sender.formatter, record, &mut lines);
        }
        for datagram in pack(&lines, MAX_DATAGRAM_BYTES) {
            self.send_datagram(&sender.socket, datagram.as_bytes());
        }
    }

    /// Sends one datagram without waiting: an error (including a full socket buffer) drops it.
    fn send_datagram(&self, socket: &UdpSocket, datagram: &[u8]) {
        match socket.send(datagram) {
            Ok(_) => {
                self.sent.fetch_add(1, Ordering::Relaxed);
            }
            Err(error) => {
                let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::debug!(%error, dropped, "dogstatsd datagram dropped");
            }
        }
    }
}

/// A string config value, or `default` when the key is absent.
fn string_key<'a>(config: &'a Object, key: &str, default: &'a str) -> Result<&'a str, HookError> {
    match config.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::String(text)) => Ok(text),
        Some(other) => Err(HookError::invalid_params(format!(
            "config key `{key}` must be a string, got {other}"
        ))),
    }
}

/// The `tags` config value: a comma list, or an array of strings.
fn tags_key(config: &Object) -> Result<Vec<String>, HookError> {
    match config.get("tags") {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(text)) => Ok(parse_tags(text)),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(text) => Ok(parse_tags(text)),
                other => Err(HookError::invalid_params(format!(
                    "config key `tags` must hold strings, got {other}"
                ))),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|lists| lists.concat()),
        Some(other) => Err(HookError::invalid_params(format!(
            "config key `tags` must be a comma list such as `env:prod,region:eu`, got {other}"
        ))),
    }
}

/// Resolves `address` (`host:port`) to its first socket address.
async fn resolve(address: &str) -> Result<SocketAddr, HookError> {
    let mut addresses = tokio::net::lookup_host(address).await.map_err(|e| {
        HookError::invalid_params(format!(
            "config key `address`: `{address}` is not a usable host:port ({e})"
        ))
    })?;
    addresses.next().ok_or_else(|| {
        HookError::invalid_params(format!(
            "config key `address`: `{address}` resolves to no address"
        ))
    })
}

/// A non-blocking UDP socket on an ephemeral local port of the right family, connected to
/// `target`.
fn connect(target: SocketAddr) -> io::Result<UdpSocket> {
    let local: SocketAddr = if target.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local)?;
    socket.connect(target)?;
    socket.set_nonblocking(true)?;
    Ok(socket)
}

impl Plugin for DogStatsd {
    /// Reads `address`, `prefix` and `tags`, resolves the address and opens the socket. An
    /// agent that is not running is not an error (UDP has no connection to refuse).
    async fn configure(&self, config: Object) -> Result<(), HookError> {
        let address = string_key(&config, "address", DEFAULT_ADDRESS)?;
        let prefix = string_key(&config, "prefix", DEFAULT_PREFIX)?;
        let tags = tags_key(&config)?;
        let target = resolve(address).await?;
        let socket = connect(target).map_err(|e| {
            HookError::internal(format!("could not open a UDP socket to {target}: {e}"))
        })?;
        tracing::info!(%target, prefix, tags = %tags.join(","), "sending DogStatsD metrics");
        let sender = Sender {
            socket,
            formatter: Formatter::new(prefix, tags),
        };
        *self.sender.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(sender));
        Ok(())
    }

    /// Logs how many datagrams went out and how many were dropped.
    async fn stop(&self) -> Result<(), HookError> {
        tracing::info!(
            sent = self.sent.load(Ordering::Relaxed),
            dropped = self.dropped.load(Ordering::Relaxed),
            "dogstatsd datagrams"
        );
        Ok(())
    }
}

impl MetricPlugin for DogStatsd {
    fn hooks(&self) -> &'static [&'static str] {
        HOOKS
    }

    async fn event_metric(&self, params: EventMetricParams) -> Result<(), HookError> {
        self.send(&params.events, Formatter::event);
        Ok(())
    }

    async fn plugin_metric(&self, params: PluginMetricParams) -> Result<(), HookError> {
        self.send(&params.metrics, Formatter::plugin);
        Ok(())
    }

    async fn request_metric(&self, params: RequestMetricParams) -> Result<(), HookError> {
        self.send(&params.metrics, Formatter::request);
        Ok(())
    }

    async fn upstream_metric(&self, params: UpstreamMetricParams) -> Result<(), HookError> {
        self.send(&params.metrics, Formatter::upstream);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatekeeper_plugin_sdk::{EventMetric, Phases, RequestMetric};
    use serde_json::json;
    use std::time::Duration;

    fn config(pairs: &[(&str, Value)]) -> Object {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    fn request_metric(i: u64) -> RequestMetric {
        RequestMetric {
            time_ms: i,
            listener: "http-public".into(),
            method: "GET".into(),
            host: "h".into(),
            path: format!("/echo/{i}"),
            status: 200,
            upstream: Some("echo".into()),
            backend: Some("b".into()),
            bytes_in: 0,
            bytes_out: 0,
            error: None,
            phases: Phases::default(),
            client: None,
            query: None,
            version: None,
            ..RequestMetric::default()
        }
    }

    #[tokio::test]
    async fn batches_arrive_as_packed_datagrams() {
        let agent = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let address = agent.local_addr().unwrap().to_string();
        let plugin = DogStatsd::default();
        plugin
            .configure(config(&[
                ("address", json!(address)),
                ("tags", json!("env:test")),
            ]))
            .await
            .unwrap();
        let metrics: Vec<_> = (0..50).map(request_metric).collect();
        plugin
            .request_metric(RequestMetricParams { metrics })
            .await
            .unwrap();
        let mut lines = Vec::new();
        let mut buf = vec![0; 65536];
        while lines.len() < 150 {
            let n = tokio::time::timeout(Duration::from_secs(5), agent.recv(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert!(n <= MAX_DATAGRAM_BYTES, "datagram of {n} bytes");
            let text = std::str::from_utf8(&buf[..n]).unwrap();
            lines.extend(text.split('\n').map(str::to_owned));
        }
        assert_eq!(lines.len(), 150);
        assert_eq!(
            lines[0],
            "gatekeeper.request.count:1|c|#upstream:echo,status:200,method:GET,env:test"
        );
        assert!(plugin.sent.load(Ordering::Relaxed) > 1);
    }

    #[tokio::test]
    async fn an_agent_that_is_down_never_fails_a_hook() {
        // Bind then drop a socket so the port is (most likely) closed: connected UDP sockets
        // then get ECONNREFUSED on later sends, which must be swallowed.
        let port = {
            let probe = UdpSocket::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let plugin = DogStatsd::default();
        plugin
            .configure(config(&[("address", json!(format!("127.0.0.1:{port}")))]))
            .await
            .unwrap();
        for _ in 0..5 {
            let events = vec![EventMetric {
                time_ms: 1,
                name: "app_started".into(),
                attributes: Object::new(),
            }];
            plugin
                .event_metric(EventMetricParams { events })
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let total = plugin.sent.load(Ordering::Relaxed) + plugin.dropped.load(Ordering::Relaxed);
        assert_eq!(total, 5);
        plugin.stop().await.unwrap();
    }

    #[tokio::test]
    async fn hooks_before_configure_do_nothing() {
        let plugin = DogStatsd::default();
        plugin
            .request_metric(RequestMetricParams {
                metrics: vec![request_metric(1)],
            })
            .await
            .unwrap();
        assert_eq!(plugin.sent.load(Ordering::Relaxed), 0);
    }

    #[tokio::test]
    async fn bad_config_is_refused_with_the_key() {
        let plugin = DogStatsd::default();
        for (pairs, key) in [
            (vec![("address", json!(5))], "address"),
            (vec![("address", json!("no-port-here"))], "address"),
            (vec![("prefix", json!(true))], "prefix"),
            (vec![("tags", json!({"a": 1}))], "tags"),
            (vec![("tags", json!([1]))], "tags"),
        ] {
            let err = plugin.configure(config(&pairs)).await.unwrap_err();
            assert!(err.message().contains(key), "{err}");
        }
        assert!(plugin.sender().is_none());
    }

    #[test]
    fn tags_as_a_list_or_an_array() {
        let list = tags_key(&config(&[("tags", json!("a:1,b:2"))])).unwrap();
        let array = tags_key(&config(&[("tags", json!(["a:1", "b:2"]))])).unwrap();
        assert_eq!(list, ["a:1", "b:2"]);
        assert_eq!(list, array);
        assert!(tags_key(&Object::new()).unwrap().is_empty());
    }
}
