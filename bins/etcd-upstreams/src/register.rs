//! `etcd-upstreams register`: a backend registers itself. Grants a lease with the TTL, puts
//! `PREFIX/backends/UPSTREAM/ID` = `{"address": …, "weight": …}` with it, and keeps the lease
//! alive (every TTL/3). SIGTERM or SIGINT revokes the lease, which deletes the key at once, and
//! exits 0. A helper that is killed (or a machine that dies) stops the keep-alives: etcd deletes
//! the key when the lease expires, within the TTL, and every gatekeeper following the prefix
//! drops the backend.
//!
//! When etcd cannot be reached, or the lease was lost (expired while etcd was unreachable), the
//! helper registers again with a new lease, retrying with a backoff (100 ms, doubling, at most
//! 5 s).

use std::process::ExitCode;
use std::time::Duration;

use etcd_client::{Client, LeaseKeepAliveStream, LeaseKeeper, PutOptions};
use tokio::signal::unix::{signal, SignalKind};

use crate::keys::Item;
use crate::settings::{call, RawSettings, Settings, DEFAULT_ENDPOINTS, DEFAULT_PREFIX, KNOWN_KEYS};

/// The longest wait between two attempts to register.
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// `register`'s flags.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The upstream the backend belongs to (its id).
    #[arg(long)]
    upstream: String,
    /// The backend's base URL, e.g. `http://10.0.0.5:8080`.
    #[arg(long)]
    address: String,
    /// The lease's time to live: the key goes this long after the helper stops keeping it alive
    /// (whole seconds, at least 1; etcd may round it up).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    ttl: Duration,
    /// The backend's id (default: the address without its scheme, `/` replaced by `_`).
    #[arg(long)]
    id: Option<String>,
    /// The backend's weight for the built-in balancers (at least 1).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    weight: Option<u32>,
    /// Comma-separated etcd URLs.
    #[arg(long, default_value = DEFAULT_ENDPOINTS)]
    endpoints: String,
    /// The key prefix (the plugin's `prefix`).
    #[arg(long, default_value = DEFAULT_PREFIX)]
    prefix: String,
    /// etcd user name.
    #[arg(long)]
    username: Option<String>,
    /// etcd password.
    #[arg(long, env = "ETCD_UPSTREAMS_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// PEM CA bundle to verify etcd with (https:// endpoints).
    #[arg(long)]
    ca_file: Option<String>,
    /// PEM client certificate (with --key-file).
    #[arg(long)]
    cert_file: Option<String>,
    /// PEM client key (with --cert-file).
    #[arg(long)]
    key_file: Option<String>,
    /// How long connecting to etcd (and each call) may take.
    #[arg(long, default_value = "2s")]
    dial_timeout: String,
}

/// The backend's default id: its address without the scheme, `/` replaced by `_`.
pub fn default_id(address: &str) -> String {
    let rest = address.split_once("://").map_or(address, |(_, rest)| rest);
    rest.trim_end_matches('/').replace('/', "_")
}

/// A settings error naming config keys, as it reads for this subcommand's flags.
fn as_flags(message: &str) -> String {
    let mut message = message
        .replace("config keys ", "flags ")
        .replace("config key ", "flag ");
    for key in KNOWN_KEYS {
        message = message.replace(
            &format!("`{key}`"),
            &format!("`--{}`", key.replace('_', "-")),
        );
    }
    message
}

/// What to put, and for how long.
#[derive(Debug)]
struct Registration {
    key: String,
    value: String,
    ttl_secs: i64,
}

impl Args {
    fn checked(self) -> Result<(Settings, Registration), String> {
        if !(self.address.starts_with("http://") || self.address.starts_with("https://")) {
            return Err(format!(
                "--address `{}` must be a URL such as http://10.0.0.5:8080",
                self.address
            ));
        }
        if self.upstream.is_empty() || self.upstream.contains('/') {
            return Err("--upstream must be an upstream id (not empty, no `/`)".into());
        }
        let id = self.id.unwrap_or_else(|| default_id(&self.address));
        if id.is_empty() {
            return Err("--id must not be empty".into());
        }
        let ttl_secs = i64::try_from(self.ttl.as_secs_f64().ceil() as u64).unwrap_or(i64::MAX);
        if ttl_secs < 1 {
            return Err("--ttl must be at least 1s".into());
        }
        let settings = RawSettings {
            endpoints: Some(self.endpoints),
            prefix: Some(self.prefix),
            username: self.username,
            password: self.password,
            ca_file: self.ca_file,
            cert_file: self.cert_file,
            key_file: self.key_file,
            dial_timeout: Some(self.dial_timeout),
            reconnect_max: None,
            warn_interval: None,
            cache_file: None,
            page_size: None,
        }
        .check()
        .map_err(|e| as_flags(&e))?;
        let mut value = serde_json::Map::new();
        value.insert("address".into(), self.address.into());
        if let Some(weight) = self.weight {
            value.insert("weight".into(), weight.into());
        }
        let key = Item::Backend(self.upstream, id).key(&settings.prefix);
        let value = serde_json::Value::Object(value).to_string();
        Ok((
            settings,
            Registration {
                key,
                value,
                ttl_secs,
            },
        ))
    }
}

/// A registered key's lease, kept alive.
struct Lease {
    client: Client,
    id: i64,
    keeper: LeaseKeeper,
    stream: LeaseKeepAliveStream,
    interval: Duration,
}

