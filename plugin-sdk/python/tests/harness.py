"""Test support: the conformance suite's matching rules, and a fake proxy that serves a plugin
in memory over a socket pair (no gatekeeper needed)."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

PYTHON_SDK = Path(__file__).resolve().parent.parent
REPO = PYTHON_SDK.parent.parent
WIRE_JSON = PYTHON_SDK.parent / "conformance" / "wire.json"

if str(PYTHON_SDK) not in sys.path:
    sys.path.insert(0, str(PYTHON_SDK))

from gatekeeper_plugin import DEFAULT_MAX_LINE_BYTES, Plugin, serve_async  # noqa: E402
from gatekeeper_plugin.testing import host as _test_host  # noqa: E402

# The SDK's log lines (expected errors) would clutter the test output; tests that check them use
# assertLogs, which sees them regardless.
logging.getLogger("gatekeeper_plugin").addHandler(logging.NullHandler())

READ_TIMEOUT = 5.0
"""How long one expected message may take."""
SERVE_END_TIMEOUT = 2.0
"""How long serve_async may take to return once the connection ends (conformance README)."""


# ---------------------------------------------------------------------------------------------
# Matching (plugin-sdk/conformance/README.md, "Matching rules")


class _Missing:
    def __repr__(self) -> str:
        return "<absent>"


MISSING: Any = _Missing()


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def mismatch(expected: Any, actual: Any, path: str = "$") -> str | None:
    """``None`` when ``actual`` matches ``expected``, else where and why it does not.

    * ``"$any"`` matches any present value;
    * ``None`` (JSON ``null``) matches an absent field or ``null``;
    * ``{"$contains": [...]}`` matches an array holding those elements (each matched by these
      rules, each by a different element), in any order;
    * objects match as subsets, recursively;
    * other arrays must have the same length, elements matching in order;
    * scalars must be equal, of the same JSON type (``true`` is not ``1``).
    """
    if expected == "$any":
        return None if actual is not MISSING else f"{path}: absent, expected a value"
    if expected is None:
        if actual is MISSING or actual is None:
            return None
        return f"{path}: expected null or absent, got {actual!r}"
    if actual is MISSING:
        return f"{path}: absent, expected {expected!r}"
    if isinstance(expected, dict):
        if set(expected) == {"$contains"}:
            return _contains(expected["$contains"], actual, path)
        if not isinstance(actual, dict):
            return f"{path}: expected an object, got {actual!r}"
        for key, value in expected.items():
            found = mismatch(value, actual.get(key, MISSING), f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return f"{path}: expected {expected!r}, got {actual!r}"
        for i, (want, got) in enumerate(zip(expected, actual, strict=True)):
            found = mismatch(want, got, f"{path}[{i}]")
            if found:
                return found
        return None
    if _is_number(expected) and _is_number(actual):
        return None if expected == actual else f"{path}: expected {expected!r}, got {actual!r}"
    if type(expected) is not type(actual) or expected != actual:
        return f"{path}: expected {expected!r}, got {actual!r}"
    return None


def assignment(expected: list[Any], actual: list[Any], path: str = "$") -> list[int] | None:
    """Indices into ``actual``, one per element of ``expected``, all different, such that each
    pair matches; ``None`` if there is no such assignment (backtracking: lists are short)."""
    chosen: list[int] = []

    def search(i: int) -> bool:
        if i == len(expected):
            return True
        for j, candidate in enumerate(actual):
            if j not in chosen and mismatch(expected[i], candidate, path) is None:
                chosen.append(j)
                if search(i + 1):
                    return True
                chosen.pop()
        return False

    return chosen if search(0) else None


def _contains(elements: Any, actual: Any, path: str) -> str | None:
    if not isinstance(actual, list):
        return f"{path}: expected an array containing {elements!r}, got {actual!r}"
    if assignment(list(elements), actual, path) is None:
        return f"{path}: expected an array containing {elements!r}, got {actual!r}"
    return None


# ---------------------------------------------------------------------------------------------
# The fake proxy


def plugin_env(plugin_type: str, **overrides: str) -> dict[str, str]:
    """The ``GATEKEEPER_*`` variables of an in-memory run (token ``t``, protocol 1, as
    wire.json expects): the test host's, with the conformance suite's token and name."""
    defaults = {"GATEKEEPER_TOKEN": "t", "GATEKEEPER_PLUGIN_NAME": "conformance"}
    return _test_host.plugin_env(plugin_type, **{**defaults, **overrides})


class FakeProxy:
    """The proxy's end of a socket pair whose other end a plugin is served on."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    serving: asyncio.Task[None]

    @classmethod
    async def start(
        cls,
        plugin: Plugin,
        env: Mapping[str, str] | None = None,
        *,
        limit: int = DEFAULT_MAX_LINE_BYTES,
    ) -> FakeProxy:
        """Serves ``plugin`` (with ``env``, default :func:`plugin_env` of its type) and returns
        the proxy's side, before anything was read."""
        proxy = cls()
        (plugin_reader, plugin_writer), (proxy.reader, proxy.writer) = (
            await _test_host.socket_pair_streams(limit)
        )
        proxy.serving = asyncio.create_task(
            serve_async(
                plugin,
                plugin_reader,
                plugin_writer,
                env=plugin_env(plugin.plugin_type) if env is None else env,
            )
        )
        return proxy

    async def read_line(self) -> bytes:
        """The next raw line from the plugin (``b""`` at end of stream)."""
        return await asyncio.wait_for(self.reader.readline(), READ_TIMEOUT)

    async def read(self) -> dict[str, Any]:
        """The next message from the plugin; fails at end of stream."""
        line = await self.read_line()
        if not line:
            raise AssertionError("the plugin closed the connection; a message was expected")
        if not line.endswith(b"\n"):
            raise AssertionError(f"a line without its newline: {line!r}")
        message = json.loads(line)
        if not isinstance(message, dict):
            raise AssertionError(f"not a JSON object: {line!r}")
        return message

    async def write_line(self, line: bytes) -> None:
        """Sends raw bytes."""
        self.writer.write(line)
        await self.writer.drain()

    async def send(self, message: Mapping[str, Any]) -> None:
        """Sends one message as a compact line."""
        await self.write_line(json.dumps(message, separators=(",", ":")).encode() + b"\n")

    async def handshake(self, *, reply: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Reads the plugin's handshake and accepts it (or answers ``reply``)."""
        message = await self.read()
        assert message.get("method") == "handshake", message
        answer = reply or {"result": {"protocol_version": 1, "name": "conformance", "type": "x"}}
        await self.send({"jsonrpc": "2.0", "id": message["id"], **answer})
        return message

    async def call(self, request_id: Any, method: str, params: Any = MISSING) -> dict[str, Any]:
        """Sends a request and returns the next message (its answer, in a sequential test)."""
        message: dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not MISSING:
            message["params"] = params
        await self.send(message)
        return await self.read()

    async def close(self) -> None:
        """Closes the proxy's side."""
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except OSError:
            pass

    async def finished(self) -> None:
        """Waits for serve_async to return (re-raising what it raised)."""
        await asyncio.wait_for(self.serving, SERVE_END_TIMEOUT)

    async def shutdown(self) -> None:
        """Closes the proxy's side and waits for the plugin to end, whatever state it is in."""
        await self.close()
        if not self.serving.done():
            try:
                await asyncio.wait_for(self.serving, SERVE_END_TIMEOUT)
            except BaseException:  # noqa: BLE001 - cleanup: the test already has its verdict
                self.serving.cancel()
