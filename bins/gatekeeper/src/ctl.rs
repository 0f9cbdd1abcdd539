//! `gatekeeper ctl`: a client of the admin socket. Prints the answers as pretty JSON (for jq) or,
//! with `--table`, as aligned columns. Exit codes: 0 ok, 1 the request failed (e.g. an unknown
//! backend) or `wait-ready` timed out, 2 usage error, 3 the socket cannot be reached.
//!
//! `upstreams` and `backends` take filters and paging (`--upstream`, `--prefix`, `--limit`,
//! `--after`; see [`crate::admin::listing`]): with `--limit` or `--after` the answer is a page
//! object with `next`; without, the list, at most 1000 items, and a note on stderr when more
//! follow.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Parser, Subcommand};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::UnixStream;

use crate::admin::listing::DEFAULT_LIMIT;
use crate::admin::routes::NEXT_HEADER;
use crate::config::admin_socket_candidates;

/// Time allowed for one admin request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Interval between `/status` polls of `wait-ready`.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Talk to a running gatekeeper through its admin socket.
#[derive(Debug, Parser)]
#[command(name = "gatekeeper ctl", version = crate::cli::VERSION)]
struct Ctl {
    /// The admin socket (default: as the gatekeeper started with the same --config and
    /// --socket-dir computes it; when no socket is there, /run/gatekeeper/admin.sock, where
    /// the shipped systemd unit puts it).
    #[arg(long, value_name = "PATH", global = true)]
    socket: Option<PathBuf>,
    /// The config file gatekeeper runs with (its `admin_socket` and `socket_dir` are read).
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
    /// The --socket-dir gatekeeper runs with.
    #[arg(long, value_name = "DIR", global = true)]
    socket_dir: Option<PathBuf>,
    /// Print aligned columns instead of JSON.
    #[arg(long, global = true)]
    table: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Version, uptime, readiness, listeners and counts.
    Status,
    /// Upstreams with their backends, ordered by id (the first 1000 without --limit).
    Upstreams(UpstreamsArgs),
    /// Backends, ordered by upstream then id: upstream, id, address, weight, in-flight requests,
    /// health (the first 1000 without --limit).
    Backends(BackendsArgs),
    /// Every plugin: type, state (`running`, `starting`, `restarting`, `backoff`, `stopped`),
    /// pid, restarts, recycles, spares ready, calls, errors, timeouts, bad results, retries, mean
    /// latency, decision cache, low-latency mode (`busy_poll_us`, and how its spins ended:
    /// found data or timed out), and each instance's process (state, pid, restarts, recycles).
    Plugins,
    /// The effective settings (as `gatekeeper --check` prints them).
    Config,
    /// The Prometheus metrics (when `metrics_listen` is set).
    Metrics,
    /// Stop sending new requests to a backend (requests in flight finish).
    Drain {
        /// The upstream's id.
        upstream: String,
        /// The backend's id.
        backend: String,
    },
    /// Send requests to a drained backend again.
    Enable {
        /// The upstream's id.
        upstream: String,
        /// The backend's id.
        backend: String,
    },
    /// Restart a plugin's processes now.
    RestartPlugin {
        /// The plugin's name.
        name: String,
    },
    /// Wait until gatekeeper is ready (exit 0) or the timeout passes (exit 1).
    WaitReady {
        /// How long to wait (e.g. 500ms, 10s).
        #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
}

/// Filters and paging of `ctl upstreams`.
#[derive(Debug, clap::Args)]
struct UpstreamsArgs {
    /// Only the upstream with this id.
    #[arg(long, value_name = "ID")]
    upstream: Option<String>,
    /// Only the upstreams routing this path prefix (one segment, as in `prefixes`).
    #[arg(long, value_name = "P")]
    prefix: Option<String>,
    /// A page of at most N upstreams (1 to 10000), printed as {"upstreams": [...], "next":
    /// cursor or null}.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// The page after this upstream id (the previous page's `next`).
    #[arg(long, value_name = "ID")]
    after: Option<String>,
}

/// Filters and paging of `ctl backends`.
#[derive(Debug, clap::Args)]
struct BackendsArgs {
    /// Only the backends of the upstream with this id.
    #[arg(long, value_name = "ID")]
    upstream: Option<String>,
    /// A page of at most N backends (1 to 10000), printed as {"backends": [...], "next":
    /// cursor or null}.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// The page after this backend (the previous page's `next`: UPSTREAM/BACKEND).
    #[arg(long, value_name = "UPSTREAM/BACKEND")]
    after: Option<String>,
}

/// `PATH?key=value&…` with the given parameters, values escaped.
fn with_query(path: &str, parameters: &[(&str, Option<String>)]) -> String {
    let query: Vec<String> = parameters
        .iter()
        .filter_map(|(key, value)| value.as_ref().map(|v| format!("{key}={}", escape(v))))
        .collect();
    if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", query.join("&"))
    }
}

