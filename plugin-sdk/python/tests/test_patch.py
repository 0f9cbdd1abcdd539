"""The patches the SDK computes between the request (or response) a hook got and the one it
returned, and when it sends the whole value instead."""

from __future__ import annotations

import copy
import unittest

from gatekeeper_plugin import patch
from gatekeeper_plugin.patch import as_patch, request_patch, response_patch

REQUEST = {
    "listener": "http",
    "remote_addr": "127.0.0.1:1",
    "method": "GET",
    "host": "h",
    "path": "/a",
    "prefixless_path": "/a",
    "headers": [["a", "1"], ["b", "2"], ["b", "3"], ["drop", "x"]],
    "context": {"gone": 1},
}


class RequestPatches(unittest.TestCase):
    def test_only_what_changed_is_sent(self) -> None:
        returned = copy.deepcopy(REQUEST)
        returned["headers"] = [["a", "changed"], ["b", "2"], ["b", "3"], ["new", "n"]]
        returned["context"] = {"k": 1}
        returned["query"] = "q=1"
        self.assertEqual(
            request_patch(REQUEST, returned),
            {
                "set_headers": {"a": "changed", "new": "n"},
                "remove_headers": ["drop"],
                "query": "q=1",
                "context": {"k": 1, "gone": None},
            },
        )
        self.assertEqual(request_patch(REQUEST, copy.deepcopy(REQUEST)), {})

    def test_what_a_patch_cannot_carry_sends_the_whole_request(self) -> None:
        for change in (
            {"body_base64": "bmV3"},
            {"host": "other"},
            {"context": {"gone": None}},
            {"headers": [["bad name", "x"]]},
            {"headers": [["a", "line\nbreak"]]},
        ):
            returned = {**copy.deepcopy(REQUEST), **change}
            self.assertIsNone(request_patch(REQUEST, returned), change)
            result = {"request": returned, "cache": {"ttl_ms": 1, "key": ["path"]}}
            self.assertIs(as_patch("request", REQUEST, result), result)

    def test_a_result_keeps_its_other_members(self) -> None:
        returned = copy.deepcopy(REQUEST)
        returned["headers"].append(["x", "1"])
        cache = {"ttl_ms": 1, "key": ["path"]}
        self.assertEqual(
            as_patch("request", REQUEST, {"request": returned, "cache": cache}),
            {"patch": {"set_headers": {"x": "1"}}, "cache": cache},
        )
        self.assertEqual(as_patch("request", REQUEST, {"request": REQUEST}), {})

    def test_an_explicit_patch_is_sent_as_it_is(self) -> None:
        self.assertEqual(patch(query=None), {"patch": {"query": None}})
        explicit = patch(set_headers={"x": "1"})
        self.assertIs(as_patch("request", REQUEST, explicit), explicit)


class ResponsePatches(unittest.TestCase):
    def test_status_and_headers_are_a_patch_and_a_body_is_not(self) -> None:
        sent = {"status": 200, "headers": [["server", "s"]]}
        self.assertEqual(
            response_patch(sent, {"status": 203, "headers": []}),
            {"remove_headers": ["server"], "status": 203},
        )
        self.assertIsNone(response_patch(sent, {**sent, "body": "new"}))
        self.assertIsNone(response_patch(sent, {**sent, "status": 1000}))


if __name__ == "__main__":
    unittest.main()
