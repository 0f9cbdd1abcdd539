"""The apply_batch builders and the refused changes of a refused batch's error."""

from __future__ import annotations

import unittest

from harness import PYTHON_SDK  # noqa: F401 - puts the SDK on sys.path

from gatekeeper_plugin import RpcError, batch, protocol  # noqa: E402


class BatchTest(unittest.TestCase):
    def test_builders_make_the_changes_the_schema_accepts(self) -> None:
        changes = [
            batch.add_upstream({"id": "api", "prefixes": ["api"]}),
            batch.add_backend("api", {"id": "a", "address": "http://127.0.0.1:1"}),
            batch.remove_backend("api", "a"),
            batch.remove_upstream("api"),
        ]
        self.assertEqual(
            [next(iter(c)) for c in changes],
            ["add_upstream", "add_backend", "remove_backend", "remove_upstream"],
        )
        protocol.check_params("apply_batch", {"changes": changes, "replace": False})
        with self.assertRaises(protocol.SchemaError):
            protocol.check_params(
                "apply_batch", {"changes": [{**changes[0], **changes[3]}]}
            )

    def test_refused_reads_the_errors_data(self) -> None:
        error = RpcError(
            -32010,
            "1 of 2 changes refused, nothing applied; change 1: unknown upstream `x`",
            {"total": 2, "refused": [{"index": 1, "code": -32010, "message": "unknown upstream `x`"}]},
        )
        self.assertEqual(
            batch.refused(error),
            [{"index": 1, "code": -32010, "message": "unknown upstream `x`"}],
        )
        self.assertEqual(batch.refused(RpcError(-32602, "change 0: bad")), [])


if __name__ == "__main__":
    unittest.main()
