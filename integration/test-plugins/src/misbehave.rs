//! `test-misbehave`: a modifier that breaks the protocol on purpose, once per process, so tests
//! can watch gatekeeper cope (log, count, close, restart).
//!
//! It speaks the protocol itself (the SDK never breaks it): the SDK's
//! [`connect`](gatekeeper_plugin_sdk::connect) does the setup, then a plain sequential loop
//! handshakes (declaring `modify_request`), answers `configure`, `start`, `heartbeat`, `stop`
//! and `modify_request` (with `{}`) correctly, and does what the setting `mode` says:
//!
//! | `mode` | when | what |
//! |---|---|---|
//! | `garbage` | right after answering `start` | writes a line that is not JSON |
//! | `oversized` | right after answering `start` | writes a (valid) notification longer than `GATEKEEPER_MAX_LINE_BYTES` |
//! | `unknown_id` | right after answering `start` | writes a response with id [`UNKNOWN_ID`], which gatekeeper never issued |
//! | `wrong_result` | every `modify_request` | answers with the result `"oops"` instead of an object |
//! | `null_result` | every `modify_request` | answers with the result `null` (which the spec allows: `{}`) |
//! | `leak` | every `modify_request` | keeps `leak_bytes` more memory (default 1 MiB, touched so it counts in RSS) and answers `{}` |
//! | unset | | misbehaves never |
//!
//! Each time it misbehaves it prints `misbehaving: <mode>` on stderr (gatekeeper copies that into
//! its log), so a test can count process starts. Settings: `mode` (from the config map or
//! `--mode` on the command line). It records nothing.

use std::process::ExitCode;
use std::str::FromStr;

use futures::StreamExt;
use gatekeeper_plugin_sdk::rpc::error::error_object;
use gatekeeper_plugin_sdk::rpc::framing::codec;
use gatekeeper_plugin_sdk::rpc::message::{
    encode_call, encode_response, to_raw, Message, Request, RequestId, Response,
};
use gatekeeper_plugin_sdk::rpc::methods::{
    Configure, ConfigureParams, Empty, Handshake, HandshakeParams, Heartbeat, Start, Stop,
};
use gatekeeper_plugin_sdk::rpc::Reply;
use gatekeeper_plugin_sdk::{
    codes, Method, ModifyRequest, ModifyRequestParams, ModifyRequestResult, PluginEnv, PluginType,
    PROTOCOL_VERSION,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_util::codec::FramedRead;

use crate::Settings;

/// The id of the response `unknown_id` sends.
pub const UNKNOWN_ID: i64 = 999_999_999;

/// The id of our handshake request (the only request we send).
const HANDSHAKE_ID: i64 = 1;

/// How to misbehave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A line that is not JSON, after `start`.
    Garbage,
    /// A line over the proxy's limit, after `start`.
    Oversized,
    /// A response to a request never made, after `start`.
    UnknownId,
    /// `"oops"` as the result of every `modify_request`.
    WrongResult,
    /// `null` as the result of every `modify_request`.
    NullResult,
    /// Memory kept on every `modify_request`, never freed.
    Leak,
}

impl Mode {
    /// The setting's value for this mode.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Garbage => "garbage",
            Mode::Oversized => "oversized",
            Mode::UnknownId => "unknown_id",
            Mode::WrongResult => "wrong_result",
            Mode::NullResult => "null_result",
            Mode::Leak => "leak",
        }
    }

    /// Whether the mode acts on every `modify_request` (not once after `start`).
    fn per_call(self) -> bool {
        matches!(self, Mode::WrongResult | Mode::NullResult | Mode::Leak)
    }
}

impl FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            Mode::Garbage,
            Mode::Oversized,
            Mode::UnknownId,
            Mode::WrongResult,
            Mode::NullResult,
            Mode::Leak,
        ]
        .into_iter()
        .find(|m| m.as_str() == s)
        .ok_or_else(|| {
            format!(
                "unknown `mode` `{s}` (expected garbage, oversized, unknown_id, wrong_result, null_result or leak)"
            )
        })
    }
}

