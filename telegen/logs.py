"""Logging to stderr, one line per event, with repeated messages rate-limited."""

from __future__ import annotations

import logging
import sys
import time


class RepeatFilter(logging.Filter):
    """Let the same (logger, message template) through at most `burst` times per `window` s."""

    def __init__(self, burst: int = 5, window: float = 60.0) -> None:
        super().__init__()
        self.burst, self.window = burst, window
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}
        self.suppressed = 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, str(record.msg))
        now = time.monotonic()
        start, count = self._seen.get(key, (now, 0))
        if now - start > self.window:
            start, count = now, 0
        self._seen[key] = (start, count + 1)
        if len(self._seen) > 10000:
            self._seen.clear()
        if count < self.burst:
            return True
        self.suppressed += 1
        return False


def setup(level: str) -> RepeatFilter:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s",
                                           "%Y-%m-%dT%H:%M:%S"))
    repeat = RepeatFilter()
    handler.addFilter(repeat)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)  # one line per API hit is noise
    return repeat
