"""The data that travels in hook params and results, as plain ``dict``\\ s and ``list``\\ s.

The :class:`~typing.TypedDict` classes here only document shapes for type checkers: at run time
a request is an ordinary ``dict`` decoded from JSON, and a hook returns ordinary dicts. Fields
are described in docs/protocol.md ("Data types"). Unknown fields may appear (later protocol
versions add fields); keep them when you return a changed request or response.

Headers are lists of ``[name, value]`` pairs, in order, duplicates kept, names lower-case;
:func:`header`, :func:`set_header` and :func:`remove_header` work on such lists.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Final, NotRequired, Required, TypedDict

from . import protocol

PROTOCOL_VERSION: Final[int] = protocol.PROTOCOL["protocol_version"]
"""The protocol version this SDK speaks."""

DEFAULT_MAX_LINE_BYTES: Final = 16 * 1024 * 1024
"""The line limit when ``GATEKEEPER_MAX_LINE_BYTES`` is not set (16 MiB)."""

Headers = list[list[str]]
"""HTTP headers: ``[[name, value], ...]``, in order, duplicates kept, names lower-case."""

JsonObject = dict[str, Any]
"""A free-form JSON object (config maps, ``extra``, ``context``, params, results)."""


class Request(TypedDict, total=False):
    """A client's request as plugins see it (docs/protocol.md, "Request")."""

    listener: str
    """Name of the listener it arrived on, e.g. ``http-public``."""
    remote_addr: str
    """The client's ``ip:port``."""
    method: Required[str]
    """``GET``, ``POST``, ..."""
    host: str
    """The ``Host`` header, port included if the client sent one."""
    path: Required[str]
    """The path as received, e.g. ``/api/users``."""
    prefix: NotRequired[str]
    """The matched prefix segment (``api``), when routing matched by prefix."""
    prefixless_path: str
    """The path the backend receives, e.g. ``/users``."""
    query: NotRequired[str]
    """The query string without ``?``."""
    headers: Headers
    """All request headers."""
    upstream: NotRequired[str]
    """Id of the chosen upstream, once routed. Set it in ``modify_request`` to re-route."""
    context: JsonObject
    """Values plugins attach for later hooks of the same request."""
    body_base64: NotRequired[str]
    """The body, base64 -- only in ``modify_request``, only for a plugin that declared it wants
    it (:attr:`Plugin.bodies`). Absent in a returned request: unchanged. See :func:`body_bytes`."""


class Response(TypedDict, total=False):
    """An HTTP response: a backend's (without body), the proxy's error, or a plugin's own."""

    status: Required[int]
    """HTTP status; a plugin may set 200-599."""
    headers: Headers
    """Response headers."""
    body: NotRequired[str]
    """UTF-8 body. Absent on backend responses (they stream); when set, it replaces the body
    (and wins over ``body_base64``)."""
    body_base64: NotRequired[str]
    """The body, base64, for a plugin that declared it wants it (:attr:`Plugin.bodies`).
    Absent in a returned response (with ``body`` absent too): unchanged. See :func:`body_bytes`."""
    body_omitted: NotRequired[bool]
    """``True`` when the plugin wants the body but the backend's was over ``max_plugin_body``:
    it streams to the client unchanged unless the plugin sets a body."""


class ProxyError(TypedDict):
    """What went wrong, for ``modify_error_response``."""

    kind: str
    """``no_route``, ``no_backend``, ``backend_unreachable``, ``timeout``, ``plugin_failed``,
    ``bad_request``, ``internal`` or ``body_too_large``."""
    message: str
    """A human-readable description."""


class Upstream(TypedDict, total=False):
    """A service that requests are routed to (docs/protocol.md, "Upstream")."""

    id: Required[str]
    """Unique id."""
    name: str
    """Display name."""
    timeout_ms: int
    """Time the backend has to answer with headers; absent: the proxy's default."""
    protocols: list[str]
    """Listener names that may route here; empty: all."""
    hostnames: list[str]
    """Host names (no port) that route here."""
    prefixes: list[str]
    """First path segments (no ``/``) that route here."""
    balancer: str
    """Built-in balancer: ``random`` (default), ``round_robin`` or ``least_outstanding``."""
    extra: JsonObject
    """Free-form."""


