"""Serving a plugin: read the environment, connect, handshake, answer the proxy's calls until
``stop`` has been answered or the connection closes.

* :func:`serve` -- the whole of a plugin's ``main``: logging to stderr, then
  :func:`serve_async` under :func:`asyncio.run`, and a clear message plus exit status when it
  fails (2: not started by gatekeeper; 1: anything else).
* :func:`serve_async` -- the same as a coroutine, for programs that run their own event loop, and
  for tests: give it a ``reader``/``writer`` pair and an ``env`` mapping and it serves over them
  instead of the socket named by ``GATEKEEPER_SOCKET``.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Mapping
from typing import Any, Final

from . import codes
from ._connection import Connection
from .env import PluginEnv
from .errors import EnvError, RpcError, ServeError
from .manager import ConfigReporter, Manager
from .models import LIFECYCLE_METHODS, PROTOCOL_VERSION, JsonObject
from .patch import as_patch, snapshot
from .declarations import declaration_warnings
from .plugin import InvalidResult, Plugin, UpstreamPlugin, hook_result

logger = logging.getLogger("gatekeeper_plugin")

HANDSHAKE_TIMEOUT: Final = 10.0
"""How long the proxy has to answer the handshake, in seconds."""


def init_logging(level: int = logging.INFO) -> None:
    """Sends :mod:`logging` output to stderr (gatekeeper copies it into its own log, tagged with
    the plugin's name, so lines carry no timestamp), unless logging is already configured.
    :func:`serve` calls it; configure logging yourself before to choose otherwise."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(
            stream=sys.stderr, level=level, format="%(levelname)s %(name)s: %(message)s"
        )


def serve(plugin: Plugin) -> None:
    """Serves ``plugin`` for the life of the process: the usual ``main`` of a plugin.

    Sets up logging to stderr (:func:`init_logging`), then runs :func:`serve_async` with
    :func:`asyncio.run`. Returns normally once ``stop`` has been answered or gatekeeper closed
    the connection (so the process exits with status 0). When the program was not started by
    gatekeeper (a ``GATEKEEPER_*`` variable is missing) it prints why on stderr and exits with
    status 2; on any other :class:`ServeError` (handshake refused, ...) with status 1.
    """
    init_logging()
    try:
        asyncio.run(serve_async(plugin))
    except EnvError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except ServeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


