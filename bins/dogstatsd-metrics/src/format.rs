//! Formatting gatekeeper's metric records as DogStatsD lines, and packing lines into datagrams.
//!
//! A line is `name:value|type|#tag1:v1,tag2:v2` (no `|#…` part when there are no tags). Every name
//! starts with the configured prefix (default `gatekeeper.`); the configured constant tags come
//! after each line's own tags. Durations are milliseconds, with up to three decimals.
//!
//! | record | lines | tags |
//! |---|---|---|
//! | request | `request.count:1\|c`, `request.duration:<total ms>\|ms`, `request.upstream_duration:<ms>\|ms` (only when a backend was picked) | `upstream` (`none` when unrouted), `status`, `method`, and `error` (the proxy's error kind) when there is one |
//! | upstream (backend outcome) | `upstream.latency:<ms>\|ms`; `upstream.error:1\|c` when it failed | `upstream`, `backend`; `error` on the error counter |
//! | plugin call | `plugin.latency:<ms>\|ms`; `plugin.error:1\|c` when it failed | `plugin`, `method`; `error` on the error counter |
//! | event | `event.<name>:1\|c` | the event's `plugin`, `upstream` and `listener` attributes, when they are strings |
//!
//! Tag keys and values, and names, are made safe for the format: characters DogStatsD treats
//! as separators (`|`, `,`, `#`, `:` in names, whitespace, control characters) become `_`.

use std::fmt::Write as _;

use gatekeeper_plugin_sdk::{EventMetric, PluginMetric, RequestMetric, UpstreamMetric};

/// The largest datagram [`pack`] builds (unless a single line is longer): below the usual
/// 1500-byte Ethernet MTU once IP and UDP headers are added.
pub const MAX_DATAGRAM_BYTES: usize = 1400;

/// The event attributes that become tags: names of things, with few distinct values (paths,
/// addresses and reasons would make a tag per request or per error message).
const EVENT_TAG_KEYS: [&str; 3] = ["plugin", "upstream", "listener"];

/// Turns metric records into DogStatsD lines with a prefix and constant tags.
#[derive(Debug, Clone)]
pub struct Formatter {
    prefix: String,
    constant_tags: Vec<String>,
}

impl Default for Formatter {
    fn default() -> Self {
        Formatter::new(crate::plugin::DEFAULT_PREFIX, Vec::new())
    }
}

impl Formatter {
    /// A formatter putting `prefix` before every name and `constant_tags` (already
    /// `key:value` strings, see [`parse_tags`]) after every line's own tags.
    pub fn new(prefix: &str, constant_tags: Vec<String>) -> Self {
        Formatter {
            prefix: sanitize_name(prefix),
            constant_tags: constant_tags.iter().map(|t| sanitize_tag(t)).collect(),
        }
    }

    /// The lines of one finished request.
    pub fn request(&self, metric: &RequestMetric, out: &mut Vec<String>) {
        let status = metric.status.to_string();
        let mut tags = vec![
            ("upstream", metric.upstream.as_deref().unwrap_or("none")),
            ("status", status.as_str()),
            ("method", metric.method.as_str()),
        ];
        if let Some(error) = metric.error.as_deref() {
            tags.push(("error", error));
        }
        out.push(self.line("request.count", "1", "c", &tags));
        out.push(self.line(
            "request.duration",
            &millis(metric.phases.total_us),
            "ms",
            &tags,
        ));
        if metric.backend.is_some() {
            out.push(self.line(
                "request.upstream_duration",
                &millis(metric.phases.upstream_response_us),
                "ms",
                &tags,
            ));
        }
    }

    /// The lines of one backend outcome.
    pub fn upstream(&self, metric: &UpstreamMetric, out: &mut Vec<String>) {
        let mut tags = vec![
            ("upstream", metric.upstream.as_str()),
            ("backend", metric.backend.as_str()),
        ];
        out.push(self.line("upstream.latency", &millis(metric.latency_us), "ms", &tags));
        if let Some(error) = metric.error.as_deref() {
            tags.push(("error", error));
            out.push(self.line("upstream.error", "1", "c", &tags));
        }
    }

    /// The lines of one call gatekeeper made to a plugin.
    pub fn plugin(&self, metric: &PluginMetric, out: &mut Vec<String>) {
        let mut tags = vec![
            ("plugin", metric.plugin.as_str()),
            ("method", metric.method.as_str()),
        ];
        out.push(self.line("plugin.latency", &millis(metric.latency_us), "ms", &tags));
        if let Some(error) = metric.error.as_deref() {
            tags.push(("error", error));
            out.push(self.line("plugin.error", "1", "c", &tags));
        }
    }

