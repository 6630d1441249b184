"""Bounded queues between stages and the Stage protocol every stage implements."""

from __future__ import annotations

import collections
import itertools
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Generic, Literal, Protocol, TypeVar

from telegen.threads import NamedThread

T = TypeVar("T")

OverflowPolicy = Literal["drop_newest", "drop_oldest"]


class BoundedQueue(Generic[T]):
    """A FIFO with an item bound (and optionally a byte bound) that never blocks producers.

    When full, `drop_newest` refuses the incoming item and `drop_oldest` evicts the head to
    make room. Every refusal or eviction is counted by reason; `produced` counts every item
    offered, so produced == size + taken + dropped holds at every moment.
    """

    def __init__(
        self,
        name: str,
        capacity: int,
        policy: OverflowPolicy = "drop_newest",
        max_bytes: int = 0,
        cost: Callable[[T], int] | None = None,
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.name = name
        self.capacity = capacity
        self.policy = policy
        self.max_bytes = max_bytes
        self._cost = cost
        self._items: collections.deque[tuple[T, int]] = collections.deque()
        self._bytes = 0
        self._cond = threading.Condition()
        self.produced = 0
        self.taken = 0
        self.dropped: collections.Counter[str] = collections.Counter()
        self._deepest = 0  # most items waiting at once since take_deepest()
        self._every, self._next_notice = 0, 0
        self._on_every: Callable[[], None] | None = None

    def __len__(self) -> int:
        return len(self._items)

    def notify_every(self, items: int, callback: Callable[[], None]) -> None:
        """Call `callback` (quick, never blocking: it runs under the queue's lock) each time
        another `items` items have been offered, so a watcher can react to a surge before its
        own timer. Only for queues filled by put_many without costs (the ring-buffer readers')."""
        with self._cond:
            self._every, self._on_every = items, callback
            self._next_notice = self.produced + items

    def take_deepest(self) -> int:
        """The most items that waited at once since the last call (a backlog's depth)."""
        with self._cond:
            deepest, self._deepest = max(self._deepest, len(self._items)), len(self._items)
            return deepest

    @property
    def size_bytes(self) -> int:
        return self._bytes

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())

    def put(self, item: T) -> bool:
        """Offer one item; False when it was refused (counted as dropped 'queue_full')."""
        return self.put_many((item,)) == 1

    def put_many(self, items: Iterable[T]) -> int:
        """Offer items in order; returns how many were accepted. Never blocks."""
        if self._cost is None and not self.max_bytes and self.policy == "drop_newest":
            return self._put_many_uncosted(items if isinstance(items, list) else list(items))
        items = items if isinstance(items, list) else list(items)
        costs = list(map(self._cost, items)) if self._cost else [0] * len(items)
        total = sum(costs)
        accepted = 0
        with self._cond:  # the costs are worked out before the lock: producers do not hold it long
            if (len(self._items) + len(items) <= self.capacity
                    and (not self.max_bytes or self._bytes + total <= self.max_bytes)):
                # The usual case, a span batch with room to spare: one extend, no per-item checks.
                self.produced += len(items)
                self._items.extend(zip(items, costs, strict=True))
                self._bytes += total
                self._deepest = max(self._deepest, len(self._items))
                if items:
                    self._cond.notify_all()
                return len(items)
            for item, cost in zip(items, costs, strict=True):
                self.produced += 1
                if self.max_bytes and cost > self.max_bytes:
                    self.dropped["too_large"] += 1
                    continue
                while self._full(cost):
                    if self.policy == "drop_oldest" and self._items:
                        _, old_cost = self._items.popleft()
                        self._bytes -= old_cost
                        self.dropped["queue_full"] += 1
                    else:
                        break
                if self._full(cost):
                    self.dropped["queue_full"] += 1
                    continue
                self._items.append((item, cost))
                self._bytes += cost
                accepted += 1
            if accepted:
                self._deepest = max(self._deepest, len(self._items))
                self._cond.notify_all()
        return accepted

    def _put_many_uncosted(self, items: list[T]) -> int:
        # The ring-buffer readers' case (tens of thousands of records a second): no per-item
        # cost and a refused item is simply not taken, so the batch goes in with one extend.
        with self._cond:
            self.produced += len(items)
            if self._on_every is not None and self.produced >= self._next_notice:
                self._next_notice = self.produced + self._every
                self._on_every()
            room = max(0, self.capacity - len(self._items))
            if len(items) > room:
                self.dropped["queue_full"] += len(items) - room
                items = items[:room]
            if items:
                self._items.extend(zip(items, itertools.repeat(0)))
                self._deepest = max(self._deepest, len(self._items))
                self._cond.notify_all()
            return len(items)

    def _full(self, cost: int) -> bool:
        if len(self._items) >= self.capacity:
            return True
        return bool(self.max_bytes) and self._bytes + cost > self.max_bytes

    def get_batch(self, max_items: int, timeout: float | None = None) -> list[T]:
        """Take up to max_items; waits up to `timeout` for the first one (None: don't wait)."""
        with self._cond:
            if not self._items and timeout:
                deadline = time.monotonic() + timeout
                while not self._items:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0 or not self._cond.wait(remaining):
                        break
            out: list[T]
            if len(self._items) <= max_items and not self._bytes:  # all of it, no costs to settle
                out = [item for item, _ in self._items]
                self._items.clear()
            else:
                out = []
                while self._items and len(out) < max_items:
                    item, cost = self._items.popleft()
                    self._bytes -= cost
                    out.append(item)
            self.taken += len(out)
            return out

    def wait_nonempty(self, timeout: float) -> bool:
        with self._cond:
            if self._items:
                return True
            self._cond.wait(timeout)
            return bool(self._items)

    def wake(self) -> None:
        """Wake consumers blocked in get_batch (used at shutdown)."""
        with self._cond:
            self._cond.notify_all()

    def record_drop(self, reason: str, count: int = 1) -> None:
        """Count items dropped after they left the queue (e.g. permanent export errors)."""
        with self._cond:
            self.dropped[reason] += count

    def stats(self) -> dict[str, Any]:
        with self._cond:
            return {
                "size": len(self._items),
                "capacity": self.capacity,
                "bytes": self._bytes,
                "produced": self.produced,
                "taken": self.taken,
                "dropped": dict(self.dropped),
            }


class QueueWorker:
    """A thread that consumes one BoundedQueue; subclasses implement _run and stop when
    self._stop is set. Holds the start/stop/dead-thread plumbing the workers share."""

    thread_name = "telegen-worker"

    def __init__(self, records: BoundedQueue[Any]) -> None:
        self.records = records
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_progress = time.monotonic()

    def _run(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self._thread = NamedThread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float) -> None:
        self._stop.set()
        self.records.wake()
        if self._thread:
            self._thread.join(timeout)

    def thread_died(self) -> bool:
        return self._thread is not None and not self._thread.is_alive() and not self._stop.is_set()


class Stage(Protocol):
    """A pipeline stage: started and stopped by the agent, publishes a status snapshot."""

    name: str

    def start(self) -> None: ...

    def stop(self, timeout: float) -> None: ...

    def status(self) -> dict[str, Any]:
        """An immutable-by-convention snapshot; safe to call from any thread."""
        ...

    def healthy(self) -> tuple[bool, str]:
        """(False, reason) when the stage cannot do its job (e.g. its thread died)."""
        ...
