"""The protocol as data: ``protocol.json``, generated from the Rust protocol table (crates/rpc),
read here for the method lists (hooks per plugin type, body hooks, manager methods) and to check
what the SDK sends (hook results, manager params) against the JSON Schema of each method.

The file ships inside the package (``gatekeeper_plugin/protocol.json``, a copy of
``plugin-sdk/protocol.json`` that a cargo test keeps identical); in a repository checkout the
canonical file is used if the package copy is missing.

:func:`validate` handles the subset of JSON Schema (draft 2020-12) the file uses: ``type``,
``properties``, ``required``, ``additionalProperties``, ``items``, ``prefixItems``,
``minItems``, ``maxItems``, ``minimum``, ``maximum``, ``const``, ``enum``, ``anyOf``, ``oneOf``
and local ``$ref``\\ s. Other keywords (``format``, ``default``, ``description``) are ignored.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Final

_CANDIDATES: Final = (
    Path(__file__).with_name("protocol.json"),
    Path(__file__).resolve().parents[2] / "protocol.json",
)


def _load() -> dict[str, Any]:
    for path in _CANDIDATES:
        if path.is_file():
            with path.open(encoding="utf-8") as file:
                document: dict[str, Any] = json.load(file)
                return document
    raise FileNotFoundError(
        "gatekeeper_plugin: protocol.json not found (looked at "
        + ", ".join(str(p) for p in _CANDIDATES)
        + ")"
    )


PROTOCOL: Final = _load()
"""The whole ``protocol.json`` document."""

METHODS: Final[dict[str, dict[str, Any]]] = {m["name"]: m for m in PROTOCOL["methods"]}
"""Every method of the protocol by name: ``kind``, ``direction``, ``declared_by``,
``received_by``, ``called_by``, ``bodies``, and the ``params`` and ``result`` schemas."""

PLUGIN_TYPES: Final[tuple[str, ...]] = tuple(PROTOCOL["plugin_types"])
"""The five plugin types, as ``GATEKEEPER_PLUGIN_TYPE`` names them."""


def hooks_of(plugin_type: str) -> tuple[str, ...]:
    """The hooks a plugin type may declare, in the protocol's order."""
    return tuple(m["name"] for m in PROTOCOL["methods"] if plugin_type in m["declared_by"])


def body_hooks_of(plugin_type: str) -> tuple[str, ...]:
    """The hooks of a plugin type that may ask for bodies (``bodies`` in the handshake)."""
    return tuple(n for n in hooks_of(plugin_type) if METHODS[n]["bodies"])


def methods_of_kind(kind: str) -> tuple[str, ...]:
    """The methods of one kind (``handshake``, ``lifecycle``, ``hook``, ``manager``, ``status``)."""
    return tuple(m["name"] for m in PROTOCOL["methods"] if m["kind"] == kind)


class SchemaError(ValueError):
    """A value that does not match its schema; the message names the path and what it must be."""


def check_params(method: str, params: Any) -> None:
    """Raises :class:`SchemaError` when ``params`` do not match the method's params schema."""
    _check(METHODS[method]["params"], params, f"{method} params")


def check_result(method: str, result: Any) -> None:
    """Raises :class:`SchemaError` when ``result`` does not match the method's result schema."""
    _check(METHODS[method]["result"], result, f"{method} result")


def _check(schema: dict[str, Any], value: Any, where: str) -> None:
    error = validate(schema, value)
    if error is not None:
        raise SchemaError(f"{where}: {error}")


def validate(schema: dict[str, Any], value: Any, path: str = "") -> str | None:
    """The first way ``value`` does not match ``schema`` (``None`` when it matches). ``$ref``\\ s
    resolve in the protocol document. Each schema is compiled into a function once."""
    return _compiled(schema)(value, path)


Check = Callable[[Any, str], "str | None"]
"""A compiled schema: the first way a value (at a path) does not match, or ``None``."""

_COMPILED: dict[int, tuple[dict[str, Any], Check]] = {}
"""Compiled schemas by ``id``, each with its schema (kept alive, so that its id is not reused)."""
_COMPILING: set[int] = set()


def _compiled(schema: dict[str, Any]) -> Check:
    """``schema`` (a part of the protocol document) as a function that gives the same answer as
    :func:`validate`, built once: hook results and manager params are checked on every call, and
    walking the schema's dicts each time cost most of a hook's time in the SDK."""
    key = id(schema)
    known = _COMPILED.get(key)
    if known is not None:
        return known[1]
    if key in _COMPILING:  # a schema that contains itself: look it up when called
        return lambda value, path: _COMPILED[key][1](value, path)
    _COMPILING.add(key)
    try:
        check = _compile(schema)
    finally:
        _COMPILING.discard(key)
    _COMPILED[key] = (schema, check)
    return check


_ANNOTATIONS: Final = frozenset({"description", "title", "format", "default", "examples", "$comment"})
_PYTHON_TYPES: Final = {"string": str, "boolean": bool}


