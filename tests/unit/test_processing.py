"""telegen.processing: the worker hands the CPU back to the workloads between small chunks."""

from __future__ import annotations

import time

import pytest

from telegen import processing
from telegen.assemble.http import HttpSpanBuilder
from telegen.assemble.red import RedMetrics
from telegen.assemble.routes import RouteResolver
from telegen.decode.records import RecordDecoder
from telegen.pipeline import BoundedQueue
from telegen.processing import YIELD_EVERY, ProcessingWorker


def test_a_drain_is_processed_in_chunks_with_a_yield_after_each(monkeypatch: pytest.MonkeyPatch) -> None:
    records: BoundedQueue[bytes] = BoundedQueue("records", 10_000)
    worker = ProcessingWorker(records, RecordDecoder(256), HttpSpanBuilder(RouteResolver([], 100)),
                              RedMetrics(), lambda spans: None, lambda spans: None)
    chunks: list[int] = []
    yields: list[int] = []
    monkeypatch.setattr(worker, "process", lambda batch: chunks.append(len(batch)))
    monkeypatch.setattr(processing.os, "sched_yield", lambda: yields.append(len(chunks)))
    records.put_many([b"r"] * (3 * YIELD_EVERY + 5))
    worker.start()
    deadline = time.monotonic() + 5
    while sum(chunks) < 3 * YIELD_EVERY + 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    worker.stop(2.0)
    assert chunks == [YIELD_EVERY] * 3 + [5]  # in order, nothing lost or repeated
    assert yields == [1, 2, 3, 4]  # the CPU offered back after every chunk
