#!/usr/bin/env python3
"""Benchmark plugin: a Python modifier (the Python SDK) with one hook, `modify_request`, that
adds one header to every request. scripts/bench.sh runs it on every request."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "plugin-sdk", "python"))

from gatekeeper_plugin import ModifierPlugin, serve, set_header  # noqa: E402


class AddHeader(ModifierPlugin):
    async def modify_request(self, request):
        set_header(request["headers"], "x-bench", "python")
        return {"request": request}


if __name__ == "__main__":
    serve(AddHeader())
