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
from typing import Any, Final

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
    """The methods of one kind (``handshake``, ``lifecycle``, ``hook``, ``manager``)."""
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


def validate(schema: dict[str, Any], value: Any, path: str = "", root: Any = None) -> str | None:
    """The first way ``value`` does not match ``schema`` (``None`` when it matches).
    ``$ref``\\ s resolve in ``root`` (default: the whole protocol document)."""
    root = PROTOCOL if root is None else root
    if "$ref" in schema:
        error = validate(_resolve(root, schema["$ref"]), value, path, root)
        if error is not None:
            return error
    for key in ("anyOf", "oneOf"):
        if key in schema:
            errors = []
            for branch in schema[key]:
                error = validate(branch, value, path, root)
                if error is None:
                    break  # a branch matches: no need to try the others
                errors.append(error)
            else:
                if all("const" in branch for branch in schema[key]):
                    values = ", ".join(json.dumps(branch["const"]) for branch in schema[key])
                    return f"{_where(path)} must be one of {values}"
                return _deepest(errors)
    if "const" in schema and value != schema["const"]:
        return f"{_where(path)} must be {json.dumps(schema['const'])}"
    if "enum" in schema and value not in schema["enum"]:
        return f"{_where(path)} must be one of {', '.join(json.dumps(v) for v in schema['enum'])}"
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is_type(value, t) for t in types):
            return f"{_where(path)} must be {' or '.join(_ARTICLES[t] for t in types)}"
    if isinstance(value, dict):
        return _validate_object(schema, value, path, root)
    if isinstance(value, (list, tuple)):
        return _validate_array(schema, value, path, root)
    if _is_type(value, "number"):
        if "minimum" in schema and value < schema["minimum"]:
            return f"{_where(path)} must be at least {schema['minimum']}"
        if "maximum" in schema and value > schema["maximum"]:
            return f"{_where(path)} must be at most {schema['maximum']}"
    return None


def _validate_object(schema: dict[str, Any], value: dict[str, Any], path: str, root: Any) -> str | None:
    properties = schema.get("properties", {})
    for name in schema.get("required", []):
        if name not in value:
            return f"`{_join(path, name)}` is missing"
    extra = schema.get("additionalProperties", True)
    for name, member in value.items():
        if name in properties:
            error = validate(properties[name], member, _join(path, name), root)
        elif extra is False:
            error = f"`{_join(path, name)}` is not allowed"
        elif isinstance(extra, dict):
            error = validate(extra, member, _join(path, name), root)
        else:
            error = None
        if error is not None:
            return error
    return None


def _validate_array(schema: dict[str, Any], value: list[Any] | tuple[Any, ...], path: str, root: Any) -> str | None:
    where = _where(path)
    if "minItems" in schema and len(value) < schema["minItems"]:
        return f"{where} must have at least {schema['minItems']} items"
    if "maxItems" in schema and len(value) > schema["maxItems"]:
        return f"{where} must have at most {schema['maxItems']} items"
    prefix = schema.get("prefixItems", [])
    for index, item in enumerate(value):
        item_schema = prefix[index] if index < len(prefix) else schema.get("items")
        if isinstance(item_schema, dict):
            error = validate(item_schema, item, f"{path}[{index}]", root)
            if error is not None:
                return error
    return None


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


_RESOLVED: dict[tuple[int, str], dict[str, Any]] = {}


def _resolve(root: Any, ref: str) -> dict[str, Any]:
    """The schema ``ref`` points at in ``root`` (looked up once per document and ``$ref``)."""
    key = (id(root), ref)
    cached = _RESOLVED.get(key)
    if cached is not None and root is PROTOCOL:
        return cached
    resolved = _resolve_uncached(root, ref)
    if root is PROTOCOL:
        _RESOLVED[key] = resolved
    return resolved


def _resolve_uncached(root: Any, ref: str) -> dict[str, Any]:
    if not ref.startswith("#/"):
        raise ValueError(f"only local $refs are supported: {ref}")
    node = root
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
