#!/usr/bin/env python3
"""The Python SDK's conformance plugin (plugin-sdk/conformance/README.md): one program that
serves whichever plugin type ``GATEKEEPER_PLUGIN_TYPE`` names, with the behaviour every SDK's
conformance plugin shares, written with the SDK.

    python3 plugin-sdk/python/conformance_plugin.py     # started by gatekeeper

Config keys: ``sdk`` (the name it reports, default ``python``), ``file`` (a path to append JSON
lines to), and for the upstream role ``upstream_id``, ``prefix`` (default: ``upstream_id``) and
``backends`` (comma-separated URLs); with ``batch``, the upstream role pushes them in one
``apply_batch`` (``replace`` when ``batch`` is ``replace``).

The SDK is imported from beside this file, so the program runs without installing the package.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from gatekeeper_plugin import (  # noqa: E402 - after the path set-up
    Backend,
    EventMetric,
    GetBackendResult,
    JsonObject,
    LoadBalancerPlugin,
    MetricPlugin,
    ModifierPlugin,
    ModifyRequestResult,
    ModifyResponseResult,
    Plugin,
    PluginMetric,
    ProfilingMetric,
    ProxyError,
    Request,
    RequestMetric,
    Response,
    RouteResult,
    RouterPlugin,
    RpcError,
    Upstream,
    UpstreamMetric,
    UpstreamPlugin,
    batch,
    cached,
    header,
    serve,
    set_header,
)

DEFAULT_SDK = "python"


class Conformance(Plugin):
    """What every role shares: the config and the record file."""

    def __init__(self) -> None:
        self.config: JsonObject = {}

    @property
    def sdk(self) -> str:
        """The SDK name this plugin reports (config ``sdk``)."""
        return str(self.config.get("sdk") or DEFAULT_SDK)

    async def configure(self, config: JsonObject) -> None:
        """Keeps the config map; a config key ``invalid`` fails it with that message."""
        if "invalid" in config:
            raise RpcError.invalid_params(str(config["invalid"]))
        self.config = dict(config)

    async def check(self, config: JsonObject) -> None:
        """Keeps nothing; a config key ``invalid`` fails it with ``checked: <message>``."""
        if "invalid" in config:
            raise RpcError.invalid_params(f"checked: {config['invalid']}")

    async def start(self) -> None:
        """With a config key ``report_config_error``: reports it with ``config_status``, then
        reports the config accepted."""
        message = self.config.get("report_config_error")
        if message is not None:
            await self.report_config_error(str(message))
            await self.report_config_ok()

    def record(self, method: str, count: int) -> None:
        """Appends ``{"method": method, "count": count}`` to the config's ``file``, if any."""
        path = self.config.get("file")
        if path:
            with open(path, "a", encoding="utf-8") as out:
                out.write(json.dumps({"method": method, "count": count}) + "\n")


class ConformanceModifier(Conformance, ModifierPlugin):
    """Declares all three modifier hooks."""

    async def modify_request(self, request: Request) -> ModifyRequestResult:
        """Answers directly when ``x-conformance-respond: N`` is present; otherwise marks the
        request with a header and a context value."""
        headers = request.setdefault("headers", [])
        cache_ms = header(headers, "x-conformance-cache")

        def maybe_cached(result: ModifyRequestResult) -> ModifyRequestResult:
            if cache_ms is None:
                return result
            return cached(result, int(cache_ms), ["header:x-conformance-cache"])

        respond = header(headers, "x-conformance-respond")
        if respond is not None:
            return maybe_cached(
                {
                    "response": {
                        "status": int(respond),
                        "headers": [["x-conformance-sdk", self.sdk]],
                        "body": f"answered by {self.sdk}",
                    }
                }
            )
        set_header(headers, "x-conformance-sdk", self.sdk)
        request.setdefault("context", {})["conformance"] = f"seen by {self.sdk}"
        return maybe_cached({"request": request})

    async def modify_response(self, request: Request, response: Response) -> ModifyResponseResult:
        """Reports the context value and the status it saw in response headers."""
        context = request.get("context") or {}
        headers = response.setdefault("headers", [])
        set_header(headers, "x-conformance-context", str(context.get("conformance", "none")))
        set_header(headers, "x-conformance-status", str(response["status"]))
        return {"response": response}

    async def modify_error_response(
        self, request: Request, response: Response, error: ProxyError
    ) -> ModifyResponseResult:
        """Replaces the proxy's error with a compact JSON body naming the error kind."""
        body = json.dumps({"error": error["kind"], "sdk": self.sdk}, separators=(",", ":"))
        return {
            "response": {
                "status": response["status"],
                "headers": [["content-type", "application/json"]],
                "body": body,
            }
        }


