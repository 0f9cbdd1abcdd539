"""The :class:`Manager`: an upstream plugin's handle on the proxy's registry of upstreams and
backends (docs/protocol.md, "Upstream plugins: the manager")."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final, cast

from . import protocol
from .batch import ApplyBatchResult, BatchChange
from .errors import RpcError
from .models import Backend, JsonObject, Upstream

DEFAULT_MANAGER_TIMEOUT: Final = 10.0
"""How long a manager call waits for the proxy by default, in seconds."""

Caller = Callable[[str, JsonObject, float], Awaitable[Any]]
"""Sends a request to the proxy and returns its result: ``(method, params, timeout)``."""


class Manager:
    """Adds and removes upstreams and backends in the proxy, by calling the ``add_upstream``,
    ``remove_upstream``, ``add_backend`` and ``remove_backend`` methods on it, or many of those
    as one with :meth:`apply_batch`.

    An :class:`~gatekeeper_plugin.UpstreamPlugin` gets one as :attr:`UpstreamPlugin.manager`
    once it is served. Calls may be made from any hook (typically ``start``, before it returns:
    the proxy answers them while it waits for ``start``) and from background tasks the plugin
    starts. Calls may run concurrently.

    Every method returns ``None`` on success (:meth:`apply_batch`: the counts of what changed)
    and raises :class:`~gatekeeper_plugin.RpcError` on
    failure: with the proxy's code (``codes.INVALID_PARAMS``, ``codes.UNKNOWN_UPSTREAM``,
    ``codes.CONFLICT``, ``codes.INVALID_VALUE``, ``codes.UNKNOWN_BACKEND``), or with
    ``codes.INTERNAL_ERROR`` when no answer came within :attr:`timeout` or the connection
    closed. An ``RpcError`` left to propagate out of a hook answers that hook with the same code.

    Adding is idempotent (the same content again succeeds); adding an id that exists with
    different content is ``codes.CONFLICT``: remove it first.
    """

    timeout: float
    """Seconds each call waits for the proxy's answer."""

    def __init__(self, call: Caller, timeout: float = DEFAULT_MANAGER_TIMEOUT) -> None:
        self._call = call
        self.timeout = timeout

    async def _send(self, method: str, params: JsonObject, timeout: float) -> Any:
        """Checks ``params`` against the method's schema (``protocol.json``): a mistake is
        raised here as ``-32602``, as the proxy would answer it; then calls the proxy and
        returns its result."""
        try:
            protocol.check_params(method, params)
        except protocol.SchemaError as exc:
            raise RpcError.invalid_params(str(exc)) from None
        return await self._call(method, params, timeout)

    async def add_upstream(self, upstream: Upstream) -> None:
        """Adds an upstream, e.g. ``{"id": "api", "prefixes": ["api"]}`` (see
        :class:`~gatekeeper_plugin.Upstream`)."""
        await self._send("add_upstream", {"upstream": upstream}, self.timeout)

    async def remove_upstream(self, id: str) -> None:  # noqa: A002 - the protocol's name
        """Removes an upstream and all of its backends."""
        await self._send("remove_upstream", {"id": id}, self.timeout)

    async def add_backend(self, upstream_id: str, backend: Backend) -> None:
        """Adds a backend, e.g. ``{"id": "api-1", "address": "http://127.0.0.1:9001"}``, to
        upstream ``upstream_id``."""
        await self._send(
            "add_backend", {"upstream_id": upstream_id, "backend": backend}, self.timeout
        )

    async def remove_backend(self, upstream_id: str, backend_id: str) -> None:
        """Removes backend ``backend_id`` from upstream ``upstream_id``."""
        await self._send(
            "remove_backend", {"upstream_id": upstream_id, "backend_id": backend_id}, self.timeout
        )

    async def apply_batch(
        self, changes: Iterable[BatchChange], replace: bool = False
    ) -> ApplyBatchResult:
        """Applies many changes as one, in order, all or none: the proxy's readers never see
        half of it. Build the changes with :mod:`gatekeeper_plugin.batch`
        (``batch.add_upstream(...)``, ``batch.add_backend(...)``, ...).

        With ``replace=True`` the changes are the plugin's whole desired state (adds only): the
        proxy removes the upstreams this plugin added that the batch does not have and the
        backends of its upstreams that it does not list, and replaces what changed.

        Returns the counts (``upstreams_added``, ``upstreams_removed``, ``backends_added``,
        ``backends_removed``, ``unchanged``). A refused batch changes nothing and raises
        :class:`~gatekeeper_plugin.RpcError` with the first refused change's code;
        :func:`gatekeeper_plugin.batch.refused` lists every refused change with its index.
        """
        params: JsonObject = {"changes": list(changes), "replace": bool(replace)}
        return cast(ApplyBatchResult, await self._send("apply_batch", params, self.timeout))


class ConfigReporter:
    """Reports the plugin's config state to the proxy (``config_status``), for a plugin of any
    type that changes its config on its own (e.g. it watches a file): the proxy logs a rejection
    once and shows it in ``gatekeeper ctl plugins`` and its metrics until it is cleared. Send a
    report when the state changes, not on every poll.

    Every plugin gets one as :attr:`Plugin.config_reporter` once it is served; the shortcuts
    :meth:`Plugin.report_config_error` and :meth:`Plugin.report_config_ok` use it. Raises
    :class:`~gatekeeper_plugin.RpcError` like the :class:`Manager`.
    """

    timeout: float
    """Seconds each call waits for the proxy's answer."""

    def __init__(self, call: Caller, timeout: float = DEFAULT_MANAGER_TIMEOUT) -> None:
        self._call = call
        self.timeout = timeout

    async def report_config_error(self, message: str) -> None:
        """The new config was rejected (the plugin keeps its last good one): ``message`` says
        what is wrong, with file, line and key where there are some."""
        await self._call("config_status", {"error": str(message)}, self.timeout)

    async def report_config_ok(self) -> None:
        """The current config is accepted (clears an earlier rejection)."""
        await self._call("config_status", {"error": None}, self.timeout)
