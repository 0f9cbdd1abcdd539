//! `gatekeeper check [--json] [--config FILE] [FLAGS…]`: validates a config file and flags
//! without starting anything, and reports every error, each with its key, one per line on
//! stderr (`FILE: key: message`). Exit 0 and `FILE: ok` (or, with `--json` or without a config
//! file, the effective settings as JSON, like `--check`) when valid; exit 1 otherwise.
//!
//! Startup ([`Settings::load`]) stops at the first error; here each top-level key, each
//! `[[tls]]` table and each `[[plugin]]` table is also checked on its own, so that one run lists
//! every bad key. A last full load catches what only shows with everything together (a
//! `[[tls]]` naming a listener that `listen` lacks, bad flags).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use toml::{Table, Value};

use crate::cli::Cli;
use crate::config::{check_file_part, file_keys, Settings};

/// gatekeeper check: validate a config file and flags without starting anything; every error is
/// printed with its key (`FILE: key: message`), exit status 1 if there is any.
#[derive(Debug, Parser)]
#[command(name = "gatekeeper check", bin_name = "gatekeeper check")]
struct CheckArgs {
    /// Print the effective settings as JSON when valid (always so without --config).
    #[arg(long)]
    json: bool,
    /// Do not start the plugins to check their own config (see check_plugins.rs).
    #[arg(long)]
    no_plugins: bool,
    /// The TOML config file to check.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Any other gatekeeper flags (`--listen …`, `--modifier-plugin …`), checked too.
    #[arg(
        value_name = "FLAGS",
        trailing_var_arg = true,
        allow_hyphen_values = true,
        num_args = 0..
    )]
    flags: Vec<String>,
}

/// Runs `gatekeeper check`; `args` are the process arguments, `check` already removed.
pub fn main(args: Vec<String>) -> ExitCode {
    let program = args
        .first()
        .cloned()
        .unwrap_or_else(|| "gatekeeper".to_owned());
    let args = CheckArgs::parse_from(args);
    // `--json` may also come after other flags.
    let json = args.json || args.flags.iter().any(|a| a == "--json");
    let no_plugins = args.no_plugins || args.flags.iter().any(|a| a == "--no-plugins");
    let mut gatekeeper_args = vec![program];
    if let Some(config) = &args.config {
        gatekeeper_args.extend(["--config".to_owned(), config.display().to_string()]);
    }
    gatekeeper_args.extend(
        args.flags
            .into_iter()
            .filter(|a| a != "--json" && a != "--no-plugins"),
    );
    let cli = Cli::from_args(gatekeeper_args);
    let source = match &cli.config {
        Some(path) => path.display().to_string(),
        None => "flags".to_owned(),
    };
    let (settings, mut errors) = check(&cli);
    if let Some(settings) = settings
        .as_ref()
        .filter(|_| errors.is_empty() && !no_plugins)
    {
        errors.extend(crate::check_plugins::check_plugins(settings));
    }
    match settings {
        Some(settings) if errors.is_empty() => {
            if json || cli.config.is_none() {
                match serde_json::to_string_pretty(&settings) {
                    Ok(text) => println!("{text}"),
                    Err(e) => eprintln!("gatekeeper: cannot print the settings: {e}"),
                }
            } else {
                println!("{source}: ok");
            }
            ExitCode::SUCCESS
        }
        _ => {
            for error in &errors {
                eprintln!("{source}: {error}");
            }
            ExitCode::FAILURE
        }
    }
}

/// The settings when all is well, else every error found (`key: message`): what a reload
/// reports when the file it re-reads has errors.
pub fn settings_or_errors(cli: &Cli) -> Result<Settings, Vec<String>> {
    match check(cli) {
        (Some(settings), errors) if errors.is_empty() => Ok(settings),
        (_, errors) if errors.is_empty() => Err(vec!["invalid configuration".to_owned()]),
        (_, errors) => Err(errors),
    }
}

/// The settings when all is well, and every error found (`key: message`).
fn check(cli: &Cli) -> (Option<Settings>, Vec<String>) {
    let mut errors = Vec::new();
    if let Some(path) = &cli.config {
        if let Err(error) = check_file(path, &mut errors) {
            return (None, vec![error]);
        }
    }
    match Settings::load(cli) {
        Ok(settings) => (Some(settings), errors),
        Err(e) => {
            // With errors found key by key, the full load only repeats the first of them;
            // a flag's error (`--listen: …`) is new.
            let message = crate::describe(&e);
            if errors.is_empty() || message.starts_with("--") {
                errors.push(message);
            }
            (None, errors)
        }
    }
}

