"""Per-client token buckets with a bounded client table (a scan of addresses cannot grow memory)."""

from __future__ import annotations

import math
import time
from collections import OrderedDict


class TokenBuckets:
    def __init__(self, max_clients: int = 10_000) -> None:
        self._max_clients = max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, stamp)

    def take(self, key: str, rate: float, burst: int, now: float | None = None) -> int:
        """Take one token; 0 when allowed, else the whole seconds to wait (at least 1)."""
        now = time.monotonic() if now is None else now
        tokens, stamp = self._buckets.pop(key, (float(burst), now))
        tokens = min(float(burst), tokens + (now - stamp) * rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            wait = 0
        else:
            self._buckets[key] = (tokens, now)
            wait = max(1, math.ceil((1.0 - tokens) / rate))
        while len(self._buckets) > self._max_clients:
            self._buckets.popitem(last=False)  # least recently seen client
        return wait