/// An answer of the admin socket.
struct Answer {
    status: StatusCode,
    /// The [`NEXT_HEADER`] header: more items follow this unpaged list.
    next: Option<String>,
    body: Bytes,
}

/// Why a request got no answer.
enum Failure {
    /// The socket cannot be reached.
    Connect(String),
    /// The connection broke or timed out.
    Exchange(String),
}

/// Runs `gatekeeper ctl ARGS` (`args` starts with `ctl`).
pub fn main(args: Vec<String>) -> ExitCode {
    let ctl = match Ctl::try_parse_from(args) {
        Ok(ctl) => ctl,
        Err(e) => {
            let usage = e.use_stderr();
            let _ = e.print();
            return ExitCode::from(if usage { 2 } else { 0 });
        }
    };
    let socket = match &ctl.socket {
        Some(path) => path.clone(),
        None => match admin_socket_candidates(ctl.config.as_deref(), ctl.socket_dir.as_deref()) {
            Ok(candidates) if candidates.is_empty() => {
                eprintln!("gatekeeper ctl: the admin socket is disabled (admin_socket = \"\")");
                return ExitCode::from(2);
            }
            // The first that exists, else the first (whose error then names it).
            Ok(candidates) => candidates
                .iter()
                .find(|path| path.exists())
                .unwrap_or(&candidates[0])
                .clone(),
            Err(e) => {
                eprintln!("gatekeeper ctl: {e:#}");
                return ExitCode::from(2);
            }
        },
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("gatekeeper ctl: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(&ctl, &socket))
}

async fn run(ctl: &Ctl, socket: &Path) -> ExitCode {
    let (method, path) = match &ctl.command {
        Command::Status => (Method::GET, "/status".to_owned()),
        Command::Upstreams(args) => (
            Method::GET,
            with_query(
                "/upstreams",
                &[
                    ("upstream", args.upstream.clone()),
                    ("prefix", args.prefix.clone()),
                    ("limit", args.limit.map(|n| n.to_string())),
                    ("after", args.after.clone()),
                ],
            ),
        ),
        Command::Backends(args) => (
            Method::GET,
            with_query(
                "/backends",
                &[
                    ("upstream", args.upstream.clone()),
                    ("limit", args.limit.map(|n| n.to_string())),
                    ("after", args.after.clone()),
                ],
            ),
        ),
        Command::Plugins => (Method::GET, "/plugins".to_owned()),
        Command::Config => (Method::GET, "/config".to_owned()),
        Command::Metrics => (Method::GET, "/metrics".to_owned()),
        Command::Drain { upstream, backend } => (
            Method::POST,
            format!("/backends/{}/{}/drain", escape(upstream), escape(backend)),
        ),
        Command::Enable { upstream, backend } => (
            Method::POST,
            format!("/backends/{}/{}/enable", escape(upstream), escape(backend)),
        ),
        Command::RestartPlugin { name } => {
            (Method::POST, format!("/plugins/{}/restart", escape(name)))
        }
        Command::WaitReady { timeout } => return wait_ready(socket, *timeout).await,
    };
    match request(socket, method, &path).await {
        Err(Failure::Connect(e)) => {
            eprintln!(
                "gatekeeper ctl: cannot connect to {}: {e}",
                socket.display()
            );
            ExitCode::from(3)
        }
        Err(Failure::Exchange(e)) => {
            eprintln!("gatekeeper ctl: {e}");
            ExitCode::FAILURE
        }
        Ok(answer) => {
            if let Some(next) = &answer.next {
                eprintln!("gatekeeper ctl: only the first {DEFAULT_LIMIT} are shown; more follow: add --limit N --after {next}");
            }
            print_answer(ctl, answer.status, &answer.body)
        }
    }
}

fn print_answer(ctl: &Ctl, status: StatusCode, body: &[u8]) -> ExitCode {
    if matches!(ctl.command, Command::Metrics) && status.is_success() {
        print!("{}", String::from_utf8_lossy(body));
        return ExitCode::SUCCESS;
    }
    let value: Value = match serde_json::from_slice(body) {
        Ok(value) => value,
        Err(e) => {
            eprintln!("gatekeeper ctl: the answer ({status}) is not JSON: {e}");
            return ExitCode::FAILURE;
        }
    };
    if !status.is_success() {
        let message = value
            .get("error")
            .and_then(Value::as_str)
            .map_or_else(|| value.to_string(), str::to_owned);
        eprintln!("gatekeeper ctl: {message} ({status})");
        return ExitCode::FAILURE;
    }
    if ctl.table {
        // A page: its items as a table, and where the next page starts.
        let page = ["upstreams", "backends"]
            .iter()
            .find_map(|key| value.get(*key).map(|items| (items, value.get("next"))));
        match page {
            Some((items, next)) => {
                print!("{}", table(items));
                if let Some(Value::String(next)) = next {
                    eprintln!("gatekeeper ctl: more follow: --after {next}");
                }
            }
            None => print!("{}", table(&value)),
        }
    } else {
        match serde_json::to_string_pretty(&value) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("gatekeeper ctl: cannot print the answer: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

/// Polls `/status` until it says ready (0) or `timeout` passes (1). A socket that does not
/// exist yet is waited for too.
async fn wait_ready(socket: &Path, timeout: Duration) -> ExitCode {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match request(socket, Method::GET, "/status").await {
            Ok(Answer { status, body, .. }) if status.is_success() => {
                let ready = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|v| v.get("ready").and_then(Value::as_bool))
                    .unwrap_or(false);
                if ready {
                    println!("ready");
                    return ExitCode::SUCCESS;
                }
                "not ready yet".to_owned()
            }
            Ok(Answer { status, .. }) => format!("/status answered {status}"),
            Err(Failure::Connect(e) | Failure::Exchange(e)) => e,
        };
        if Instant::now() + POLL_INTERVAL > deadline {
            eprintln!(
                "gatekeeper ctl: not ready after {} ({last})",
                humantime::format_duration(timeout)
            );
            return ExitCode::FAILURE;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// One request over a fresh connection to the admin socket.
async fn request(socket: &Path, method: Method, path: &str) -> Result<Answer, Failure> {
    let stream = UnixStream::connect(socket)
        .await
        .map_err(|e| Failure::Connect(e.to_string()))?;
    let exchange = async {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| Failure::Exchange(format!("handshake failed: {e}")))?;
        tokio::spawn(connection);
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, "gatekeeper")
            .body(Empty::<Bytes>::new())
            .map_err(|e| Failure::Exchange(format!("bad request: {e}")))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| Failure::Exchange(format!("request failed: {e}")))?;
        let status = response.status();
        let next = response
            .headers()
            .get(NEXT_HEADER)
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| Failure::Exchange(format!("reading the answer failed: {e}")))?
            .to_bytes();
        Ok(Answer { status, next, body })
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .unwrap_or_else(|_| Err(Failure::Exchange("the admin socket did not answer".into())))
}

/// Percent-encodes everything but unreserved characters, for one path segment.
fn escape(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// Columns shown first, in this order, when present; the others follow sorted.
const FIRST_COLUMNS: [&str; 8] = [
    "upstream", "id", "name", "type", "address", "state", "health", "pid",
];

/// The columns of a list of objects: [`FIRST_COLUMNS`] first, then the rest.
fn columns_of(object: &serde_json::Map<String, Value>) -> Vec<String> {
    let mut columns: Vec<String> = FIRST_COLUMNS
        .iter()
        .filter(|c| object.contains_key(**c))
        .map(|c| (*c).to_owned())
        .collect();
    let mut rest: Vec<String> = object
        .keys()
        .filter(|k| !FIRST_COLUMNS.contains(&k.as_str()))
        .cloned()
        .collect();
    rest.sort();
    columns.extend(rest);
    columns
}

/// A value in one table cell: scalars as they are, lists joined with commas (objects in a list
/// by their `id`, `name=address`, or a plugin process's `state:pid`), other objects as compact
/// JSON.
fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::Object(o) => match (o.get("id"), o.get("name"), o.get("address")) {
                    (Some(id), _, _) => cell(id),
                    (None, Some(name), Some(address)) => {
                        format!("{}={}", cell(name), cell(address))
                    }
                    _ => match (o.get("state"), o.get("pid")) {
                        (Some(state), Some(pid)) => format!("{}:{}", cell(state), cell(pid)),
                        _ => item.to_string(),
                    },
                },
                other => cell(other),
            })
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    }
}