/// Checks the file key by key, adding each error to `errors`; `Err` when it cannot be read
/// or is not TOML at all.
fn check_file(path: &Path, errors: &mut Vec<String>) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read it: {e}"))?;
    check_text(&text, errors)
}

/// Checks a config file's text key by key, adding each error to `errors`; `Err` when it is not
/// TOML at all.
pub(crate) fn check_text(text: &str, errors: &mut Vec<String>) -> Result<(), String> {
    let table: Table = toml::from_str(text).map_err(|e| toml_error(text, &e))?;
    let known = file_keys();
    // `[[tls]]` tables are checked against the listeners, if those are valid.
    let listen = table.get("listen").cloned().filter(|listen| {
        let part = Table::from_iter([("listen".to_owned(), listen.clone())]);
        check_file_part(part).is_ok()
    });
    for (key, value) in table {
        if !known.contains(&key) {
            errors.push(format!("{key}: unknown key"));
            continue;
        }
        match (key.as_str(), value) {
            ("plugin", Value::Array(plugins)) => {
                for (i, plugin) in plugins.into_iter().enumerate() {
                    let part =
                        Table::from_iter([("plugin".to_owned(), Value::Array(vec![plugin]))]);
                    check_part(&format!("plugin[{i}]"), "plugin[0]", part, errors);
                }
            }
            ("tls", Value::Array(certificates)) => {
                for (i, tls) in certificates.into_iter().enumerate() {
                    let key = format!("tls[{i}]");
                    let files_ok = check_tls_files(&key, &tls, errors);
                    let named = tls
                        .get("listener")
                        .and_then(Value::as_str)
                        .map(str::to_owned);
                    let mut part = Table::from_iter([("tls".to_owned(), Value::Array(vec![tls]))]);
                    match (&listen, named) {
                        (Some(listen), _) => {
                            part.insert("listen".to_owned(), listen.clone());
                        }
                        // `listen` is bad (reported already) or comes from flags (checked by
                        // the full load): the table is checked as if its listener existed.
                        (None, Some(name)) => {
                            let stand_in = Value::String(format!("{name}=127.0.0.1:0"));
                            part.insert("listen".to_owned(), Value::Array(vec![stand_in]));
                        }
                        (None, None) => {}
                    }
                    let settings = check_part(&key, "tls[0]", part, errors);
                    if let (Some(settings), true) = (settings, files_ok) {
                        if let Err(e) = gatekeeper_proxy::check_certificates(&settings.proxy.tls) {
                            errors.push(format!("{key}: {e}"));
                        }
                    }
                }
            }
            (_, value) => {
                if key == "access_log_file" {
                    check_parent_dir(&key, &value, errors);
                }
                if key == "socket_dir" {
                    check_dir(&key, &value, errors);
                }
                if key == "admin_socket" {
                    check_socket_dir(&key, &value, errors);
                }
                let part = Table::from_iter([(key.clone(), value)]);
                check_part(&key, &key, part, errors);
            }
        }
    }
    Ok(())
}

/// Checks `part` on its own; an error is reported under `key` (its messages say `said`, the
/// key inside `part`, e.g. `plugin[0]` for the table that is `plugin[3]` in the file).
fn check_part(key: &str, said: &str, part: Table, errors: &mut Vec<String>) -> Option<Settings> {
    match check_file_part(part) {
        Ok(settings) => Some(settings),
        Err(e) => {
            let message = crate::describe(&e);
            let message = match message.strip_prefix(said) {
                Some(rest) => format!("{key}{rest}"),
                None => format!("{key}: {message}"),
            };
            errors.push(message.replace('\n', " "));
            None
        }
    }
}

/// The `cert`, `key`, `ocsp` and `client_ca` files of a `[[tls]]` table exist; each missing
/// one is an error.
fn check_tls_files(key: &str, tls: &Value, errors: &mut Vec<String>) -> bool {
    let mut ok = true;
    for field in ["cert", "key", "ocsp", "client_ca"] {
        if let Some(file) = tls.get(field).and_then(Value::as_str) {
            if !Path::new(file).is_file() {
                errors.push(format!("{key}.{field}: file `{file}` not found"));
                ok = false;
            } else if let Err(e) = std::fs::File::open(file) {
                errors.push(format!("{key}.{field}: cannot read `{file}`: {e}"));
                ok = false;
            }
        }
    }
    ok
}