    /// The line of one event.
    pub fn event(&self, event: &EventMetric, out: &mut Vec<String>) {
        let tags: Vec<(&str, &str)> = EVENT_TAG_KEYS
            .iter()
            .filter_map(|key| match event.attributes.get(*key) {
                Some(serde_json::Value::String(value)) => Some((*key, value.as_str())),
                _ => None,
            })
            .collect();
        let name = format!("event.{}", event.name);
        out.push(self.line(&name, "1", "c", &tags));
    }

    /// `prefix+name:value|kind|#tags,constant tags`.
    fn line(&self, name: &str, value: &str, kind: &str, tags: &[(&str, &str)]) -> String {
        let mut line = String::with_capacity(64 + 16 * tags.len());
        line.push_str(&self.prefix);
        line.push_str(&sanitize_name(name));
        let _ = write!(line, ":{value}|{kind}");
        let mut first = true;
        let own = tags
            .iter()
            .map(|(key, value)| format!("{}:{}", sanitize_name(key), sanitize_tag(value)));
        for tag in own.chain(self.constant_tags.iter().cloned()) {
            line.push_str(if first { "|#" } else { "," });
            first = false;
            line.push_str(&tag);
        }
        line
    }
}

/// Parses the `tags` config value: a comma list of `key:value` (or bare `key`) tags. Blank
/// entries are skipped; each tag is made safe (see the module docs).
pub fn parse_tags(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|tag| !tag.is_empty())
        .map(sanitize_tag)
        .collect()
}

/// Packs lines into datagrams of at most `max` bytes, newline-separated, in order. A line
/// longer than `max` travels alone in its own datagram.
pub fn pack(lines: &[String], max: usize) -> Vec<String> {
    let mut datagrams = Vec::new();
    let mut current = String::new();
    for line in lines {
        if !current.is_empty() && current.len() + 1 + line.len() > max {
            datagrams.push(std::mem::take(&mut current));
        }
        if !current.is_empty() {
            current.push('\n');
        }
        current.push_str(line);
    }
    if !current.is_empty() {
        datagrams.push(current);
    }
    datagrams
}

/// Microseconds as milliseconds with up to three decimals: `452` → `0.452`, `1500` → `1.5`,
/// `2000` → `2`.
pub fn millis(us: u64) -> String {
    let whole = us / 1000;
    let fraction = us % 1000;
    if fraction == 0 {
        return whole.to_string();
    }
    let text = format!("{whole}.{fraction:03}");
    text.trim_end_matches('0').to_owned()
}

/// A metric name (or prefix, or tag key): `:`, `|`, `,`, `#`, `@`, whitespace and control
/// characters become `_`.
fn sanitize_name(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            ':' | '|' | ',' | '#' | '@' => '_',
            c if c.is_whitespace() || c.is_control() => '_',
            c => c,
        })
        .collect()
}

