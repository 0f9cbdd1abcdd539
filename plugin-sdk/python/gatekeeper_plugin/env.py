"""The environment gatekeeper gives a plugin process (docs/protocol.md, "Environment")."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import EnvError
from .models import DEFAULT_MAX_LINE_BYTES, PLUGIN_TYPES

SOCKET = "GATEKEEPER_SOCKET"
TOKEN = "GATEKEEPER_TOKEN"
PLUGIN_NAME = "GATEKEEPER_PLUGIN_NAME"
PLUGIN_TYPE = "GATEKEEPER_PLUGIN_TYPE"
PROTOCOL_VERSION = "GATEKEEPER_PROTOCOL_VERSION"
MAX_LINE_BYTES = "GATEKEEPER_MAX_LINE_BYTES"
PLUGIN_INSTANCE = "GATEKEEPER_PLUGIN_INSTANCE"


@dataclass(frozen=True)
class PluginEnv:
    """What gatekeeper told the plugin through ``GATEKEEPER_*`` variables."""

    socket: str
    """Path of the Unix socket to connect to (``GATEKEEPER_SOCKET``); ``""`` if not needed."""
    token: str
    """The one-time token to send in the handshake (``GATEKEEPER_TOKEN``)."""
    name: str
    """The plugin's configured name (``GATEKEEPER_PLUGIN_NAME``; default: the type)."""
    plugin_type: str
    """The type gatekeeper runs the plugin as (``GATEKEEPER_PLUGIN_TYPE``)."""
    protocol_version: int
    """The protocol version the proxy speaks (``GATEKEEPER_PROTOCOL_VERSION``)."""
    max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
    """The longest line either side accepts (``GATEKEEPER_MAX_LINE_BYTES``; default 16 MiB)."""
    instance: int = 0
    """Which of the plugin's ``instances`` this process is (``GATEKEEPER_PLUGIN_INSTANCE``)."""

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, need_socket: bool = True
    ) -> PluginEnv:
        """Reads the variables from ``environ`` (default :data:`os.environ`).

        ``GATEKEEPER_TOKEN``, ``GATEKEEPER_PLUGIN_TYPE``, ``GATEKEEPER_PROTOCOL_VERSION`` and
        (when ``need_socket``) ``GATEKEEPER_SOCKET`` are required. Raises :class:`EnvError`
        naming the variable when one is missing or unusable.
        """
        env = os.environ if environ is None else environ

        def get(var: str) -> str | None:
            value = env.get(var)
            return value if value else None

        def required(var: str) -> str:
            value = get(var)
            if value is None:
                raise EnvError(
                    var,
                    f"environment variable {var} is not set: this program is a gatekeeper "
                    "plugin, run me from gatekeeper (it sets GATEKEEPER_SOCKET, "
                    "GATEKEEPER_TOKEN and the other GATEKEEPER_* variables)",
                )
            return value

        def number(var: str, value: str) -> int:
            try:
                parsed = int(value.strip())
            except ValueError:
                parsed = -1
            if parsed < 0:
                raise EnvError(
                    var,
                    f"environment variable {var} has an invalid value {value!r}: "
                    "expected a decimal integer",
                )
            return parsed

        socket = required(SOCKET) if need_socket else (get(SOCKET) or "")
        token = required(TOKEN)
        plugin_type = required(PLUGIN_TYPE)
        if plugin_type not in PLUGIN_TYPES:
            raise EnvError(
                PLUGIN_TYPE,
                f"environment variable {PLUGIN_TYPE} has an invalid value {plugin_type!r}: "
                f"expected one of {', '.join(PLUGIN_TYPES)}",
            )
        protocol_version = number(PROTOCOL_VERSION, required(PROTOCOL_VERSION))
        max_line = get(MAX_LINE_BYTES)
        max_line_bytes = number(MAX_LINE_BYTES, max_line) if max_line else DEFAULT_MAX_LINE_BYTES
        if max_line_bytes == 0:
            raise EnvError(MAX_LINE_BYTES, f"environment variable {MAX_LINE_BYTES} must not be 0")
        instance_value = get(PLUGIN_INSTANCE)
        instance = number(PLUGIN_INSTANCE, instance_value) if instance_value else 0
        return cls(
            socket=socket,
            token=token,
            name=get(PLUGIN_NAME) or plugin_type,
            plugin_type=plugin_type,
            protocol_version=protocol_version,
            max_line_bytes=max_line_bytes,
            instance=instance,
        )
