"""Builders for :meth:`Manager.apply_batch <gatekeeper_plugin.Manager.apply_batch>`'s changes,
and the refused changes of a refused batch (docs/protocol.md, ``apply_batch``).

Each change is a dict with one key, a manager method's name, whose value is that method's
params::

    from gatekeeper_plugin import batch

    await self.manager.apply_batch(
        [
            batch.add_upstream({"id": "api", "prefixes": ["api"]}),
            batch.add_backend("api", {"id": "api-1", "address": "http://10.0.0.1:8080"}),
        ],
        replace=True,
    )
"""

from __future__ import annotations

from typing import TypedDict

from .errors import RpcError
from .models import Backend, JsonObject, Upstream

BatchChange = JsonObject
"""One change: ``{"add_upstream": {...}}``, ``{"remove_upstream": {...}}``,
``{"add_backend": {...}}`` or ``{"remove_backend": {...}}``."""


class ApplyBatchResult(TypedDict):
    """What an applied batch changed, in counts."""

    upstreams_added: int
    upstreams_removed: int
    backends_added: int
    backends_removed: int
    unchanged: int


class RefusedChange(TypedDict):
    """One refused change of a refused batch: its position in ``changes``, its code and why."""

    index: int
    code: int
    message: str


def add_upstream(upstream: Upstream) -> BatchChange:
    """``{"add_upstream": {"upstream": upstream}}``."""
    return {"add_upstream": {"upstream": upstream}}


def remove_upstream(id: str) -> BatchChange:  # noqa: A002 - the protocol's name
    """``{"remove_upstream": {"id": id}}``."""
    return {"remove_upstream": {"id": id}}


def add_backend(upstream_id: str, backend: Backend) -> BatchChange:
    """``{"add_backend": {"upstream_id": upstream_id, "backend": backend}}``."""
    return {"add_backend": {"upstream_id": upstream_id, "backend": backend}}


def remove_backend(upstream_id: str, backend_id: str) -> BatchChange:
    """``{"remove_backend": {"upstream_id": upstream_id, "backend_id": backend_id}}``."""
    return {"remove_backend": {"upstream_id": upstream_id, "backend_id": backend_id}}


def refused(error: RpcError) -> list[RefusedChange]:
    """The refused changes listed in a refused batch's error (its ``data.refused``), in batch
    order; empty when the error has none (e.g. a malformed batch, ``-32602``)."""
    data = error.data
    if not isinstance(data, dict) or not isinstance(data.get("refused"), list):
        return []
    return [
        RefusedChange(index=item["index"], code=item["code"], message=str(item["message"]))
        for item in data["refused"]
        if isinstance(item, dict)
        and isinstance(item.get("index"), int)
        and isinstance(item.get("code"), int)
    ]