/// A tag (or tag value): `|`, `,`, `#`, whitespace and control characters become `_`; colons
/// are kept (a tag's first colon separates key and value; later ones belong to the value).
fn sanitize_tag(tag: &str) -> String {
    tag.chars()
        .map(|c| match c {
            '|' | ',' | '#' => '_',
            c if c.is_whitespace() || c.is_control() => '_',
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatekeeper_plugin_sdk::{Object, Phases};
    use serde_json::json;

    fn request(upstream: Option<&str>, status: u16, error: Option<&str>) -> RequestMetric {
        RequestMetric {
            time_ms: 1,
            listener: "http-public".into(),
            method: "GET".into(),
            host: "localhost".into(),
            path: "/echo/x".into(),
            status,
            upstream: upstream.map(Into::into),
            backend: upstream.map(|_| "http://127.0.0.1:9001".into()),
            bytes_in: 0,
            bytes_out: 10,
            error: error.map(Into::into),
            phases: Phases {
                upstream_response_us: 310,
                total_us: 1452,
                ..Phases::default()
            },
            client: None,
            query: None,
            version: None,
            ..RequestMetric::default()
        }
    }

    fn lines_of(f: impl FnOnce(&mut Vec<String>)) -> Vec<String> {
        let mut out = Vec::new();
        f(&mut out);
        out
    }

    #[test]
    fn request_lines() {
        let formatter = Formatter::default();
        let lines = lines_of(|out| formatter.request(&request(Some("echo"), 200, None), out));
        assert_eq!(
            lines,
            [
                "gatekeeper.request.count:1|c|#upstream:echo,status:200,method:GET",
                "gatekeeper.request.duration:1.452|ms|#upstream:echo,status:200,method:GET",
                "gatekeeper.request.upstream_duration:0.31|ms|#upstream:echo,status:200,method:GET",
            ]
        );
    }

    #[test]
    fn an_unrouted_request_has_no_upstream_duration_and_an_error_tag() {
        let formatter = Formatter::new("gk.", vec!["env:test".into()]);
        let lines = lines_of(|out| formatter.request(&request(None, 404, Some("no_route")), out));
        assert_eq!(
            lines,
            [
                "gk.request.count:1|c|#upstream:none,status:404,method:GET,error:no_route,env:test",
                "gk.request.duration:1.452|ms|#upstream:none,status:404,method:GET,error:no_route,env:test",
            ]
        );
    }

    #[test]
    fn upstream_and_plugin_lines() {
        let formatter = Formatter::new("", Vec::new());
        let ok = UpstreamMetric {
            time_ms: 1,
            upstream: "api".into(),
            backend: "http://10.0.0.1:80".into(),
            latency_us: 2000,
            status: Some(200),
            error: None,
        };
        let failed = UpstreamMetric {
            error: Some("timeout".into()),
            status: None,
            ..ok.clone()
        };
        let lines = lines_of(|out| {
            formatter.upstream(&ok, out);
            formatter.upstream(&failed, out);
        });
        assert_eq!(
            lines,
            [
                "upstream.latency:2|ms|#upstream:api,backend:http://10.0.0.1:80",
                "upstream.latency:2|ms|#upstream:api,backend:http://10.0.0.1:80",
                "upstream.error:1|c|#upstream:api,backend:http://10.0.0.1:80,error:timeout",
            ]
        );

        let call = PluginMetric {
            time_ms: 1,
            plugin: "lb".into(),
            method: "get_backend".into(),
            latency_us: 48,
            error: Some("hook timed out".into()),
        };
        let lines = lines_of(|out| formatter.plugin(&call, out));
        assert_eq!(
            lines,
            [
                "plugin.latency:0.048|ms|#plugin:lb,method:get_backend",
                "plugin.error:1|c|#plugin:lb,method:get_backend,error:hook_timed_out",
            ]
        );
    }

    #[test]
    fn events_keep_only_safe_string_attributes() {
        let formatter = Formatter::default();
        let mut attributes = Object::new();
        attributes.insert("plugin".into(), json!("static"));
        attributes.insert("upstream".into(), json!("api"));
        attributes.insert("path".into(), json!("/secret/123"));
        attributes.insert("listener".into(), json!(7));
        let event = EventMetric {
            time_ms: 1,
            name: "upstream_added".into(),
            attributes,
        };
        let lines = lines_of(|out| formatter.event(&event, out));
        assert_eq!(
            lines,
            ["gatekeeper.event.upstream_added:1|c|#plugin:static,upstream:api"]
        );
        let bare = EventMetric {
            time_ms: 1,
            name: "app_started".into(),
            attributes: Object::new(),
        };
        let lines = lines_of(|out| formatter.event(&bare, out));
        assert_eq!(lines, ["gatekeeper.event.app_started:1|c"]);
    }

    #[test]
    fn separators_in_names_and_tags_are_replaced() {
        let formatter = Formatter::new("my app|", vec!["team:a,b".into()]);
        let mut metric = request(Some("a|b,c#d e"), 200, None);
        metric.method = "GET\nX".into();
        let lines = lines_of(|out| formatter.request(&metric, out));
        assert_eq!(
            lines[0],
            "my_app_request.count:1|c|#upstream:a_b_c_d_e,status:200,method:GET_X,team:a_b"
        );
    }

    #[test]
    fn constant_tags_parse() {
        assert_eq!(
            parse_tags(" env:prod, region:eu ,,bare"),
            ["env:prod", "region:eu", "bare"]
        );
        assert!(parse_tags("").is_empty());
        assert_eq!(parse_tags("a:b c|d"), ["a:b_c_d"]);
    }

    #[test]
    fn durations_in_milliseconds() {
        assert_eq!(millis(0), "0");
        assert_eq!(millis(452), "0.452");
        assert_eq!(millis(1500), "1.5");
        assert_eq!(millis(2000), "2");
        assert_eq!(millis(1_000_001), "1000.001");
    }

    #[test]
    fn packing_respects_the_limit_and_keeps_order() {
        let lines: Vec<String> = (0..10)
            .map(|i| format!("m{i}:{}|c", "x".repeat(20)))
            .collect();
        let datagrams = pack(&lines, 60);
        assert!(datagrams.iter().all(|d| d.len() <= 60), "{datagrams:?}");
        assert_eq!(datagrams.len(), 5);
        let rejoined: Vec<&str> = datagrams.iter().flat_map(|d| d.split('\n')).collect();
        assert_eq!(
            rejoined,
            lines.iter().map(String::as_str).collect::<Vec<_>>()
        );
        assert!(pack(&[], 60).is_empty());
    }

    #[test]
    fn a_line_longer_than_the_limit_goes_alone() {
        let lines = vec!["a:1|c".to_owned(), "b".repeat(100), "c:1|c".to_owned()];
        let datagrams = pack(&lines, 50);
        assert_eq!(
            datagrams,
            ["a:1|c".to_owned(), "b".repeat(100), "c:1|c".to_owned()]
        );
        let datagrams = pack(&lines[..1], MAX_DATAGRAM_BYTES);
        assert_eq!(datagrams, ["a:1|c"]);
    }
}
