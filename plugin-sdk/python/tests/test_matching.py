"""The conformance matching rules the wire test applies (tests/harness.py), and a check that
the wire runner fails a case whose expectation is not met."""

from __future__ import annotations

import asyncio
import copy
import json
import unittest

from harness import WIRE_JSON, assignment, mismatch

from test_wire import run_case


class Matching(unittest.TestCase):
    def test_objects_match_as_subsets(self) -> None:
        self.assertIsNone(mismatch({"a": 1}, {"a": 1, "b": 2}))
        self.assertIsNone(mismatch({"a": {"b": 1}}, {"a": {"b": 1, "c": 2}}))
        self.assertIsNotNone(mismatch({"a": 1}, {"b": 1}))
        self.assertIsNotNone(mismatch({"a": 1}, {"a": 2}))
        self.assertIsNotNone(mismatch({"a": {}}, {"a": []}))

    def test_any_matches_a_present_value_only(self) -> None:
        self.assertIsNone(mismatch({"a": "$any"}, {"a": None}))
        self.assertIsNone(mismatch({"a": "$any"}, {"a": {"x": 1}}))
        self.assertIsNotNone(mismatch({"a": "$any"}, {}))

    def test_null_matches_absent_or_null(self) -> None:
        self.assertIsNone(mismatch({"a": None}, {}))
        self.assertIsNone(mismatch({"a": None}, {"a": None}))
        self.assertIsNotNone(mismatch({"a": None}, {"a": "x"}))

    def test_arrays_compare_exactly(self) -> None:
        self.assertIsNone(mismatch([1, 2], [1, 2]))
        self.assertIsNotNone(mismatch([1, 2], [2, 1]))
        self.assertIsNotNone(mismatch([1], [1, 2]))
        self.assertIsNotNone(mismatch([], [1]))

    def test_contains_matches_elements_in_any_order(self) -> None:
        pattern = {"$contains": [["b", "2"], ["a", "1"]]}
        self.assertIsNone(mismatch(pattern, [["a", "1"], ["c", "3"], ["b", "2"]]))
        self.assertIsNotNone(mismatch(pattern, [["a", "1"]]))
        self.assertIsNotNone(mismatch(pattern, "not an array"))
        self.assertIsNone(mismatch({"$contains": []}, []))
        self.assertIsNotNone(mismatch({"$contains": []}, {}))

    def test_contains_needs_a_distinct_element_for_each(self) -> None:
        self.assertIsNotNone(mismatch({"$contains": ["a", "a"]}, ["a"]))
        self.assertIsNone(mismatch({"$contains": ["a", "a"]}, ["a", "b", "a"]))

    def test_scalars_keep_their_json_type(self) -> None:
        self.assertIsNotNone(mismatch(1, True))
        self.assertIsNotNone(mismatch(True, 1))
        self.assertIsNotNone(mismatch("1", 1))
        self.assertIsNone(mismatch(1, 1.0))

    def test_unordered_assignment_backtracks(self) -> None:
        expected = [{"id": "$any"}, {"id": 7}]
        self.assertEqual(assignment(expected, [{"id": 7}, {"id": 8}]), [1, 0])
        self.assertIsNone(assignment(expected, [{"id": 8}, {"id": 9}]))


class RunnerFails(unittest.TestCase):
    """The wire runner is not vacuous: a case whose expectation is changed fails."""

    def test_a_changed_expectation_fails(self) -> None:
        cases = json.loads(WIRE_JSON.read_text(encoding="utf-8"))
        case = next(c for c in cases if c["plugin_type"] == "modifier")
        broken = copy.deepcopy(case)
        expects = [s for s in broken["steps"] if "expect" in s]
        expects[-1]["expect"]["jsonrpc"] = "1.0"
        with self.assertRaises(AssertionError):
            asyncio.run(asyncio.wait_for(run_case(broken), 10))

    def test_a_changed_hook_list_fails(self) -> None:
        cases = json.loads(WIRE_JSON.read_text(encoding="utf-8"))
        case = next(c for c in cases if c["plugin_type"] == "router")
        broken = copy.deepcopy(case)
        broken["steps"][0]["expect"]["params"]["hooks"] = {"$contains": ["modify_request"]}
        with self.assertRaises(AssertionError):
            asyncio.run(asyncio.wait_for(run_case(broken), 10))


if __name__ == "__main__":
    unittest.main()
