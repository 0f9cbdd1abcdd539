//! [`Session`]: one plugin run by the plugin host as gatekeeper runs it (private socket
//! directory, token, environment, handshake, `configure`, `start`, supervision), the calls made
//! to it through its [`PluginHandle`] (params and result checked with the protocol table's
//! types, as gatekeeper checks them), and the translation of what went wrong into a
//! [`Failure`] of the right kind (a crash with its exit status and last stderr lines).

use std::sync::Arc;
use std::time::Duration;

use gatekeeper_plugin_host::{
    HostError, LaunchOptions, PluginCallError, PluginEvent, PluginEventKind, PluginHandle,
    PluginHost, StartError,
};
use gatekeeper_rpc::methods::MethodInfo;
use gatekeeper_rpc::CallError;
use serde_json::value::RawValue;
use serde_json::Value;
use tokio::sync::mpsc::{self, UnboundedReceiver};

use super::args::TargetArgs;
use super::outcome::Failure;
use super::recording_manager::RecordingManager;
use super::stderr_tail::{last_exit_status, last_lines, last_violation};
use super::Outcome;

/// Time on top of the start timeout before a launch is given up.
const START_MARGIN: Duration = Duration::from_secs(5);
/// How long a failed call waits for the host to report that the plugin went down.
const DOWN_REPORT_WAIT: Duration = Duration::from_millis(500);

/// A started plugin.
pub struct Session {
    host: PluginHost,
    handle: PluginHandle,
    events: UnboundedReceiver<PluginEvent>,
    manager: Arc<RecordingManager>,
}

impl Session {
    /// Starts the plugin of `target` (one attempt); fails with the reason it did not start.
    pub async fn start(target: &TargetArgs) -> Outcome<Session> {
        let spec = target.spec()?;
        let limit = spec.start_timeout + START_MARGIN;
        let host = PluginHost::new(target.socket_dir.clone())
            .map_err(|e| Failure::Start(e.to_string()))?;
        let (events_tx, events) = mpsc::unbounded_channel();
        let manager = Arc::new(RecordingManager::default());
        let mut options = LaunchOptions::default().with_events(events_tx);
        if spec.plugin_type == gatekeeper_rpc::methods::PluginType::Upstream {
            options = options.with_manager(manager.clone());
        }
        let launched = tokio::time::timeout(limit, host.launch(spec, options)).await;
        let handle = match launched {
            Ok(Ok(handle)) => handle,
            Ok(Err(e)) => {
                host.shutdown().await;
                return Err(start_failure(e));
            }
            Err(_) => {
                host.shutdown().await;
                return Err(Failure::Timeout(format!(
                    "the plugin did not start within {}",
                    humantime::format_duration(limit)
                )));
            }
        };
        Ok(Session {
            host,
            handle,
            events,
            manager,
        })
    }

    /// The plugin's handle.
    pub fn handle(&self) -> &PluginHandle {
        &self.handle
    }

    /// The manager calls the plugin made so far.
    pub fn manager_calls(&self) -> Vec<Value> {
        self.manager.calls()
    }

    /// Calls `method` with `params` (already checked against its params type) and returns the
    /// result, checked against its result type as gatekeeper checks it.
    pub async fn call(&mut self, method: &'static MethodInfo, params: &RawValue) -> Outcome<Value> {
        let check = method.check_result;
        let outcome = self
            .handle
            .call_parsed(method.name, params, |raw| {
                check(raw)?;
                serde_json::from_str::<Value>(raw)
            })
            .await;
        match outcome {
            Ok(result) => Ok(result),
            Err(error) => Err(self.call_failure(method.name, error).await),
        }
    }

    /// Stops the plugin (`stop`, then up to the stop timeout to exit, then kill) and removes
    /// the socket directory.
    pub async fn stop(self) {
        self.host.shutdown().await;
    }