/// The directory a file is to be created in exists (`-`: stdout, nothing to check).
fn check_parent_dir(key: &str, value: &Value, errors: &mut Vec<String>) {
    let Some(file) = value.as_str().filter(|f| *f != "-" && !f.is_empty()) else {
        return;
    };
    let dir = match Path::new(file).parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        errors.push(format!(
            "{key}: directory `{}` of `{file}` not found",
            dir.display()
        ));
        return;
    }
    // The file is appended to if it exists, else created in `dir`.
    let (target, what) = match Path::new(file).exists() {
        true => (Path::new(file), "file"),
        false => (dir, "directory"),
    };
    if let Err(e) = nix::unistd::access(target, nix::unistd::AccessFlags::W_OK) {
        errors.push(format!(
            "{key}: cannot write to the {what} `{}`: {}",
            target.display(),
            e.desc()
        ));
    }
}

/// The directory of a socket to be made exists and is writable, or can be made (its nearest
/// existing ancestor is a writable directory). `""` (disabled): nothing to check.
fn check_socket_dir(key: &str, value: &Value, errors: &mut Vec<String>) {
    let Some(path) = value.as_str().filter(|p| !p.is_empty()).map(Path::new) else {
        return;
    };
    let mut dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    while let Some(candidate) = dir {
        if candidate.exists() {
            break;
        }
        dir = candidate.parent().filter(|d| !d.as_os_str().is_empty());
    }
    let dir = dir.unwrap_or(Path::new("."));
    let writable = dir.is_dir() && nix::unistd::access(dir, nix::unistd::AccessFlags::W_OK).is_ok();
    if !writable {
        errors.push(format!(
            "{key}: cannot make `{}`: the directory `{}` is not writable",
            path.display(),
            dir.display()
        ));
    }
}

/// The directory exists.
fn check_dir(key: &str, value: &Value, errors: &mut Vec<String>) {
    if let Some(dir) = value.as_str() {
        if !Path::new(dir).is_dir() {
            errors.push(format!("{key}: directory `{dir}` not found"));
        }
    }
}

/// A TOML syntax error on one line: `line N: message`.
fn toml_error(text: &str, error: &toml::de::Error) -> String {
    let message = error.message().trim().replace('\n', " ");
    match error.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: {message}")
        }
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors_of(text: &str) -> Vec<String> {
        let dir = std::env::temp_dir().join(format!("gk-check-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{}.toml", text.len()));
        std::fs::write(&path, text).unwrap();
        let mut errors = Vec::new();
        if let Err(e) = check_file(&path, &mut errors) {
            errors.push(e);
        }
        errors
    }

    #[test]
    fn every_bad_key_is_reported_with_its_key() {
        let errors = errors_of(
            r#"
            listen = ["nope"]
            bogus = 1
            default_timeout = "soon"
            max_connections = "many"
            access_log = "combined"
            [[plugin]]
            type = "modifier"
            command = "/bin/sh"
            [[plugin]]
            type = "modifier"
            command = "/no/such/plugin"
            [[tls]]
            listener = "http-public"
            cert = "/no/such/cert.pem"
            key = "/no/such/key.pem"
            "#,
        );
        let starts = |prefix: &str| errors.iter().any(|e| e.starts_with(prefix));
        assert!(starts("listen: `nope`"), "{errors:?}");
        assert!(starts("bogus: unknown key"), "{errors:?}");
        assert!(starts("default_timeout: `soon`"), "{errors:?}");
        assert!(starts("max_connections: "), "{errors:?}");
        assert!(starts("access_log: `combined`"), "{errors:?}");
        assert!(starts("plugin[1].command: "), "{errors:?}");
        assert!(!starts("plugin[0]"), "{errors:?}");
        assert!(
            starts("tls[0].cert: file `/no/such/cert.pem` not found"),
            "{errors:?}"
        );
        assert!(starts("tls[0].key: "), "{errors:?}");
        // The bad `listen` is reported once, not again for the `[[tls]]` table.
        assert_eq!(errors.len(), 8, "{errors:?}");
    }

    #[test]
    fn syntax_errors_name_their_line() {
        let errors = errors_of("listen = [\"127.0.0.1:1\"]\nvia = \n");
        assert_eq!(errors.len(), 1);
        assert!(errors[0].starts_with("line 2: "), "{errors:?}");
    }
}
