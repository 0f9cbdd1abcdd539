"""protocol.json as this SDK reads it: the validator against the shared cases of
plugin-sdk/conformance/schema.json (the same cases the Node SDK runs), the method lists, and
every JSON example of docs/protocol.md against the schema (in a repository checkout)."""

from __future__ import annotations

import json
import re
import unittest
from pathlib import Path
from typing import Any

from harness import PYTHON_SDK  # noqa: F401 - puts the SDK on sys.path

from gatekeeper_plugin import (
    LOADBALANCER_HOOKS,
    METRIC_HOOKS,
    MODIFIER_HOOKS,
    ROUTER_HOOKS,
    UPSTREAM_HOOKS,
    protocol,
)

SDK = Path(__file__).resolve().parents[2]
SCHEMA_CASES = SDK / "conformance" / "schema.json"
PROTOCOL_MD = SDK.parent / "docs" / "protocol.md"


def check(method: str, part: str, value: Any) -> str | None:
    checker = protocol.check_params if part == "params" else protocol.check_result
    try:
        checker(method, value)
    except protocol.SchemaError as exc:
        return str(exc)
    return None


def doc_examples(text: str) -> list[tuple[str, str, Any]]:
    """Every message of the ```json blocks of docs/protocol.md as (method, part, value): a
    request's params, or a response's result paired with the latest request of the same id."""
    examples: list[tuple[str, str, Any]] = []
    methods_by_id: dict[Any, str] = {}
    for block in re.findall(r"```json\n(.*?)```", text, re.S):
        for line in block.splitlines():
            if not line.strip():
                continue
            message = json.loads(line)
            if "method" in message:
                methods_by_id[message.get("id")] = message["method"]
                examples.append((message["method"], "params", message.get("params")))
            elif "result" in message:
                examples.append((methods_by_id[message["id"]], "result", message["result"]))
    return examples


class ProtocolTest(unittest.TestCase):
    def test_shared_validator_cases(self) -> None:
        cases = json.loads(SCHEMA_CASES.read_text(encoding="utf-8"))["cases"]
        self.assertTrue(cases)
        for case in cases:
            with self.subTest(method=case["method"], value=case["value"]):
                self.assertEqual(check(case["method"], case["part"], case["value"]), case["error"])

    def test_method_lists_come_from_protocol_json(self) -> None:
        self.assertEqual(MODIFIER_HOOKS, ("modify_request", "modify_response", "modify_error_response"))
        self.assertEqual(protocol.body_hooks_of("modifier"), MODIFIER_HOOKS)
        self.assertEqual(protocol.body_hooks_of("router"), ())
        self.assertEqual(
            protocol.methods_of_kind("manager"),
            ("add_upstream", "remove_upstream", "add_backend", "remove_backend", "apply_batch"),
        )
        for plugin_type, hooks in [
            ("upstream", UPSTREAM_HOOKS),
            ("router", ROUTER_HOOKS),
            ("loadbalancer", LOADBALANCER_HOOKS),
            ("metric", METRIC_HOOKS),
        ]:
            self.assertEqual(hooks, protocol.hooks_of(plugin_type))

    @unittest.skipUnless(PROTOCOL_MD.is_file(), "not in a repository checkout")
    def test_every_example_of_docs_protocol_md_matches_the_schema(self) -> None:
        examples = doc_examples(PROTOCOL_MD.read_text(encoding="utf-8"))
        self.assertGreater(len(examples), 20)
        for method, part, value in examples:
            with self.subTest(method=method, part=part):
                self.assertIsNone(check(method, part, value))


if __name__ == "__main__":
    unittest.main()
