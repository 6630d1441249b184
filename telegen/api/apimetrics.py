"""The API's own counters, exposed as a Collector read at scrape time (design rule 8)."""

from __future__ import annotations

import threading
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector


class ApiMetrics(Collector):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[tuple[str, str], int] = {}
        self._admin: dict[tuple[str, str], int] = {}

    def count_request(self, template: str, code: int) -> None:
        key = (template, str(code))
        with self._lock:
            self._requests[key] = self._requests.get(key, 0) + 1

    def count_admin(self, action: str, outcome: str) -> None:
        key = (action, outcome)
        with self._lock:
            self._admin[key] = self._admin.get(key, 0) + 1

    def collect(self) -> Iterator[CounterMetricFamily]:
        with self._lock:
            requests = dict(self._requests)
            admin = dict(self._admin)
        family = CounterMetricFamily(
            "telegen_api_requests", "API requests answered, by route template and status code",
            labels=["path", "code"],
        )
        for (path, code), value in sorted(requests.items()):
            family.add_metric([path, code], value)
        yield family
        actions = CounterMetricFamily(
            "telegen_admin_actions", "Admin API calls, by action and outcome", labels=["action", "outcome"]
        )
        for (action, outcome), value in sorted(admin.items()):
            actions.add_metric([action, outcome], value)
        yield actions