async def serve_async(
    plugin: Plugin,
    reader: asyncio.StreamReader | None = None,
    writer: asyncio.StreamWriter | None = None,
    *,
    env: Mapping[str, str] | PluginEnv | None = None,
) -> None:
    """Serves ``plugin`` until ``stop`` has been answered or the connection closes, then closes
    the connection and returns.

    ``env``: the ``GATEKEEPER_*`` variables (default :data:`os.environ`), or a
    :class:`PluginEnv`. ``reader``/``writer``: a connection to serve over instead of connecting
    to ``GATEKEEPER_SOCKET`` (which is then not required); give both or neither, and create the
    reader with ``limit=`` at least ``GATEKEEPER_MAX_LINE_BYTES`` (asyncio's default is 64 KiB).

    Steps: check that gatekeeper runs the program as ``plugin``'s type; send ``handshake`` (the
    token, protocol version 1, :attr:`Plugin.hooks`); answer every call on its own task
    (``configure``, ``start``, ``heartbeat``, ``stop`` and the declared hooks); map errors
    (:class:`RpcError` -> its code, bad params -> ``-32602``, an undeclared hook or unknown
    method -> ``-32601``, any other exception -> ``-32603``).

    Raises :class:`EnvError` when the environment is missing or unusable, :class:`ServeError`
    when the type does not match, the socket cannot be connected to, the handshake fails, or
    gatekeeper breaks the framing (a line over the limit, bytes that are not UTF-8).
    """
    if (reader is None) != (writer is None):
        raise TypeError("give serve_async both reader and writer, or neither")
    if not plugin.plugin_type:
        raise TypeError(
            "serve a subclass of UpstreamPlugin, ModifierPlugin, RouterPlugin, "
            "LoadBalancerPlugin or MetricPlugin"
        )
    plugin_env = (
        env if isinstance(env, PluginEnv) else PluginEnv.from_env(env, need_socket=reader is None)
    )
    if plugin_env.plugin_type != plugin.plugin_type:
        raise ServeError(
            f"gatekeeper started this program as a `{plugin_env.plugin_type}` plugin, "
            f"but it is a `{plugin.plugin_type}` plugin"
        )
    if plugin_env.protocol_version != PROTOCOL_VERSION:
        logger.warning(
            "gatekeeper speaks protocol version %d, this SDK %d: the handshake will likely be "
            "refused",
            plugin_env.protocol_version,
            PROTOCOL_VERSION,
        )
    hooks = [str(hook) for hook in plugin.hooks]
    for hook in hooks:
        if hook not in plugin.type_hooks:
            logger.warning(
                "declaring `%s`, which %s plugins do not have; gatekeeper ignores it",
                hook,
                plugin.plugin_type,
            )
    for warning in declaration_warnings(plugin):
        logger.warning("%s", warning)
    bodies = [str(hook) for hook in plugin.bodies]
    for hook in bodies:
        if hook not in hooks:
            logger.warning(
                "wanting the body of `%s`, which is not declared; gatekeeper ignores it", hook
            )
    no_retry = [str(hook) for hook in plugin.no_retry]
    for hook in no_retry:
        if hook not in hooks:
            logger.warning("`no_retry` for `%s`, which is not declared; gatekeeper ignores it", hook)
    handshake_params: JsonObject = {
        "token": plugin_env.token,
        "protocol_version": PROTOCOL_VERSION,
        "hooks": hooks,
    }
    if bodies:
        handshake_params["bodies"] = bodies
    if no_retry:
        handshake_params["no_retry"] = no_retry
    request_parts = [str(part) for part in getattr(plugin, "request_parts", ())]
    if request_parts and "modify_request" in hooks:
        handshake_params["parts"] = {"modify_request": request_parts}
    if reader is None or writer is None:
        try:
            reader, writer = await asyncio.open_unix_connection(
                plugin_env.socket, limit=plugin_env.max_line_bytes
            )
        except OSError as exc:
            raise ServeError(
                f"could not connect to the gatekeeper socket {plugin_env.socket}: {exc}"
            ) from exc

    declared = frozenset(hooks)
    stopped = asyncio.Event()

    async def handle(method: str, params: JsonObject) -> JsonObject:
        return await dispatch(plugin, declared, method, params)

    def on_replied(method: str) -> None:
        if method == "stop":
            stopped.set()

    connection = Connection(
        reader,
        writer,
        handle,
        max_line_bytes=plugin_env.max_line_bytes,
        on_replied=on_replied,
    )
    plugin.env = plugin_env
    plugin.config_reporter = ConfigReporter(connection.call)
    if isinstance(plugin, UpstreamPlugin):
        plugin.manager = Manager(connection.call)

    reading = asyncio.create_task(connection.run(), name="gatekeeper_plugin:read")
    stopping = asyncio.create_task(stopped.wait(), name="gatekeeper_plugin:stop")
    handshake = asyncio.create_task(
        connection.call(
            "handshake",
            handshake_params,
            HANDSHAKE_TIMEOUT,
        ),
        name="gatekeeper_plugin:handshake",
    )
    try:
        await asyncio.wait({handshake, reading}, return_when=asyncio.FIRST_COMPLETED)
        if not handshake.done():
            reading.result()  # a ServeError from the read loop, if any
            raise ServeError("handshake with gatekeeper failed: the connection closed")
        try:
            accepted = handshake.result()
        except RpcError as exc:
            raise ServeError(f"handshake with gatekeeper failed: {exc}") from None
        logger.debug("handshake accepted: %s", accepted)

        await asyncio.wait({reading, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if stopping.done():
            logger.debug("stopped")
        else:
            reading.result()
            logger.info("gatekeeper closed the connection")
    finally:
        for task in (handshake, stopping, reading):
            task.cancel()
        await connection.close()
        await asyncio.wait({handshake, stopping, reading})
        for task in (handshake, stopping, reading):
            if not task.cancelled():
                task.exception()  # retrieved: already reported above, or moot after the end


async def dispatch(
    plugin: Plugin, declared: frozenset[str], method: str, params: JsonObject
) -> JsonObject:
    """Answers one call: a hook of the plugin's type (refused with ``-32601`` unless declared),
    a lifecycle method, or ``-32601`` for anything else. Returns the JSON-RPC result."""
    hook = plugin.hook_table.get(method)
    if hook is not None:
        if method not in declared:
            raise RpcError(codes.METHOD_NOT_FOUND, f"`{method}` was not declared in the handshake")
        args = read_params(method, hook.params, params)
        sent = snapshot(args[hook.patch[0]]) if hook.patch is not None else None
        value = await getattr(plugin, method)(*args)
        if hook.patch is not None and sent is not None and isinstance(value, dict):
            # Turned into a patch first, then checked: checking the small patch instead of the
            # whole returned request is most of this SDK's work per call saved (the unchanged
            # parts were valid when sent). Whatever a patch cannot say, or a returned value too
            # malformed to compare, is checked whole, as before.
            try:
                patched = as_patch(hook.patch[1], sent, value)
            except (TypeError, ValueError, AttributeError, KeyError):
                patched = value
            if patched is not value:
                try:
                    return hook_result(method, hook.check, patched)
                except InvalidResult:
                    pass  # checked whole below, so the error names what the hook returned
        return hook_result(method, hook.check, value)
    if method == "configure":
        config = read_params(method, _config_params, params)[0]
        if params.get("check") is True:
            await plugin.check(config)
        else:
            await plugin.configure(config)
        return {}
    if method in LIFECYCLE_METHODS:
        await getattr(plugin, method)()
        return {}
    raise RpcError(codes.METHOD_NOT_FOUND, f"method not found: {method}")


def _config_params(params: JsonObject) -> tuple[Any, ...]:
    config = params.get("config")
    if config is None:
        return ({},)
    if not isinstance(config, dict):
        raise RpcError.invalid_params("field `config` must be an object")
    return (config,)


def read_params(
    method: str, reader: Callable[[JsonObject], tuple[Any, ...]], params: JsonObject
) -> tuple[Any, ...]:
    """Runs a hook's params reader; a ``KeyError``, ``TypeError`` or ``ValueError`` while reading
    becomes ``-32602`` (invalid params)."""
    try:
        return reader(params)
    except RpcError as exc:
        raise RpcError(exc.code, f"invalid params for `{method}`: {exc.message}") from None
    except (KeyError, TypeError, ValueError) as exc:
        raise RpcError.invalid_params(f"invalid params for `{method}`: {exc}") from None
