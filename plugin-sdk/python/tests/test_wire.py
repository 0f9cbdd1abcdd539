"""The shared conformance suite, plugin-sdk/conformance/wire.json, run against this SDK's
conformance plugin in memory (a socket pair, env given to serve_async), one subTest per case.

Step semantics and matching rules are those of plugin-sdk/conformance/README.md; the cases are
read from the file, never copied here.
"""

from __future__ import annotations

import asyncio
import json
import unittest
from typing import Any

from harness import (
    READ_TIMEOUT,
    WIRE_JSON,
    FakeProxy,
    assignment,
    mismatch,
    plugin_env,
)

import conformance_plugin

CASE_TIMEOUT = 15.0
"""The most one case may take, all steps included."""


def _show(value: Any) -> str:
    text = json.dumps(value, separators=(",", ":"))
    return text if len(text) <= 300 else text[:300] + "..."


async def run_case(case: dict[str, Any]) -> None:
    """Plays one case's steps from the proxy's side; raises AssertionError on a mismatch."""
    plugin_type = case["plugin_type"]
    proxy = await FakeProxy.start(
        conformance_plugin.make_plugin(plugin_type), plugin_env(plugin_type)
    )
    last: dict[str, Any] | None = None
    try:
        for number, step in enumerate(case["steps"]):
            where = f"step {number} {_show(step)}"
            if "expect" in step:
                message = await proxy.read()
                found = mismatch(step["expect"], message)
                if found:
                    raise AssertionError(f"{where}: {found}\n  got: {_show(message)}")
                last = message
            elif "reply" in step:
                if last is None or "method" not in last or "id" not in last:
                    raise AssertionError(f"{where}: the last message expected is not a request")
                await proxy.send({"jsonrpc": "2.0", "id": last["id"], **step["reply"]})
            elif "send" in step:
                await proxy.send(step["send"])
            elif "expect_unordered" in step:
                expected = step["expect_unordered"]
                messages = [await proxy.read() for _ in expected]
                if assignment(expected, messages) is None:
                    raise AssertionError(
                        f"{where}: the messages do not match in any order\n  got: {_show(messages)}"
                    )
            elif step.get("expect_closed") is True:
                line = await proxy.read_line()
                if line:
                    raise AssertionError(f"{where}: expected the connection closed, got {line!r}")
                await proxy.finished()  # returns, i.e. success; an exception fails the case
            elif step.get("close") is True:
                await proxy.close()
                await proxy.finished()
            else:
                raise AssertionError(f"{where}: unknown step")
    finally:
        await proxy.shutdown()


class WireConformance(unittest.TestCase):
    """Every case of wire.json."""

    def test_every_wire_case(self) -> None:
        cases = json.loads(WIRE_JSON.read_text(encoding="utf-8"))
        self.assertIsInstance(cases, list)
        self.assertTrue(cases, "wire.json has no cases")
        names = [case["name"] for case in cases]
        self.assertEqual(len(names), len(set(names)), "case names must be unique")
        for case in cases:
            with self.subTest(case=case["name"]):
                asyncio.run(asyncio.wait_for(run_case(case), CASE_TIMEOUT))

    def test_read_timeout_is_below_the_case_timeout(self) -> None:
        self.assertLess(READ_TIMEOUT, CASE_TIMEOUT)


if __name__ == "__main__":
    unittest.main()
