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


class SnapshotsAndChecks(unittest.TestCase):
    """What the SDK keeps of the request it gave a hook, and how the hook's answer is checked."""

    def test_a_snapshot_does_not_see_changes_made_in_place(self) -> None:
        from gatekeeper_plugin.patch import snapshot

        request = copy.deepcopy(REQUEST)
        request["context"] = {}
        kept = snapshot(request)
        request["headers"][0][1] = "changed in place"
        request["headers"].append(["new", "n"])
        request["context"]["k"] = "v"
        self.assertEqual(
            request_patch(kept, request),
            {"set_headers": {"a": "changed in place", "new": "n"}, "context": {"k": "v"}},
        )

    def test_a_bad_field_in_a_returned_request_is_named_as_returned(self) -> None:
        import asyncio

        from gatekeeper_plugin import ModifierPlugin
        from gatekeeper_plugin.plugin import InvalidResult
        from gatekeeper_plugin.serve import dispatch

        class BadPath(ModifierPlugin):
            async def modify_request(self, request):  # type: ignore[no-untyped-def]
                request["path"] = 42
                return {"request": request}

        params = {"request": copy.deepcopy(REQUEST)}
        with self.assertRaises(InvalidResult) as caught:
            asyncio.run(dispatch(BadPath(), frozenset(["modify_request"]), "modify_request", params))
        self.assertIn("request.path", str(caught.exception))
