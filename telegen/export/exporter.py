"""ExportStage: per-signal queues and workers, the OTLP or console client, metric collection."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from prometheus_client.registry import Collector

from telegen.config import Config, SignalQueueConfig
from telegen.control import FlushResult
from telegen.export.batcher import ExportClient, ExportQueue, SignalWorker
from telegen.export.console import ConsoleClient
from telegen.export.items import SIGNALS, Signal, flatten_families, log_cost, metric_cost, span_cost
from telegen.export.prometheus import ExportSelfCollector, WorkloadCollector
from telegen.export.sender import DEFAULT_MAX_REQUEST_BYTES, OtlpSender, RetryPolicy, parse_endpoint
from telegen.pipeline import OverflowPolicy
from telegen.signals import LogRecordItem, MetricSource, SpanRecord
from telegen.threads import NamedThread
from telegen.timefmt import rfc3339

log = logging.getLogger(__name__)

# Estimated wire bytes allowed per queued item: the byte bound only bites on unusually big items.
BYTES_PER_ITEM = 1024
MAX_QUEUE_BYTES = 256 * 1024 * 1024
# traces/logs refuse the newest (like the OTel SDK and Collector queues: cheap, keeps the start of an
# incident); metrics evict the oldest, since a newer cumulative point carries everything an older one did.
POLICIES: dict[Signal, OverflowPolicy] = {
    "traces": "drop_newest", "logs": "drop_newest", "metrics": "drop_oldest",
}
_COSTS: dict[Signal, Callable[[Any], int]] = {"traces": span_cost, "logs": log_cost, "metrics": metric_cost}


def _mode(config: Config) -> str:
    if config.console_enabled:
        return "console"
    return "otlp" if config.otlp.endpoint else "none"


class ExportStage:
    name = "export"

    def __init__(self, config: Config, metric_sources: Sequence[MetricSource], *,
                 retry: RetryPolicy | None = None, console_stream: TextIO | None = None,
                 max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES) -> None:
        self.config = config
        self.sources = list(metric_sources)
        self.retry = retry or RetryPolicy()
        self.mode = _mode(config)
        self._stop = threading.Event()
        self._metrics_stop = threading.Event()
        self._closing = False
        self._started = False
        self.collect_errors = 0
        self.queues: dict[Signal, ExportQueue[Any]] = {
            s: self._make_queue(s, self._signal_config(config, s)) for s in SIGNALS}
        self.client: OtlpSender | ConsoleClient | None = None
        if self.mode == "otlp":
            self.client = OtlpSender(config.otlp, self.retry, self._stop, max_request_bytes)
        elif self.mode == "console":
            self.client = ConsoleClient(console_stream)
        self.workers: dict[Signal, SignalWorker] = {}
        self._metrics_thread: threading.Thread | None = None

    @staticmethod
    def _signal_config(config: Config, signal: Signal) -> SignalQueueConfig:
        cfg: SignalQueueConfig = getattr(config.export, signal)
        return cfg

    def _make_queue(self, signal: Signal, cfg: SignalQueueConfig) -> ExportQueue[Any]:
        max_bytes = min(cfg.queue_size * BYTES_PER_ITEM, MAX_QUEUE_BYTES)
        return ExportQueue(signal, cfg.queue_size, max_bytes, POLICIES[signal], _COSTS[signal],
                           cfg.batch_size)

    def _get_client(self) -> ExportClient:
        assert self.client is not None
        return self.client

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> None:
        if self._started or self.client is None:
            return
        self._started = True
        for signal in SIGNALS:
            worker = SignalWorker(self.queues[signal], self._get_client,
                                  self._signal_config(self.config, signal).interval, self._stop)
            self.workers[signal] = worker
            worker.start()
        if self.sources:
            self._metrics_thread = NamedThread(target=self._collect_loop, name="telegen-export-collect",
                                                    daemon=True)
            self._metrics_thread.start()

    def _collect_interval(self) -> float:
        if self.mode == "console":
            return self.config.export.console.summary_interval
        return self.config.export.metrics.interval

    def _collect_loop(self) -> None:
        while not self._metrics_stop.wait(self._collect_interval()):
            self.collect_metrics()

    def collect_metrics(self) -> int:
        """Snapshot every MetricSource into the metrics queue; returns the points offered."""
        families = []
        for source in self.sources:
            try:
                families.extend(source.collect_metrics())
            except Exception:  # one broken source must not stop the others' metrics
                self.collect_errors += 1
                log.exception("metric source %r failed", source)
        items = flatten_families(families, time.time_ns())
        if items:
            self._offer("metrics", items)
        return len(items)

    def _offer(self, signal: Signal, items: list[Any]) -> None:
        queue = self.queues[signal]
        if self.client is None:
            queue.refuse(len(items), "disabled")  # counted as produced and dropped, never silent
        elif self._closing:
            queue.refuse(len(items), "shutdown")
        else:
            queue.offer(items)

    def submit_spans(self, spans: list[SpanRecord]) -> None:
        """Never blocks: a full queue refuses and counts."""
        self._offer("traces", spans)

    def submit_logs(self, logs: list[LogRecordItem]) -> None:
        self._offer("logs", logs)

    def flush(self, timeout: float) -> FlushResult:
        """Collect metrics now, send everything queued, wait up to `timeout` for the answers."""
        if not self._started:
            return FlushResult(ok=self.client is None, flushed=dict.fromkeys(SIGNALS, 0),
                               waiting={str(s): len(q.queue) for s, q in self.queues.items()})
        if self.sources:
            self.collect_metrics()
        deadline = time.monotonic() + timeout
        # Kick every signal first so they flush in parallel, then wait on the shared deadline.
        tokens = {s: self.workers[s].begin_flush() for s in SIGNALS}
        results = {s: self.workers[s].finish_flush(tokens[s], deadline) for s in SIGNALS}
        ok = all(results[s][0] for s in SIGNALS)
        flushed: dict[str, int] = {s: results[s][1] for s in SIGNALS}
        waiting: dict[str, int] = {} if ok else {
            s: results[s][2] for s in SIGNALS}
        return FlushResult(ok=ok, flushed=flushed, waiting=waiting)

    def stop(self, timeout: float) -> None:
        """Drain within `timeout`; then interrupt backoff, and count what is left as dropped('shutdown')."""
        self._closing = True
        self._metrics_stop.set()
        deadline = time.monotonic() + timeout
        marks = {s: q.flush_mark() for s, q in self.queues.items()}
        for worker in self.workers.values():
            worker.draining = True
            worker.kick()
        for signal, worker in self.workers.items():
            if worker.is_alive():
                self.queues[signal].wait_settled(marks[signal], deadline)
        self._stop.set()
        if isinstance(self.client, OtlpSender):
            self.client.close()  # cancels a call still in flight past the grace period
        for worker in self.workers.values():
            worker.kick()
            worker.join(max(1.0, deadline - time.monotonic()))
        for queue in self.queues.values():
            if dropped := queue.drop_queued("shutdown"):
                log.warning("shutdown dropped %d queued %s", dropped, queue.signal)

    drain = stop

    # -- published state -----------------------------------------------------------------------
    def queue_counts(self) -> dict[Signal, dict[str, Any]]:
        return {s: q.counts() for s, q in self.queues.items()}

    def failures(self) -> dict[tuple[str, str], int]:
        if self.client is None:
            return {}
        failures: dict[tuple[str, str], int] = self.client.state.snapshot()["failures"]
        return failures

    def status(self) -> dict[str, Any]:
        state = self.client.state.snapshot() if self.client else {}
        otlp = self.config.otlp
        endpoint: str | None = otlp.endpoint or None
        tls = False
        if self.mode == "otlp":
            tls = parse_endpoint(otlp)[1]
        else:
            endpoint = None
        keys = ("size", "capacity", "exported", "dropped", "in_flight", "produced")
        return {
            "endpoint": endpoint,
            "protocol": "grpc" if self.mode == "otlp" else "console" if self.mode == "console" else "none",
            "tls": tls,
            "compression": otlp.compression if self.mode == "otlp" else "none",
            "connected": bool(state.get("connected")) if self.mode == "otlp" else False,
            "last_export": rfc3339(state.get("last_export")),
            "last_error": state.get("last_error"),
            "queues": {s: {k: c[k] for k in keys} for s, c in self.queue_counts().items()},
        }

    def healthy(self) -> tuple[bool, str]:
        for signal, worker in self.workers.items():
            if not worker.is_alive() and not self._closing:
                return False, f"export worker for {signal} died"
        if self._metrics_thread is not None and not self._metrics_thread.is_alive() and not self._closing:
            return False, "export metric collection thread died"
        return True, ""

    def readiness(self) -> str:
        if self.mode != "otlp" or not isinstance(self.client, OtlpSender):
            return "disabled"
        state = self.client.state.snapshot()
        if state["last_attempt_ok"] is None:
            return "ok" if state["connected"] else "failed: not connected to " + self.config.otlp.endpoint
        if state["last_attempt_ok"]:
            return "ok"
        error = str(state["last_error"] or "export failed")
        return "failed: " + error.split(": ", 1)[-1]

    # -- reload --------------------------------------------------------------------------------
    def apply_config(self, new: Config) -> list[str]:
        """Apply otlp.* and export.* changes live; return the changed paths that need a restart.

        Only a switch between console and OTLP (endpoint set/unset, console.enabled) needs one:
        the running client may hold a batch in backoff that must not be lost mid-switch.
        """
        from telegen.config import diff

        changed = [p for p in diff(self.config, new) if p.startswith(("otlp", "export"))]
        for signal in SIGNALS:
            cfg = self._signal_config(new, signal)
            self.queues[signal].resize(cfg.queue_size, min(cfg.queue_size * BYTES_PER_ITEM, MAX_QUEUE_BYTES),
                                       cfg.batch_size)
            if signal in self.workers:
                self.workers[signal].interval = cfg.interval
        if _mode(new) != self.mode:
            restart = [p for p in changed if p.startswith(("otlp.endpoint", "export.console.enabled"))]
            # Keep the running client's settings so status() keeps describing what really runs.
            self.config = new.model_copy(update={"otlp": self.config.otlp, "export": new.export.model_copy(
                update={"console": self.config.export.console})})
            return restart
        if isinstance(self.client, OtlpSender) and any(p.startswith("otlp") for p in changed):
            self.client.reconfigure(new.otlp)
        self.config = new
        return []

    def collectors(self) -> list[Collector]:
        return [ExportSelfCollector(self), WorkloadCollector(self.sources, self._prometheus_enabled)]

    def _prometheus_enabled(self) -> bool:
        return self.config.export.prometheus.enabled
