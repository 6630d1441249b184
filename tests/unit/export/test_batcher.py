"""ExportQueue + SignalWorker: the law under concurrent producers and every outcome, flush, policies."""

from __future__ import annotations

import collections
import random
import threading
import time
from collections.abc import Sequence

from telegen.export.batcher import ExportQueue, SignalWorker
from telegen.export.items import ExportItem, Signal, span_cost
from telegen.export.sender import SendResult
from tests.unit.export.factories import make_spans


class ChaosClient:
    """Exports, drops by every reason, and takes its time: the law must hold at every moment."""

    def __init__(self) -> None:
        self.rng = random.Random(7)

    def send(self, signal: Signal, items: Sequence[ExportItem]) -> SendResult:
        time.sleep(self.rng.uniform(0, 0.003))
        n = len(items)
        outcome = self.rng.choice(["ok", "permanent_error", "retries_exhausted", "partial_success"])
        if outcome == "ok":
            return SendResult(exported=n)
        if outcome == "partial_success":
            return SendResult(exported=n - n // 2, dropped=collections.Counter(partial_success=n // 2))
        return SendResult(dropped=collections.Counter({outcome: n}))


def _law(q: ExportQueue[object]) -> dict[str, object]:
    c = q.counts()
    assert c["produced"] == c["size"] + c["in_flight"] + c["exported"] + c["dropped"], c
    return c


def test_law_holds_at_every_moment_under_concurrency() -> None:
    q: ExportQueue[object] = ExportQueue("traces", 200, 0, "drop_newest", span_cost, 16)
    stop = threading.Event()
    chaos = ChaosClient()
    worker = SignalWorker(q, lambda: chaos, 0.01, stop)
    worker.start()
    spans = make_spans(50)
    producing = True

    def produce() -> None:
        while producing:
            q.offer(spans[: random.randint(1, 50)])

    producers = [threading.Thread(target=produce) for _ in range(3)]
    for t in producers:
        t.start()
    deadline = time.monotonic() + 1.0
    checks = 0
    while time.monotonic() < deadline:
        _law(q)
        checks += 1
    producing = False
    for t in producers:
        t.join()
    worker.draining = True
    worker.kick()
    worker.join(5)
    c = _law(q)
    assert checks > 100 and c["size"] == 0 and c["in_flight"] == 0
    reasons = c["dropped_by_reason"]
    expected = ("queue_full", "permanent_error", "retries_exhausted", "partial_success")
    assert all(reasons[r] > 0 for r in expected), reasons


def test_drop_oldest_evicts_and_flush_mark_stays_fifo() -> None:
    q: ExportQueue[object] = ExportQueue("metrics", 5, 0, "drop_oldest", span_cost, 100)
    q.offer(make_spans(8))
    c = _law(q)
    assert c["size"] == 5 and c["dropped_by_reason"]["queue_full"] == 3
    mark = q.flush_mark()
    assert mark == 8 and q.settled_count() == 3
    batch = q.take(5)
    q.settle(len(batch), 5, collections.Counter())
    assert q.wait_settled(mark, time.monotonic() + 0.1)


def test_byte_bound_refuses_oversized_items() -> None:
    q: ExportQueue[object] = ExportQueue("traces", 1000, 2000, "drop_newest", span_cost, 100)
    q.offer(make_spans(20))
    c = _law(q)
    assert c["bytes"] <= 2000 and c["dropped_by_reason"]["queue_full"] > 0


def test_flush_sends_before_the_interval() -> None:
    q: ExportQueue[object] = ExportQueue("traces", 100, 0, "drop_newest", span_cost, 1000)
    stop = threading.Event()
    worker = SignalWorker(q, lambda: _OkClient(), 60.0, stop)
    worker.start()
    q.offer(make_spans(10))
    token = worker.begin_flush()
    done, flushed, waiting = worker.finish_flush(token, time.monotonic() + 2)
    assert (done, flushed, waiting) == (True, 10, 0)
    stop.set()
    worker.kick()
    worker.join(2)


class _OkClient:
    def send(self, signal: Signal, items: Sequence[ExportItem]) -> SendResult:
        return SendResult(exported=len(items))
