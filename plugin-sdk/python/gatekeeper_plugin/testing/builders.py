"""Request and response builders for tests: :func:`make_request` and :func:`make_response`
build what gatekeeper sends a hook, with the defaults gatekeeper would fill in (the rules are
shared by every SDK: plugin-sdk/conformance/testhost.json)."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from typing import Any

from ..models import Request, Response

HeadersArg = Mapping[str, str] | Sequence[Sequence[str]] | None
"""Headers as a mapping (``{"X-Token": "t"}``) or as ``[name, value]`` pairs (repeated names
kept); names are lower-cased."""


def _pairs(headers: HeadersArg) -> list[list[str]]:
    if headers is None:
        return []
    items = headers.items() if isinstance(headers, Mapping) else headers
    return [[str(name).lower(), str(value)] for name, value in items]


def _base64(body: str | bytes) -> str:
    data = body.encode() if isinstance(body, str) else bytes(body)
    return base64.b64encode(data).decode("ascii")


def make_request(
    method: str = "GET",
    path: str = "/",
    *,
    headers: HeadersArg = None,
    cookies: Mapping[str, str] | None = None,
    host: str | None = None,
    prefix: str | None = None,
    upstream: str | None = None,
    remote_addr: str = "127.0.0.1:50000",
    listener: str = "http-public",
    context: Mapping[str, Any] | None = None,
    body: str | bytes | None = None,
) -> Request:
    """A request as gatekeeper sends it to ``modify_request``, ``route_request`` and
    ``get_backend``.

    ``path`` may carry a query (``/a?x=1``: ``path`` ``/a``, ``query`` ``x=1``). The ``host``
    header comes first: from ``host``, else from a ``Host`` header in ``headers``, else
    ``localhost``. ``cookies`` become one ``cookie`` header after the others. ``prefix`` (the
    matched first path segment) is cut from ``prefixless_path``. ``body`` (text or bytes) is sent
    as ``body_base64``, as to a plugin that asked for bodies.

    >>> make_request("POST", "/api?page=2", headers={"X-Token": "t"})["headers"]
    [['host', 'localhost'], ['x-token', 't']]
    """
    path, sep, query = path.partition("?")
    pairs = _pairs(headers)
    host_values = [value for name, value in pairs if name == "host"]
    if host is None:
        host = host_values[0] if host_values else "localhost"
    header_list = [["host", host]] + [pair for pair in pairs if pair[0] != "host"]
    if cookies:
        header_list.append(["cookie", "; ".join(f"{k}={v}" for k, v in cookies.items())])
    prefixless = path
    if prefix is not None:
        cut = "/" + prefix
        if path == cut or path.startswith(cut + "/"):
            prefixless = path[len(cut):] or "/"
    request: dict[str, Any] = {
        "listener": listener,
        "remote_addr": remote_addr,
        "method": method.upper(),
        "host": host,
        "path": path,
        "prefixless_path": prefixless,
        "headers": header_list,
        "context": dict(context or {}),
    }
    if sep:
        request["query"] = query
    if prefix is not None:
        request["prefix"] = prefix
    if upstream is not None:
        request["upstream"] = upstream
    if body is not None:
        request["body_base64"] = _base64(body)
    return request  # type: ignore[return-value]


def make_response(
    status: int = 200,
    *,
    headers: HeadersArg = None,
    body: str | bytes | None = None,
) -> Response:
    """A response as gatekeeper sends it to ``modify_response``: a text ``body`` is kept as
    ``body`` (a backend's body is absent: it streams), bytes become ``body_base64`` (as to a
    plugin that asked for bodies).

    >>> make_response(404, headers={"Content-Type": "text/plain"}, body="nope")
    {'status': 404, 'headers': [['content-type', 'text/plain']], 'body': 'nope'}
    """
    response: dict[str, Any] = {"status": status, "headers": _pairs(headers)}
    if isinstance(body, str):
        response["body"] = body
    elif body is not None:
        response["body_base64"] = _base64(body)
    return response  # type: ignore[return-value]


def make_error(kind: str = "no_backend", message: str = "no backend available") -> dict[str, str]:
    """What went wrong, for ``modify_error_response`` (``kind`` as in
    :class:`~gatekeeper_plugin.ProxyError`)."""
    return {"kind": kind, "message": message}


__all__ = ["make_error", "make_request", "make_response"]