impl Lease {
    /// Grants a lease, puts the key with it, and opens the keep-alive stream.
    async fn register(settings: &Settings, registration: &Registration) -> Result<Lease, String> {
        let dial = settings.dial_timeout;
        let mut client = settings.connect().await.map_err(|e| e.to_string())?;
        let grant = call(
            dial,
            "granting a lease",
            client.lease_grant(registration.ttl_secs, None),
        )
        .await?;
        let id = grant.id();
        let options = PutOptions::new().with_lease(id);
        call(
            dial,
            "putting the key",
            client.put(
                registration.key.clone(),
                registration.value.clone(),
                Some(options),
            ),
        )
        .await?;
        let (keeper, stream) =
            call(dial, "keeping the lease alive", client.lease_keep_alive(id)).await?;
        let ttl = grant.ttl().max(1);
        let interval = Duration::from_millis(u64::try_from(ttl).unwrap_or(1) * 1000 / 3);
        tracing::info!(
            key = %registration.key,
            value = %registration.value,
            lease = %format!("{id:x}"),
            ttl_secs = ttl,
            "registered; keeping the lease alive every {}",
            humantime::format_duration(interval)
        );
        Ok(Lease {
            client,
            id,
            keeper,
            stream,
            interval,
        })
    }

    /// Renews the lease once; an error when etcd does not answer or the lease is gone.
    async fn keep_alive(&mut self, dial: Duration) -> Result<(), String> {
        call(dial, "keeping the lease alive", self.keeper.keep_alive()).await?;
        match call(dial, "keeping the lease alive", self.stream.message()).await? {
            Some(response) if response.ttl() > 0 => Ok(()),
            Some(_) => Err("the lease expired".into()),
            None => Err("etcd closed the keep-alive stream".into()),
        }
    }

    /// Revokes the lease: etcd deletes the key at once.
    async fn revoke(mut self, dial: Duration, key: &str) {
        match call(
            dial,
            "revoking the lease",
            self.client.lease_revoke(self.id),
        )
        .await
        {
            Ok(_) => tracing::info!(key, "lease revoked, key deleted"),
            Err(e) => {
                tracing::warn!(key, "{e}; the key goes when the lease expires")
            }
        }
    }
}

/// One step: register if not registered (waiting after a failure), else wait and renew.
async fn step(
    settings: &Settings,
    registration: &Registration,
    lease: &mut Option<Lease>,
    backoff: &mut Duration,
) {
    match lease {
        None => match Lease::register(settings, registration).await {
            Ok(registered) => {
                *lease = Some(registered);
                *backoff = Duration::from_millis(100);
            }
            Err(e) => {
                tracing::warn!(
                    key = %registration.key,
                    endpoints = %settings.endpoints_shown(),
                    "could not register ({e}); trying again in {}",
                    humantime::format_duration(*backoff)
                );
                tokio::time::sleep(*backoff).await;
                *backoff = (*backoff * 2).min(BACKOFF_MAX);
            }
        },
        Some(current) => {
            tokio::time::sleep(current.interval).await;
            if let Err(e) = current.keep_alive(settings.dial_timeout).await {
                tracing::warn!(key = %registration.key, "{e}; registering again");
                *lease = None;
            }
        }
    }
}

/// Runs the helper until SIGTERM or SIGINT.
pub async fn main(args: Args) -> ExitCode {
    gatekeeper_plugin_sdk::init_logging();
    let (settings, registration) = match args.checked() {
        Ok(checked) => checked,
        Err(e) => {
            eprintln!("etcd-upstreams register: {e}");
            return ExitCode::from(2);
        }
    };
    let signals = signal(SignalKind::terminate())
        .and_then(|term| Ok((term, signal(SignalKind::interrupt())?)));
    let (mut term, mut interrupt) = match signals {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("etcd-upstreams register: cannot handle signals: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut lease = None;
    let mut backoff = Duration::from_millis(100);
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = interrupt.recv() => break,
            () = step(&settings, &registration, &mut lease, &mut backoff) => {}
        }
    }
    match lease {
        Some(lease) => lease.revoke(settings.dial_timeout, &registration.key).await,
        None => tracing::info!(key = %registration.key, "stopped (not registered)"),
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn checked(line: &str) -> Result<(Settings, Registration), String> {
        let argv = std::iter::once("register").chain(line.split_whitespace());
        Cli::try_parse_from(argv)
            .map_err(|e| e.to_string())?
            .args
            .checked()
    }

    #[test]
    fn ids_come_from_addresses() {
        assert_eq!(default_id("http://10.0.0.5:8080"), "10.0.0.5:8080");
        assert_eq!(default_id("http://h:1/base/"), "h:1_base");
    }

    #[test]
    fn the_key_and_value() {
        let (settings, r) =
            checked("--upstream api --address http://127.0.0.1:9 --ttl 2500ms --weight 3").unwrap();
        assert_eq!(settings.prefix, "/gatekeeper");
        assert_eq!(r.key, "/gatekeeper/backends/api/127.0.0.1:9");
        assert_eq!(r.value, r#"{"address":"http://127.0.0.1:9","weight":3}"#);
        assert_eq!(r.ttl_secs, 3);
        let (_, r) = checked("--upstream api --address http://a:1 --id b1 --prefix /x/").unwrap();
        assert_eq!(r.key, "/x/backends/api/b1");
        assert_eq!(r.ttl_secs, 10);
    }

    #[test]
    fn bad_flags_say_why() {
        for (line, needle) in [
            ("--upstream api --address 127.0.0.1:9", "must be a URL"),
            ("--upstream a/b --address http://a", "--upstream"),
            ("--upstream a --address http://a --ttl 0s", "--ttl"),
            ("--upstream a --address http://a --weight 0", "--weight"),
            (
                "--upstream a --address http://a --dial-timeout x",
                "--dial-timeout",
            ),
            ("--upstream a --address http://a --username u", "--username"),
        ] {
            let err = checked(line).err().unwrap_or_default();
            assert!(err.contains(needle), "{line}: {err}");
        }
    }
}
