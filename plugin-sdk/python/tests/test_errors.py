"""How hook outcomes and bad messages become JSON-RPC errors, and how manager calls fail."""

from __future__ import annotations

import asyncio
import logging
import unittest
from collections.abc import Awaitable, Callable
from typing import Any

from harness import FakeProxy

from gatekeeper_plugin import (
    LoadBalancerPlugin,
    ModifierPlugin,
    Request,
    RouterPlugin,
    RpcError,
    UpstreamPlugin,
    codes,
)

REQUEST: Request = {"method": "GET", "path": "/x", "prefixless_path": "/x", "headers": []}


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 10))


async def started(plugin: Any) -> FakeProxy:
    proxy = await FakeProxy.start(plugin)
    await proxy.handshake()
    return proxy


class Failing(ModifierPlugin):
    """A modifier whose hooks fail in the ways a test names in the request's path."""

    async def modify_request(self, request: Request) -> Any:
        path = request["path"]
        if path == "/rpc":
            raise RpcError(-32099, "custom failure")
        if path == "/unavailable":
            raise RpcError.unavailable("not ready")
        if path == "/value":
            raise ValueError("bad value")
        if path == "/keyerror":
            return {"request": {**request, "x": request["context"]["missing"]}}
        if path == "/typeerror":
            return len(5)  # type: ignore[arg-type]
        if path == "/string":
            return "not a dict"
        if path == "/request-itself":
            return request
        if path == "/int-header":
            return {"request": {**request, "headers": [["x-count", 5]]}}
        if path == "/bad-status":
            return {"response": {"status": "200", "headers": []}}
        if path == "/unencodable":
            return {"request": {**request, "context": {"s": {1, 2}}}}
        if path == "/none":
            return None
        return {}


class FirstBackend(LoadBalancerPlugin):
    async def get_backend(self, upstream_id: str, request: Request) -> Any:
        return {"backend_id": "0"}


class HookErrors(unittest.TestCase):
    def call(self, path: str) -> dict[str, Any]:
        result: dict[str, Any] = {}

        async def test() -> None:
            proxy = await started(Failing())
            try:
                request = {**REQUEST, "path": path}
                result.update(await proxy.call(1, "modify_request", {"request": request}))
            finally:
                await proxy.shutdown()

        run(test)
        return result

    def assert_error(self, path: str, code: int, contains: str = "") -> None:
        answer = self.call(path)
        self.assertEqual(answer.get("id"), 1)
        self.assertNotIn("result", answer)
        self.assertEqual(answer["error"]["code"], code, answer)
        self.assertIn(contains, answer["error"]["message"])

    def test_rpc_error_keeps_its_code_and_message(self) -> None:
        with self.assertLogs("gatekeeper_plugin", logging.WARNING):
            self.assert_error("/rpc", -32099, "custom failure")
        with self.assertLogs("gatekeeper_plugin", logging.WARNING):
            self.assert_error("/unavailable", codes.UNAVAILABLE, "not ready")

    def test_other_exceptions_are_internal_errors_logged_with_traceback(self) -> None:
        with self.assertLogs("gatekeeper_plugin", logging.ERROR) as logs:
            self.assert_error("/value", codes.INTERNAL_ERROR, "bad value")
        self.assertTrue(any(r.exc_info and r.exc_info[0] is ValueError for r in logs.records))

    def test_key_and_type_errors_inside_a_hook_are_internal_not_bad_params(self) -> None:
        with self.assertLogs("gatekeeper_plugin", logging.ERROR):
            self.assert_error("/keyerror", codes.INTERNAL_ERROR, "KeyError")
        with self.assertLogs("gatekeeper_plugin", logging.ERROR):
            self.assert_error("/typeerror", codes.INTERNAL_ERROR, "TypeError")

    def test_results_the_protocol_cannot_carry_are_internal_errors(self) -> None:
        for path, contains in [
            ("/string", "must return a dict"),
            ("/request-itself", "{'request': request}"),
            ("/int-header", "headers"),
            ("/bad-status", "status"),
            ("/unencodable", "set"),
        ]:
            with self.subTest(path=path), self.assertLogs("gatekeeper_plugin", logging.ERROR):
                self.assert_error(path, codes.INTERNAL_ERROR, contains)

    def test_none_and_empty_results_are_empty_objects(self) -> None:
        self.assertEqual(self.call("/none")["result"], {})
        self.assertEqual(self.call("/fine")["result"], {})