def _compile(schema: dict[str, Any]) -> Check:
    leaf = _compile_leaf(schema)
    if leaf is not None:
        return leaf
    checks: list[Check] = []
    if "$ref" in schema:
        checks.append(_compiled(_resolve(schema["$ref"])))
    for key in ("anyOf", "oneOf"):
        if key in schema:
            checks.append(_compile_any_of(schema[key]))
    if "const" in schema:
        const = schema["const"]
        const_error = f"must be {json.dumps(const)}"
        checks.append(lambda v, p: None if v == const else f"{_where(p)} {const_error}")
    if "enum" in schema:
        enum = schema["enum"]
        enum_error = f"must be one of {', '.join(json.dumps(v) for v in enum)}"
        checks.append(lambda v, p: None if v in enum else f"{_where(p)} {enum_error}")
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        type_error = f"must be {' or '.join(_ARTICLES[t] for t in types)}"

        def check_type(value: Any, path: str) -> str | None:
            for name in types:
                if _is_type(value, name):
                    return None
            return f"{_where(path)} {type_error}"

        checks.append(check_type)
    check_object = _compile_object(schema)
    check_array = _compile_array(schema)
    minimum, maximum = schema.get("minimum"), schema.get("maximum")

    def check(value: Any, path: str) -> str | None:
        for each in checks:
            error = each(value, path)
            if error is not None:
                return error
        if isinstance(value, dict):
            return check_object(value, path)
        if isinstance(value, (list, tuple)):
            return check_array(value, path)
        if (minimum is not None or maximum is not None) and _is_type(value, "number"):
            if minimum is not None and value < minimum:
                return f"{_where(path)} must be at least {minimum}"
            if maximum is not None and value > maximum:
                return f"{_where(path)} must be at most {maximum}"
        return None

    return check


def _compile_leaf(schema: dict[str, Any]) -> Check | None:
    """A schema that only says "a string" (or "a boolean"): one ``isinstance``, the most common
    check of all (every header name and value)."""
    if not set(schema) - _ANNOTATIONS == {"type"}:
        return None
    python_type = _PYTHON_TYPES.get(schema["type"]) if isinstance(schema["type"], str) else None
    if python_type is None:
        return None
    type_error = f"must be {_ARTICLES[schema['type']]}"
    return lambda v, p: None if isinstance(v, python_type) else f"{_where(p)} {type_error}"


def _compile_any_of(branches: list[dict[str, Any]]) -> Check:
    compiled = [_compiled(branch) for branch in branches]
    values = None
    if all("const" in branch for branch in branches):
        values = ", ".join(json.dumps(branch["const"]) for branch in branches)

    def check(value: Any, path: str) -> str | None:
        errors = []
        for branch in compiled:
            error = branch(value, path)
            if error is None:
                return None
            errors.append(error)
        if values is not None:
            return f"{_where(path)} must be one of {values}"
        return _deepest(errors)

    return check


def _compile_object(schema: dict[str, Any]) -> Check:
    properties = {name: _compiled(sub) for name, sub in schema.get("properties", {}).items()}
    required = schema.get("required", [])
    extra = schema.get("additionalProperties", True)
    check_extra = _compiled(extra) if isinstance(extra, dict) else None

    def check(value: dict[str, Any], path: str) -> str | None:
        for name in required:
            if name not in value:
                return f"`{_join(path, name)}` is missing"
        for name, member in value.items():
            known = properties.get(name)
            if known is not None:
                error = known(member, _join(path, name))
            elif extra is False:
                error = f"`{_join(path, name)}` is not allowed"
            elif check_extra is not None:
                error = check_extra(member, _join(path, name))
            else:
                error = None
            if error is not None:
                return error
        return None

    return check


def _compile_array(schema: dict[str, Any]) -> Check:
    min_items, max_items = schema.get("minItems"), schema.get("maxItems")
    prefix = [_compiled(sub) if isinstance(sub, dict) else None for sub in schema.get("prefixItems", [])]
    items = schema.get("items")
    check_items = _compiled(items) if isinstance(items, dict) else None

    def check(value: list[Any] | tuple[Any, ...], path: str) -> str | None:
        if min_items is not None and len(value) < min_items:
            return f"{_where(path)} must have at least {min_items} items"
        if max_items is not None and len(value) > max_items:
            return f"{_where(path)} must have at most {max_items} items"
        for index, item in enumerate(value):
            each = prefix[index] if index < len(prefix) else check_items
            if each is not None:
                error = each(item, f"{path}[{index}]")
                if error is not None:
                    return error
        return None

    return check


_ARTICLES: Final = {
    "object": "an object",
    "array": "an array",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "null": "null",
}


def _is_type(value: Any, name: str) -> bool:
    if name == "object":
        return isinstance(value, dict)
    if name == "array":
        return isinstance(value, (list, tuple))
    if name == "string":
        return isinstance(value, str)
    if name == "boolean":
        return isinstance(value, bool)
    if name == "null":
        return value is None
    if isinstance(value, bool):
        return False
    if name == "integer":
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    return name == "number" and isinstance(value, (int, float))


def _resolve(ref: str) -> dict[str, Any]:
    """The schema a local ``$ref`` points at in the protocol document."""
    if not ref.startswith("#/"):
        raise ValueError(f"only local $refs are supported: {ref}")
    node: Any = PROTOCOL
    for part in ref[2:].split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    resolved: dict[str, Any] = node
    return resolved


def _where(path: str) -> str:
    return f"`{path}`" if path else "the value"


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _deepest(errors: list[str]) -> str:
    """Of the errors of the branches of an ``anyOf``, the one about the deepest path (the branch
    that got furthest), skipping a bare "must be null"."""
    useful = [e for e in errors if not e.endswith("must be null")] or errors
    return max(useful, key=lambda e: e.split("`")[1].count(".") if "`" in e else -1)
