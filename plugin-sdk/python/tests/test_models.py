"""The header helpers and the data shapes."""

from __future__ import annotations

import unittest

import harness  # noqa: F401 - puts the SDK on sys.path

from gatekeeper_plugin import (
    LOADBALANCER_HOOKS,
    METRIC_HOOKS,
    MODIFIER_HOOKS,
    PLUGIN_CLASSES,
    PLUGIN_TYPES,
    ROUTER_HOOKS,
    UPSTREAM_HOOKS,
    Headers,
    body_bytes,
    cached,
    header,
    remove_header,
    set_body_bytes,
    set_header,
)


class BodyHelpers(unittest.TestCase):
    def test_binary_bodies_round_trip(self) -> None:
        data = bytes(range(256))
        request = {"method": "POST", "path": "/"}
        set_body_bytes(request, data)
        self.assertEqual(body_bytes(request), data)
        self.assertIsInstance(request["body_base64"], str)

    def test_text_body_wins_and_setting_bytes_removes_it(self) -> None:
        response = {"status": 200, "body": "text", "body_base64": "aGk="}
        self.assertEqual(body_bytes(response), b"text")
        set_body_bytes(response, b"")
        self.assertNotIn("body", response)
        self.assertEqual(body_bytes(response), b"")

    def test_absent_body_is_none_and_invalid_base64_raises(self) -> None:
        self.assertIsNone(body_bytes({"status": 200, "body_omitted": True}))
        with self.assertRaises(ValueError):
            body_bytes({"body_base64": "not base64!"})


class CacheHelper(unittest.TestCase):
    def test_cached_adds_the_instruction_and_keeps_the_decision(self) -> None:
        denied = {"response": {"status": 401, "headers": []}}
        result = cached(denied, 30_000, ("header:authorization", "method"))
        self.assertEqual(result["response"], denied["response"])
        self.assertEqual(result["cache"], {"ttl_ms": 30000, "key": ["header:authorization", "method"]})
        self.assertNotIn("cache", denied)
        with self.assertRaises(TypeError):
            cached({}, 1000, "header:authorization")


class HeaderHelpers(unittest.TestCase):
    def test_header_finds_the_first_value_case_insensitively(self) -> None:
        headers: Headers = [["host", "a"], ["X-Id", "1"], ["x-id", "2"]]
        self.assertEqual(header(headers, "x-id"), "1")
        self.assertEqual(header(headers, "X-ID"), "1")
        self.assertEqual(header(headers, "Host"), "a")

    def test_header_is_none_when_absent(self) -> None:
        self.assertIsNone(header([], "x"))
        self.assertIsNone(header([["a", "1"]], "b"))

    def test_header_accepts_tuples(self) -> None:
        self.assertEqual(header([("a", "1")], "A"), "1")  # type: ignore[list-item]

    def test_set_header_replaces_every_value_and_appends_lower_case(self) -> None:
        headers: Headers = [["a", "1"], ["b", "2"], ["A", "3"]]
        set_header(headers, "A", "4")
        self.assertEqual(headers, [["b", "2"], ["a", "4"]])

    def test_set_header_adds_a_new_header_at_the_end(self) -> None:
        headers: Headers = [["host", "h"]]
        set_header(headers, "x-new", "v")
        self.assertEqual(headers, [["host", "h"], ["x-new", "v"]])

    def test_set_header_works_in_place(self) -> None:
        request = {"headers": [["a", "1"]]}
        alias = request["headers"]
        set_header(request["headers"], "a", "2")
        self.assertIs(request["headers"], alias)
        self.assertEqual(alias, [["a", "2"]])

    def test_remove_header_removes_every_value_in_place(self) -> None:
        headers: Headers = [["a", "1"], ["B", "2"], ["b", "3"], ["c", "4"]]
        alias = headers
        remove_header(headers, "b")
        self.assertIs(headers, alias)
        self.assertEqual(headers, [["a", "1"], ["c", "4"]])
        remove_header(headers, "missing")
        self.assertEqual(headers, [["a", "1"], ["c", "4"]])


class HookLists(unittest.TestCase):
    def test_each_type_has_its_base_class_and_hooks(self) -> None:
        self.assertEqual(set(PLUGIN_CLASSES), set(PLUGIN_TYPES))
        expected = {
            "upstream": UPSTREAM_HOOKS,
            "modifier": MODIFIER_HOOKS,
            "router": ROUTER_HOOKS,
            "loadbalancer": LOADBALANCER_HOOKS,
            "metric": METRIC_HOOKS,
        }
        for plugin_type, cls in PLUGIN_CLASSES.items():
            with self.subTest(plugin_type=plugin_type):
                self.assertEqual(cls.plugin_type, plugin_type)
                self.assertEqual(cls.type_hooks, expected[plugin_type])
                self.assertEqual(set(cls.hook_table), set(expected[plugin_type]))
                for hook in cls.type_hooks:
                    self.assertTrue(callable(getattr(cls, hook)), hook)
                    self.assertTrue(getattr(cls, hook).__doc__, f"{hook} has no docstring")


if __name__ == "__main__":
    unittest.main()
