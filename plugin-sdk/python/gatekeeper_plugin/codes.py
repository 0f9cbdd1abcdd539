"""JSON-RPC error codes of the gatekeeper protocol (docs/protocol.md, "Errors").

Raise :class:`gatekeeper_plugin.RpcError` with one of these (or any code of your own) from a hook;
compare :attr:`RpcError.code` with them when a :class:`gatekeeper_plugin.Manager` call fails.
"""

from typing import Final

PARSE_ERROR: Final = -32700
"""The line is not JSON."""
INVALID_REQUEST: Final = -32600
"""JSON, but not a JSON-RPC message."""
METHOD_NOT_FOUND: Final = -32601
"""Unknown method, an undeclared hook, or a manager method from a non-upstream plugin."""
INVALID_PARAMS: Final = -32602
"""Params missing or of the wrong shape."""
INTERNAL_ERROR: Final = -32603
"""The answering side failed."""
UNAUTHORIZED: Final = -32000
"""(proxy) Wrong token, or a request before the handshake."""
UNSUPPORTED_VERSION: Final = -32001
"""(proxy) ``protocol_version`` is not the proxy's."""
UNKNOWN_UPSTREAM: Final = -32010
"""(proxy) The upstream named does not exist."""
CONFLICT: Final = -32011
"""(proxy) The id exists with different content, or a prefix or hostname is taken."""
INVALID_VALUE: Final = -32012
"""(proxy) A field's value is unusable (e.g. a backend address)."""
UNKNOWN_BACKEND: Final = -32013
"""(proxy) The backend named does not exist in its upstream."""
UNAVAILABLE: Final = -32020
"""(plugin) The plugin cannot answer now; the proxy applies the failure policy."""
