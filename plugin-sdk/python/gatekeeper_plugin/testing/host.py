"""The test host: runs a plugin object in memory the way gatekeeper runs a plugin process.

:class:`AsyncPluginHost` (``async with``) and :class:`PluginHost` (``with``, on an event loop
of its own) serve the plugin with :func:`~gatekeeper_plugin.serve_async` over a socket pair and
play the proxy on the other end, through the SDK's own JSON-RPC connection: every call and
result is encoded to a JSON line and decoded again. On entry: the plugin's handshake (token,
protocol version, declared hooks) is checked and accepted, then ``configure`` and ``start`` are
called; on exit, ``stop``. In between, one method per hook (``host.modify_request(request)``,
…) sends the call and returns the result after checking it as gatekeeper does (the method's
result schema, ``protocol.json``): a result gatekeeper would refuse raises :class:`BadResult`,
an error answer raises the plugin's :class:`~gatekeeper_plugin.RpcError`. Manager calls of an
upstream plugin (``add_upstream``, ``apply_batch``, …) are checked, answered and recorded in
:attr:`AsyncPluginHost.manager_calls`.
"""

from __future__ import annotations

import asyncio
import inspect
import socket
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

from .. import codes, protocol
from .._connection import Connection
from ..errors import RpcError
from ..models import DEFAULT_MAX_LINE_BYTES, PROTOCOL_VERSION, JsonObject
from ..plugin import Plugin
from ..serve import serve_async
from .hooks import HookCalls

TOKEN: Final = "test-host-token"
"""The token the test host gives the plugin (and expects back in the handshake)."""

DEFAULT_TIMEOUT: Final = 5.0
"""How long each step (handshake, one call, the end of serving) may take, in seconds."""

ManagerAnswer = Callable[[str, JsonObject], Any]
"""Answers an upstream plugin's manager call: ``(method, params) -> result`` (or an awaitable
of it); raise :class:`~gatekeeper_plugin.RpcError` to refuse it."""


class TestHostError(AssertionError):
    """The plugin did something gatekeeper would refuse (an assertion failure in a test)."""

    __test__ = False  # not a test class, whatever collects tests


class BadResult(TestHostError):
    """A hook's result that gatekeeper would refuse (it then treats the call as failed)."""


class NotDeclared(TestHostError):
    """A hook called that the plugin did not declare in its handshake (gatekeeper never calls
    it)."""


class BadHandshake(TestHostError):
    """A handshake gatekeeper would refuse (wrong token, protocol version or params)."""


def plugin_env(plugin_type: str, **overrides: str | None) -> dict[str, str]:
    """The ``GATEKEEPER_*`` variables of an in-memory run (token :data:`TOKEN` unless
    overridden, protocol 1); a variable overridden with ``None`` is left out."""
    env: dict[str, str | None] = {
        "GATEKEEPER_TOKEN": TOKEN,
        "GATEKEEPER_PROTOCOL_VERSION": str(PROTOCOL_VERSION),
        "GATEKEEPER_PLUGIN_TYPE": plugin_type,
        "GATEKEEPER_PLUGIN_NAME": "test",
    }
    env.update(overrides)
    return {k: v for k, v in env.items() if v is not None}


