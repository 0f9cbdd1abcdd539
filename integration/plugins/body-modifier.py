#!/usr/bin/env python3
"""A modifier that wants bodies (Python SDK), for integration/bodies.bats.

It declares ``bodies = ("modify_request", "modify_response")``. What it does is chosen by the
request header ``x-body-action``:

- ``upper``: replaces the request body with its upper-case version;
- ``double``: replaces the request body with itself twice (a new length);
- ``reencode``: decodes the request body and sets it again (a round trip through the plugin);
- ``rewrite-response``: replaces the response body with ``rewritten:`` + the backend's body
  (or ``rewritten without body`` when the body was omitted);
- anything else or absent: changes no body.

It always reports what it saw as response headers: ``x-plugin-request-bytes`` (the request body's
length in ``modify_request``, or ``none``), ``x-plugin-response-bytes`` (the response body's
length in ``modify_response``, or ``none``) and ``x-plugin-body-omitted`` (``true``/``false``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

_SDK = Path(__file__).resolve().parents[2] / "plugin-sdk" / "python"
sys.path.insert(0, str(_SDK))

from gatekeeper_plugin import (  # noqa: E402
    ModifierPlugin,
    body_bytes,
    header,
    serve,
    set_body_bytes,
    set_header,
)


class BodyModifier(ModifierPlugin):
    bodies = ("modify_request", "modify_response")

    async def modify_request(self, request: Any) -> Any:
        body = body_bytes(request)
        request["context"]["request_bytes"] = "none" if body is None else str(len(body))
        action = header(request["headers"], "x-body-action")
        if body is not None and action == "upper":
            set_body_bytes(request, body.upper())
        elif body is not None and action == "double":
            set_body_bytes(request, body + body)
        elif body is not None and action == "reencode":
            set_body_bytes(request, body)
        else:
            request.pop("body_base64", None)  # absent: the body is unchanged
        return {"request": request}

    async def modify_response(self, request: Any, response: Any) -> Any:
        body = body_bytes(response)
        headers = response["headers"]
        set_header(headers, "x-plugin-request-bytes", request["context"].get("request_bytes", "none"))
        set_header(headers, "x-plugin-response-bytes", "none" if body is None else str(len(body)))
        set_header(headers, "x-plugin-body-omitted", str(response.get("body_omitted", False)).lower())
        if header(request["headers"], "x-body-action") == "rewrite-response":
            if body is None:
                set_body_bytes(response, b"rewritten without body")
            else:
                set_body_bytes(response, b"rewritten:" + body)
        return {"response": response}


if __name__ == "__main__":
    serve(BodyModifier())