/// The whole program: connect as gatekeeper's environment says, then [`run`].
pub async fn serve(args: Settings) -> ExitCode {
    let outcome = match gatekeeper_plugin_sdk::connect(PluginType::Modifier).await {
        Ok((env, io)) => run(io, &env, &args).await,
        Err(error) => Err(error.to_string()),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Handshakes over `io` and answers calls one at a time until `stop` or the end of the
/// connection, misbehaving as the `mode` setting says.
pub async fn run<IO>(io: IO, env: &PluginEnv, args: &Settings) -> Result<(), String>
where
    IO: AsyncRead + AsyncWrite,
{
    let (reader, mut writer) = tokio::io::split(io);
    let mut lines = FramedRead::new(reader, codec(env.max_line_bytes));
    let handshake = HandshakeParams {
        token: env.token.clone(),
        protocol_version: PROTOCOL_VERSION,
        hooks: vec![ModifyRequest::NAME.to_owned()],
        bodies: Vec::new(),
        no_retry: Vec::new(),
        parts: Default::default(),
    };
    let line = encode_call(
        Some(&RequestId::Number(HANDSHAKE_ID)),
        Handshake::NAME,
        &handshake,
    )
    .map_err(|e| format!("encoding the handshake: {e}"))?;
    write_line(&mut writer, line.as_bytes()).await?;

    let mut mode = None;
    let mut leaked: Vec<Vec<u8>> = Vec::new();
    let mut leak_per_call = leak_bytes(args);
    while let Some(line) = lines.next().await {
        let line = line.map_err(|e| format!("reading from gatekeeper: {e}"))?;
        let request = match Message::parse(&line) {
            Ok(Message::Request(request)) => request,
            Ok(Message::Response(Response {
                id: Some(RequestId::Number(HANDSHAKE_ID)),
                outcome: Err(error),
            })) => return Err(format!("gatekeeper refused the handshake: {error}")),
            Ok(_) => continue,
            Err(error) => {
                tracing::warn!(%error, "ignoring a line from gatekeeper");
                continue;
            }
        };
        if request.method == Configure::NAME {
            if let Ok(config) = params::<ConfigureParams>(&request) {
                leak_per_call =
                    leak_bytes(&Settings::from_config(&config.config).overridden_by(args));
            }
        }
        if mode == Some(Mode::Leak) && request.method == ModifyRequest::NAME {
            leaked.push(vec![1u8; leak_per_call]);
        }
        let reply = answer(&request, &mut mode, args);
        let line = encode_response(Some(&request.id), &reply)
            .map_err(|e| format!("encoding the answer to `{}`: {e}", request.method))?;
        write_line(&mut writer, line.as_bytes()).await?;
        match request.method.as_str() {
            Start::NAME if reply.is_ok() => {
                if let Some(mode) = mode.filter(|m| !m.per_call()) {
                    eprintln!("misbehaving: {}", mode.as_str());
                    if let Err(error) = misbehave(mode, &mut writer, env.max_line_bytes).await {
                        // Expected with `oversized`: gatekeeper may close before we are done.
                        tracing::info!(%error, "the connection ended while misbehaving");
                        return Ok(());
                    }
                }
            }
            Stop::NAME => return Ok(()),
            _ => {}
        }
    }
    Ok(())
}

fn params<T: DeserializeOwned>(
    request: &Request,
) -> Result<T, gatekeeper_plugin_sdk::rpc::ErrorObject> {
    let raw = request.params.as_deref().map_or("{}", |p| p.get());
    serde_json::from_str(raw).map_err(|e| {
        error_object(
            codes::INVALID_PARAMS,
            format!("invalid params for `{}`: {e}", request.method),
        )
    })
}

fn result<T: Serialize>(value: &T) -> Reply {
    to_raw(value).map_err(|e| error_object(codes::INTERNAL_ERROR, e.to_string()))
}

/// The answer to one call; `configure` sets `mode`.
fn answer(request: &Request, mode: &mut Option<Mode>, args: &Settings) -> Reply {
    match request.method.as_str() {
        Configure::NAME => {
            let config: ConfigureParams = params(request)?;
            let settings = Settings::from_config(&config.config).overridden_by(args);
            *mode = settings
                .get("mode")
                .map(str::parse)
                .transpose()
                .map_err(|e: String| error_object(codes::INVALID_PARAMS, e))?;
            result(&Empty {})
        }
        Start::NAME | Heartbeat::NAME | Stop::NAME => result(&Empty {}),
        ModifyRequest::NAME => {
            let _: ModifyRequestParams = params(request)?;
            if *mode == Some(Mode::WrongResult) {
                eprintln!("misbehaving: {}", Mode::WrongResult.as_str());
                result(&"oops")
            } else if *mode == Some(Mode::NullResult) {
                result(&())
            } else {
                result(&ModifyRequestResult::default())
            }
        }
        other => Err(error_object(
            codes::METHOD_NOT_FOUND,
            format!("method not found: {other}"),
        )),
    }
}

/// Writes what `mode` says (one of the modes that act after `start`).
async fn misbehave<W>(mode: Mode, writer: &mut W, max_line_bytes: usize) -> Result<(), String>
where
    W: AsyncWrite + Unpin,
{
    match mode {
        Mode::Garbage => write_line(writer, b"this is not JSON {").await,
        Mode::UnknownId => {
            let line = format!(r#"{{"jsonrpc":"2.0","id":{UNKNOWN_ID},"result":{{}}}}"#);
            write_line(writer, line.as_bytes()).await
        }
        Mode::Oversized => {
            // A valid notification whose padding takes it past the limit, written in chunks.
            const CHUNK: usize = 64 * 1024;
            let head = br#"{"jsonrpc":"2.0","method":"misbehaving","params":{"padding":""#;
            let tail = br#""}}"#;
            let padding = max_line_bytes.saturating_add(1);
            let io = |e: std::io::Error| format!("writing the oversized line: {e}");
            writer.write_all(head).await.map_err(io)?;
            let chunk = vec![b'x'; CHUNK.min(padding)];
            let mut left = padding;
            while left > 0 {
                let n = left.min(chunk.len());
                writer.write_all(&chunk[..n]).await.map_err(io)?;
                left -= n;
            }
            write_line(writer, tail).await
        }
        Mode::WrongResult | Mode::NullResult | Mode::Leak => Ok(()),
    }
}

/// Bytes kept per `modify_request` in the `leak` mode: the `leak_bytes` setting (a number of
/// bytes), default 1 MiB.
fn leak_bytes(args: &Settings) -> usize {
    args.get("leak_bytes")
        .and_then(|bytes| bytes.parse().ok())
        .unwrap_or(1 << 20)
}

async fn write_line<W: AsyncWrite + Unpin>(writer: &mut W, line: &[u8]) -> Result<(), String> {
    let io = |e: std::io::Error| format!("writing to gatekeeper: {e}");
    writer.write_all(line).await.map_err(io)?;
    writer.write_all(b"\n").await.map_err(io)?;
    writer.flush().await.map_err(io)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use serde_json::{json, Value};
    use tokio::io::{AsyncBufReadExt, BufReader, DuplexStream, Lines, ReadHalf, WriteHalf};
    use tokio::task::JoinHandle;

    const LIMIT: usize = 200;

    /// The proxy's end: raw lines both ways.
    struct Proxy {
        lines: Lines<BufReader<ReadHalf<DuplexStream>>>,
        writer: WriteHalf<DuplexStream>,
        plugin: JoinHandle<Result<(), String>>,
    }

    impl Proxy {
        fn start(mode: &str) -> Proxy {
            let (proxy, plugin) = tokio::io::duplex(1 << 16);
            let env = PluginEnv {
                socket: "/nonexistent".into(),
                token: "t".into(),
                name: "bad".into(),
                plugin_type: PluginType::Modifier,
                protocol_version: PROTOCOL_VERSION,
                max_line_bytes: LIMIT,
                busy_poll: None,
            };
            let args = Settings::from_args(["--mode".to_owned(), mode.to_owned()]).unwrap();
            let plugin = tokio::spawn(async move { run(plugin, &env, &args).await });
            let (reader, writer) = tokio::io::split(proxy);
            Proxy {
                lines: BufReader::new(reader).lines(),
                writer,
                plugin,
            }
        }

        async fn line(&mut self) -> String {
            self.lines.next_line().await.unwrap().expect("a line")
        }

        async fn call(&mut self, id: i64, method: &str, params: Value) -> Value {
            let line = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
            self.writer
                .write_all(format!("{line}\n").as_bytes())
                .await
                .unwrap();
            serde_json::from_str(&self.line().await).unwrap()
        }

        /// Handshake, configure (with no map: the mode is on the command line) and start.
        async fn started(mode: &str) -> Proxy {
            let mut proxy = Proxy::start(mode);
            let handshake: Value = serde_json::from_str(&proxy.line().await).unwrap();
            assert_eq!(handshake["method"], "handshake");
            assert_eq!(handshake["params"]["hooks"], json!(["modify_request"]));
            let answer = json!({"jsonrpc": "2.0", "id": 1, "result": {"protocol_version": 1, "name": "bad", "type": "modifier"}});
            proxy
                .writer
                .write_all(format!("{answer}\n").as_bytes())
                .await
                .unwrap();
            let configured = proxy.call(1, "configure", json!({"config": {}})).await;
            assert_eq!(configured["result"], json!({}));
            let started = proxy.call(2, "start", json!({})).await;
            assert_eq!(started["result"], json!({}));
            proxy
        }

        async fn stop(mut self) {
            let stopped = self.call(99, "stop", json!({})).await;
            assert_eq!(stopped["result"], json!({}));
            self.plugin.await.unwrap().unwrap();
        }
    }

    #[tokio::test]
    async fn garbage_after_start_then_normal() {
        let mut proxy = Proxy::started("garbage").await;
        let garbage = proxy.line().await;
        assert!(
            serde_json::from_str::<Value>(&garbage).is_err(),
            "{garbage}"
        );
        let heartbeat = proxy.call(3, "heartbeat", json!({})).await;
        assert_eq!(heartbeat["result"], json!({}));
        proxy.stop().await;
    }

    #[tokio::test]
    async fn unknown_id_after_start() {
        let mut proxy = Proxy::started("unknown_id").await;
        let response: Value = serde_json::from_str(&proxy.line().await).unwrap();
        assert_eq!(response["id"], json!(UNKNOWN_ID));
        proxy.stop().await;
    }

    #[tokio::test]
    async fn oversized_after_start() {
        let mut proxy = Proxy::started("oversized").await;
        let line = proxy.line().await;
        assert!(line.len() > LIMIT, "{} bytes", line.len());
        let notification: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(notification["method"], "misbehaving");
        proxy.stop().await;
    }

    #[tokio::test]
    async fn wrong_result_on_modify_request() {
        let mut proxy = Proxy::started("wrong_result").await;
        let request = json!({"request": {"method": "GET", "path": "/"}});
        let answer = proxy.call(3, "modify_request", request).await;
        assert_eq!(answer["result"], json!("oops"));
        proxy.stop().await;
    }

    #[tokio::test]
    async fn an_unknown_mode_fails_configure() {
        let mut proxy = Proxy::start("sideways");
        proxy.line().await;
        let configured = proxy.call(1, "configure", json!({"config": {}})).await;
        assert_eq!(configured["error"]["code"], codes::INVALID_PARAMS);
        assert!(configured["error"]["message"]
            .as_str()
            .unwrap()
            .contains("sideways"));
    }
}
