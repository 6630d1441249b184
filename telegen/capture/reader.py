"""Ring-buffer drain thread: wakes on a short timer, or early when the kernel forces a wakeup
(a watermark, never per event: see ring_wakeup_flag in bpf/http.bpf.c), reads every record
committed since the last drain in one batch into a bounded queue, and dies loudly (healthz
reports it) rather than silently."""

from __future__ import annotations

import contextlib
import logging
import select
import threading
from collections.abc import Callable, Iterator

from telegen.pipeline import BoundedQueue
from telegen.threads import NamedThread

log = logging.getLogger(__name__)


class RingbufReader:
    """Drains `read` (e.g. MappedRingbuf.read: records since the last call, in order) every
    `interval` seconds, sooner when `wakeup_fd` (the ring map's) turns readable, and once more
    on stop so what was captured before SIGTERM is kept."""

    def __init__(self, read: Callable[[], list[bytes]], out: BoundedQueue[bytes], interval: float = 0.05,
                 wakeup_fd: int | None = None) -> None:
        self._read = read
        self._out = out
        self._interval = interval
        self._wakeup_fd = wakeup_fd
        self.wakeups = 0  # drains the kernel asked for before the timer
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.received = 0
        self.error: str = ""

    def start(self) -> None:
        self._thread = NamedThread(target=self._run, name="telegen-ringbuf", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            with self._waiter() as wait:
                while not self._stop.is_set():
                    wait()
                    self.drain()
            self.drain()
        except Exception as exc:  # a dead reader must be visible in /healthz, not a silent stall
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("ring-buffer reader died")

    @contextlib.contextmanager
    def _waiter(self) -> Iterator[Callable[[], None]]:
        """A wait of one interval that the kernel's wakeup cuts short. Edge-triggered: the
        ring's poll is readable whenever it holds data, the edge comes only from a wakeup."""
        if self._wakeup_fd is None:
            def sleep() -> None:
                self._stop.wait(self._interval)
            yield sleep
            return
        with select.epoll() as ep:
            ep.register(self._wakeup_fd, select.EPOLLIN | select.EPOLLET)

            def wait() -> None:
                if ep.poll(self._interval):
                    self.wakeups += 1
            yield wait

    def drain(self) -> int:
        """One read into the queue (the queue counts what it refuses); returns records read."""
        batch = self._read()
        if batch:
            self.received += len(batch)
            self._out.put_many(batch)
        return len(batch)

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout)
