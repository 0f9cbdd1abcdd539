//! The command-line flags, applied on top of the file's sections (a flag wins over its key):
//! one function per section.

use std::path::PathBuf;

use anyhow::{anyhow, bail, Result};
use gatekeeper_plugin_host::options::HostConfig;
use gatekeeper_proxy::config::parse_duration;
use gatekeeper_proxy::{ConfigError, ListenerConfig, ProxyConfig, TlsCertificate};

use super::file::OwnConfig;
use crate::cli::Cli;

/// Listen address when neither flags nor file give one.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8000";

/// `--listen` (all of them replace the file's `listen`), `--tls-cert`/`--tls-key`,
/// `--default-timeout`, `--connect-timeout`, `--max-plugin-body`, `--max-connections-per-client`,
/// `--client-request-rate`, `--client-request-burst`.
pub fn apply_to_proxy(cli: &Cli, proxy: &mut ProxyConfig) -> Result<()> {
    if !cli.listen.is_empty() {
        proxy.listeners = cli
            .listen
            .iter()
            .map(|spec| spec.parse().map_err(|e| anyhow!("--listen: {e}")))
            .collect::<Result<_>>()?;
    }
    if proxy.listeners.is_empty() {
        proxy
            .listeners
            .push(DEFAULT_LISTEN.parse().map_err(|e| anyhow!("listen: {e}"))?);
    }
    if !(cli.tls_cert.is_empty() && cli.tls_key.is_empty()) {
        proxy.tls = tls_from_flags(cli, &proxy.listeners)?;
    }
    super::tls_flags::apply(cli, &mut proxy.tls)?;
    if let Some(value) = &cli.default_timeout {
        proxy.default_timeout =
            parse_duration(value).map_err(|e| anyhow!("--default-timeout: {e}"))?;
    }
    if let Some(value) = &cli.connect_timeout {
        proxy.connect_timeout =
            parse_duration(value).map_err(|e| anyhow!("--connect-timeout: {e}"))?;
    }
    if let Some(bytes) = cli.max_plugin_body {
        proxy.max_plugin_body = bytes;
    }
    if let Some(max) = cli.max_connections_per_client {
        proxy.max_connections_per_client = max;
    }
    if let Some(rate) = cli.client_request_rate {
        proxy.client_request_rate = rate;
    }
    if let Some(burst) = cli.client_request_burst {
        proxy.client_request_burst = burst;
    }
    Ok(())
}

/// `--socket-dir`.
pub fn apply_to_host(cli: &Cli, host: &mut HostConfig) {
    if let Some(dir) = &cli.socket_dir {
        host.socket_dir = Some(dir.clone());
    }
}

/// `--log`, `--workers`, `--log-format`.
pub fn apply_to_own(cli: &Cli, own: &mut OwnConfig) -> Result<()> {
    if let Some(log) = &cli.log {
        own.log = log.clone();
    }
    if let Some(workers) = cli.workers {
        own.workers = Some(workers);
    }
    if let Some(socket) = &cli.admin_socket {
        own.admin_socket = Some(PathBuf::from(socket));
    }
    if let Some(format) = &cli.log_format {
        own.log_format = Some(
            format
                .parse()
                .map_err(|e: String| anyhow!("--log-format: {e}"))?,
        );
    }
    Ok(())
}

/// Splits a `--tls-cert`/`--tls-key` value `[NAME=]FILE`; without NAME, the only listener.
fn split_tls_flag(
    key: &str,
    spec: &str,
    listeners: &[ListenerConfig],
) -> Result<(String, PathBuf)> {
    let (name, path) = match (spec.split_once('='), listeners) {
        (Some((name, path)), _) => (name.trim(), path.trim()),
        (None, [only]) => (only.name.as_str(), spec.trim()),
        (None, _) => bail!("{key}: `{spec}`: say which listener it is for (NAME=FILE)"),
    };
    if path.is_empty() {
        bail!("{key}: `{spec}` has no file");
    }
    if !listeners.iter().any(|l| l.name == name) {
        let names: Vec<&str> = listeners.iter().map(|l| l.name.as_str()).collect();
        return Err(ConfigError::UnknownListener {
            key: key.to_owned(),
            name: name.to_owned(),
            listeners: names.join(", "),
        }
        .into());
    }
    Ok((name.to_owned(), PathBuf::from(path)))
}

/// The certificates the flags give (they replace the file's `[[tls]]` tables): the n-th
/// `--tls-cert` of a listener pairs with its n-th `--tls-key`.
fn tls_from_flags(cli: &Cli, listeners: &[ListenerConfig]) -> Result<Vec<TlsCertificate>> {
    let parse = |key: &str, specs: &[String]| -> Result<Vec<(String, PathBuf)>> {
        specs
            .iter()
            .map(|spec| split_tls_flag(key, spec, listeners))
            .collect()
    };
    let certs = parse("--tls-cert", &cli.tls_cert)?;
    let keys = parse("--tls-key", &cli.tls_key)?;
    let mut tls = Vec::with_capacity(certs.len());
    for listener in listeners {
        let of = |list: &[(String, PathBuf)]| -> Vec<PathBuf> {
            list.iter()
                .filter(|(name, _)| *name == listener.name)
                .map(|(_, path)| path.clone())
                .collect()
        };
        let (certs, keys) = (of(&certs), of(&keys));
        if certs.len() != keys.len() {
            bail!(
                "listener `{}` has {} --tls-cert but {} --tls-key",
                listener.name,
                certs.len(),
                keys.len()
            );
        }
        tls.extend(
            certs
                .into_iter()
                .zip(keys)
                .map(|(cert, key)| TlsCertificate {
                    listener: listener.name.clone(),
                    cert,
                    key,
                    ..TlsCertificate::default()
                }),
        );
    }
    Ok(tls)
}
