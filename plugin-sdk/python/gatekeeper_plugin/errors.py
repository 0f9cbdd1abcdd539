"""The SDK's exceptions.

* :class:`RpcError` -- a JSON-RPC error: raise it from a hook to answer the proxy with that code
  and message; a failed :class:`~gatekeeper_plugin.Manager` call raises it with the proxy's code.
* :class:`ServeError` -- serving could not start or had to stop abnormally (handshake refused,
  a line over the limit, ...). :class:`EnvError` is the case where the ``GATEKEEPER_*``
  environment is missing or unusable, i.e. the program was not started by gatekeeper.
"""

from __future__ import annotations

from typing import Any

from . import codes


class RpcError(Exception):
    """A JSON-RPC error object: ``{"code": code, "message": message}`` (plus ``data`` if set).

    Raised from a hook, it becomes the error response to the proxy's call (the proxy logs it and
    applies the plugin's failure policy). Raised by a :class:`~gatekeeper_plugin.Manager` call,
    it carries the proxy's code (e.g. :data:`codes.CONFLICT`), or :data:`codes.INTERNAL_ERROR`
    when the call could not be made (timeout, connection closed, request too large).
    """

    code: int
    message: str
    data: Any

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message
        self.data = data

    def __str__(self) -> str:
        return f"{self.message} (code {self.code})"

    def __repr__(self) -> str:
        return f"RpcError({self.code!r}, {self.message!r})"

    def to_object(self) -> dict[str, Any]:
        """The JSON-RPC error object."""
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error

    @classmethod
    def invalid_params(cls, message: str) -> RpcError:
        """The params, or the plugin's configuration, cannot be used (-32602)."""
        return cls(codes.INVALID_PARAMS, message)

    @classmethod
    def internal(cls, message: str) -> RpcError:
        """An internal error of the plugin (-32603)."""
        return cls(codes.INTERNAL_ERROR, message)

    @classmethod
    def unavailable(cls, message: str) -> RpcError:
        """The plugin cannot answer right now, e.g. it is not configured yet (-32020)."""
        return cls(codes.UNAVAILABLE, message)


class ServeError(Exception):
    """Serving the plugin failed: it could not start (wrong plugin type, no socket, handshake
    refused) or the connection broke abnormally (a line over the limit, bytes that are not
    UTF-8). :func:`~gatekeeper_plugin.serve` prints it on stderr and exits with status 1."""


class EnvError(ServeError):
    """The ``GATEKEEPER_*`` environment is missing or has an unusable value: the program was not
    started by gatekeeper. :func:`~gatekeeper_plugin.serve` prints it and exits with status 2."""

    variable: str

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(message)
        self.variable = variable
