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
from telegen.processing import ProcessingWorker
from telegen.signals import SpanRecord


@pytest.mark.parametrize("mode", ["background", "normal"])
def test_a_drain_is_processed_in_chunks_with_a_yield_after_each(monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    records: BoundedQueue[bytes] = BoundedQueue("records", 10_000)
    chunk = processing.YIELD_EVERY[mode]
    worker = ProcessingWorker(records, RecordDecoder(256), HttpSpanBuilder(RouteResolver([], 100)),
                              RedMetrics(), lambda spans: None, lambda spans: None, cpu_scheduling=mode)
    chunks: list[int] = []
    yields: list[int] = []
    monkeypatch.setattr(worker, "process", lambda batch: chunks.append(len(batch)))
    monkeypatch.setattr(processing.os, "sched_yield", lambda: yields.append(len(chunks)))
    records.put_many([b"r"] * (3 * chunk + 5))
    worker.start()
    deadline = time.monotonic() + 5
    while sum(chunks) < 3 * chunk + 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    worker.stop(2.0)
    assert chunks == [chunk] * 3 + [5]  # in order, nothing lost or repeated
    assert yields == [1, 2, 3, 4]  # the CPU offered back after every chunk


def test_a_backlog_drawn_before_a_cut_is_thinned_to_the_kernels_rate_before_decode() -> None:
    from tests.unit.decode.test_thinning import CAPTURE, record

    spans: list[SpanRecord] = []
    worker = ProcessingWorker(BoundedQueue("records", 10), RecordDecoder(CAPTURE),
                              HttpSpanBuilder(RouteResolver([], 100)), RedMetrics(), lambda batch: None,
                              spans.extend, kernel_keep=lambda: 100)
    worker.process([record(1000, start_ns=1_000_000 + i) for i in range(5_000)])
    assert 500 - 150 < len(spans) < 500 + 150  # the kernel keeps 10 % now: so does the backlog
    assert worker.thinner.thinned == 5_000 - len(spans)
    assert {span.sample_weight for span in spans} == {10.0}  # each stands for ten exchanges
    assert worker.decode_errors() == {}
