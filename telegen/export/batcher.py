"""Per-signal export queues and the worker threads that batch them into a client, with exact accounting.

The law, for every signal at every moment (all counters change under one lock):
    produced = queued + in_flight + exported + dropped
`dropped` is split by reason (DROP_REASONS): queue_full, too_large (one item over the byte
bound), permanent_error, retries_exhausted, partial_success, shutdown, disabled.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Generic, Protocol, TypeVar

from telegen.export.items import ExportItem, Signal
from telegen.export.sender import SendResult
from telegen.pipeline import BoundedQueue, OverflowPolicy
from telegen.threads import NamedThread

log = logging.getLogger(__name__)

ItemT = TypeVar("ItemT", bound=ExportItem)

DROP_REASONS = (
    "queue_full", "too_large", "permanent_error", "retries_exhausted", "partial_success", "shutdown",
    "disabled",  # neither an OTLP endpoint nor the console: nothing to export to
)


class ExportClient(Protocol):
    def send(self, signal: Signal, items: Sequence[ExportItem]) -> SendResult: ...


class ExportQueue(Generic[ItemT]):
    """A BoundedQueue plus what happens to items after they leave it (in flight, exported, dropped)."""

    def __init__(self, signal: Signal, capacity: int, max_bytes: int, policy: OverflowPolicy,
                 cost: Callable[[ItemT], int], batch_size: int) -> None:
        self.signal = signal
        self.queue: BoundedQueue[ItemT] = BoundedQueue(signal, capacity, policy, max_bytes, cost)
        self.batch_size = batch_size
        self.ready = threading.Event()  # set when a full batch waits, or someone wants it sent now
        self._lock = threading.Lock()
        self._settled = threading.Condition(self._lock)
        self.in_flight = 0
        self.exported = 0
        self._refused: collections.Counter[str] = collections.Counter()

    def offer(self, items: Iterable[ItemT]) -> int:
        """Never blocks; refusals and evictions are counted by the BoundedQueue."""
        accepted = self.queue.put_many(items)
        if len(self.queue) >= self.batch_size:
            self.ready.set()
        return accepted

    def refuse(self, count: int, reason: str) -> None:
        """Items refused before queueing (shutdown began, no exporter): produced and dropped at once."""
        with self._lock:
            self._refused[reason] += count

    def resize(self, capacity: int, max_bytes: int, batch_size: int) -> None:
        # Shrinking keeps what is queued; new items are refused until the queue is below the bound.
        self.queue.capacity, self.queue.max_bytes, self.batch_size = capacity, max_bytes, batch_size

    def take(self, max_items: int) -> list[ItemT]:
        with self._lock:
            batch = self.queue.get_batch(max_items)
            self.in_flight += len(batch)
        return batch

    def settle(self, count: int, exported: int, dropped: collections.Counter[str]) -> None:
        with self._lock:
            self.in_flight -= count
            self.exported += exported
            for reason, n in dropped.items():
                if n:
                    self.queue.record_drop(reason, n)
            missing = count - exported - sum(dropped.values())
            if missing > 0:  # a client that lost track of items must not break the law
                self.queue.record_drop("permanent_error", missing)
            self._settled.notify_all()

    def drop_queued(self, reason: str) -> int:
        with self._lock:
            batch = self.queue.get_batch(len(self.queue) + 1)
            if batch:
                self.queue.record_drop(reason, len(batch))
            self._settled.notify_all()
        return len(batch)

    def _evicted(self) -> int:
        return self.queue.dropped["queue_full"] if self.queue.policy == "drop_oldest" else 0

    def flush_mark(self) -> int:
        """How many items were ever accepted; FIFO order means they settle before any later one."""
        with self._lock:
            return len(self.queue) + self.queue.taken + self._evicted()

    def settled_count(self) -> int:
        return self.queue.taken - self.in_flight + self._evicted()

    def wait_settled(self, mark: int, deadline: float) -> bool:
        with self._lock:
            while self.settled_count() < mark:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._settled.wait(min(remaining, 0.5))
            return True

    def counts(self) -> dict[str, Any]:
        """A consistent snapshot: the law holds exactly for the numbers returned."""
        with self._lock:
            stats = self.queue.stats()
            dropped = collections.Counter({r: 0 for r in DROP_REASONS})
            dropped.update(stats["dropped"])
            dropped.update(self._refused)
            return {
                "size": stats["size"], "capacity": stats["capacity"], "bytes": stats["bytes"],
                "max_bytes": self.queue.max_bytes, "policy": self.queue.policy,
                "produced": stats["produced"] + sum(self._refused.values()),
                "in_flight": self.in_flight, "exported": self.exported,
                "dropped": sum(dropped.values()), "dropped_by_reason": dict(dropped),
            }


class SignalWorker(NamedThread):
    """Sends one signal's queue in batches of `batch_size`, or whatever waited `interval` seconds."""

    def __init__(self, queue: ExportQueue[Any], client: Callable[[], ExportClient], interval: float,
                 stop: threading.Event) -> None:
        super().__init__(target=self._loop, name=f"telegen-export-{queue.signal}", daemon=True)
        self.export_queue = queue
        self.client = client  # a getter, so a hot reload can swap the client between batches
        self.interval = interval
        self.stop_event = stop
        self.draining = False
        self._urgent = 0
        self._urgent_lock = threading.Lock()
        self.batches_sent = 0

    def _hurry(self) -> bool:
        return self.draining or self._urgent > 0 or self.stop_event.is_set()

    def kick(self, urgent: int = 0) -> None:
        with self._urgent_lock:
            self._urgent += urgent
        self.export_queue.ready.set()
        self.export_queue.queue.wake()

    def begin_flush(self) -> tuple[int, int]:
        """Ask for everything queued now to be sent at once; returns the token for finish_flush."""
        q = self.export_queue
        token = (q.flush_mark(), q.exported)
        self.kick(+1)
        return token

    def finish_flush(self, token: tuple[int, int], deadline: float) -> tuple[bool, int, int]:
        """(all settled in time, exported since begin_flush, still waiting)."""
        q = self.export_queue
        mark, exported_before = token
        try:
            done = q.wait_settled(mark, deadline)
        finally:
            with self._urgent_lock:
                self._urgent -= 1
        waiting = max(0, mark - q.settled_count())
        return done, min(q.exported - exported_before, mark), waiting

    def _loop(self) -> None:
        q = self.export_queue
        while not self.stop_event.is_set():
            if not q.queue.wait_nonempty(0.5):
                if self.draining:
                    return
                continue
            deadline = time.monotonic() + self.interval
            while len(q.queue) < q.batch_size and not self._hurry():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                q.ready.wait(remaining)
                q.ready.clear()
            batch = q.take(q.batch_size)
            if batch:
                self._send(batch)

    def _send(self, batch: list[Any]) -> None:
        q = self.export_queue
        try:
            result = self.client().send(q.signal, batch)
        except Exception:  # a stage error stops at the edge: counted, never kills the worker
            log.exception("export of %d %s failed unexpectedly", len(batch), q.signal)
            result = SendResult(dropped=collections.Counter(permanent_error=len(batch)))
        self.batches_sent += 1
        q.settle(len(batch), result.exported, result.dropped)
