"""The test host (gatekeeper_plugin.testing) and the request and config helpers: every case of
plugin-sdk/conformance/testhost.json, then the host's lifecycle, calls, checks and manager."""

from __future__ import annotations

import asyncio
import json
import unittest
from typing import Any
from unittest import mock

from harness import PYTHON_SDK

from gatekeeper_plugin import (
    LoadBalancerPlugin,
    MetricPlugin,
    ModifierPlugin,
    RouterPlugin,
    RpcError,
    ServeError,
    UpstreamPlugin,
    batch,
    codes,
    config_value,
    cookies,
    query_params,
)
from gatekeeper_plugin.testing import (
    AsyncPluginHost,
    BadResult,
    NotDeclared,
    PluginHost,
    make_error,
    make_request,
    make_response,
)

TESTHOST_JSON = PYTHON_SDK.parent / "conformance" / "testhost.json"
CASES = json.loads(TESTHOST_JSON.read_text(encoding="utf-8"))


def same(expected: dict[str, Any], actual: dict[str, Any]) -> str | None:
    """``None`` when ``actual`` has exactly the fields of ``expected`` (a ``null`` expected
    field: absent or ``null``), else what differs."""
    for key, value in expected.items():
        got = actual.get(key)
        if value is None and got is not None:
            return f"{key}: expected absent or null, got {got!r}"
        if value is not None and (key not in actual or got != value):
            return f"{key}: expected {value!r}, got {actual.get(key, '<absent>')!r}"
    extra = [k for k in actual if k not in expected and actual[k] is not None]
    return f"unexpected fields {extra}" if extra else None


class SharedCases(unittest.TestCase):
    """testhost.json, every case."""

    def test_make_request(self) -> None:
        self.assertTrue(CASES["make_request"])
        for case in CASES["make_request"]:
            with self.subTest(case["name"]):
                request = make_request(**case["args"])
                self.assertIsNone(same(case["expect"], dict(request)), request)

    def test_make_response(self) -> None:
        self.assertTrue(CASES["make_response"])
        for case in CASES["make_response"]:
            with self.subTest(case["name"]):
                response = make_response(**case["args"])
                self.assertIsNone(same(case["expect"], dict(response)), response)

    def test_cookies(self) -> None:
        self.assertTrue(CASES["cookies"])
        for case in CASES["cookies"]:
            with self.subTest(case["name"]):
                self.assertEqual(cookies({"headers": case["headers"]}), case["expect"])
                self.assertEqual(cookies(case["headers"]), case["expect"])

    def test_query(self) -> None:
        self.assertTrue(CASES["query"])
        for case in CASES["query"]:
            with self.subTest(case["name"]):
                self.assertEqual(query_params(case["query"]), case["expect"])
                self.assertEqual(query_params({"query": case["query"]}), case["expect"])

    def test_typed_config(self) -> None:
        self.assertTrue(CASES["typed_config"])
        for case in CASES["typed_config"]:
            with self.subTest(case["name"]):
                args = (case["config"], case["key"], case["type"])
                extra = {"default": case["default"]} if "default" in case else {}
                if "error" in case:
                    with self.assertRaises(RpcError) as caught:
                        config_value(*args, **extra)
                    self.assertEqual(caught.exception.code, codes.INVALID_PARAMS)
                    self.assertIn(case["error"], caught.exception.message)
                else:
                    value = config_value(*args, **extra)
                    self.assertEqual(value, case["expect"])
                    self.assertIs(type(value), type(case["expect"]))


