"""Warnings about what a plugin declares, logged at startup by
:func:`~gatekeeper_plugin.serve_async` (to stderr, which gatekeeper logs): a plugin that declares
no hook although its type works through hooks, a method whose name is close to a hook's but is
not one, a hook of another plugin type."""

from __future__ import annotations

import difflib
import inspect
from typing import Final

from .plugin import PLUGIN_CLASSES, _SDK_CLASSES, Plugin, UpstreamPlugin

_LIFECYCLE_NAMES: Final = ("configure", "check", "start", "heartbeat", "stop")


def declaration_warnings(plugin: Plugin) -> list[str]:
    """What looks wrong in what ``plugin`` declares, for warnings at startup: no hook at all
    (for a type whose hooks are how it works), a method whose name is close to a hook's but is
    not one (``modify_requets``: gatekeeper never calls it), a hook of another plugin type."""
    warnings = []
    if not plugin.hooks and plugin.plugin_type != UpstreamPlugin.plugin_type:
        warnings.append(
            f"this {plugin.plugin_type} plugin declares no hooks, so gatekeeper never calls it: "
            f"override one of {', '.join(plugin.type_hooks)} (or set `hooks`)"
        )
    known = set(plugin.type_hooks) | set(_LIFECYCLE_NAMES)
    other_types = {
        name: cls.plugin_type
        for cls in PLUGIN_CLASSES.values()
        if cls.plugin_type != plugin.plugin_type
        for name in cls.type_hooks
        if name not in known
    }
    seen: set[str] = set()
    for cls in type(plugin).__mro__:
        if cls in _SDK_CLASSES or cls is object:
            continue
        for name, value in vars(cls).items():
            if name in seen or name.startswith("_") or name in known or not inspect.isfunction(value):
                continue
            seen.add(name)
            if name in other_types:
                warnings.append(
                    f"`{name}` is a hook of {other_types[name]} plugins, not of "
                    f"{plugin.plugin_type} plugins: gatekeeper never calls it here"
                )
                continue
            close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.8)
            if close:
                warnings.append(
                    f"`{name}` looks like the hook `{close[0]}` but is not one: gatekeeper "
                    f"never calls it (a misspelling?)"
                )
    return warnings


__all__ = ["declaration_warnings"]