class ParamsAndMethods(unittest.TestCase):
    def test_bad_params_are_invalid_params(self) -> None:
        cases: list[tuple[str, Any, str]] = [
            ("modify_request", {}, "missing field `request`"),
            ("modify_request", {"request": "GET /"}, "`request` must be an object"),
            ("modify_request", {"request": None}, "`request` must be an object"),
            ("modify_request", [REQUEST], "params must be an object"),
            ("configure", {"config": 5}, "`config` must be an object"),
        ]

        async def test() -> None:
            proxy = await started(Failing())
            try:
                for number, (method, params, message) in enumerate(cases):
                    with self.subTest(method=method, params=params):
                        answer = await proxy.call(number, method, params)
                        self.assertEqual(answer["id"], number)
                        self.assertEqual(answer["error"]["code"], codes.INVALID_PARAMS)
                        self.assertIn(message, answer["error"]["message"])
            finally:
                await proxy.shutdown()

        with self.assertLogs("gatekeeper_plugin", logging.WARNING):
            run(test)

    def test_bad_params_of_other_types(self) -> None:
        async def test() -> None:
            proxy = await started(FirstBackend())
            try:
                answer = await proxy.call(1, "get_backend", {"upstream_id": 5, "request": REQUEST})
                self.assertEqual(answer["error"]["code"], codes.INVALID_PARAMS)
                self.assertIn("upstream_id", answer["error"]["message"])
            finally:
                await proxy.shutdown()

        with self.assertLogs("gatekeeper_plugin", logging.WARNING):
            run(test)

    def test_missing_params_read_as_an_empty_object(self) -> None:
        async def test() -> None:
            proxy = await started(Failing())
            try:
                self.assertEqual((await proxy.call(1, "configure"))["result"], {})
                self.assertEqual((await proxy.call(2, "heartbeat", None))["result"], {})
            finally:
                await proxy.shutdown()

        run(test)

    def test_unknown_methods_and_undeclared_hooks_are_method_not_found(self) -> None:
        class OnlyResponses(ModifierPlugin):
            async def modify_response(self, request: Request, response: Any) -> Any:
                return {}

        async def test() -> None:
            proxy = await started(OnlyResponses())
            try:
                for number, method in enumerate(["modify_request", "route_request", "nope"]):
                    answer = await proxy.call(number, method, {"request": REQUEST})
                    self.assertEqual(answer["error"]["code"], codes.METHOD_NOT_FOUND, method)
                self.assertIn(
                    "not declared", (await proxy.call(9, "modify_request", {}))["error"]["message"]
                )
            finally:
                await proxy.shutdown()

        with self.assertLogs("gatekeeper_plugin", logging.WARNING):
            run(test)


class BadMessages(unittest.TestCase):
    def test_bad_lines_get_errors_with_a_null_id_and_serving_goes_on(self) -> None:
        async def test() -> None:
            proxy = await started(Failing())
            try:
                await proxy.write_line(b"{not json\n")
                answer = await proxy.read()
                self.assertEqual((answer["id"], answer["error"]["code"]), (None, codes.PARSE_ERROR))
                for line in [
                    b'{"id":1,"method":"heartbeat"}\n',
                    b"[1,2]\n",
                    b'{"jsonrpc":"2.0"}\n',
                    b'{"jsonrpc":"2.0","id":null,"method":"heartbeat"}\n',
                ]:
                    await proxy.write_line(line)
                    answer = await proxy.read()
                    self.assertEqual(
                        (answer["id"], answer["error"]["code"]), (None, codes.INVALID_REQUEST), line
                    )
                # Empty lines, CRLF and notifications are fine; notifications get no answer.
                await proxy.write_line(b"\n  \r\n")
                await proxy.write_line(b'{"jsonrpc":"2.0","method":"heartbeat"}\n')
                await proxy.write_line(b'{"jsonrpc":"2.0","id":5,"method":"heartbeat"}\r\n')
                self.assertEqual(await proxy.read(), {"jsonrpc": "2.0", "id": 5, "result": {}})
            finally:
                await proxy.shutdown()

        with self.assertLogs("gatekeeper_plugin", logging.WARNING):
            run(test)