class Greeter(ModifierPlugin):
    """Adds ``x-greeting`` from its config; answers 403 to ``/forbidden``; records its life."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.greeting = ""

    async def configure(self, config: dict[str, Any]) -> None:
        self.events.append("configure")
        if "invalid" in config:
            raise RpcError.invalid_params(f"bad: {config['invalid']}")
        self.greeting = config_value(config, "greeting", "string", default="hi")

    async def check(self, config: dict[str, Any]) -> None:
        self.events.append("check")

    async def start(self) -> None:
        self.events.append("start")

    async def stop(self) -> None:
        self.events.append("stop")

    async def modify_request(self, request: Any) -> Any:
        if request["path"] == "/forbidden":
            return {"response": {"status": 403, "headers": [], "body": "no"}}
        if request["path"] == "/fail":
            raise RpcError(codes.UNAVAILABLE, "not now")
        request["headers"].append(["x-greeting", self.greeting])
        return {"request": request}


class HostLifecycle(unittest.TestCase):
    def test_a_call_goes_through_the_whole_lifecycle_and_the_json_round_trip(self) -> None:
        plugin = Greeter()
        with PluginHost(plugin, type="modifier", config={"greeting": 5}) as host:
            self.assertEqual(plugin.events, ["configure", "start"])
            self.assertEqual(host.declared["hooks"], ["modify_request"])
            result = host.modify_request(make_request(path="/a"))
            denied = host.modify_request(make_request(path="/forbidden"))
            host.heartbeat()
        self.assertEqual(plugin.events, ["configure", "start", "stop"])
        # The SDK sends the returned request as a patch of what changed.
        self.assertEqual(result, {"patch": {"set_headers": {"x-greeting": "5"}}})
        self.assertEqual(denied["response"]["status"], 403)

    def test_check_mode_configures_with_check_and_never_starts(self) -> None:
        plugin = Greeter()
        with PluginHost(plugin, check=True):
            pass
        self.assertEqual(plugin.events, ["check", "stop"])

    def test_a_refused_config_raises_the_plugins_error_on_entry(self) -> None:
        plugin = Greeter()
        with self.assertRaises(RpcError) as caught:
            with PluginHost(plugin, config={"invalid": "x"}):
                self.fail("entered")
        self.assertEqual(caught.exception.code, codes.INVALID_PARAMS)
        self.assertEqual(caught.exception.message, "bad: x")
        self.assertNotIn("start", plugin.events)

    def test_the_wrong_type_fails_as_under_gatekeeper(self) -> None:
        with self.assertRaises(ServeError):
            with PluginHost(Greeter(), type="router"):
                self.fail("entered")

    def test_async_with(self) -> None:
        async def scenario() -> Any:
            async with AsyncPluginHost(Greeter()) as host:
                return await host.modify_request(make_request(path="/forbidden"))

        result = asyncio.run(asyncio.wait_for(scenario(), 10))
        self.assertEqual(result["response"]["body"], "no")

    def test_background_tasks_run_during_calls_and_are_cancelled_at_the_end(self) -> None:
        class Ticker(ModifierPlugin):
            def __init__(self) -> None:
                self.ticks = 0
                self.cancelled = False
                self.task: asyncio.Task[None] | None = None

            async def start(self) -> None:
                self.task = asyncio.create_task(self.tick())

            async def tick(self) -> None:
                try:
                    while True:
                        self.ticks += 1
                        await asyncio.sleep(0)
                except asyncio.CancelledError:
                    self.cancelled = True
                    raise

            async def modify_request(self, request: Any) -> Any:
                await asyncio.sleep(0.01)
                return {}

        plugin = Ticker()
        with PluginHost(plugin) as host:
            host.modify_request(make_request())
        self.assertGreater(plugin.ticks, 0)
        self.assertTrue(plugin.cancelled)

    def test_the_sync_host_refuses_to_run_inside_a_coroutine(self) -> None:
        async def scenario() -> None:
            with PluginHost(Greeter()):
                pass

        with self.assertRaisesRegex(RuntimeError, "AsyncPluginHost"):
            asyncio.run(scenario())


class HostChecks(unittest.TestCase):
    def test_an_error_answer_raises_the_plugins_error(self) -> None:
        with PluginHost(Greeter()) as host:
            with self.assertRaises(RpcError) as caught:
                host.modify_request(make_request(path="/fail"))
        self.assertEqual((caught.exception.code, caught.exception.message), (codes.UNAVAILABLE, "not now"))

    def test_a_hook_that_was_not_declared_is_refused(self) -> None:
        with PluginHost(Greeter()) as host:
            with self.assertRaisesRegex(NotDeclared, "modify_response"):
                host.modify_response(make_request(), make_response())

    def test_params_gatekeeper_never_sends_are_refused(self) -> None:
        with PluginHost(Greeter()) as host:
            with self.assertRaisesRegex(ValueError, "headers"):
                host.modify_request({"method": "GET", "path": "/", "headers": "nope"})

    def test_a_result_gatekeeper_refuses_raises_bad_result(self) -> None:
        class Wrong(RouterPlugin):
            async def route_request(self, request: Any) -> Any:
                return {"upstream": 42}

        # This SDK answers such a result with -32603 itself ...
        with PluginHost(Wrong()) as host:
            with self.assertRaises(RpcError) as caught:
                host.route_request(make_request())
        self.assertEqual(caught.exception.code, codes.INTERNAL_ERROR)
        self.assertIn("upstream", caught.exception.message)
        # ... and a plugin that sends it anyway (as an SDK without checks would) fails the host's.
        with mock.patch("gatekeeper_plugin.serve.hook_result", lambda m, c, v: v):
            with PluginHost(Wrong()) as host:
                with self.assertRaisesRegex(BadResult, "route_request.*upstream"):
                    host.route_request(make_request())

    def test_modify_error_response(self) -> None:
        class Json(ModifierPlugin):
            async def modify_error_response(self, request: Any, response: Any, error: Any) -> Any:
                return {"response": {"status": response["status"], "headers": [], "body": error["kind"]}}

        with PluginHost(Json()) as host:
            result = host.modify_error_response(
                make_request(), make_response(502), make_error("backend_unreachable", "refused")
            )
        self.assertEqual(result["response"], {"status": 502, "headers": [], "body": "backend_unreachable"})


class OtherTypes(unittest.TestCase):
    def test_a_loadbalancer_and_a_metric_plugin_get_their_hooks(self) -> None:
        class First(LoadBalancerPlugin):
            def __init__(self) -> None:
                self.backends: dict[str, list[str]] = {}

            async def add_backend(self, upstream_id: str, backend: Any) -> None:
                self.backends.setdefault(upstream_id, []).append(backend["id"])

            async def remove_backend(self, upstream_id: str, backend_id: str) -> None:
                self.backends[upstream_id].remove(backend_id)

            async def get_backend(self, upstream_id: str, request: Any) -> Any:
                ids = self.backends.get(upstream_id) or [None]
                return {"backend_id": ids[0]}

        with PluginHost(First()) as host:
            host.add_backend("api", {"id": "a", "address": "http://127.0.0.1:9"})
            host.add_backend("api", {"id": "b", "address": "http://127.0.0.1:10"})
            host.remove_backend("api", "a")
            picked = host.get_backend("api", make_request())
            none = host.get_backend("other", make_request())
        self.assertEqual(picked, {"backend_id": "b"})
        self.assertEqual(none, {"backend_id": None})

        class Counter(MetricPlugin):
            def __init__(self) -> None:
                self.events: list[Any] = []

            async def event_metric(self, events: list[Any]) -> None:
                self.events.extend(events)

        counter = Counter()
        with PluginHost(counter) as host:
            host.event_metric([{"time_ms": 1, "name": "app_started", "attributes": {}}])
        self.assertEqual([e["name"] for e in counter.events], ["app_started"])


class Registry(UpstreamPlugin):
    async def start(self) -> None:
        await self.manager.add_upstream({"id": "api", "name": "api", "prefixes": ["api"]})
        await self.manager.apply_batch(
            [batch.add_backend("api", {"id": "0", "address": "http://127.0.0.1:9"})]
        )
        await self.report_config_error("tokens.txt: line 3")


class HostManager(unittest.TestCase):
    def test_manager_calls_are_answered_and_recorded(self) -> None:
        with PluginHost(Registry(), type="upstream") as host:
            calls = list(host.manager_calls)
            reports = list(host.config_status)
        self.assertEqual([c["method"] for c in calls], ["add_upstream", "apply_batch"])
        self.assertEqual(calls[0]["params"]["upstream"]["prefixes"], ["api"])
        self.assertEqual(reports, ["tokens.txt: line 3"])

    def test_a_manager_answer_can_refuse(self) -> None:
        def refuse(method: str, params: Any) -> Any:
            raise RpcError(codes.CONFLICT, f"{method}: exists")

        with self.assertRaises(RpcError) as caught:
            with PluginHost(Registry(), manager=refuse):
                self.fail("entered")
        self.assertEqual(caught.exception.code, codes.CONFLICT)


class StartupWarnings(unittest.TestCase):
    def warnings_of(self, plugin: Any) -> list[str]:
        with self.assertLogs("gatekeeper_plugin", "WARNING") as logs:
            with PluginHost(plugin):
                pass
        return [record.getMessage() for record in logs.records]

    def test_a_misspelled_hook_warns(self) -> None:
        class Typo(ModifierPlugin):
            async def modify_response(self, request: Any, response: Any) -> Any:
                return {}

            async def modify_requets(self, request: Any) -> Any:
                return {}

        warnings = self.warnings_of(Typo())
        self.assertTrue(any("`modify_requets`" in w and "`modify_request`" in w for w in warnings), warnings)

    def test_a_hook_of_another_type_warns(self) -> None:
        class Confused(ModifierPlugin):
            async def modify_request(self, request: Any) -> Any:
                return {}

            async def route_request(self, request: Any) -> Any:
                return {}

        warnings = self.warnings_of(Confused())
        self.assertTrue(any("`route_request` is a hook of router plugins" in w for w in warnings), warnings)

    def test_no_hooks_warns(self) -> None:
        warnings = self.warnings_of(ModifierPlugin())
        self.assertTrue(any("declares no hooks" in w for w in warnings), warnings)

    def test_a_plugin_without_mistakes_does_not_warn(self) -> None:
        with self.assertNoLogs("gatekeeper_plugin", "WARNING"):
            with PluginHost(Greeter()):
                pass
            with PluginHost(Registry(), type="upstream"):
                pass


if __name__ == "__main__":
    unittest.main()
