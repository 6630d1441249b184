"""What every handler shares: the agent control, current settings, executor and deadlines."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from telegen.api.apimetrics import ApiMetrics
from telegen.config import SelfTelemetryConfig
from telegen.control import AgentControl
from telegen.threads import name_current_thread

T = TypeVar("T")

SNAPSHOT_DEADLINE = 2.0


@dataclass(frozen=True)
class Limits:
    header_bytes: int = 16 * 1024
    body_bytes: int = 1024 * 1024
    client_timeout: float = 30.0  # idle or slow clients are cut off after this long
    snapshot_deadline: float = SNAPSHOT_DEADLINE


class ApiContext:
    def __init__(self, control: AgentControl, settings: SelfTelemetryConfig, limits: Limits) -> None:
        self.control = control
        # Replaced whole by apply_settings (a single reference swap), never mutated.
        self.settings = settings
        self.limits = limits
        self.metrics = ApiMetrics()
        self.started_monotonic = time.monotonic()
        # Handlers never call the agent on the loop: a stage holding a lock must not wedge the API.
        self.executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="telegen-api-call",
                                           initializer=name_current_thread)
        self.cpu_profile_running = False
        self.api_thread_ident: int | None = None

    async def call(self, fn: Callable[..., T], *args: Any, deadline: float | None = None) -> T:
        """Run fn in the executor; past the deadline answer 503 (the work may still finish later)."""
        from telegen.api.responses import ApiError

        loop = asyncio.get_running_loop()
        limit = self.limits.snapshot_deadline if deadline is None else deadline
        try:
            return await asyncio.wait_for(loop.run_in_executor(self.executor, fn, *args), limit)
        except TimeoutError:
            name = getattr(fn, "__name__", "call")
            raise ApiError(503, f"agent state not available within {limit:g}s", {"call": name}) from None

    async def snapshot(self, section: str) -> dict[str, Any]:
        result = await self.call(self.control.snapshot, section)
        return dict(result)