class Pusher(UpstreamPlugin):
    """Pushes one upstream in start; records what the manager raised."""

    def __init__(self, timeout: float | None = None) -> None:
        self.raised: RpcError | None = None
        self.timeout = timeout

    async def start(self) -> None:
        if self.timeout is not None:
            self.manager.timeout = self.timeout
        try:
            await self.manager.add_upstream({"id": "api", "prefixes": ["api"]})
        except RpcError as exc:
            self.raised = exc
            raise


class ManagerErrors(unittest.TestCase):
    def test_the_proxys_error_is_raised_with_its_code_and_fails_start(self) -> None:
        plugin = Pusher()

        async def test() -> None:
            proxy = await started(plugin)
            try:
                await proxy.send({"jsonrpc": "2.0", "id": 1, "method": "start", "params": {}})
                call = await proxy.read()
                self.assertEqual(call["method"], "add_upstream")
                self.assertEqual(call["params"], {"upstream": {"id": "api", "prefixes": ["api"]}})
                await proxy.send(
                    {
                        "jsonrpc": "2.0",
                        "id": call["id"],
                        "error": {"code": codes.UNKNOWN_UPSTREAM, "message": "no"},
                    }
                )
                answer = await proxy.read()
                self.assertEqual(answer["id"], 1)
                self.assertEqual(answer["error"], {"code": codes.UNKNOWN_UPSTREAM, "message": "no"})
            finally:
                await proxy.shutdown()

        with self.assertLogs("gatekeeper_plugin", logging.WARNING):
            run(test)
        assert plugin.raised is not None
        self.assertEqual(
            (plugin.raised.code, plugin.raised.message), (codes.UNKNOWN_UPSTREAM, "no")
        )

    def test_no_answer_is_an_internal_error(self) -> None:
        plugin = Pusher(timeout=0.05)

        async def test() -> None:
            proxy = await started(plugin)
            try:
                await proxy.send({"jsonrpc": "2.0", "id": 1, "method": "start", "params": {}})
                call = await proxy.read()
                answer = await proxy.read()  # start fails without the answer
                self.assertEqual(answer["error"]["code"], codes.INTERNAL_ERROR)
                self.assertIn("no answer", answer["error"]["message"])
                # A late answer is dropped quietly; serving goes on.
                await proxy.send({"jsonrpc": "2.0", "id": call["id"], "result": {}})
                self.assertEqual((await proxy.call(2, "heartbeat", {}))["result"], {})
            finally:
                await proxy.shutdown()

        with self.assertLogs("gatekeeper_plugin", logging.WARNING):
            run(test)
        assert plugin.raised is not None
        self.assertEqual(plugin.raised.code, codes.INTERNAL_ERROR)

    def test_a_closed_connection_fails_waiting_calls(self) -> None:
        plugin = Pusher()

        async def test() -> None:
            proxy = await started(plugin)
            await proxy.send({"jsonrpc": "2.0", "id": 1, "method": "start", "params": {}})
            await proxy.read()
            await proxy.close()
            await proxy.finished()

        run(test)
        # The task answering `start` was cancelled, or saw the connection close.
        if plugin.raised is not None:
            self.assertEqual(plugin.raised.code, codes.INTERNAL_ERROR)

    def test_manager_outside_serving_is_a_runtime_error(self) -> None:
        with self.assertRaises(RuntimeError):
            Pusher().manager  # noqa: B018

    def test_router_is_not_given_a_manager(self) -> None:
        self.assertFalse(hasattr(RouterPlugin(), "manager"))


class RpcErrorObject(unittest.TestCase):
    def test_fields_and_constructors(self) -> None:
        error = RpcError(-32010, "unknown upstream `api`", {"id": "api"})
        self.assertEqual(
            error.to_object(),
            {"code": -32010, "message": "unknown upstream `api`", "data": {"id": "api"}},
        )
        self.assertIn("-32010", str(error))
        self.assertEqual(RpcError.invalid_params("x").code, codes.INVALID_PARAMS)
        self.assertEqual(RpcError.internal("x").code, codes.INTERNAL_ERROR)
        self.assertEqual(
            RpcError.unavailable("x").to_object(), {"code": codes.UNAVAILABLE, "message": "x"}
        )


if __name__ == "__main__":
    unittest.main()