class ConformanceRouter(Conformance, RouterPlugin):
    """Declares all three router hooks; routes by ``x-conformance-upstream``."""

    def __init__(self) -> None:
        super().__init__()
        self.upstreams: set[str] = set()

    async def add_upstream(self, upstream: Upstream) -> None:
        """Remembers the upstream's id."""
        self.upstreams.add(upstream["id"])

    async def remove_upstream(self, id: str) -> None:  # noqa: A002 - the protocol's name
        """Forgets the upstream's id."""
        self.upstreams.discard(id)

    async def route_request(self, request: Request) -> RouteResult:
        """The upstream named by ``x-conformance-upstream`` if known, else the first known id in
        sorted order, else none."""
        wanted = header(request.get("headers", []), "x-conformance-upstream")
        if wanted is not None and wanted in self.upstreams:
            return {"upstream": wanted}
        return {"upstream": min(self.upstreams) if self.upstreams else None}


class ConformanceLoadBalancer(Conformance, LoadBalancerPlugin):
    """Declares all four loadbalancer hooks; picks by ``x-conformance-backend``."""

    def __init__(self) -> None:
        super().__init__()
        self.backends: dict[str, dict[str, Backend]] = {}

    async def add_backend(self, upstream_id: str, backend: Backend) -> None:
        """Remembers the backend (in the order added)."""
        self.backends.setdefault(upstream_id, {})[backend["id"]] = backend

    async def remove_backend(self, upstream_id: str, backend_id: str) -> None:
        """Forgets the backend."""
        self.backends.get(upstream_id, {}).pop(backend_id, None)

    async def upstream_metric(self, metrics: list[UpstreamMetric]) -> None:
        """Records the batch's size."""
        self.record("upstream_metric", len(metrics))

    async def get_backend(self, upstream_id: str, request: Request) -> GetBackendResult:
        """The backend named by ``x-conformance-backend`` if the upstream has it, else the first
        one added, else none."""
        backends = self.backends.get(upstream_id, {})
        wanted = header(request.get("headers", []), "x-conformance-backend")
        if wanted is not None and wanted in backends:
            return {"backend_id": wanted}
        return {"backend_id": next(iter(backends), None)}


class ConformanceUpstream(Conformance, UpstreamPlugin):
    """Registers one upstream and its backends on start; declares no hooks."""

    async def start(self) -> None:
        """``add_upstream`` for ``upstream_id`` with ``prefix``, then ``add_backend`` for each of
        ``backends`` with ids ``"0"``, ``"1"``, ..."""
        await super().start()
        upstream_id = str(self.config.get("upstream_id") or "conformance")
        prefix = str(self.config.get("prefix") or upstream_id)
        upstream: Upstream = {"id": upstream_id, "name": upstream_id, "prefixes": [prefix]}
        addresses = [a.strip() for a in str(self.config.get("backends") or "").split(",")]
        backends: list[Backend] = [
            {"id": str(index), "address": address}
            for index, address in enumerate(a for a in addresses if a)
        ]
        mode = self.config.get("batch")
        if mode is not None:
            changes = [batch.add_upstream(upstream)]
            changes += [batch.add_backend(upstream_id, b) for b in backends]
            try:
                await self.manager.apply_batch(changes, replace=mode == "replace")
            except RpcError as exc:
                refused = batch.refused(exc)
                if not refused:
                    raise
                first = refused[0]
                raise RpcError(
                    exc.code, f"apply_batch refused change {first['index']}: {first['message']}"
                ) from None
            return
        await self.manager.add_upstream(upstream)
        for backend in backends:
            await self.manager.add_backend(upstream_id, backend)


class ConformanceMetric(Conformance, MetricPlugin):
    """Declares all five metric hooks; records the size of every batch."""

    async def event_metric(self, events: list[EventMetric]) -> None:
        """Records the batch's size."""
        self.record("event_metric", len(events))

    async def profiling_metric(self, profiles: list[ProfilingMetric]) -> None:
        """Records the batch's size."""
        self.record("profiling_metric", len(profiles))

    async def plugin_metric(self, metrics: list[PluginMetric]) -> None:
        """Records the batch's size."""
        self.record("plugin_metric", len(metrics))

    async def request_metric(self, metrics: list[RequestMetric]) -> None:
        """Records the batch's size."""
        self.record("request_metric", len(metrics))

    async def upstream_metric(self, metrics: list[UpstreamMetric]) -> None:
        """Records the batch's size."""
        self.record("upstream_metric", len(metrics))


ROLES: dict[str, type[Conformance]] = {
    "modifier": ConformanceModifier,
    "router": ConformanceRouter,
    "loadbalancer": ConformanceLoadBalancer,
    "upstream": ConformanceUpstream,
    "metric": ConformanceMetric,
}


def make_plugin(plugin_type: str) -> Conformance:
    """A new conformance plugin of ``plugin_type``; ``KeyError`` for an unknown type."""
    return ROLES[plugin_type]()


def main() -> None:
    """Serves the type named by ``GATEKEEPER_PLUGIN_TYPE``."""
    # Without the variable, serve the modifier: serve() then explains what is missing.
    plugin_type = os.environ.get("GATEKEEPER_PLUGIN_TYPE") or "modifier"
    if plugin_type not in ROLES:
        print(
            f"error: GATEKEEPER_PLUGIN_TYPE={plugin_type!r} is not one of {', '.join(ROLES)}",
            file=sys.stderr,
        )
        raise SystemExit(2)
    serve(make_plugin(plugin_type))


if __name__ == "__main__":
    main()
