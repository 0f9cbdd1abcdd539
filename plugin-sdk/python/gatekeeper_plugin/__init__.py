"""Write gatekeeper plugins in Python (standard library only, asyncio).

A gatekeeper plugin is a separate process: gatekeeper starts it with a few ``GATEKEEPER_*``
environment variables, the plugin connects to a Unix socket and the two exchange JSON-RPC 2.0
calls, one JSON object per line (docs/protocol.md describes the wire). This package hides all of
that: subclass the base class of your plugin type, override the hooks you need, and hand an
instance to :func:`serve`, which

1. sets up :mod:`logging` to stderr (gatekeeper copies a plugin's stderr into its log; stdout is
   yours too, the SDK never writes to it);
2. reads the environment and exits with status 2 and a clear message when it is missing, i.e.
   when the program was not started by gatekeeper;
3. connects and handshakes (the token, protocol version 1, the hooks the plugin declares);
4. answers calls, each on its own asyncio task, so a slow call delays no other;
5. returns once ``stop`` has been answered or gatekeeper has closed the connection.

Base classes, by plugin type, and the hooks each may declare (proxy -> plugin):

* every type, :class:`Plugin`: ``configure`` (:meth:`Plugin.check` when gatekeeper only checks
  the config), ``start``, ``heartbeat``, ``stop`` (always called); any plugin may report a
  config change it rejected with :meth:`Plugin.report_config_error` (``config_status``);
* ``upstream``, :class:`UpstreamPlugin`: ``upstream_metric``; it calls the proxy through its
  :class:`Manager` (``add_upstream``, ``remove_upstream``, ``add_backend``, ``remove_backend``,
  and ``apply_batch`` for many as one, with changes built by :mod:`gatekeeper_plugin.batch`);
* ``modifier``, :class:`ModifierPlugin`: ``modify_request``, ``modify_response``,
  ``modify_error_response``;
* ``router``, :class:`RouterPlugin`: ``add_upstream``, ``remove_upstream``, ``route_request``;
* ``loadbalancer``, :class:`LoadBalancerPlugin`: ``add_backend``, ``remove_backend``,
  ``upstream_metric``, ``get_backend``;
* ``metric``, :class:`MetricPlugin`: ``event_metric``, ``profiling_metric``, ``plugin_metric``,
  ``request_metric``, ``upstream_metric`` (batches of records).

A plugin declares (and is called for) the hooks its class overrides, unless it sets
:attr:`Plugin.hooks`. A modifier that wants bodies lists the hooks in :attr:`Plugin.bodies`
(``bodies = ("modify_request",)``) and reads and replaces them with :func:`body_bytes` and
:func:`set_body_bytes`. Requests, responses, upstreams and backends are plain dicts (see the
``TypedDict`` shapes :class:`Request`, :class:`Response`, :class:`Upstream`, :class:`Backend`);
:func:`header`, :func:`set_header` and :func:`remove_header` handle header lists;
:func:`cookies` and :func:`query_params` read a request's cookies and query, and
:func:`config_value` reads a typed value from the config map (``config_value(config, "burst",
"int", default=10)``: a TOML number or a flag's ``"10"`` alike). A
``modify_request`` result wrapped in :func:`cached` (``cached({}, 30_000,
["header:authorization"])``) lets gatekeeper reuse the decision without calling the plugin.
A returned request or response is sent as a ``patch`` of what changed; :func:`patch`
(``patch(set_headers={"x-user": "alice"})``) returns one explicitly.

Example -- a modifier that adds a header to every response::

    from gatekeeper_plugin import ModifierPlugin, serve, set_header

    class PoweredBy(ModifierPlugin):
        async def modify_response(self, request, response):
            set_header(response["headers"], "x-powered-by", "gatekeeper")
            return {"response": response}

    if __name__ == "__main__":
        serve(PoweredBy())

To test a plugin without gatekeeper, :mod:`gatekeeper_plugin.testing` runs it in memory
(``with PluginHost(PoweredBy()) as host: host.modify_response(make_request(),
make_response())``).
"""

from . import batch, codes, protocol
from .batch import ApplyBatchResult, BatchChange, RefusedChange
from .env import PluginEnv
from .errors import EnvError, RpcError, ServeError
from .helpers import CONFIG_TYPES, config_value, cookies, query_params
from .manager import DEFAULT_MANAGER_TIMEOUT, ConfigReporter, Manager
from .models import (
    DEFAULT_MAX_LINE_BYTES,
    LOADBALANCER_HOOKS,
    MANAGER_METHODS,
    METRIC_HOOKS,
    MODIFIER_HOOKS,
    PLUGIN_TYPES,
    PROTOCOL_VERSION,
    ROUTER_HOOKS,
    UPSTREAM_HOOKS,
    Backend,
    CacheInstruction,
    EventMetric,
    GetBackendResult,
    Headers,
    JsonObject,
    ModifierPhase,
    ModifyRequestResult,
    ModifyResponseResult,
    Phases,
    PluginMetric,
    ProfilingMetric,
    ProxyError,
    Request,
    RequestMetric,
    Response,
    RouteResult,
    Upstream,
    UpstreamMetric,
    body_bytes,
    cached,
    header,
    remove_header,
    set_body_bytes,
    set_header,
)
from .plugin import (
    PLUGIN_CLASSES,
    LoadBalancerPlugin,
    MetricPlugin,
    ModifierPlugin,
    Plugin,
    RouterPlugin,
    UpstreamPlugin,
)
from .patch import patch
from .serve import init_logging, serve, serve_async

__version__ = "0.1.0"

__all__ = [
    "ApplyBatchResult",
    "Backend",
    "BatchChange",
    "CONFIG_TYPES",
    "CacheInstruction",
    "DEFAULT_MANAGER_TIMEOUT",
    "DEFAULT_MAX_LINE_BYTES",
    "EnvError",
    "EventMetric",
    "GetBackendResult",
    "Headers",
    "JsonObject",
    "LOADBALANCER_HOOKS",
    "MANAGER_METHODS",
    "LoadBalancerPlugin",
    "METRIC_HOOKS",
    "MODIFIER_HOOKS",
    "ConfigReporter",
    "Manager",
    "MetricPlugin",
    "ModifierPhase",
    "ModifierPlugin",
    "ModifyRequestResult",
    "ModifyResponseResult",
    "PLUGIN_CLASSES",
    "PLUGIN_TYPES",
    "PROTOCOL_VERSION",
    "Phases",
    "Plugin",
    "PluginEnv",
    "PluginMetric",
    "ProfilingMetric",
    "ProxyError",
    "RefusedChange",
    "ROUTER_HOOKS",
    "Request",
    "RequestMetric",
    "Response",
    "RouteResult",
    "RouterPlugin",
    "RpcError",
    "ServeError",
    "UPSTREAM_HOOKS",
    "Upstream",
    "UpstreamMetric",
    "UpstreamPlugin",
    "batch",
    "body_bytes",
    "cached",
    "patch",
    "codes",
    "config_value",
    "cookies",
    "protocol",
    "query_params",
    "header",
    "init_logging",
    "remove_header",
    "serve",
    "serve_async",
    "set_body_bytes",
    "set_header",
]
