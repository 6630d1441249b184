"""Console exporter (no OTLP endpoint): one readable line per span / log record, a RED summary per service.

It is an ExportClient like the OTLP sender, so the queues, batching and the accounting law
are the same; `exported` counts what it wrote.
"""

from __future__ import annotations

import collections
import math
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TextIO

from telegen.export.items import ExportItem, MetricPointItem, Signal
from telegen.export.sender import ExportState, SendResult
from telegen.signals import AttrValue, HistogramPoint, LogRecordItem, SpanRecord

_KINDS = {1: "INTERNAL", 2: "SERVER", 3: "CLIENT", 4: "PRODUCER", 5: "CONSUMER"}
RED_METRIC = "http.server.request.duration"
# Who is on the other end, when enrichment knows the peer process (optional attributes).
PEER_NAME_ATTR = "telegen.peer.process.name"
PEER_PID_ATTR = "telegen.peer.process.pid"


def _res(resource: Sequence[tuple[str, AttrValue]], key: str) -> AttrValue | None:
    for k, v in resource:
        if k == key:
            return v
    return None


def _proc(name: AttrValue | None, pid: AttrValue | None) -> str:
    if name is None and not pid:
        return ""
    return f"{name or '?'}({pid or '?'})"


def format_span(span: SpanRecord) -> str:
    attrs = span.attributes
    status = attrs.get("http.response.status_code", "-")
    ms = max(0, span.end_ns - span.start_ns) / 1e6
    me = _proc(_res(span.resource, "process.executable.name") or _res(span.resource, "service.name"),
               _res(span.resource, "process.pid") or span.pid)
    peer = _proc(attrs.get(PEER_NAME_ATTR), attrs.get(PEER_PID_ATTR)) or str(
        attrs.get("client.address") or attrs.get("network.peer.address") or "?")
    server = attrs.get("server.address")
    where = f"{server}:{attrs.get('server.port', '')}".rstrip(":") if server else ""
    kind = _KINDS.get(span.kind, "SPAN")
    flow = f"{me} -> {peer}" if span.kind == 3 else f"{peer} -> {me}"
    line = f"{kind} {span.name} {status} {ms:.1f}ms  {flow} {where}".rstrip()
    return line + (f"  ERROR {span.status_message}" if span.status_code == 2 and span.status_message else "")


def format_log(rec: LogRecordItem) -> str:
    who = _proc(_res(rec.resource, "process.executable.name") or _res(rec.resource, "service.name"),
                _res(rec.resource, "process.pid") or rec.pid)
    extra = " ".join(f"{k}={v}" for k, v in sorted(rec.attributes.items()))
    severity = rec.severity_text or rec.severity_number
    return f"LOG {severity} {who} {rec.event_name} {rec.body} {extra}".rstrip()


def quantile(q: float, bounds: Sequence[float], counts: Sequence[int]) -> float:
    """Prometheus histogram_quantile on per-bucket counts: linear inside the bucket."""
    total = sum(counts)
    if total <= 0:
        return math.nan
    rank, cumulative = q * total, 0
    for i, count in enumerate(counts):
        if cumulative + count >= rank and count > 0:
            if i >= len(bounds):  # +Inf bucket: the highest finite bound is all we know
                return bounds[-1] if bounds else math.nan
            lower = bounds[i - 1] if i > 0 else 0.0
            return lower + (bounds[i] - lower) * (rank - cumulative) / count
        cumulative += count
    return bounds[-1] if bounds else math.nan


def _ms(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1000:.1f}ms"


@dataclass
class _ServiceWindow:
    count: int = 0
    errors: int = 0
    bounds: tuple[float, ...] = ()
    buckets: list[int] | None = None


def _is_error(attrs: dict[str, AttrValue]) -> bool:
    code = attrs.get("http.response.status_code")
    return "error.type" in attrs or (isinstance(code, int) and code >= 500)


class RedSummary:
    """Cumulative histogram points in, per-service rate / error % / p50 / p99 over the window out."""

    def __init__(self) -> None:
        self._prev: dict[tuple[str, tuple[tuple[str, AttrValue], ...]], tuple[int, list[int]]] = {}
        self._pending: list[MetricPointItem] = []
        self._last_time: dict[str, int] = {}

    def add(self, item: MetricPointItem) -> None:
        if item.family.name == RED_METRIC and isinstance(item.point, HistogramPoint):
            self._pending.append(item)

    def lines(self) -> list[str]:
        windows: dict[str, _ServiceWindow] = collections.defaultdict(_ServiceWindow)
        times: dict[str, tuple[int, int]] = {}
        for item in self._pending:
            point = item.point
            assert isinstance(point, HistogramPoint)
            service = str(_res(item.family.resource, "service.name") or "unknown")
            key = (service, tuple(sorted(point.attributes.items())))
            prev_count, prev_buckets = self._prev.get(key, (0, [0] * len(point.bucket_counts)))
            if point.count < prev_count or len(prev_buckets) != len(point.bucket_counts):
                prev_count, prev_buckets = 0, [0] * len(point.bucket_counts)  # a reset
            self._prev[key] = (point.count, list(point.bucket_counts))
            delta = [a - b for a, b in zip(point.bucket_counts, prev_buckets, strict=True)]
            win = windows[service]
            win.count += point.count - prev_count
            if _is_error(point.attributes):
                win.errors += point.count - prev_count
            if win.buckets is None:
                win.bounds, win.buckets = point.bounds, delta
            elif win.bounds == point.bounds:
                win.buckets = [a + b for a, b in zip(win.buckets, delta, strict=True)]
            times[service] = (self._last_time.get(service, item.family.start_ns), item.time_ns)
        self._pending = []
        out = []
        for service in sorted(windows):
            win, (start, end) = windows[service], times[service]
            self._last_time[service] = end
            seconds = max((end - start) / 1e9, 1e-9)
            errors = 100.0 * win.errors / win.count if win.count else 0.0
            p50 = _ms(quantile(0.5, win.bounds, win.buckets or []))
            p99 = _ms(quantile(0.99, win.bounds, win.buckets or []))
            out.append(f"RED {service} rate={win.count / seconds:.2f}/s errors={errors:.1f}% "
                       f"p50={p50} p99={p99} window={seconds:.1f}s")
        return out


class ConsoleClient:
    """Writes each batch to `stream` in one write; only a broken stream drops (permanent_error)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.state = ExportState()
        self.red = RedSummary()
        self._lock = threading.Lock()

    def send(self, signal: Signal, items: Sequence[ExportItem]) -> SendResult:
        lines: list[str] = []
        with self._lock:
            for item in items:
                if isinstance(item, SpanRecord):
                    lines.append(format_span(item))
                elif isinstance(item, LogRecordItem):
                    lines.append(format_log(item))
                else:
                    self.red.add(item)
                    if item.last:
                        lines.extend(self.red.lines())
            try:
                if lines:
                    self.stream.write("\n".join(lines) + "\n")
                    self.stream.flush()
            except (OSError, ValueError) as exc:  # closed or broken stdout: counted, not raised
                with self.state.lock:
                    self.state.last_error = f"console: {exc}"
                return SendResult(dropped=collections.Counter(permanent_error=len(items)), attempts=1)
        with self.state.lock:
            self.state.last_export = time.time()
        return SendResult(exported=len(items), attempts=1)