async def socket_pair_streams(
    limit: int = DEFAULT_MAX_LINE_BYTES,
) -> tuple[tuple[asyncio.StreamReader, asyncio.StreamWriter], tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """Two connected stream pairs over a Unix socket pair: the plugin's (reading lines up to
    ``limit``) and the proxy's."""
    plugin_sock, proxy_sock = socket.socketpair()
    plugin_side = await asyncio.open_unix_connection(sock=plugin_sock, limit=limit)
    proxy_side = await asyncio.open_unix_connection(
        sock=proxy_sock, limit=max(limit, DEFAULT_MAX_LINE_BYTES) * 2
    )
    return plugin_side, proxy_side


class AsyncPluginHost(HookCalls):
    """Serves ``plugin`` in memory for the body of an ``async with`` block::

        async with AsyncPluginHost(TokenAuth(), config={"tokens_file": path}) as host:
            result = await host.modify_request(make_request(path="/api"))
            assert result["response"]["status"] == 401

    ``type``: the plugin type gatekeeper runs it as (default: the plugin's own); ``config``: the
    config map ``configure`` sends; ``check=True`` runs the lifecycle of ``gatekeeper check``
    instead (``configure`` with ``check: true``, no ``start``); ``manager``: answers an upstream
    plugin's manager calls (default: accepts them all); ``timeout``: seconds each step may take.
    Entering raises the plugin's :class:`~gatekeeper_plugin.RpcError` when ``configure`` or
    ``start`` fails, :class:`BadHandshake` or the SDK's
    :class:`~gatekeeper_plugin.ServeError` when serving cannot begin.
    """

    declared: JsonObject
    """The plugin's handshake params (``hooks``, ``bodies``, ``no_retry``, ``parts``)."""
    manager_calls: list[JsonObject]
    """Every manager call of the plugin, in order, as ``{"method": …, "params": …}``."""
    config_status: list[str | None]
    """Every ``config_status`` report of the plugin: the error, or ``None`` when cleared."""

    def __init__(
        self,
        plugin: Plugin,
        type: str | None = None,  # noqa: A002 - the name the docs use
        config: Mapping[str, Any] | None = None,
        *,
        name: str = "test",
        check: bool = False,
        manager: ManagerAnswer | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.plugin = plugin
        self.plugin_type = type or plugin.plugin_type
        self.config = dict(config or {})
        self.name = name
        self.check = check
        self.timeout = timeout
        self._manager = manager
        self.declared = {}
        self.manager_calls = []
        self.config_status = []
        self._connection: Connection | None = None
        self._serving: asyncio.Task[None] | None = None
        self._reading: asyncio.Task[None] | None = None
        self._plugin_writer: asyncio.StreamWriter | None = None
        self._stopped = False

    # -- the lifecycle --------------------------------------------------------------------

    async def __aenter__(self) -> AsyncPluginHost:
        (plugin_reader, plugin_writer), (reader, writer) = await socket_pair_streams()
        self._plugin_writer = plugin_writer
        handshake: asyncio.Future[JsonObject] = asyncio.get_running_loop().create_future()
        self._handshake = handshake
        self._connection = Connection(
            reader, writer, self._answer, max_line_bytes=DEFAULT_MAX_LINE_BYTES
        )
        self._reading = asyncio.create_task(self._connection.run(), name="test-host:read")
        self._serving = asyncio.create_task(
            serve_async(
                self.plugin,
                plugin_reader,
                plugin_writer,
                env=plugin_env(self.plugin_type, GATEKEEPER_PLUGIN_NAME=self.name),
            ),
            name="test-host:plugin",
        )
        try:
            await self._wait_handshake()
            if self.check:
                await self.call("configure", {"config": self.config, "check": True})
            else:
                await self.call("configure", {"config": self.config})
                await self.call("start", {})
        except BaseException:
            await self._end()
            raise
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        await self.stop(raise_errors=exc is None)

    async def stop(self, *, raise_errors: bool = True) -> None:
        """Sends ``stop`` (once) and waits for the plugin's serve call to end; re-raises what it
        raised (unless ``raise_errors`` is false)."""
        if self._stopped:
            return
        self._stopped = True
        stopped = False
        try:
            if self._serving is not None and not self._serving.done():
                try:
                    await self.call("stop", {})
                    stopped = True
                except (RpcError, TestHostError, TimeoutError):
                    if raise_errors:
                        raise
        finally:
            error = await self._end(stopped=stopped)
        if error is not None and raise_errors:
            raise error

    async def _wait_handshake(self) -> None:
        assert self._serving is not None
        done, _ = await asyncio.wait(
            {self._handshake, self._serving},
            timeout=self.timeout,
            return_when=asyncio.FIRST_COMPLETED,
        )
        if self._handshake in done:
            self._handshake.result()
            return
        if self._serving in done:
            self._serving.result()  # the plugin's ServeError
            raise BadHandshake("the plugin stopped serving before its handshake")
        raise TimeoutError(f"no handshake from the plugin within {self.timeout:g} s")

    async def _end(self, *, stopped: bool = False) -> BaseException | None:
        """Waits for the plugin to end (after ``stop`` was answered, its own closing; else once
        the proxy's side is closed) and closes both sides; what serving raised."""
        error: BaseException | None = None
        if self._serving is not None:
            if stopped and not self._serving.done():
                await asyncio.wait({self._serving}, timeout=self.timeout)
            if self._connection is not None:
                await self._connection.close()
            if not self._serving.done():
                await asyncio.wait({self._serving}, timeout=self.timeout)
            if not self._serving.done():
                self._serving.cancel()
                await asyncio.wait({self._serving})
                error = TimeoutError(f"the plugin did not stop within {self.timeout:g} s")
            elif not self._serving.cancelled():
                error = self._serving.exception()
        elif self._connection is not None:
            await self._connection.close()
        if self._plugin_writer is not None:
            self._plugin_writer.close()
        if self._reading is not None:
            self._reading.cancel()
            await asyncio.wait({self._reading})
        return error

    # -- calls to the plugin --------------------------------------------------------------

    async def call(self, method: str, params: JsonObject) -> Any:
        """Sends ``method`` with ``params`` and returns the plugin's result, checked as
        gatekeeper checks it. Raises :class:`NotDeclared` for a hook the plugin did not
        declare, ``ValueError`` for params gatekeeper would never send, :class:`BadResult`,
        the plugin's :class:`~gatekeeper_plugin.RpcError`, or ``TimeoutError``."""
        info = protocol.METHODS.get(method)
        if info is None or info["direction"] == "plugin_to_proxy":
            raise ValueError(f"`{method}` is not a method gatekeeper calls on a plugin")
        if info["kind"] == "hook":
            if self.plugin_type not in info["declared_by"]:
                raise ValueError(f"`{method}` is not a hook of a {self.plugin_type} plugin")
            hooks = self.declared.get("hooks", [])
            if method not in hooks:
                raise NotDeclared(
                    f"the plugin did not declare `{method}` in its handshake (it declared: "
                    f"{', '.join(hooks) or 'nothing'}), so gatekeeper never calls it"
                )
        try:
            protocol.check_params(method, params)
        except protocol.SchemaError as exc:
            raise ValueError(f"gatekeeper never sends these params to `{method}`: {exc}") from None
        if self._connection is None:
            raise RuntimeError("the test host is not running: use it in a `with` block")
        calling = asyncio.ensure_future(self._connection.call(method, params, self.timeout + 1))
        assert self._serving is not None
        done, _ = await asyncio.wait(
            {calling, self._serving}, timeout=self.timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if calling not in done:
            calling.cancel()
            if self._serving in done:
                self._serving.result()
                raise TestHostError(f"the plugin stopped serving during `{method}`")
            raise TimeoutError(f"no answer from the plugin to `{method}` within {self.timeout:g} s")
        result = calling.result()
        try:
            protocol.check_result(method, result)
        except protocol.SchemaError as exc:
            raise BadResult(
                f"the plugin answered `{method}` with a result gatekeeper refuses (it would "
                f"count the call as failed): {exc}; the result: {result!r}"
            ) from None
        return result

    # -- calls from the plugin ------------------------------------------------------------

    async def _answer(self, method: str, params: JsonObject) -> JsonObject:
        if method == "handshake":
            return self._accept_handshake(params)
        info = protocol.METHODS.get(method)
        if info is None or info["direction"] == "proxy_to_plugin":
            raise RpcError(codes.METHOD_NOT_FOUND, f"method not found: {method}")
        try:
            protocol.check_params(method, params)
        except protocol.SchemaError as exc:
            raise RpcError.invalid_params(str(exc)) from None
        if method == "config_status":
            self.config_status.append(params.get("error"))
            return {}
        if self.plugin_type != "upstream":
            raise RpcError(
                codes.METHOD_NOT_FOUND, f"`{method}` is for upstream plugins only"
            )
        self.manager_calls.append({"method": method, "params": params})
        if self._manager is not None:
            answer = self._manager(method, params)
            if inspect.isawaitable(answer):
                answer = await answer
            return {} if answer is None else answer  # type: ignore[no-any-return]
        if method == "apply_batch":
            return _batch_counts(params)
        return {}

    def _accept_handshake(self, params: JsonObject) -> JsonObject:
        problem = None
        try:
            protocol.check_params("handshake", params)
        except protocol.SchemaError as exc:
            problem = BadHandshake(f"gatekeeper refuses this handshake: {exc}")
        if problem is None and params.get("token") != TOKEN:
            problem = BadHandshake("the handshake's token is not the one gatekeeper gave")
        if problem is None and params.get("protocol_version") != PROTOCOL_VERSION:
            problem = BadHandshake(
                f"the handshake asks for protocol version {params.get('protocol_version')}, "
                f"gatekeeper speaks {PROTOCOL_VERSION}"
            )
        if problem is not None:
            if not self._handshake.done():
                self._handshake.set_exception(problem)
            raise RpcError(codes.INVALID_PARAMS, str(problem))
        self.declared = dict(params)
        if not self._handshake.done():
            self._handshake.set_result(self.declared)
        return {"protocol_version": PROTOCOL_VERSION, "name": self.name, "type": self.plugin_type}


def _batch_counts(params: JsonObject) -> JsonObject:
    """An accepting answer to ``apply_batch``: every change counted as applied."""
    counts = dict.fromkeys(
        ("upstreams_added", "upstreams_removed", "backends_added", "backends_removed", "unchanged"),
        0,
    )
    keys = {
        "add_upstream": "upstreams_added",
        "remove_upstream": "upstreams_removed",
        "add_backend": "backends_added",
        "remove_backend": "backends_removed",
    }
    for change in params.get("changes", []):
        for op, key in keys.items():
            if isinstance(change, dict) and op in change:
                counts[key] += 1
    return counts


class PluginHost(HookCalls):
    """:class:`AsyncPluginHost` for plain (synchronous) tests, on an event loop of its own::

        with PluginHost(TokenAuth(), type="modifier", config={"tokens_file": path}) as host:
            assert host.modify_request(make_request())["response"]["status"] == 401

    The loop runs only during the host's calls, so a plugin's background tasks run then too.
    Inside a coroutine, use :class:`AsyncPluginHost`. Same arguments and attributes.
    """

    def __init__(self, plugin: Plugin, type: str | None = None, config: Mapping[str, Any] | None = None, **options: Any) -> None:  # noqa: A002
        self._host = AsyncPluginHost(plugin, type, config, **options)
        self._loop: asyncio.AbstractEventLoop | None = None

    def _run(self, step: Awaitable[Any]) -> Any:
        if self._loop is None:
            raise RuntimeError("the test host is not running: use it in a `with` block")
        return self._loop.run_until_complete(step)

    def __enter__(self) -> PluginHost:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError("PluginHost runs its own event loop: in a coroutine, use `async with AsyncPluginHost(...)`")
        self._loop = asyncio.new_event_loop()
        try:
            self._run(self._host.__aenter__())
        except BaseException:
            self._close_loop()
            raise
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            self._run(self._host.__aexit__(exc_type, exc, tb))
        finally:
            self._close_loop()

    def _close_loop(self) -> None:
        """Cancels what the plugin left running (its background tasks), then closes the loop."""
        loop, self._loop = self._loop, None
        if loop is None:
            return
        try:
            left = asyncio.all_tasks(loop)
            for task in left:
                task.cancel()
            if left:
                loop.run_until_complete(asyncio.wait(left, timeout=self._host.timeout))
        finally:
            loop.close()

    def call(self, method: str, params: JsonObject) -> Any:
        """See :meth:`AsyncPluginHost.call`."""
        return self._run(self._host.call(method, params))

    def stop(self) -> None:
        """See :meth:`AsyncPluginHost.stop`."""
        self._run(self._host.stop())

    @property
    def declared(self) -> JsonObject:
        """See :attr:`AsyncPluginHost.declared`."""
        return self._host.declared

    @property
    def manager_calls(self) -> list[JsonObject]:
        """See :attr:`AsyncPluginHost.manager_calls`."""
        return self._host.manager_calls

    @property
    def config_status(self) -> list[str | None]:
        """See :attr:`AsyncPluginHost.config_status`."""
        return self._host.config_status


__all__ = [
    "AsyncPluginHost",
    "BadHandshake",
    "BadResult",
    "DEFAULT_TIMEOUT",
    "ManagerAnswer",
    "NotDeclared",
    "PluginHost",
    "TOKEN",
    "TestHostError",
    "plugin_env",
    "socket_pair_streams",
]