    /// What a failed call means: a crash if the plugin went down meanwhile, else by the error.
    async fn call_failure(&mut self, hook: &str, error: PluginCallError) -> Failure {
        let went_down = matches!(
            error,
            PluginCallError::Unavailable { .. }
                | PluginCallError::Failed {
                    source: CallError::Closed { .. },
                    ..
                }
        );
        if let Some(reason) = self.down_reason(went_down).await {
            if let Some(violation) = last_violation() {
                return Failure::Protocol(format!(
                    "around `{hook}`: {violation} (a protocol violation: gatekeeper closes the connection)"
                ));
            }
            return Failure::Start(format!(
                "the plugin went down during `{hook}`: {reason}{}{}",
                exit_text(&reason).await,
                stderr_text(&last_lines())
            ));
        }
        if let Some(answer) = error.remote_error() {
            return Failure::ErrorAnswer {
                hook: hook.to_owned(),
                code: answer.code(),
                message: answer.message().to_owned(),
                data: answer
                    .data()
                    .and_then(|raw| serde_json::from_str(raw.get()).ok()),
            };
        }
        match error {
            PluginCallError::Failed {
                source: CallError::InvalidResult { source, .. },
                ..
            } => Failure::BadResult(format!(
                "the plugin answered `{hook}` with a result of the wrong shape: {source}"
            )),
            PluginCallError::Timeout { .. }
            | PluginCallError::Failed {
                source: CallError::Timeout { .. },
                ..
            } => Failure::Timeout(format!("{error} (--timeout)")),
            PluginCallError::NotDeclared { .. } => Failure::Usage(error.to_string()),
            other => Failure::Start(format!("{other}{}", stderr_text(&last_lines()))),
        }
    }

    /// Why the plugin went down, if the host reported it (waiting a little for the report when
    /// the call's error says the connection went away).
    async fn down_reason(&mut self, wait: bool) -> Option<String> {
        let deadline = tokio::time::Instant::now()
            + if wait {
                DOWN_REPORT_WAIT
            } else {
                Duration::ZERO
            };
        loop {
            let event = match self.events.try_recv() {
                Ok(event) => event,
                Err(_) if tokio::time::Instant::now() >= deadline => return None,
                Err(_) => match tokio::time::timeout_at(deadline, self.events.recv()).await {
                    Ok(Some(event)) => event,
                    _ => return None,
                },
            };
            if let PluginEventKind::Failed { reason } = event.kind {
                return Some(reason);
            }
        }
    }
}

/// The failure of a launch, by why the start failed.
fn start_failure(error: HostError) -> Failure {
    let HostError::Start { source, .. } = &error else {
        return Failure::Start(error.to_string());
    };
    let text = format!("the plugin did not start: {source}");
    match source {
        StartError::Configure(CallError::Remote { .. }) => {
            Failure::ConfigRefused(format!("the plugin refused its config: {source}"))
        }
        StartError::Timeout(_)
        | StartError::Silent(_)
        | StartError::StillStarting(_)
        | StartError::Configure(CallError::Timeout { .. })
        | StartError::Start(CallError::Timeout { .. }) => Failure::Timeout(text),
        _ => Failure::Start(text),
    }
}

/// The exit status of the process that went down, for an error message: the host logs it
/// once the process is reaped, just after it reports the plugin down (waited for a little).
async fn exit_text(reason: &str) -> String {
    if reason.contains("exit status") {
        return String::new();
    }
    let deadline = tokio::time::Instant::now() + DOWN_REPORT_WAIT;
    loop {
        if let Some(status) = last_exit_status() {
            return format!("; the process ended with {status}");
        }
        if tokio::time::Instant::now() >= deadline {
            return String::new();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The plugin's last stderr lines for an error message (empty without any).
fn stderr_text(lines: &[String]) -> String {
    if lines.is_empty() {
        String::new()
    } else {
        format!("; its last stderr lines:\n  {}", lines.join("\n  "))
    }
}
