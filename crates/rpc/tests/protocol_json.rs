//! The committed `plugin-sdk/protocol.json` (and its copies in the Python and Node packages) is
//! what the protocol table generates. Regenerate with
//! `cargo run -p gatekeeper-rpc --example protocol-schema -- --write`.

use std::path::Path;

use gatekeeper_rpc::schema::{protocol_json, PROTOCOL_JSON_PATHS};

#[test]
fn committed_protocol_json_is_what_the_table_generates() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let expected = protocol_json();
    for path in PROTOCOL_JSON_PATHS {
        let committed = std::fs::read_to_string(root.join(path)).unwrap_or_default();
        assert!(
            committed == expected,
            "{path} is out of date with the protocol table in crates/rpc; regenerate it with \
             `cargo run -p gatekeeper-rpc --example protocol-schema -- --write`"
        );
    }
}
