//! The flags of a TLS listener's settings, applied to its `[[tls]]` tables (from the file or
//! from `--tls-cert`/`--tls-key`), each winning over its key: `--tls-min-version`,
//! `--tls-client-ca`, `--tls-client-auth`, `--tls-response-header` (the listener's) and
//! `--tls-ocsp` (the n-th of a listener for its n-th certificate). A value is `[NAME=]VALUE`;
//! without NAME it is for the only TLS listener.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail, Result};
use gatekeeper_proxy::{ClientAuth, TlsCertificate, TlsMinVersion};

use crate::cli::Cli;

/// Applies the TLS settings flags to `tls` (every table of a listener alike).
pub fn apply(cli: &Cli, tls: &mut [TlsCertificate]) -> Result<()> {
    for spec in &cli.tls_min_version {
        let (listener, value) = split("--tls-min-version", spec, tls, '=')?;
        let version: TlsMinVersion = value
            .parse()
            .map_err(|e| anyhow!("--tls-min-version: {e}"))?;
        tables_of(tls, &listener).for_each(|t| t.settings.min_version = Some(version));
    }
    for spec in &cli.tls_client_ca {
        let (listener, file) = split("--tls-client-ca", spec, tls, '=')?;
        tables_of(tls, &listener).for_each(|t| t.settings.client_ca = Some(file.clone().into()));
    }
    for spec in &cli.tls_client_auth {
        let (listener, value) = split("--tls-client-auth", spec, tls, '=')?;
        let auth: ClientAuth = value
            .parse()
            .map_err(|e| anyhow!("--tls-client-auth: {e}"))?;
        // It goes with `client_ca` (in the tables that give one; in all when none does, which
        // is then reported).
        let with_ca = tables_of(tls, &listener).any(|t| t.settings.client_ca.is_some());
        tables_of(tls, &listener)
            .filter(|t| !with_ca || t.settings.client_ca.is_some())
            .for_each(|t| t.settings.client_auth = Some(auth));
    }
    let mut headers: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for spec in &cli.tls_response_header {
        // `NAME=` comes before the header's `:` (a value may hold `=`: `max-age=1`).
        let (listener, header) = split("--tls-response-header", spec, tls, ':')?;
        let Some((name, value)) = header.split_once(':') else {
            bail!("--tls-response-header: `{spec}` is not HEADER:VALUE");
        };
        headers
            .entry(listener)
            .or_default()
            .push((name.trim().to_owned(), value.trim().to_owned()));
    }
    for (listener, given) in headers {
        for table in tables_of(tls, &listener) {
            let map = table
                .settings
                .response_headers
                .get_or_insert_with(BTreeMap::new);
            map.extend(given.iter().cloned());
        }
    }
    let mut ocsp_count: BTreeMap<String, usize> = BTreeMap::new();
    for spec in &cli.tls_ocsp {
        let (listener, file) = split("--tls-ocsp", spec, tls, '=')?;
        let n = ocsp_count.entry(listener.clone()).or_default();
        let Some(table) = tables_of(tls, &listener).nth(*n) else {
            bail!("--tls-ocsp: listener `{listener}` has more --tls-ocsp than certificates");
        };
        table.ocsp = Some(file.into());
        *n += 1;
    }
    Ok(())
}

/// The tables of `listener`.
fn tables_of<'a>(
    tls: &'a mut [TlsCertificate],
    listener: &'a str,
) -> impl Iterator<Item = &'a mut TlsCertificate> + 'a {
    tls.iter_mut().filter(move |t| t.listener == listener)
}

/// Splits `[NAME=]VALUE` (NAME is what comes before the first `=`, if that comes before the
/// first `stop`); without NAME: the only TLS listener. NAME must be a TLS listener.
fn split(flag: &str, spec: &str, tls: &[TlsCertificate], stop: char) -> Result<(String, String)> {
    let mut listeners: Vec<&str> = Vec::new();
    for table in tls {
        if !listeners.contains(&table.listener.as_str()) {
            listeners.push(&table.listener);
        }
    }
    let named = spec
        .split_once('=')
        .filter(|(name, _)| stop == '=' || !name.contains(stop));
    let (listener, value) = match (named, listeners.as_slice()) {
        (Some((name, value)), _) => (name.trim(), value.trim()),
        (None, [only]) => (*only, spec.trim()),
        (None, []) => bail!("{flag}: there is no TLS listener (no [[tls]] table or --tls-cert)"),
        (None, _) => bail!("{flag}: `{spec}`: say which TLS listener it is for (NAME=…)"),
    };
    if value.is_empty() {
        bail!("{flag}: `{spec}` has no value");
    }
    if !listeners.contains(&listener) {
        bail!(
            "{flag}: `{listener}` is not a TLS listener (TLS listeners: {})",
            listeners.join(", ")
        );
    }
    Ok((listener.to_owned(), value.to_owned()))
}
