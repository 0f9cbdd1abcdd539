"""Reading requests and config maps: :func:`cookies`, :func:`query_params` and
:func:`config_value` (the rules are shared by every SDK: plugin-sdk/conformance/testhost.json).

Config values arrive as JSON: a TOML value from gatekeeper's config file (a number, a boolean, an
array), or a string from a pass-through flag (``--modifier-burst 5`` gives ``"5"``).
:func:`config_value` accepts both and raises ``RpcError.invalid_params`` naming the key, ready
to propagate out of ``configure``::

    async def configure(self, config):
        self.burst = config_value(config, "burst", "int", default=10)
        self.window_ms = config_value(config, "window", "duration_ms", default=1000)
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final
from urllib.parse import unquote_plus

from .errors import RpcError

CONFIG_TYPES: Final = ("int", "float", "bool", "string", "list", "duration_ms")
"""The kinds :func:`config_value` reads."""

_NO_DEFAULT: Any = object()

_INTEGER = re.compile(r"^[+-]?\d+$")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(ms|s|m|h)?$")
_UNIT_MS: Final = {None: 1, "ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}


def _headers_of(source: Mapping[str, Any] | Sequence[Sequence[str]]) -> Sequence[Sequence[str]]:
    if isinstance(source, Mapping):
        return source.get("headers") or []  # type: ignore[no-any-return]
    return source


def cookies(source: Mapping[str, Any] | Sequence[Sequence[str]]) -> dict[str, str]:
    """The cookies of a request (or of a header list): every ``cookie`` header (HTTP/2 sends one
    per cookie), split at ``;``; names and values trimmed, quotes around a value removed; pieces
    without a name or ``=`` skipped; the first of a repeated name wins.

    >>> cookies({"headers": [["cookie", "a=1; b=2"]]})
    {'a': '1', 'b': '2'}
    """
    found: dict[str, str] = {}
    for name, value in _headers_of(source):
        if name.lower() != "cookie":
            continue
        for piece in value.split(";"):
            key, sep, text = piece.partition("=")
            key, text = key.strip(), text.strip()
            if not sep or not key:
                continue
            if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
                text = text[1:-1]
            found.setdefault(key, text)
    return found


def query_params(source: Mapping[str, Any] | str | None) -> dict[str, list[str]]:
    """The query parameters of a request (or of a query string without ``?``): each name with its
    values in order; percent-decoded, ``+`` read as a space; a name without ``=`` has the value
    ``""``; empty pieces skipped.

    >>> query_params("a=1&b=2&a=3")
    {'a': ['1', '3'], 'b': ['2']}
    """
    query = source.get("query") if isinstance(source, Mapping) else source
    params: dict[str, list[str]] = {}
    if not query:
        return params
    for piece in query.split("&"):
        if not piece:
            continue
        name, _, value = piece.partition("=")
        params.setdefault(unquote_plus(name), []).append(unquote_plus(value))
    return params


def config_value(config: Mapping[str, Any], key: str, kind: str, default: Any = _NO_DEFAULT) -> Any:
    """``config[key]`` read as ``kind`` (one of :data:`CONFIG_TYPES`), from a TOML value or a
    flag's string:

    * ``int``: a whole number, or a string holding one (``"4.5"`` and ``"many"`` are refused);
    * ``float``: a number, or a string holding one;
    * ``bool``: ``true``/``false``, or the strings ``"true"``/``"false"``;
    * ``string``: a string, or a number's text (``5`` gives ``"5"``);
    * ``list``: an array of strings, or a comma-separated string (items trimmed, empty ones
      dropped);
    * ``duration_ms``: milliseconds, from a number (taken as milliseconds) or a string with a
      unit ``ms``, ``s``, ``m`` or ``h`` (``"250ms"``, ``"2s"``; no unit: milliseconds).

    A missing key gives ``default``, or is an error without one. Raises
    ``RpcError.invalid_params`` naming the key.
    """
    if kind not in CONFIG_TYPES:
        raise ValueError(f"unknown config type {kind!r} (one of {', '.join(CONFIG_TYPES)})")
    if key not in config or config[key] is None:
        if default is _NO_DEFAULT:
            raise RpcError.invalid_params(f"config key `{key}` is required")
        return default
    value = config[key]
    parsed = _READERS[kind](value)
    if parsed is None:
        raise RpcError.invalid_params(
            f"config key `{key}` must be {_WHAT[kind]}, got {value!r}"
        )
    return parsed


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _read_int(value: Any) -> int | None:
    if _is_number(value):
        if isinstance(value, float) and not value.is_integer():
            return None
        return int(value)
    if isinstance(value, str) and _INTEGER.match(value.strip()):
        return int(value.strip())
    return None


def _read_float(value: Any) -> float | None:
    if _is_number(value):
        return float(value)
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
        return number if math.isfinite(number) else None
    return None


def _read_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        return {"true": True, "false": False}.get(value.strip().lower())
    return None


def _read_string(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if _is_number(value):
        return str(value)
    return None


def _read_list(value: Any) -> list[str] | None:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return list(value)
    return None


def _read_duration_ms(value: Any) -> int | None:
    if _is_number(value):
        return int(value) if value >= 0 and math.isfinite(value) else None
    if not isinstance(value, str):
        return None
    match = _DURATION.match(value.strip())
    if match is None:
        return None
    return round(float(match.group(1)) * _UNIT_MS[match.group(2)])


_READERS: Final = {
    "int": _read_int,
    "float": _read_float,
    "bool": _read_bool,
    "string": _read_string,
    "list": _read_list,
    "duration_ms": _read_duration_ms,
}

_WHAT: Final = {
    "int": "a whole number",
    "float": "a number",
    "bool": "true or false",
    "string": "a string",
    "list": "a list of strings or a comma-separated string",
    "duration_ms": "a duration such as 250ms, 2s or 1m",
}

__all__ = ["CONFIG_TYPES", "config_value", "cookies", "query_params"]
