"""Patch results: what a modifier hook sends instead of a whole request or response.

The SDK compares the request (or response) it gave a hook with the one the hook returned and
sends ``{"patch": ...}`` with only what changed, so gatekeeper re-reads only that. When the hook
changed something a patch cannot carry (a body, the host, the listener, the client's address,
the prefix, a header that is not valid HTTP, a context value set to ``None``, the upstream
removed), the whole value is sent, as before. Plugin authors change nothing; :func:`patch`
returns a patch explicitly.
"""

from __future__ import annotations

import copy
import re
from typing import Any

JsonObject = dict[str, Any]

_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")

#: Defaults of the request fields a returned request may leave out (as gatekeeper reads it).
_REQUEST_DEFAULTS: dict[str, Any] = {
    "listener": "",
    "remote_addr": "",
    "host": "",
    "prefix": None,
    "prefixless_path": "",
    "query": None,
    "headers": [],
    "upstream": None,
    "context": {},
    "body_base64": None,
}


def _valid_value(value: Any) -> bool:
    return isinstance(value, str) and not any(
        (ord(c) < 0x20 and c != "\t") or 0x7F <= ord(c) <= 0x9F for c in value
    )


def _values_by_name(headers: list[Any]) -> dict[str, list[Any]]:
    by_name: dict[str, list[Any]] = {}
    for name, value in headers:
        by_name.setdefault(str(name).lower(), []).append(value)
    return by_name


def _headers_between(sent: list[Any], returned: list[Any]) -> JsonObject | None:
    """``set_headers`` / ``remove_headers`` that turn ``sent`` into ``returned`` (the order of
    headers of different names aside), or ``None`` when a changed header is not valid HTTP."""
    old, new = _values_by_name(sent), _values_by_name(returned)
    changes: JsonObject = {}
    for name in list(old) + [n for n in new if n not in old]:
        before, after = old.get(name, []), new.get(name, [])
        if before == after:
            continue
        if not _TOKEN.match(name) or not all(_valid_value(v) for v in after):
            return None
        if not after:
            changes.setdefault("remove_headers", []).append(name)
        else:
            changes.setdefault("set_headers", {})[name] = after[0] if len(after) == 1 else list(after)
    return changes


def request_patch(sent: JsonObject, returned: JsonObject) -> JsonObject | None:
    """The patch that turns the request ``sent`` into ``returned``, or ``None`` when a patch
    cannot say it (the whole request must be sent)."""

    def field(request: JsonObject, name: str) -> Any:
        return request.get(name, _REQUEST_DEFAULTS.get(name))

    for name in ("listener", "remote_addr", "host", "prefix"):
        if field(sent, name) != field(returned, name):
            return None
    body = returned.get("body_base64")
    if body is not None and body != sent.get("body_base64"):
        return None
    headers = _headers_between(field(sent, "headers"), field(returned, "headers"))
    if headers is None:
        return None
    patch: JsonObject = dict(headers)
    for name in ("method", "path", "prefixless_path"):
        if field(sent, name) != field(returned, name):
            patch[name] = field(returned, name)
    if field(sent, "query") != field(returned, "query"):
        patch["query"] = field(returned, "query")
    if field(sent, "upstream") != field(returned, "upstream"):
        if field(returned, "upstream") is None:
            return None
        patch["upstream"] = field(returned, "upstream")
    old_context, new_context = field(sent, "context"), field(returned, "context")
    context: JsonObject = {}
    for key, value in new_context.items():
        if key not in old_context or old_context[key] != value:
            if value is None:
                return None
            context[key] = value
    for key in old_context:
        if key not in new_context:
            context[key] = None
    if context:
        patch["context"] = context
    return patch


def response_patch(sent: JsonObject, returned: JsonObject) -> JsonObject | None:
    """The patch of status and headers that turns the response ``sent`` into ``returned``, or
    ``None`` when its body changed (the whole response must be sent)."""
    for name in ("body", "body_base64"):
        value = returned.get(name)
        if value is not None and value != sent.get(name):
            return None
    headers = _headers_between(sent.get("headers", []), returned.get("headers", []))
    if headers is None:
        return None
    patch: JsonObject = dict(headers)
    status = returned.get("status")
    if status != sent.get("status"):
        if not isinstance(status, int) or not 100 <= status <= 999:
            return None
        patch["status"] = status
    return patch


def snapshot(value: Any) -> Any:
    """What a hook was given, kept to diff its answer against: the request or response object
    copied one level down (its header pairs as tuples; the context deep-copied only when it has
    keys). A handler that changes the object in place leaves the snapshot as it was; a deep copy
    of the whole object cost several times the rest of the SDK's work per call."""
    if not isinstance(value, dict):
        return copy.deepcopy(value)
    kept = dict(value)
    headers = value.get("headers")
    if isinstance(headers, list):
        kept["headers"] = [tuple(pair) if isinstance(pair, list) else pair for pair in headers]
    context = value.get("context")
    if isinstance(context, dict):
        kept["context"] = copy.deepcopy(context) if context else {}
    return kept


def as_patch(kind: str, sent: JsonObject, result: JsonObject) -> JsonObject:
    """``result`` with its whole ``kind`` (``"request"`` or ``"response"``) replaced by a patch
    of what changed from ``sent``, when a patch can say it; else ``result`` itself."""
    returned = result.get(kind)
    if not isinstance(returned, dict) or "patch" in result:
        return result
    changes = request_patch(sent, returned) if kind == "request" else response_patch(sent, returned)
    if changes is None:
        return result
    out = {key: value for key, value in result.items() if key != kind}
    if changes:
        out["patch"] = changes
    return out


def patch(**changes: Any) -> JsonObject:
    """A result that changes only what it names (``modify_request``: ``set_headers``,
    ``append_headers``, ``remove_headers``, ``method``, ``path``, ``query`` (``None`` removes
    it), ``prefixless_path``, ``upstream``, ``context`` (a ``None`` value removes the key);
    ``modify_response``: ``status`` and the three header keys).

    >>> patch(set_headers={"x-user": "alice"})
    {'patch': {'set_headers': {'x-user': 'alice'}}}
    """
    return {"patch": dict(changes)}


__all__ = ["as_patch", "patch", "request_patch", "response_patch", "snapshot"]