class Backend(TypedDict, total=False):
    """One instance of an upstream (docs/protocol.md, "Backend")."""

    id: Required[str]
    """Unique within its upstream."""
    address: Required[str]
    """``http://host[:port][/base-path]``."""
    extra: JsonObject
    """Free-form."""


class CacheInstruction(TypedDict):
    """A ``modify_request`` result's ``cache``: the proxy may reuse the decision for ``ttl_ms``
    on requests whose ``key`` parts are equal (``method``, ``path``, ``query``, ``host``,
    ``client``, ``header:NAME``, ``context:KEY``), without calling the plugin."""

    ttl_ms: int
    key: list[str]


class ModifyRequestResult(TypedDict, total=False):
    """What ``modify_request`` returns: ``{}`` (unchanged), ``{"request": ...}`` (replace it; the
    SDK sends a patch of what changed), ``{"patch": ...}`` (change only these parts, see
    :func:`gatekeeper_plugin.patch`) or ``{"response": ...}`` (answer the client directly); any
    of them with ``cache`` (see :func:`cached`)."""

    request: Request
    patch: JsonObject
    response: Response
    cache: CacheInstruction


class ModifyResponseResult(TypedDict, total=False):
    """What ``modify_response`` / ``modify_error_response`` return: ``{}``,
    ``{"response": ...}`` or ``{"patch": ...}`` (status and headers)."""

    response: Response
    patch: JsonObject


class RouteResult(TypedDict, total=False):
    """What ``route_request`` returns."""

    upstream: str | None
    """Id of the upstream to use; ``None`` or absent: no route (404)."""
    prefixless_path: str
    """The path the backend receives; absent: ``path`` unchanged."""
    request: Request
    """A changed request, as in ``modify_request``."""


class GetBackendResult(TypedDict, total=False):
    """What ``get_backend`` returns."""

    backend_id: str | None
    """Id of the backend to use; ``None`` or absent: no backend available (503)."""


class EventMetric(TypedDict):
    """Something that happened (``event_metric``)."""

    time_ms: int
    name: str
    attributes: JsonObject


class ProfilingMetric(TypedDict):
    """How long an internal operation took (``profiling_metric``)."""

    time_ms: int
    name: str
    duration_us: int
    attributes: JsonObject


class PluginMetric(TypedDict):
    """One call gatekeeper made to a plugin (``plugin_metric``)."""

    time_ms: int
    plugin: str
    method: str
    latency_us: int
    error: NotRequired[str]


class ModifierPhase(TypedDict):
    """Time one modifier hook took, within a request."""

    plugin: str
    hook: str
    latency_us: int


class Phases(TypedDict):
    """Where a request's time went."""

    router_us: int
    loadbalancer_us: int
    modifiers: list[ModifierPhase]
    upstream_connect_us: int
    upstream_response_us: int
    total_us: int


class RequestMetric(TypedDict):
    """One finished request (``request_metric``)."""

    time_ms: int
    listener: str
    method: str
    host: str
    path: str
    status: int
    upstream: NotRequired[str]
    backend: NotRequired[str]
    bytes_in: int
    bytes_out: int
    error: NotRequired[str]
    phases: Phases


class UpstreamMetric(TypedDict):
    """The outcome of one request to a backend (``upstream_metric``)."""

    time_ms: int
    upstream: str
    backend: str
    latency_us: int
    status: NotRequired[int]
    error: NotRequired[str]


PLUGIN_TYPES: Final = protocol.PLUGIN_TYPES
"""The five plugin types, as ``GATEKEEPER_PLUGIN_TYPE`` names them."""

