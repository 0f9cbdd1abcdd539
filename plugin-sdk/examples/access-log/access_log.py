#!/usr/bin/env python3
"""access-log: an example gatekeeper metric plugin (Python, with the SDK in plugin-sdk/python).

Writes one JSON line per request to the file named by the config key ``path`` (default: stdout,
which gatekeeper copies into its own log), from gatekeeper's ``request_metric`` batches:

    {"time": "2025-11-25T09:30:12.345Z", "method": "GET", "host": "localhost:8000",
     "path": "/api/users", "status": 200, "upstream": "api", "backend": "http://127.0.0.1:9001",
     "bytes_in": 0, "bytes_out": 512, "total_ms": 0.452, "upstream_ms": 0.31}

The file is flushed after every batch. Before each batch the plugin compares the inode of
``path`` with the one it has open and reopens the file when they differ or the file is gone, so
logrotate (rename, or ``create``) works without a signal.

See README.md for the config keys and how to run it.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO

# Use the SDK from this repository (plugin-sdk/python) so the example runs without
# `pip install`; with the SDK installed (`pip install ./plugin-sdk/python`) this line is harmless.
_SDK = Path(__file__).resolve().parents[2] / "python"
if _SDK.is_dir():
    sys.path.insert(0, str(_SDK))

from gatekeeper_plugin import MetricPlugin, RpcError, serve  # noqa: E402

log = logging.getLogger("access-log")


def iso_time(time_ms: int | float | None) -> str | None:
    """Unix milliseconds as ISO 8601 in UTC, with milliseconds: `2025-11-25T09:30:12.345Z`."""
    if time_ms is None:
        return None
    moment = datetime.fromtimestamp(time_ms / 1000, tz=timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ms(us: int | float | None) -> float | None:
    """Microseconds as milliseconds (3 decimals); None stays None."""
    return None if us is None else round(us / 1000, 3)


def access_line(record: dict) -> dict:
    """The access-log entry of one request_metric record (docs/protocol.md)."""
    phases = record.get("phases") or {}
    # From sending the request to the backend to its response headers, connecting included;
    # null when no backend was asked (no route, a modifier answered, ...).
    upstream_us = phases.get("upstream_response_us") if record.get("backend") is not None else None
    line = {
        "time": iso_time(record.get("time_ms")),
        "method": record.get("method"),
        "host": record.get("host"),
        "path": record.get("path"),
        "status": record.get("status"),
        "upstream": record.get("upstream"),
        "backend": record.get("backend"),
        "bytes_in": record.get("bytes_in"),
        "bytes_out": record.get("bytes_out"),
        "total_ms": ms(phases.get("total_us")),
        "upstream_ms": ms(upstream_us),
    }
    if record.get("error") is not None:
        line["error"] = record["error"]
    return line


class LogFile:
    """An append-mode file that is reopened when the path no longer names it (rotation)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.file: TextIO | None = None
        self.inode: tuple[int, int] | None = None

    def open(self) -> None:
        if self.file is not None:
            self.file.close()
        self.file = open(self.path, "a", encoding="utf-8")
        st = os.fstat(self.file.fileno())
        self.inode = (st.st_dev, st.st_ino)

    def ensure_current(self) -> TextIO:
        """The open file, reopened first if `path` is gone or is another file now."""
        try:
            st = os.stat(self.path)
            current = (st.st_dev, st.st_ino)
        except FileNotFoundError:
            current = None
        if self.file is None or current != self.inode:
            log.info("(re)opening %s", self.path)
            self.open()
        return self.file

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


class AccessLog(MetricPlugin):
    def __init__(self) -> None:
        super().__init__()
        self.target: LogFile | None = None  # None: stdout

    async def configure(self, config: dict) -> None:
        path = config.get("path")
        if path in (None, "", "-"):
            self.target = None
            return
        if not isinstance(path, str):
            raise RpcError.invalid_params(f"config `path` must be a file path, not {path!r}")
        self.target = LogFile(path)
        try:
            self.target.open()
        except OSError as exc:
            raise RpcError.invalid_params(f"cannot open {path}: {exc}") from None

    async def request_metric(self, metrics: list) -> None:
        out = sys.stdout if self.target is None else self.target.ensure_current()
        out.write("".join(json.dumps(access_line(r), separators=(",", ":")) + "\n" for r in metrics))
        out.flush()

    async def stop(self) -> None:
        if self.target is not None:
            self.target.close()


if __name__ == "__main__":
    serve(AccessLog())
