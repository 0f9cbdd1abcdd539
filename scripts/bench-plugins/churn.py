#!/usr/bin/env python3
"""Benchmark plugin for scripts/scale.sh: an upstream plugin (the Python SDK) that pushes
`upstreams` upstreams (prefix `pN` for upstream `uN`) of `backends` backends each, all at
`address`, in one `apply_batch` (or, with `single` = 1, in single manager calls, up to 256 in
flight at once), then changes `rate` backends a second (a removal or an add of a backend of a
random upstream, one manager call each) until it is stopped. With `rate` 0 it only pushes."""

import asyncio
import os
import random
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "plugin-sdk", "python"))

from gatekeeper_plugin import RpcError, UpstreamPlugin, serve  # noqa: E402
from gatekeeper_plugin import batch  # noqa: E402


class Churn(UpstreamPlugin):
    async def configure(self, config):
        self.upstreams = int(config.get("upstreams", 10))
        self.backends = int(config.get("backends", 1))
        self.address = str(config["address"])
        self.rate = int(config.get("rate", 0))
        self.single = str(config.get("single", "0")) == "1"
        self.task = None

    def backend(self, b):
        # All at the same address; distinct ids (the query-less path keeps them apart).
        return {"id": f"b{b}", "address": f"{self.address}/{b}" if b else self.address}

    async def start(self):
        if self.single:
            await self.push_singly()
        else:
            await self.push_batch()
        if self.rate > 0:
            self.task = asyncio.get_running_loop().create_task(self.churn())

    async def push_singly(self):
        calls = []
        for i in range(self.upstreams):
            await self.manager.add_upstream({"id": f"u{i}", "prefixes": [f"p{i}"]})
            for b in range(self.backends):
                calls.append(self.manager.add_backend(f"u{i}", self.backend(b)))
            if len(calls) >= 256:
                await asyncio.gather(*calls)
                calls = []
        await asyncio.gather(*calls)

    async def push_batch(self):
        changes = []
        for i in range(self.upstreams):
            changes.append(batch.add_upstream({"id": f"u{i}", "prefixes": [f"p{i}"]}))
            for b in range(self.backends):
                changes.append(batch.add_backend(f"u{i}", self.backend(b)))
        await self.manager.apply_batch(changes, replace=True)

    async def churn(self):
        # Backend 0 of each upstream stays; the others go and come back.
        removed = set()
        extra = max(self.backends - 1, 0)
        tick = 0.01
        per_tick = max(1, round(self.rate * tick))
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while extra:
            for _ in range(per_tick):
                key = (random.randrange(self.upstreams), 1 + random.randrange(extra))
                upstream, b = f"u{key[0]}", key[1]
                try:
                    if key in removed:
                        await self.manager.add_backend(upstream, self.backend(b))
                        removed.discard(key)
                    else:
                        await self.manager.remove_backend(upstream, f"b{b}")
                        removed.add(key)
                except (RpcError, asyncio.TimeoutError) as e:
                    print(f"churn: {upstream}/b{b}: {e}", file=sys.stderr)
            next_at += tick
            await asyncio.sleep(max(0.0, next_at - loop.time()))


if __name__ == "__main__":
    serve(Churn())
