"""The plugin base classes: :class:`Plugin` (the lifecycle every plugin shares) and one subclass
per plugin type -- :class:`UpstreamPlugin`, :class:`ModifierPlugin`, :class:`RouterPlugin`,
:class:`LoadBalancerPlugin` and :class:`MetricPlugin`.

Subclass the one for your type and override the hooks you need (as ``async def``); every
method has a default that does nothing or changes nothing. Calls arrive concurrently (each is
its own asyncio task), so a hook that awaits lets the others run.

Declared hooks: :attr:`Plugin.hooks` is sent in the handshake, and the proxy calls only those.
By default it is the hooks your class overrides, so a modifier that only overrides
``modify_response`` costs the proxy no ``modify_request`` round trip. Set ``hooks`` (a class
attribute, or an instance attribute in ``__init__``) to declare another list. A call of a hook
that was not declared is answered with ``-32601``. A hook call in flight on a process that dies
is sent once more to another process; list the hooks that must not run twice in
:attr:`Plugin.no_retry`.

Errors: raise :class:`~gatekeeper_plugin.RpcError` to answer with a code and message; any other
exception answers ``-32603`` (internal error) with its message, and is logged with its traceback.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Final, NamedTuple

from . import protocol
from .errors import RpcError
from .models import (
    LOADBALANCER_HOOKS,
    METRIC_HOOKS,
    MODIFIER_HOOKS,
    ROUTER_HOOKS,
    UPSTREAM_HOOKS,
    Backend,
    EventMetric,
    GetBackendResult,
    JsonObject,
    ModifyRequestResult,
    ModifyResponseResult,
    PluginMetric,
    ProfilingMetric,
    ProxyError,
    Request,
    RequestMetric,
    Response,
    RouteResult,
    Upstream,
    UpstreamMetric,
)

if TYPE_CHECKING:
    from .env import PluginEnv
    from .manager import ConfigReporter, Manager


class InvalidResult(TypeError):
    """A hook returned something the protocol cannot carry (answered with ``-32603``, so the
    proxy never sees a malformed result, which it would treat as a protocol violation)."""


# ---------------------------------------------------------------------------------------------
# Reading params


def _field(params: JsonObject, name: str, kind: type, what: str) -> Any:
    if name not in params:
        raise RpcError.invalid_params(f"missing field `{name}`")
    value = params[name]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise RpcError.invalid_params(f"field `{name}` must be {what}")
    return value


def _obj(params: JsonObject, name: str) -> JsonObject:
    return _field(params, name, dict, "an object")  # type: ignore[no-any-return]


def _str(params: JsonObject, name: str) -> str:
    return _field(params, name, str, "a string")  # type: ignore[no-any-return]


def _list(params: JsonObject, name: str) -> list[Any]:
    return _field(params, name, list, "an array")  # type: ignore[no-any-return]


# ---------------------------------------------------------------------------------------------
# Checking results


def _check_modify_request(result: JsonObject) -> None:
    if (
        not result.keys() & {"request", "response", "patch"}
        and "method" in result
        and "path" in result
    ):
        raise InvalidResult(
            "modify_request returned a request: return {'request': request} to replace it"
        )


def _check_modify_response(method: str) -> Callable[[JsonObject], None]:
    def check(result: JsonObject) -> None:
        if not result.keys() & {"response", "patch"} and "status" in result:
            raise InvalidResult(
                f"{method} returned a response: return {{'response': response}} to replace it"
            )

    return check


# ---------------------------------------------------------------------------------------------
# Hook tables


class Hook(NamedTuple):
    """How one hook is called: ``params`` turns the call's params into the method's arguments
    (a missing or mistyped field answers ``-32602``); ``check``, if any, looks for a common
    mistake in a result before it is checked against the method's result schema
    (``protocol.json``). Hooks whose result is ``{}`` in the protocol answer ``{}`` whatever they
    return."""

    params: Callable[[JsonObject], tuple[Any, ...]]
    check: Callable[[JsonObject], None] | None
    patch: tuple[int, str] | None = None
    """For modifier hooks: which argument (index) is the request or response the hook may
    return changed, and its result key (``"request"``, ``"response"``); the SDK then sends a
    patch of what changed instead (:func:`gatekeeper_plugin.patch.as_patch`)."""


def _request_params(params: JsonObject) -> tuple[Any, ...]:
    return (_obj(params, "request"),)


def _metrics_params(params: JsonObject) -> tuple[Any, ...]:
    return (_list(params, "metrics"),)


class Plugin:
    """The lifecycle every plugin shares. The proxy calls, in order: :meth:`configure`,
    :meth:`start`, :meth:`heartbeat` on an interval while the plugin runs, and :meth:`stop` at
    shutdown. Subclass one of the type classes rather than this one."""

    plugin_type: ClassVar[str] = ""
    """The plugin type this class serves (``"modifier"``, ...), as in ``GATEKEEPER_PLUGIN_TYPE``."""

    type_hooks: ClassVar[tuple[str, ...]] = ()
    """Every hook this plugin type may declare."""

    hook_table: ClassVar[Mapping[str, Hook]] = {}
    """How each of :attr:`type_hooks` is called (used by the serve loop)."""

    env: PluginEnv | None = None
    """The environment the plugin is served with (name, instance, ...); set by
    :func:`~gatekeeper_plugin.serve_async` before the handshake."""

    bodies: Sequence[str] = ()
    """The declared hooks that want the body, sent in the handshake (modifiers only:
    ``modify_request`` gets the request body, ``modify_response`` and ``modify_error_response``
    the response body, as ``body_base64``, up to gatekeeper's ``max_plugin_body``). Use
    :func:`~gatekeeper_plugin.body_bytes` and :func:`~gatekeeper_plugin.set_body_bytes`.
    Default: none (bodies stream past the plugin)."""

    no_retry: Sequence[str] = ()
    """The declared hooks gatekeeper must not send twice, sent in the handshake. By default a
    hook call in flight on a process that dies (or stalls while another instance is ready) is
    sent once more to another process, so a hook may run twice for one request; name a hook
    here (``no_retry = ("modify_request",)``) when running it twice would do harm. Such a call
    fails instead, under the plugin's failure policy. Default: none."""

    @property
    def hooks(self) -> Sequence[str]:
        """The hooks sent in the handshake; the proxy calls no others.

        Default: the hooks of :attr:`type_hooks` that this object's class overrides. Override
        with a class attribute (``hooks = ("modify_request",)``) or by assigning to
        ``self.hooks``.
        """
        declared = self.__dict__.get("_declared_hooks")
        if declared is not None:
            return declared  # type: ignore[no-any-return]
        return overridden_hooks(self)

    @hooks.setter
    def hooks(self, value: Sequence[str]) -> None:
        self.__dict__["_declared_hooks"] = tuple(value)

    async def configure(self, config: JsonObject) -> None:
        """Runs once after the handshake, before :meth:`start` (and again after every restart),
        with the plugin's config map: keys from gatekeeper's config file and pass-through flags,
        values as JSON. Validate it here: raise (e.g. ``RpcError.invalid_params(...)``) and
        gatekeeper reports the message and treats the plugin as failed to start.

        Default: accepts any config and ignores it.
        """
        del config

    async def check(self, config: JsonObject) -> None:
        """Answers ``configure`` with ``check: true`` (sent by ``gatekeeper check``): read and
        check the config and every file it names, act on nothing (no listening, connecting or
        pushing); raise (e.g. ``RpcError.invalid_params(...)``) with what is wrong, with file,
        line and key where there are some. ``stop`` follows, never ``start``.

        Default: runs :meth:`configure`, which must act on nothing anyway.
        """
        await self.configure(config)

    config_reporter: ConfigReporter | None = None
    """Reports config changes the plugin makes on its own to the proxy (``config_status``);
    set by :func:`~gatekeeper_plugin.serve_async` before the handshake."""

    async def report_config_error(self, message: str) -> None:
        """Tells the proxy that the plugin rejected a change of its config (e.g. a watched file
        that does not parse) and keeps its last good one; ``message`` says what is wrong."""
        await self._reporter().report_config_error(message)

    async def report_config_ok(self) -> None:
        """Tells the proxy that the current config is accepted (clears a rejection)."""
        await self._reporter().report_config_ok()

    def _reporter(self) -> ConfigReporter:
        if self.config_reporter is None:
            raise RuntimeError("no connection: the plugin is not being served by gatekeeper_plugin")
        return self.config_reporter

    async def start(self) -> None:
        """Runs once, after :meth:`configure`: begin work. When it returns the plugin is ready
        and its hooks are called. An upstream plugin pushes its upstreams and backends here
        through :attr:`UpstreamPlugin.manager`. Raising fails the start.

        Default: does nothing.
        """

    async def heartbeat(self) -> None:
        """Runs every few seconds (gatekeeper's ``heartbeat_interval``, 5 s by default) while
        the plugin runs. Raising, or not returning within 2 s, counts as a missed heartbeat; a
        plugin that misses two in a row is restarted.

        Default: answers that all is well.
        """

    async def stop(self) -> None:
        """Runs once, when gatekeeper shuts the plugin down: release resources, flush buffers.
        Once it has been answered (error or not) the SDK closes the connection and the serve
        call returns; the process has 3 s to exit.

        Default: does nothing.
        """


class UpstreamPlugin(Plugin):
    """A plugin that feeds the proxy upstreams (services) and backends (their instances).

    Push the initial state in :meth:`~Plugin.start` with :attr:`manager` (the proxy answers
    manager calls while it waits for ``start``; an ``RpcError`` from one, left to propagate,
    fails ``start`` with the proxy's code). A plugin that discovers changes over time starts a
    background task there (keep a reference to it) that keeps calling the manager. After a
    restart ``start`` runs again: push the whole state again (adding is idempotent).

    It may also receive the outcome of every request to a backend by overriding
    :meth:`upstream_metric`.
    """

    plugin_type: ClassVar[str] = "upstream"
    type_hooks: ClassVar[tuple[str, ...]] = UPSTREAM_HOOKS
    hook_table: ClassVar[Mapping[str, Hook]] = {
        "upstream_metric": Hook(_metrics_params, None),
    }

    _manager: Manager | None = None

    @property
    def manager(self) -> Manager:
        """The :class:`~gatekeeper_plugin.Manager` calling the proxy; available from the
        handshake on (so in :meth:`~Plugin.configure`, :meth:`~Plugin.start` and later).
        Raises ``RuntimeError`` when the plugin is not being served."""
        if self._manager is None:
            raise RuntimeError("no manager: the plugin is not being served by gatekeeper_plugin")
        return self._manager

    @manager.setter
    def manager(self, manager: Manager | None) -> None:
        self._manager = manager

    async def upstream_metric(self, metrics: list[UpstreamMetric]) -> None:
        """Runs when the proxy flushes its buffer of backend outcomes (only if declared): a batch
        of :class:`~gatekeeper_plugin.UpstreamMetric` records, oldest first. No request waits
        for it.

        Default: ignores the batch (and is not declared).
        """
        del metrics


class ModifierPlugin(Plugin):
    """A plugin that changes requests and responses, or answers requests itself.

    Modifiers run in gatekeeper's configured order; each hook sees what the previous modifier
    returned. A hook returns only what it changes: ``{}`` (or ``None``) leaves things as they
    are. The dicts it receives are its own: change them in place and return them. The SDK sends
    a returned request or response as a ``patch`` of what changed (whole when the body or
    another part a patch cannot carry changed); :func:`patch` returns one explicitly.
    """

    plugin_type: ClassVar[str] = "modifier"
    type_hooks: ClassVar[tuple[str, ...]] = MODIFIER_HOOKS
    hook_table: ClassVar[Mapping[str, Hook]] = {
        "modify_request": Hook(_request_params, _check_modify_request, (0, "request")),
        "modify_response": Hook(
            lambda p: (_obj(p, "request"), _obj(p, "response")),
            _check_modify_response("modify_response"),
            (1, "response"),
        ),
        "modify_error_response": Hook(
            lambda p: (_obj(p, "request"), _obj(p, "response"), _obj(p, "error")),
            _check_modify_response("modify_error_response"),
            (1, "response"),
        ),
    }

    request_parts: Sequence[str] = ()
    """The parts of the request :meth:`modify_request` needs, sent in the handshake (``parts``):
    ``method``, ``path``, ``query``, ``host``, ``headers`` (all), ``header:NAME``, ``client``,
    ``context``, ``upstream`` (``request_parts = ("header:authorization",)``). gatekeeper then
    sends only those (with ``method`` and ``path``; the body follows :attr:`bodies`), and the
    hook must answer with a patch, a response or nothing (a returned request is sent as a patch;
    one whose body changed cannot be). Default: none (the whole request is sent)."""

    async def modify_request(self, request: Request) -> ModifyRequestResult | None:
        """Runs for every request, after routing and before a backend is picked.

        Return ``{}`` (or ``None``) to leave the request unchanged, ``{"request": request}`` to
        replace it (``method``, ``prefixless_path``, ``query``, ``headers``, ``context`` and
        ``upstream`` are used), or ``{"response": {"status": ..., "headers": [...], "body":
        ...}}`` to answer the client directly (later modifiers and the backend are skipped;
        ``modify_response`` hooks still run).

        Default: leaves the request unchanged.
        """
        del request
        return {}

    async def modify_response(
        self, request: Request, response: Response
    ) -> ModifyResponseResult | None:
        """Runs for every response before the client gets it (the backend's status and headers
        -- the body streams past -- or a modifier's direct answer), with the request as it was
        forwarded. Return ``{}`` (or ``None``) or ``{"response": response}``; a ``body`` in it
        replaces the backend's body.

        Default: leaves the response unchanged.
        """
        del request, response
        return {}

    async def modify_error_response(
        self, request: Request, response: Response, error: ProxyError
    ) -> ModifyResponseResult | None:
        """Runs when the proxy itself answers with an error (no route, no backend, backend
        unreachable, timeout, ...): ``response`` is the plain-text error it is about to send,
        ``error`` is ``{"kind": ..., "message": ...}``. Return as for :meth:`modify_response`.

        Default: leaves the response unchanged.
        """
        del request, response, error
        return {}


class RouterPlugin(Plugin):
    """A plugin that picks the upstream for each request, replacing the built-in
    prefix/hostname router (at most one runs).

    The proxy keeps it in step with its registry: :meth:`add_upstream` for every upstream there
    is when the plugin (re)starts and whenever one appears, :meth:`remove_upstream` when one
    goes. :meth:`route_request` then runs for every request, before any modifier.
    """

    plugin_type: ClassVar[str] = "router"
    type_hooks: ClassVar[tuple[str, ...]] = ROUTER_HOOKS
    hook_table: ClassVar[Mapping[str, Hook]] = {
        "add_upstream": Hook(lambda p: (_obj(p, "upstream"),), None),
        "remove_upstream": Hook(lambda p: (_str(p, "id"),), None),
        "route_request": Hook(_request_params, None),
    }

    async def add_upstream(self, upstream: Upstream) -> None:
        """Runs when an upstream enters the proxy's registry or is replaced: for every upstream
        when the plugin (re)starts, then on every change. The same upstream may arrive twice.

        Default: does nothing.
        """
        del upstream

    async def remove_upstream(self, id: str) -> None:  # noqa: A002 - the protocol's name
        """Runs when upstream ``id`` (with its backends) leaves the proxy's registry.

        Default: does nothing.
        """
        del id

    async def route_request(self, request: Request) -> RouteResult | None:
        """Runs for every request, first thing after it is parsed (``prefixless_path`` equals
        ``path``; no ``upstream`` yet). Return ``{"upstream": id}``, optionally with
        ``"prefixless_path"`` (the path the backend gets) and a changed ``"request"``.
        ``{}``, ``None`` or ``{"upstream": None}`` means no route (404), as does an id the
        proxy does not know.

        Default: no route.
        """
        del request
        return {}


class LoadBalancerPlugin(Plugin):
    """A plugin that picks the backend for each request, replacing the built-in balancers (at
    most one runs).

    The proxy keeps it in step with its registry: :meth:`add_backend` for every backend there
    is when the plugin (re)starts and whenever one appears, :meth:`remove_backend` when one
    goes. :meth:`get_backend` runs for every request; :meth:`upstream_metric`, if overridden,
    receives the outcome of every request to a backend, in batches.
    """

    plugin_type: ClassVar[str] = "loadbalancer"
    type_hooks: ClassVar[tuple[str, ...]] = LOADBALANCER_HOOKS
    hook_table: ClassVar[Mapping[str, Hook]] = {
        "add_backend": Hook(lambda p: (_str(p, "upstream_id"), _obj(p, "backend")), None),
        "remove_backend": Hook(lambda p: (_str(p, "upstream_id"), _str(p, "backend_id")), None),
        "upstream_metric": Hook(_metrics_params, None),
        "get_backend": Hook(lambda p: (_str(p, "upstream_id"), _obj(p, "request")), None),
    }

    async def add_backend(self, upstream_id: str, backend: Backend) -> None:
        """Runs when a backend of upstream ``upstream_id`` enters the registry or is replaced:
        for every backend when the plugin (re)starts, then on every change.

        Default: does nothing.
        """
        del upstream_id, backend

    async def remove_backend(self, upstream_id: str, backend_id: str) -> None:
        """Runs when a backend leaves the registry (removing an upstream removes each of its
        backends first).

        Default: does nothing.
        """
        del upstream_id, backend_id

    async def upstream_metric(self, metrics: list[UpstreamMetric]) -> None:
        """Runs when the proxy flushes its buffer of backend outcomes (latency, status, error),
        oldest first, to balance on latency or errors. No request waits for it.

        Default: ignores the batch.
        """
        del metrics

    async def get_backend(self, upstream_id: str, request: Request) -> GetBackendResult | None:
        """Runs for every request routed to ``upstream_id``: return ``{"backend_id": id}``.
        ``{}``, ``None`` or ``{"backend_id": None}`` means no backend available (503); an id
        the upstream does not have counts as a failure of the plugin.

        Default: no backend.
        """
        del upstream_id, request
        return {}


class MetricPlugin(Plugin):
    """A plugin that receives what happens in gatekeeper, in batches (100 records, or every
    second, and once more at shutdown). No request ever waits for a metric plugin.
    """

    plugin_type: ClassVar[str] = "metric"
    type_hooks: ClassVar[tuple[str, ...]] = METRIC_HOOKS
    hook_table: ClassVar[Mapping[str, Hook]] = {
        "event_metric": Hook(lambda p: (_list(p, "events"),), None),
        "profiling_metric": Hook(lambda p: (_list(p, "profiles"),), None),
        "plugin_metric": Hook(_metrics_params, None),
        "request_metric": Hook(_metrics_params, None),
        "upstream_metric": Hook(_metrics_params, None),
    }

    async def event_metric(self, events: list[EventMetric]) -> None:
        """Runs with a batch of events (``app_started``, ``request_failed``, ``plugin_restarted``,
        ...; see docs/protocol.md), oldest first.

        Default: ignores the batch.
        """
        del events

    async def profiling_metric(self, profiles: list[ProfilingMetric]) -> None:
        """Runs with a batch of timings of internal operations (plugin start, ...).

        Default: ignores the batch.
        """
        del profiles

    async def plugin_metric(self, metrics: list[PluginMetric]) -> None:
        """Runs with a batch of records of gatekeeper's calls to plugins (method, latency,
        error).

        Default: ignores the batch.
        """
        del metrics

    async def request_metric(self, metrics: list[RequestMetric]) -> None:
        """Runs with a batch of finished requests (status, upstream, backend, bytes, and where
        the time went in ``phases``).

        Default: ignores the batch.
        """
        del metrics

    async def upstream_metric(self, metrics: list[UpstreamMetric]) -> None:
        """Runs with a batch of outcomes of requests to backends.

        Default: ignores the batch.
        """
        del metrics


_SDK_CLASSES: frozenset[type] = frozenset(
    {Plugin, UpstreamPlugin, ModifierPlugin, RouterPlugin, LoadBalancerPlugin, MetricPlugin}
)

PLUGIN_CLASSES: Mapping[str, type[Plugin]] = {
    cls.plugin_type: cls
    for cls in (UpstreamPlugin, ModifierPlugin, RouterPlugin, LoadBalancerPlugin, MetricPlugin)
}
"""The base class of each plugin type, by type name."""


def overridden_hooks(plugin: Plugin) -> tuple[str, ...]:
    """The hooks of ``plugin``'s type that its class (or the object itself) overrides, in the
    protocol's order: the default of :attr:`Plugin.hooks`."""
    found = []
    for name in plugin.type_hooks:
        if name in plugin.__dict__:
            found.append(name)
            continue
        for cls in type(plugin).__mro__:
            if name in cls.__dict__:
                if cls not in _SDK_CLASSES:
                    found.append(name)
                break
    return tuple(found)


def hook_result(method: str, check: Callable[[JsonObject], None] | None, value: Any) -> JsonObject:
    """Turns what a hook returned into the JSON-RPC result: ``{}`` for hooks that return nothing
    (and for ``None``), the dict itself for the others once it passed ``check`` and the method's
    result schema. Raises :class:`InvalidResult` for anything else."""
    if value is None or protocol.METHODS[method]["result"] == _EMPTY_RESULT:
        return {}
    if not isinstance(value, dict):
        raise InvalidResult(f"{method} must return a dict or None, not {type(value).__name__}")
    if check is not None:
        check(value)
    try:
        protocol.check_result(method, value)
    except protocol.SchemaError as exc:
        raise InvalidResult(str(exc)) from None
    return value


_EMPTY_RESULT: Final = {"$ref": "#/$defs/Empty"}


__all__ = [
    "Hook",
    "InvalidResult",
    "LoadBalancerPlugin",
    "MetricPlugin",
    "ModifierPlugin",
    "PLUGIN_CLASSES",
    "Plugin",
    "RouterPlugin",
    "UpstreamPlugin",
    "hook_result",
    "overridden_hooks",
]