UPSTREAM_HOOKS: Final = protocol.hooks_of("upstream")
"""Hooks an upstream plugin may declare (from ``protocol.json``)."""
MODIFIER_HOOKS: Final = protocol.hooks_of("modifier")
"""Hooks a modifier plugin may declare (from ``protocol.json``)."""
ROUTER_HOOKS: Final = protocol.hooks_of("router")
"""Hooks a router plugin may declare (from ``protocol.json``)."""
LOADBALANCER_HOOKS: Final = protocol.hooks_of("loadbalancer")
"""Hooks a loadbalancer plugin may declare (from ``protocol.json``)."""
METRIC_HOOKS: Final = protocol.hooks_of("metric")
"""Hooks a metric plugin may declare (from ``protocol.json``)."""

LIFECYCLE_METHODS: Final = protocol.methods_of_kind("lifecycle")
"""Methods every plugin answers, whatever it declares."""

MANAGER_METHODS: Final = protocol.methods_of_kind("manager")
"""Methods an upstream plugin calls on the proxy (its :class:`~gatekeeper_plugin.Manager`)."""


def body_bytes(message: JsonObject) -> bytes | None:
    """The body of a request or response as bytes: a response's text ``body`` (UTF-8) if set,
    else ``body_base64`` decoded; ``None`` when neither is present (not sent or omitted).
    Raises :class:`ValueError` when ``body_base64`` is not valid base64.

    >>> body_bytes({"body_base64": "aGk="})
    b'hi'
    """
    text = message.get("body")
    if isinstance(text, str):
        return text.encode()
    encoded = message.get("body_base64")
    if encoded is None:
        return None
    try:
        return base64.b64decode(encoded, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"body_base64 is not valid base64: {exc}") from exc


def set_body_bytes(message: JsonObject, data: bytes) -> None:
    """Replaces the body of a request or response in place: sets ``body_base64`` and removes a
    text ``body`` (which would win).

    >>> m = {"body": "old"}; set_body_bytes(m, b"hi"); m
    {'body_base64': 'aGk='}
    """
    message.pop("body", None)
    message["body_base64"] = base64.b64encode(data).decode("ascii")


def header(headers: Headers, name: str) -> str | None:
    """The first value of header ``name`` (compared case-insensitively), or ``None``.

    >>> header([["host", "a"], ["X-Id", "1"]], "x-id")
    '1'
    """
    wanted = name.lower()
    for pair in headers:
        if pair[0].lower() == wanted:
            return pair[1]
    return None


def set_header(headers: Headers, name: str, value: str) -> None:
    """Sets header ``name`` to ``value`` in place: removes every earlier value of it (compared
    case-insensitively) and appends ``[name.lower(), value]``.

    >>> h = [["a", "1"], ["b", "2"], ["A", "3"]]
    >>> set_header(h, "a", "4"); h
    [['b', '2'], ['a', '4']]
    """
    remove_header(headers, name)
    headers.append([name.lower(), value])


def remove_header(headers: Headers, name: str) -> None:
    """Removes every value of header ``name`` (compared case-insensitively) in place."""
    wanted = name.lower()
    headers[:] = [pair for pair in headers if pair[0].lower() != wanted]


def cached(result: ModifyRequestResult, ttl_ms: int, key: list[str] | tuple[str, ...]) -> ModifyRequestResult:
    """``result`` with a ``cache`` instruction: gatekeeper may give the same decision, without
    calling the plugin, for ``ttl_ms`` milliseconds (capped at one hour) to requests whose
    ``key`` parts are equal to this one's.

    >>> cached({}, 30_000, ["header:authorization"])
    {'cache': {'ttl_ms': 30000, 'key': ['header:authorization']}}
    """
    if isinstance(key, str):
        raise TypeError("key is a list of parts, e.g. ['header:authorization']")
    out = dict(result)
    out["cache"] = {"ttl_ms": int(ttl_ms), "key": list(key)}
    return out  # type: ignore[return-value]
