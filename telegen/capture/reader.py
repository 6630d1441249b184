"""Ring-buffer drain thread: wakes on a short timer (the kernel never wakes it per event),
copies records into a bounded queue, and dies loudly (healthz reports it) rather than silently."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from telegen.pipeline import BoundedQueue

log = logging.getLogger(__name__)


class RingbufReader:
    def __init__(self, consume: Callable[[], None], out: BoundedQueue[bytes], interval: float = 0.05) -> None:
        self._consume = consume
        self._out = out
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._batch: list[bytes] = []
        self.received = 0
        self.error: str = ""

    def sink(self, record: bytes) -> None:
        """Called by BCC for each record during consume(); only appends."""
        self._batch.append(record)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="telegen-ringbuf", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.wait(self._interval):
                self.drain()
            self.drain()
        except Exception as exc:  # a dead reader must be visible in /healthz, not a silent stall
            self.error = f"{type(exc).__name__}: {exc}"
            log.exception("ring-buffer reader died")

    def drain(self) -> None:
        self._consume()
        if self._batch:
            batch, self._batch = self._batch, []
            self.received += len(batch)
            self._out.put_many(batch)

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout: float) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout)
