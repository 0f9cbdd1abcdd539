"""Serving: the environment, the handshake and declared hooks, concurrency, stop, framing limits,
and the real entry point (serve() in a subprocess, over a real Unix socket)."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import tempfile
import unittest
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from harness import PYTHON_SDK, FakeProxy, plugin_env

from gatekeeper_plugin import (
    EnvError,
    LoadBalancerPlugin,
    MetricPlugin,
    ModifierPlugin,
    PluginEnv,
    Request,
    Response,
    RouterPlugin,
    ServeError,
    UpstreamPlugin,
    codes,
    serve_async,
)

REQUEST: Request = {"method": "GET", "path": "/x", "prefixless_path": "/x", "headers": []}


def run(test: Callable[[], Awaitable[None]], timeout: float = 10) -> None:
    asyncio.run(asyncio.wait_for(test(), timeout))


class Echo(ModifierPlugin):
    async def modify_request(self, request: Request) -> Any:
        return {"request": request}


class Renamer(ModifierPlugin):
    """Sets ``x-name`` to its value with ``!`` added."""

    async def modify_request(self, request: Request) -> Any:
        for header in request["headers"]:
            if header[0] == "x-name":
                header[1] += "!"
        return {"request": request}


class DeclaredHooks(unittest.TestCase):
    def test_default_is_the_overridden_hooks(self) -> None:
        class ResponsesOnly(ModifierPlugin):
            async def modify_response(self, request: Request, response: Response) -> Any:
                return {}

        class Child(ResponsesOnly):
            async def modify_error_response(self, *args: Any) -> Any:
                return {}

        class Balancer(LoadBalancerPlugin):
            async def get_backend(self, upstream_id: str, request: Request) -> Any:
                return {}

        self.assertEqual(tuple(ModifierPlugin().hooks), ())
        self.assertEqual(tuple(ResponsesOnly().hooks), ("modify_response",))
        self.assertEqual(tuple(Child().hooks), ("modify_response", "modify_error_response"))
        self.assertEqual(tuple(Balancer().hooks), ("get_backend",))
        self.assertEqual(tuple(UpstreamPlugin().hooks), ())
        self.assertEqual(tuple(MetricPlugin().hooks), ())

    def test_a_mixin_override_counts(self) -> None:
        class Routes:
            async def route_request(self, request: Request) -> Any:
                return {"upstream": "a"}

        class Router(Routes, RouterPlugin):
            pass

        self.assertEqual(tuple(Router().hooks), ("route_request",))

    def test_hooks_can_be_set_on_the_class_or_the_object(self) -> None:
        class Declared(ModifierPlugin):
            hooks = ("modify_request", "modify_response")

        self.assertEqual(tuple(Declared().hooks), ("modify_request", "modify_response"))
        plugin = Echo()
        plugin.hooks = ["modify_response"]
        self.assertEqual(tuple(plugin.hooks), ("modify_response",))
        self.assertEqual(tuple(Echo().hooks), ("modify_request",))

    def test_the_handshake_sends_token_version_and_hooks(self) -> None:
        async def test() -> None:
            proxy = await FakeProxy.start(Echo(), plugin_env("modifier", GATEKEEPER_TOKEN="s3cret"))
            try:
                line = await proxy.read_line()
                self.assertTrue(line.endswith(b"\n") and line.count(b"\n") == 1)
                self.assertNotIn(b", ", line)
                self.assertNotIn(b": ", line)
                handshake = json.loads(line)
                self.assertEqual(handshake["jsonrpc"], "2.0")
                self.assertEqual(handshake["method"], "handshake")
                self.assertIsInstance(handshake["id"], int)
                self.assertEqual(
                    handshake["params"],
                    {"token": "s3cret", "protocol_version": 1, "hooks": ["modify_request"]},
                )
            finally:
                await proxy.shutdown()

        run(test)

    def test_the_handshake_declares_the_hooks_that_want_bodies(self) -> None:
        class Bodies(Echo):
            bodies = ("modify_request",)

        async def test() -> None:
            proxy = await FakeProxy.start(Bodies())
            try:
                message = await proxy.handshake()
                self.assertEqual(message["params"]["hooks"], ["modify_request"])
                self.assertEqual(message["params"]["bodies"], ["modify_request"])
            finally:
                await proxy.shutdown()

        run(test)

    def test_declared_request_parts_go_in_the_handshake_and_a_partial_request_gets_a_patch(
        self,
    ) -> None:
        class NeedsAuthorization(ModifierPlugin):
            request_parts = ("header:authorization",)

            async def modify_request(self, request: Request) -> Any:
                token = next(v for n, v in request["headers"] if n == "authorization")
                request["headers"].append(["x-user", token])
                return {"request": request}

        async def test() -> None:
            proxy = await FakeProxy.start(NeedsAuthorization())
            try:
                message = await proxy.handshake()
                self.assertEqual(
                    message["params"]["parts"], {"modify_request": ["header:authorization"]}
                )
                partial = {"method": "GET", "path": "/x", "headers": [["authorization", "alice"]]}
                answer = await proxy.call(1, "modify_request", {"request": partial})
                self.assertEqual(
                    answer["result"], {"patch": {"set_headers": {"x-user": "alice"}}}
                )
            finally:
                await proxy.shutdown()
            proxy = await FakeProxy.start(Echo())
            try:
                self.assertNotIn("parts", (await proxy.handshake())["params"])
            finally:
                await proxy.shutdown()

        run(test)

    def test_the_handshake_names_the_hooks_not_to_retry(self) -> None:
        class ChargesOnce(Echo):
            no_retry = ("modify_request",)

        async def test() -> None:
            for plugin, expected in ((ChargesOnce(), ["modify_request"]), (Echo(), None)):
                proxy = await FakeProxy.start(plugin)
                try:
                    message = await proxy.handshake()
                    self.assertEqual(message["params"].get("no_retry"), expected)
                finally:
                    await proxy.shutdown()

        run(test)

    def test_declaring_a_hook_the_type_lacks_is_warned_about(self) -> None:
        plugin = Echo()
        plugin.hooks = ["modify_request", "route_request"]

        async def test() -> None:
            proxy = await FakeProxy.start(plugin)
            try:
                message = await proxy.handshake()
                self.assertEqual(message["params"]["hooks"], ["modify_request", "route_request"])
            finally:
                await proxy.shutdown()

        with self.assertLogs("gatekeeper_plugin", logging.WARNING) as logs:
            run(test)
        self.assertTrue(any("route_request" in line for line in logs.output))


class Lifecycle(unittest.TestCase):
    def test_calls_run_concurrently_and_answers_come_as_they_finish(self) -> None:
        class Gate(ModifierPlugin):
            def __init__(self) -> None:
                self.open = asyncio.Event()

            async def modify_request(self, request: Request) -> Any:
                if request["path"] == "/wait":
                    await self.open.wait()
                else:
                    self.open.set()
                return {"request": request}

        async def test() -> None:
            proxy = await FakeProxy.start(Gate())
            try:
                await proxy.handshake()
                for request_id, path in [(1, "/wait"), (2, "/open")]:
                    await proxy.send(
                        {
                            "jsonrpc": "2.0",
                            "id": request_id,
                            "method": "modify_request",
                            "params": {"request": {**REQUEST, "path": path}},
                        }
                    )
                self.assertEqual((await proxy.read())["id"], 2)
                self.assertEqual((await proxy.read())["id"], 1)
            finally:
                await proxy.shutdown()

        run(test)

    def test_lifecycle_methods_reach_the_plugin_in_order(self) -> None:
        calls: list[Any] = []

        class Recorder(MetricPlugin):
            async def configure(self, config: dict[str, Any]) -> None:
                calls.append(("configure", config))

            async def start(self) -> None:
                calls.append("start")

            async def heartbeat(self) -> None:
                calls.append("heartbeat")

            async def stop(self) -> None:
                calls.append("stop")

        async def test() -> None:
            proxy = await FakeProxy.start(Recorder())
            try:
                await proxy.handshake()
                await proxy.call(1, "configure", {"config": {"a": 1}})
                for request_id, method in enumerate(["start", "heartbeat", "stop"], start=2):
                    self.assertEqual(
                        await proxy.call(request_id, method, {}),
                        {"jsonrpc": "2.0", "id": request_id, "result": {}},
                    )
                self.assertEqual(await proxy.read_line(), b"")
                await proxy.finished()
            finally:
                await proxy.shutdown()

        run(test)
        self.assertEqual(calls, [("configure", {"a": 1}), "start", "heartbeat", "stop"])

    def test_stop_is_answered_even_when_it_fails_and_cancels_calls_in_flight(self) -> None:
        cancelled = []

        class Stuck(ModifierPlugin):
            async def modify_request(self, request: Request) -> Any:
                try:
                    await asyncio.sleep(60)
                except asyncio.CancelledError:
                    cancelled.append(True)
                    raise

            async def stop(self) -> None:
                raise RuntimeError("could not flush")

        async def test() -> None:
            proxy = await FakeProxy.start(Stuck())
            try:
                await proxy.handshake()
                await proxy.send(
                    {
                        "jsonrpc": "2.0",
                        "id": 1,
                        "method": "modify_request",
                        "params": {"request": REQUEST},
                    }
                )
                answer = await proxy.call(2, "stop", {})
                self.assertEqual(answer["id"], 2)
                self.assertEqual(answer["error"]["code"], codes.INTERNAL_ERROR)
                self.assertIn("could not flush", answer["error"]["message"])
                self.assertEqual(await proxy.read_line(), b"")
                await proxy.finished()
            finally:
                await proxy.shutdown()

        with self.assertLogs("gatekeeper_plugin", logging.ERROR):
            run(test)
        self.assertEqual(cancelled, [True])

    def test_the_socket_closing_ends_serving_successfully(self) -> None:
        async def test() -> None:
            proxy = await FakeProxy.start(Echo())
            await proxy.handshake()
            await proxy.close()
            await proxy.finished()

        run(test)

    def test_text_is_utf8_both_ways(self) -> None:
        async def test() -> None:
            proxy = await FakeProxy.start(Renamer())
            try:
                await proxy.handshake()
                request = {**REQUEST, "headers": [["x-name", "Zoë 🚀"]]}
                answer = await proxy.call(1, "modify_request", {"request": request})
                self.assertEqual(
                    answer["result"], {"patch": {"set_headers": {"x-name": "Zoë 🚀!"}}}
                )
            finally:
                await proxy.shutdown()

        run(test)


class HandshakeAndFraming(unittest.TestCase):
    def serve_error(self, test: Callable[[FakeProxy], Awaitable[None]], **env: str) -> str:
        """Runs ``test`` against a served Echo and returns the ServeError serve_async raised."""
        raised: list[BaseException] = []

        async def main() -> None:
            limit = int(env.get("GATEKEEPER_MAX_LINE_BYTES", 16 * 1024 * 1024))
            proxy = await FakeProxy.start(Echo(), plugin_env("modifier", **env), limit=limit)
            try:
                await test(proxy)
                try:
                    await proxy.finished()
                except ServeError as exc:
                    raised.append(exc)
            finally:
                await proxy.shutdown()

        run(main)
        self.assertEqual(len(raised), 1, "serve_async did not raise ServeError")
        return str(raised[0])

    def test_a_refused_handshake_is_a_serve_error(self) -> None:
        async def refuse(proxy: FakeProxy) -> None:
            await proxy.handshake(
                reply={"error": {"code": codes.UNAUTHORIZED, "message": "bad token"}}
            )

        message = self.serve_error(refuse)
        self.assertIn("handshake", message)
        self.assertIn("bad token", message)

    def test_closing_before_the_handshake_is_answered_is_a_serve_error(self) -> None:
        async def hang_up(proxy: FakeProxy) -> None:
            await proxy.read()
            await proxy.close()

        self.assertIn("handshake", self.serve_error(hang_up))

    def test_a_line_over_the_limit_ends_serving_with_an_error(self) -> None:
        async def long_line(proxy: FakeProxy) -> None:
            await proxy.handshake()
            await proxy.write_line(
                b'{"jsonrpc":"2.0","id":1,"method":"heartbeat","params":{"p":"'
                + b"x" * 2000
                + b'"}}\n'
            )

        message = self.serve_error(long_line, GATEKEEPER_MAX_LINE_BYTES="1000")
        self.assertIn("1000-byte limit", message)

    def test_a_line_at_the_limit_is_accepted(self) -> None:
        async def test() -> None:
            proxy = await FakeProxy.start(
                Echo(), plugin_env("modifier", GATEKEEPER_MAX_LINE_BYTES="1000"), limit=1000
            )
            try:
                await proxy.handshake()
                head = b'{"jsonrpc":"2.0","id":1,"method":"heartbeat","params":{"p":"'
                tail = b'"}}'
                line = head + b"x" * (1000 - len(head) - len(tail)) + tail
                self.assertEqual(len(line), 1000)
                await proxy.write_line(line + b"\n")
                self.assertEqual((await proxy.read())["result"], {})
            finally:
                await proxy.shutdown()

        run(test)

    def test_a_result_over_the_limit_is_answered_with_an_error_instead(self) -> None:
        class Big(ModifierPlugin):
            async def modify_request(self, request: Request) -> Any:
                return {"response": {"status": 200, "headers": [], "body": "x" * 5000}}

        async def test() -> None:
            proxy = await FakeProxy.start(
                Big(), plugin_env("modifier", GATEKEEPER_MAX_LINE_BYTES="1000"), limit=1000
            )
            try:
                await proxy.handshake()
                answer = await proxy.call(1, "modify_request", {"request": REQUEST})
                self.assertEqual(answer["error"]["code"], codes.INTERNAL_ERROR)
                self.assertIn("limit", answer["error"]["message"])
            finally:
                await proxy.shutdown()

        with self.assertLogs("gatekeeper_plugin", logging.WARNING):
            run(test)

    def test_bytes_that_are_not_utf8_end_serving_with_an_error(self) -> None:
        async def bad_bytes(proxy: FakeProxy) -> None:
            await proxy.handshake()
            await proxy.write_line(b'{"jsonrpc":"2.0","id":1,"method":"\xff"}\n')

        self.assertIn("UTF-8", self.serve_error(bad_bytes))


class Environment(unittest.TestCase):
    FULL = {
        "GATEKEEPER_SOCKET": "/tmp/gk/p.sock",
        "GATEKEEPER_TOKEN": "secret",
        "GATEKEEPER_PLUGIN_NAME": "ids",
        "GATEKEEPER_PLUGIN_TYPE": "modifier",
        "GATEKEEPER_PROTOCOL_VERSION": "1",
        "GATEKEEPER_MAX_LINE_BYTES": "1024",
        "GATEKEEPER_PLUGIN_INSTANCE": "2",
    }

    def test_reads_every_variable(self) -> None:
        env = PluginEnv.from_env(self.FULL)
        self.assertEqual(
            env,
            PluginEnv(
                socket="/tmp/gk/p.sock",
                token="secret",
                name="ids",
                plugin_type="modifier",
                protocol_version=1,
                max_line_bytes=1024,
                instance=2,
            ),
        )

    def test_optional_variables_have_defaults(self) -> None:
        required = {
            k: v
            for k, v in self.FULL.items()
            if k
            not in (
                "GATEKEEPER_PLUGIN_NAME",
                "GATEKEEPER_MAX_LINE_BYTES",
                "GATEKEEPER_PLUGIN_INSTANCE",
            )
        }
        env = PluginEnv.from_env(required)
        self.assertEqual(
            (env.name, env.max_line_bytes, env.instance), ("modifier", 16 * 1024 * 1024, 0)
        )

    def test_a_missing_variable_says_run_me_from_gatekeeper(self) -> None:
        for variable in (
            "GATEKEEPER_SOCKET",
            "GATEKEEPER_TOKEN",
            "GATEKEEPER_PLUGIN_TYPE",
            "GATEKEEPER_PROTOCOL_VERSION",
        ):
            with self.subTest(variable=variable):
                environ = {k: v for k, v in self.FULL.items() if k != variable}
                with self.assertRaises(EnvError) as raised:
                    PluginEnv.from_env(environ)
                self.assertEqual(raised.exception.variable, variable)
                self.assertIn(variable, str(raised.exception))
                self.assertIn("run me from gatekeeper", str(raised.exception))

    def test_the_socket_is_not_needed_with_a_connection(self) -> None:
        environ = {k: v for k, v in self.FULL.items() if k != "GATEKEEPER_SOCKET"}
        self.assertEqual(PluginEnv.from_env(environ, need_socket=False).socket, "")

    def test_bad_values_are_named(self) -> None:
        for variable, value in [
            ("GATEKEEPER_PROTOCOL_VERSION", "one"),
            ("GATEKEEPER_PLUGIN_TYPE", "teapot"),
            ("GATEKEEPER_MAX_LINE_BYTES", "-5"),
        ]:
            with self.subTest(variable=variable):
                with self.assertRaises(EnvError) as raised:
                    PluginEnv.from_env({**self.FULL, variable: value})
                self.assertIn(variable, str(raised.exception))
                self.assertIn(value, str(raised.exception))

    def test_serve_async_refuses_another_type_and_a_missing_env(self) -> None:
        async def test() -> None:
            reader = asyncio.StreamReader()
            with self.assertRaisesRegex(ServeError, "`router` plugin, but it is a `modifier`"):
                await serve_async(Echo(), reader, _NullWriter(), env=plugin_env("router"))  # type: ignore[arg-type]
            with self.assertRaises(EnvError):
                await serve_async(Echo(), env={})
            with self.assertRaises(TypeError):
                await serve_async(Echo(), reader, env=plugin_env("modifier"))

        run(test)


class _NullWriter:
    """Never written to: serve_async fails before."""


def _python_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEKEEPER_")}
    env.update(extra)
    return env


class EntryPoint(unittest.TestCase):
    """conformance_plugin.py run as a program, as gatekeeper runs it."""

    SCRIPT = str(PYTHON_SDK / "conformance_plugin.py")

    def test_without_gatekeeper_it_exits_2_with_a_clear_message(self) -> None:
        done = subprocess.run(
            [sys.executable, self.SCRIPT],
            env=_python_env(),
            capture_output=True,
            text=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
        )
        self.assertEqual(done.returncode, 2, done.stderr)
        self.assertIn("run me from gatekeeper", done.stderr)
        self.assertEqual(done.stdout, "")

    def test_a_session_over_a_real_socket(self) -> None:
        """Handshake, configure, a hook, stop: exit status 0, nothing on stdout."""

        async def test(directory: str) -> None:
            path = str(Path(directory) / "p.sock")
            connected: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
                asyncio.Queue()
            )

            async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                await connected.put((reader, writer))

            server = await asyncio.start_unix_server(accept, path)
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                self.SCRIPT,
                env=_python_env(
                    GATEKEEPER_SOCKET=path,
                    GATEKEEPER_TOKEN="tok",
                    GATEKEEPER_PLUGIN_NAME="conf",
                    GATEKEEPER_PLUGIN_TYPE="modifier",
                    GATEKEEPER_PROTOCOL_VERSION="1",
                ),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            try:
                reader, writer = await asyncio.wait_for(connected.get(), 20)

                async def send(message: dict[str, Any]) -> None:
                    writer.write(json.dumps(message).encode() + b"\n")
                    await writer.drain()

                async def read() -> dict[str, Any]:
                    return json.loads(await asyncio.wait_for(reader.readline(), 10))  # type: ignore[no-any-return]

                handshake = await read()
                self.assertEqual(handshake["params"]["token"], "tok")
                await send(
                    {
                        "jsonrpc": "2.0",
                        "id": handshake["id"],
                        "result": {"protocol_version": 1, "name": "conf", "type": "modifier"},
                    }
                )
                await send(
                    {"jsonrpc": "2.0", "id": 1, "method": "configure", "params": {"config": {}}}
                )
                self.assertEqual(await read(), {"jsonrpc": "2.0", "id": 1, "result": {}})
                await send(
                    {
                        "jsonrpc": "2.0",
                        "id": 2,
                        "method": "modify_request",
                        "params": {"request": REQUEST},
                    }
                )
                answer = await read()
                self.assertEqual(
                    answer["result"]["patch"]["set_headers"]["x-conformance-sdk"], "python"
                )
                await send({"jsonrpc": "2.0", "id": 3, "method": "stop", "params": {}})
                self.assertEqual(await read(), {"jsonrpc": "2.0", "id": 3, "result": {}})
                self.assertEqual(await asyncio.wait_for(reader.readline(), 10), b"")
                stdout, stderr = await asyncio.wait_for(process.communicate(), 10)
                self.assertEqual(process.returncode, 0, stderr.decode())
                self.assertEqual(stdout, b"")
                writer.close()
            finally:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
                server.close()
                await server.wait_closed()

        with tempfile.TemporaryDirectory() as directory:
            run(lambda: test(directory), timeout=60)


if __name__ == "__main__":
    unittest.main()
