"""telegen.capture.reader.RingbufReader: batches into the bounded queue, counts, dies visibly,
drains once more on stop."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

from telegen.capture.reader import RingbufReader
from telegen.pipeline import BoundedQueue


class FakeSource:
    def __init__(self) -> None:
        self.pending: list[bytes] = []
        self.lock = threading.Lock()
        self.fail: Exception | None = None

    def add(self, *records: bytes) -> None:
        with self.lock:
            self.pending += records

    def read(self) -> list[bytes]:
        if self.fail:
            raise self.fail
        with self.lock:
            batch, self.pending = self.pending, []
        return batch


def wait_for(condition: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.005)


def test_drain_moves_a_batch_and_counts_it() -> None:
    source, out = FakeSource(), BoundedQueue[bytes]("t", 10)
    reader = RingbufReader(source.read, out)
    source.add(b"a", b"b", b"c")
    assert reader.drain() == 3
    assert reader.drain() == 0
    assert out.get_batch(10) == [b"a", b"b", b"c"]
    assert reader.received == 3


def test_queue_overflow_is_counted_by_the_queue() -> None:
    source, out = FakeSource(), BoundedQueue[bytes]("t", 2)
    reader = RingbufReader(source.read, out)
    source.add(b"1", b"2", b"3", b"4")
    reader.drain()
    assert reader.received == 4
    assert len(out) == 2 and out.dropped_total == 2


def test_thread_drains_on_its_timer() -> None:
    source, out = FakeSource(), BoundedQueue[bytes]("t", 100)
    reader = RingbufReader(source.read, out, interval=0.01)
    reader.start()
    source.add(b"x")
    wait_for(lambda: len(out) == 1)
    reader.stop(1.0)
    assert out.get_batch(10) == [b"x"]


def test_stop_drains_what_was_captured_before_it() -> None:
    source, out = FakeSource(), BoundedQueue[bytes]("t", 100)
    reader = RingbufReader(source.read, out, interval=3600)  # never wakes on its timer
    reader.start()
    source.add(b"captured before SIGTERM")
    reader.stop(1.0)
    assert not reader.alive()
    assert out.get_batch(10) == [b"captured before SIGTERM"]
    assert reader.received == 1 and reader.error == ""


def test_a_failing_read_kills_the_thread_visibly() -> None:
    source, out = FakeSource(), BoundedQueue[bytes]("t", 10)
    source.fail = RuntimeError("ring corrupt")
    reader = RingbufReader(source.read, out, interval=0.01)
    reader.start()
    wait_for(lambda: not reader.alive())
    assert not reader.alive()
    assert reader.error == "RuntimeError: ring corrupt"


def test_a_kernel_wakeup_drains_before_the_timer() -> None:
    """The wakeup fd (an eventfd here, the ring map in the agent) turning readable cuts the
    wait short; edge-triggered, so data left waiting does not spin the thread."""
    source, out = FakeSource(), BoundedQueue[bytes]("t", 100)
    efd = os.eventfd(0, os.EFD_NONBLOCK)
    reader = RingbufReader(source.read, out, interval=2.0, wakeup_fd=efd)
    try:
        reader.start()
        time.sleep(0.1)
        source.add(b"first")
        started = time.monotonic()
        os.eventfd_write(efd, 1)
        wait_for(lambda: len(out) == 1)
        assert time.monotonic() - started < 1.0 and reader.wakeups == 1
        source.add(b"second")  # no wakeup: waits for the (2 s) timer, the fd is still readable
        time.sleep(0.3)
        assert len(out) == 1 and reader.wakeups == 1
        os.eventfd_write(efd, 1)  # a new edge
        wait_for(lambda: len(out) == 2)
        assert out.get_batch(10) == [b"first", b"second"] and reader.wakeups == 2
    finally:
        reader.stop(3.0)
        os.close(efd)
    assert not reader.alive()
