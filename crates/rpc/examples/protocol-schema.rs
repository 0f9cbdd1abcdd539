//! Prints `plugin-sdk/protocol.json`, generated from the protocol table, or with `--write`
//! writes it and its copies in the SDK packages (run from the repository root).
//!
//! `cargo run -p gatekeeper-rpc --example protocol-schema -- --write`

use std::process::ExitCode;

use gatekeeper_rpc::schema::{protocol_json, PROTOCOL_JSON_PATHS};

fn main() -> ExitCode {
    let text = protocol_json();
    if std::env::args().any(|a| a == "--write") {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        for path in PROTOCOL_JSON_PATHS {
            if let Err(e) = std::fs::write(root.join(path), &text) {
                eprintln!("error: could not write {path}: {e}");
                return ExitCode::FAILURE;
            }
            eprintln!("wrote {path}");
        }
    } else {
        print!("{text}");
    }
    ExitCode::SUCCESS
}
