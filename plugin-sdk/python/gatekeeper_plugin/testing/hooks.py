"""One method per method gatekeeper calls on a plugin (``modify_request``, ``route_request``,
``heartbeat``, …), shared by both test hosts: each builds the call's params and sends them
through the host's ``call``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import protocol
from ..models import JsonObject


def _params_name(method: str) -> str:
    """The one field of a metric hook's params (``events``, ``metrics``, …)."""
    schema = protocol.METHODS[method]["params"]
    target = schema
    if "$ref" in schema:
        target = protocol.PROTOCOL["$defs"][schema["$ref"].rsplit("/", 1)[1]]
    required = target.get("required") or list(target.get("properties", {}))
    return str(required[0])


class HookCalls:
    """One method per hook; each sends the call through :meth:`call` (a coroutine in
    :class:`~gatekeeper_plugin.testing.AsyncPluginHost`, the result in :class:`~gatekeeper_plugin.testing.PluginHost`)."""

    def call(self, method: str, params: JsonObject) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def modify_request(self, request: Mapping[str, Any]) -> Any:
        """``modify_request``: ``{}``, ``{"patch": …}``, ``{"request": …}`` or
        ``{"response": …}`` (with ``cache``), as the plugin sent it."""
        return self.call("modify_request", {"request": request})

    def modify_response(self, request: Mapping[str, Any], response: Mapping[str, Any]) -> Any:
        """``modify_response``."""
        return self.call("modify_response", {"request": request, "response": response})

    def modify_error_response(
        self, request: Mapping[str, Any], response: Mapping[str, Any], error: Mapping[str, Any]
    ) -> Any:
        """``modify_error_response`` (``error``: see :func:`~gatekeeper_plugin.testing.make_error`)."""
        return self.call(
            "modify_error_response", {"request": request, "response": response, "error": error}
        )

    def route_request(self, request: Mapping[str, Any]) -> Any:
        """``route_request``: ``{"upstream": …}``, …"""
        return self.call("route_request", {"request": request})

    def add_upstream(self, upstream: Mapping[str, Any]) -> Any:
        """``add_upstream`` (to a router)."""
        return self.call("add_upstream", {"upstream": upstream})

    def remove_upstream(self, upstream_id: str) -> Any:
        """``remove_upstream`` (to a router)."""
        return self.call("remove_upstream", {"id": upstream_id})

    def add_backend(self, upstream_id: str, backend: Mapping[str, Any]) -> Any:
        """``add_backend`` (to a loadbalancer)."""
        return self.call("add_backend", {"upstream_id": upstream_id, "backend": backend})

    def remove_backend(self, upstream_id: str, backend_id: str) -> Any:
        """``remove_backend`` (to a loadbalancer)."""
        return self.call("remove_backend", {"upstream_id": upstream_id, "backend_id": backend_id})

    def get_backend(self, upstream_id: str, request: Mapping[str, Any]) -> Any:
        """``get_backend``: ``{"backend_id": …}``."""
        return self.call("get_backend", {"upstream_id": upstream_id, "request": request})

    def event_metric(self, events: list[Any]) -> Any:
        """``event_metric`` with a batch."""
        return self.call("event_metric", {_params_name("event_metric"): events})

    def profiling_metric(self, profiles: list[Any]) -> Any:
        """``profiling_metric`` with a batch."""
        return self.call("profiling_metric", {_params_name("profiling_metric"): profiles})

    def plugin_metric(self, metrics: list[Any]) -> Any:
        """``plugin_metric`` with a batch."""
        return self.call("plugin_metric", {_params_name("plugin_metric"): metrics})

    def request_metric(self, metrics: list[Any]) -> Any:
        """``request_metric`` with a batch."""
        return self.call("request_metric", {_params_name("request_metric"): metrics})

    def upstream_metric(self, metrics: list[Any]) -> Any:
        """``upstream_metric`` with a batch."""
        return self.call("upstream_metric", {_params_name("upstream_metric"): metrics})

    def heartbeat(self) -> Any:
        """``heartbeat``."""
        return self.call("heartbeat", {})


__all__ = ["HookCalls"]