/// Aligned columns: a list of objects gets a header line of its keys (upper case) and a row per
/// object; an object gets a KEY VALUE row per field.
fn table(value: &Value) -> String {
    let rows: Vec<Vec<String>> = match value {
        Value::Array(items) => {
            let columns: Vec<String> = items
                .first()
                .and_then(Value::as_object)
                .map(columns_of)
                .unwrap_or_default();
            let header = columns.iter().map(|c| c.to_uppercase()).collect();
            std::iter::once(header)
                .chain(items.iter().map(|item| {
                    columns
                        .iter()
                        .map(|c| match item.get(c) {
                            // A plugin's rejected config (`config_status`).
                            Some(Value::String(message)) if c == "config_error" => {
                                format!("config rejected: {message}")
                            }
                            value => value.map_or_else(|| "-".to_owned(), cell),
                        })
                        .collect()
                }))
                .collect()
        }
        Value::Object(fields) => std::iter::once(vec!["KEY".to_owned(), "VALUE".to_owned()])
            .chain(fields.iter().map(|(k, v)| vec![k.clone(), cell(v)]))
            .collect(),
        other => vec![vec![cell(other)]],
    };
    let widths: Vec<usize> = (0..rows.first().map_or(0, Vec::len))
        .map(|i| {
            rows.iter()
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let last = row.len().saturating_sub(1);
        for (i, text) in row.iter().enumerate() {
            if i == last {
                out.push_str(text);
            } else {
                let width = widths.get(i).copied().unwrap_or(0);
                out.push_str(&format!("{text:<width$}  "));
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn tables_align_columns_under_a_header() {
        let text = table(&json!([
            {"upstream": "echo", "id": "0", "healthy": true, "tags": ["a", "b"]},
            {"upstream": "longer-name", "id": "1", "healthy": false, "tags": []},
        ]));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "UPSTREAM     ID  HEALTHY  TAGS");
        assert_eq!(lines[1], "echo         0   true     a,b");
        assert_eq!(lines[2], "longer-name  1   false    ");
        let object = table(&json!({"ready": true, "listeners": [{"name": "a", "address": "1:2"}]}));
        assert!(object.contains("listeners  a=1:2"), "{object}");
    }

    #[test]
    fn a_rejected_plugin_config_is_spelt_out() {
        let text = table(&json!([
            {"name": "static", "config_error": "u.yml:3: api.balancer: unknown balancer"},
            {"name": "other", "config_error": null},
        ]));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[1],
            "static  config rejected: u.yml:3: api.balancer: unknown balancer"
        );
        assert_eq!(lines[2], "other   -");
    }

    #[test]
    fn plugin_processes_show_as_state_and_pid() {
        let processes = json!([
            {"state": "running", "pid": 12, "restarts": 0, "recycles": 0},
            {"state": "backoff", "pid": null, "restarts": 3, "recycles": 0},
        ]);
        assert_eq!(cell(&processes), "running:12,backoff:-");
    }

    #[test]
    fn filters_and_paging_become_query_parameters() {
        assert_eq!(with_query("/upstreams", &[("limit", None)]), "/upstreams");
        assert_eq!(
            with_query(
                "/backends",
                &[
                    ("upstream", Some("a b".to_owned())),
                    ("limit", Some("10".to_owned())),
                    ("after", Some("a%2Fb/c".to_owned())),
                ]
            ),
            "/backends?upstream=a%20b&limit=10&after=a%252Fb%2Fc"
        );
        let parsed = Ctl::try_parse_from([
            "ctl",
            "upstreams",
            "--upstream",
            "u",
            "--prefix",
            "api",
            "--limit",
            "5",
            "--after",
            "t",
        ])
        .unwrap();
        let Command::Upstreams(args) = parsed.command else {
            panic!("not upstreams: {parsed:?}");
        };
        assert_eq!(
            (args.upstream, args.prefix, args.limit, args.after),
            (
                Some("u".into()),
                Some("api".into()),
                Some(5),
                Some("t".into())
            )
        );
    }

    #[test]
    fn segments_are_escaped() {
        assert_eq!(escape("a/b c"), "a%2Fb%20c");
        assert_eq!(escape("plain-1.2_x~"), "plain-1.2_x~");
    }

    #[test]
    fn usage_errors_exit_2() {
        let code = |args: &[&str]| main(args.iter().map(|s| s.to_string()).collect());
        assert_eq!(code(&["ctl", "bogus"]), ExitCode::from(2));
        assert_eq!(code(&["ctl", "drain", "only-one"]), ExitCode::from(2));
    }
}
