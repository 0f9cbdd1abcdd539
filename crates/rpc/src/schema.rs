//! The machine-readable protocol, `plugin-sdk/protocol.json`: the protocol table's facts and a
//! JSON Schema (draft 2020-12) of every method's params and result, generated from the Rust
//! types with `schemars`.
//!
//! Regenerate the file with `cargo run -p gatekeeper-rpc --example protocol-schema`; the test
//! `tests/protocol_json.rs` fails when the committed file (or one of its copies in the Python
//! and Node SDK packages) differs from what this module generates.

use schemars::generate::SchemaSettings;
use schemars::SchemaGenerator;
use serde_json::{json, Map, Value};

use crate::methods::{ApplyBatchRefused, MethodInfo, PluginType, METHODS};
use crate::metrics::{EventMetric, PluginMetric, ProfilingMetric, RequestMetric, UpstreamMetric};
use crate::types::{Backend, HttpRequest, HttpResponse, ProxyError, Upstream};
use crate::PROTOCOL_VERSION;

/// Where the schema lives, relative to the repository root, and its copies inside the SDK
/// packages (so an installed SDK finds it too).
pub const PROTOCOL_JSON_PATHS: [&str; 3] = [
    "plugin-sdk/protocol.json",
    "plugin-sdk/python/gatekeeper_plugin/protocol.json",
    "plugin-sdk/node/protocol.json",
];

/// The whole `protocol.json` document.
pub fn protocol_document() -> Value {
    let mut generator = SchemaGenerator::new(SchemaSettings::draft2020_12());
    // The shared types first, so that they are named definitions even where no method uses
    // them directly.
    for shared in [
        generator.subschema_for::<Upstream>(),
        generator.subschema_for::<Backend>(),
        generator.subschema_for::<HttpRequest>(),
        generator.subschema_for::<HttpResponse>(),
        generator.subschema_for::<ProxyError>(),
        generator.subschema_for::<EventMetric>(),
        generator.subschema_for::<ProfilingMetric>(),
        generator.subschema_for::<PluginMetric>(),
        generator.subschema_for::<RequestMetric>(),
        generator.subschema_for::<UpstreamMetric>(),
        generator.subschema_for::<ApplyBatchRefused>(),
    ] {
        drop(shared);
    }
    let methods: Vec<Value> = METHODS
        .iter()
        .map(|m| method_entry(m, &mut generator))
        .collect();
    let definitions: Map<String, Value> = generator.take_definitions(true).into_iter().collect();
    let mut document = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$comment": "Generated from crates/rpc (the protocol table in methods.rs) by `cargo run -p gatekeeper-rpc --example protocol-schema`; do not edit. docs/protocol.md explains every method.",
        "title": "gatekeeper plugin protocol",
        "protocol_version": PROTOCOL_VERSION,
        "plugin_types": PluginType::ALL.map(PluginType::as_str),
        "methods": methods,
        "$defs": definitions,
    });
    plain_descriptions(&mut document);
    document
}

/// Rewrites rustdoc links in every `description` (taken from the Rust doc comments) as plain
/// code spans for readers of the JSON: ``[`crate::methods::HandshakeParams::bodies`]`` becomes
/// `` `HandshakeParams::bodies` ``.
fn plain_descriptions(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map.iter_mut() {
                match inner {
                    Value::String(text) if key == "description" => *text = plain_links(text),
                    _ => plain_descriptions(inner),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(plain_descriptions),
        _ => {}
    }
}

/// ``[`path::Name`]`` → `` `Name` `` (keeping the last two path segments at most).
fn plain_links(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("[`") {
        let Some(len) = rest[start + 2..].find("`]") else {
            break;
        };
        let path = &rest[start + 2..start + 2 + len];
        let segments: Vec<&str> = path.split("::").collect();
        let kept = &segments[segments.len().saturating_sub(2)..];
        let kept = if kept.first() == Some(&"crate") || kept.first() == Some(&"methods") {
            &kept[1..]
        } else {
            kept
        };
        out.push_str(&rest[..start]);
        out.push('`');
        out.push_str(&kept.join("::"));
        out.push('`');
        rest = &rest[start + 2 + len + 2..];
    }
    out.push_str(rest);
    out
}

fn method_entry(method: &MethodInfo, generator: &mut SchemaGenerator) -> Value {
    let names = |types: &[PluginType]| types.iter().map(|t| t.as_str()).collect::<Vec<_>>();
    json!({
        "name": method.name,
        "kind": method.kind,
        "direction": method.direction(),
        "description": method.doc.trim(),
        "declared_by": names(method.declared_by),
        "received_by": names(method.received_by()),
        "called_by": names(method.called_by),
        "bodies": method.bodies,
        "params": (method.params_schema)(generator),
        "result": (method.result_schema)(generator),
    })
}

/// `protocol.json` as committed: pretty-printed, with a final newline.
pub fn protocol_json() -> String {
    let mut text = serde_json::to_string_pretty(&protocol_document()).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::plain_links;

    #[test]
    fn rustdoc_links_become_code_spans() {
        assert_eq!(plain_links("One of [`events`]."), "One of `events`.");
        assert_eq!(
            plain_links("(see [`crate::methods::HandshakeParams::bodies`]) and [`X`]"),
            "(see `HandshakeParams::bodies`) and `X`"
        );
        assert_eq!(plain_links("no [`link"), "no [`link");
    }
}
