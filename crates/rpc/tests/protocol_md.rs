//! docs/protocol.md agrees with the protocol table: its method table and plugin type table list
//! the same methods, directions and plugin types as `methods::METHODS`, and every JSON example
//! of a method's params or result parses into that method's Rust types. (The Python SDK's tests
//! check the same examples against `plugin-sdk/protocol.json`.)

use std::collections::HashMap;
use std::path::Path;

use gatekeeper_rpc::methods::{hooks_of, method_info, Direction, Kind, PluginType, METHODS};
use serde_json::Value;

fn protocol_md() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/protocol.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The rows of the first table whose header starts with `header`, as trimmed cells.
fn table(text: &str, header: &str) -> Vec<Vec<String>> {
    let mut lines = text.lines().skip_while(|l| !l.starts_with(header));
    assert!(lines.next().is_some(), "no table starting `{header}`");
    lines
        .skip(1) // |---|---|
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_owned())
                .collect()
        })
        .collect()
}

/// The names in backticks in a cell (`` `a`, `b` `` → `[a, b]`).
fn names(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

fn plugin_types(cell: &str) -> Vec<String> {
    if cell == "every type" {
        PluginType::ALL.iter().map(|t| t.to_string()).collect()
    } else {
        names(cell)
    }
}

fn type_names(types: &[PluginType]) -> Vec<String> {
    types.iter().map(|t| t.to_string()).collect()
}

#[test]
fn the_method_table_is_the_protocol_table() {
    let rows = table(
        &protocol_md(),
        "| method | kind | direction | received by | called by | bodies |",
    );
    let documented: Vec<String> = rows.iter().map(|r| names(&r[0]).concat()).collect();
    let table: Vec<&str> = METHODS.iter().map(|m| m.name).collect();
    assert_eq!(
        documented, table,
        "docs/protocol.md's method table lists other methods"
    );
    for row in &rows {
        let method = names(&row[0]).concat();
        let Some(info) = method_info(&method) else {
            panic!("unknown method {method}")
        };
        let kind = match info.kind {
            Kind::Handshake => "handshake",
            Kind::Lifecycle => "lifecycle",
            Kind::Hook => "hook",
            Kind::Manager => "manager",
            Kind::Status => "status",
        };
        let direction = match info.direction() {
            Direction::ProxyToPlugin => "proxy → plugin",
            Direction::PluginToProxy => "plugin → proxy",
            Direction::Both => "both",
        };
        let bodies = if info.bodies { "yes" } else { "no" };
        assert_eq!(row[1], kind, "{method}: kind");
        assert_eq!(row[2], direction, "{method}: direction");
        assert_eq!(
            plugin_types(&row[3]),
            type_names(info.received_by()),
            "{method}: received by"
        );
        assert_eq!(
            plugin_types(&row[4]),
            type_names(info.called_by),
            "{method}: called by"
        );
        assert_eq!(row[5], bodies, "{method}: bodies");
    }
}

#[test]
fn the_plugin_type_table_is_the_protocol_table() {
    let rows = table(&protocol_md(), "| type | how many | hooks it may declare");
    let documented: Vec<String> = rows.iter().map(|r| names(&r[0]).concat()).collect();
    assert_eq!(documented, type_names(&PluginType::ALL));
    for (row, plugin_type) in rows.iter().zip(PluginType::ALL) {
        assert_eq!(
            names(&row[2]),
            hooks_of(plugin_type),
            "{plugin_type}: hooks"
        );
        let calls: Vec<&str> = METHODS
            .iter()
            .filter(|m| m.kind != Kind::Handshake && m.called_by.contains(&plugin_type))
            .map(|m| m.name)
            .collect();
        assert_eq!(names(&row[3]), calls, "{plugin_type}: calls");
    }
}

#[test]
fn every_json_example_parses_into_the_rust_types() {
    let text = protocol_md();
    let mut method_of_id: HashMap<String, String> = HashMap::new();
    let mut checked = 0;
    for block in text.split("```json\n").skip(1) {
        let block = block.split("```").next().unwrap_or_default();
        for line in block.lines().filter(|l| !l.trim().is_empty()) {
            let message: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not JSON in docs/protocol.md: {e}\n{line}"));
            let id = message["id"].to_string();
            let (method, part, value, check) = if let Some(method) = message["method"].as_str() {
                method_of_id.insert(id, method.to_owned());
                let info = method_info(method).unwrap_or_else(|| panic!("unknown method {method}"));
                (
                    method.to_owned(),
                    "params",
                    &message["params"],
                    info.check_params,
                )
            } else if message.get("result").is_some() {
                let method = method_of_id
                    .get(&id)
                    .unwrap_or_else(|| panic!("a result with no request of id {id}: {line}"))
                    .clone();
                let info = method_info(&method).unwrap_or_else(|| panic!("unknown {method}"));
                (method, "result", &message["result"], info.check_result)
            } else {
                continue;
            };
            if let Err(e) = check(&value.to_string()) {
                panic!("docs/protocol.md: the {part} of `{method}` do not parse: {e}\n{line}");
            }
            checked += 1;
        }
    }
    assert!(checked > 20, "only {checked} examples found");
}
