"""Start-up sequencing: the BPF load starts first, in its own thread, and the rest of the agent
is imported, built and started while it runs; each phase is timed from process start.

Why a thread: BCC compiles and the kernel verifier run in C with the GIL released, so on a
second core the main thread can import aiohttp/grpc/protobuf, build the stages and open the
API meanwhile. Why one thread: two BCC compiles at once crash libbcc, so the capture stages
load one after another.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from telegen.capture.btf import BtfError, kernel_btf
from telegen.capture.probes import LoadError
from telegen.capture.stage import CaptureStage
from telegen.capture.tcp_stage import TcpCaptureStage
from telegen.config import EbpfConfig
from telegen.pipeline import BoundedQueue
from telegen.threads import NamedThread

log = logging.getLogger(__name__)


def process_age() -> float:
    """Seconds since the kernel started this process, so interpreter start-up counts too."""
    try:
        with open("/proc/self/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22, starttime, in ticks since boot
        return max(0.0, time.clock_gettime(time.CLOCK_BOOTTIME) - started)
    except (OSError, ValueError, IndexError):
        return 0.0


class StartupPhases:
    """Named phases with their start (seconds after process start) and duration; thread-safe."""

    def __init__(self) -> None:
        self._origin = time.monotonic() - process_age()
        self._lock = threading.Lock()
        self._phases: list[dict[str, Any]] = []
        self.running_seconds: float | None = None  # capture attached and pipeline running

    def now(self) -> float:
        return time.monotonic() - self._origin

    def record(self, name: str, start: float, end: float | None = None, **extra: float) -> None:
        end = self.now() if end is None else end
        entry = {"name": name, "start": round(start, 3), "seconds": round(end - start, 3),
                 **{k: round(v, 3) for k, v in extra.items()}}
        with self._lock:
            self._phases.append(entry)
        log.info("start-up phase %s: %.2fs (%.2fs to %.2fs after process start)", name, end - start, start, end)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = self.now()
        yield
        self.record(name, start)

    def running(self) -> None:
        self.running_seconds = round(self.now(), 3)
        log.info("start-up: capture attached and pipeline running %.2fs after process start",
                 self.running_seconds)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"seconds": self.running_seconds, "phases": [dict(p) for p in self._phases]}


class CaptureSet:
    """The capture stages and their record queues, built before anything else and loaded in
    the background; the agent wires the rest of the pipeline to them."""

    def __init__(self, cfg: EbpfConfig, phases: StartupPhases) -> None:
        self.phases = phases
        self.records: BoundedQueue[bytes] = BoundedQueue("records", 65536, "drop_newest")
        self.tcp_records: BoundedQueue[bytes] = BoundedQueue("tcp_records", 65536, "drop_newest")
        self.http = CaptureStage(cfg, self.records) if cfg.enabled and cfg.http.enabled else None
        self.tcp = TcpCaptureStage(cfg, self.tcp_records) if cfg.enabled and cfg.tcp.enabled else None
        self.error = ""
        self.done = threading.Event()
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def enabled(self) -> bool:
        return self.http is not None or self.tcp is not None

    def start(self) -> None:
        """Parse BTF here (pure Python: a second thread would only fight for the GIL), then
        compile and attach in the loader thread."""
        if not self.enabled:
            self.done.set()
            return
        # on failure each stage raises a LoadError naming what it needed BTF for
        with self.phases.phase("btf"), contextlib.suppress(BtfError):
            kernel_btf()
        self._thread = NamedThread(target=self._load, name="telegen-bpf-load", daemon=True)
        self._thread.start()

    def _load(self) -> None:
        stages: list[tuple[str, CaptureStage | TcpCaptureStage | None]] = [("http_bpf", self.http),
                                                                             ("tcp_bpf", self.tcp)]
        try:
            for name, stage in stages:
                if stage is None or self._cancel.is_set():
                    continue
                start = self.phases.now()
                stage.start()
                self.phases.record(name, start, compile_seconds=stage.bpf.compile_seconds if stage.bpf else 0.0)
        except LoadError as exc:
            self.error = str(exc)
        except Exception as exc:  # a crash in a stage must reach the main thread, not vanish here
            log.exception("loading BPF programs failed")
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.done.set()

    def wait(self, timeout: float) -> bool:
        return self.done.wait(timeout)

    def wait_unless(self, stop: threading.Event) -> bool:
        """Wait for the load to end; False if `stop` was set first (a SIGTERM during the compile)."""
        while not self.done.wait(0.1):
            if stop.is_set():
                return False
        return True

    def cancel(self, timeout: float) -> None:
        """Skip what has not started; a compile in flight cannot be interrupted, so wait for it
        (tearing the interpreter down under a running libbcc compile can crash the exit)."""
        self._cancel.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def readiness(self, pipeline_running: bool) -> str:
        """The /ready `ebpf` check: ok once every stage is attached and the pipeline runs."""
        if not self.enabled:
            return "disabled"
        if self.error:
            return f"failed: {self.error}"
        if not self.done.is_set():
            return "failed: loading BPF programs"
        if not pipeline_running:
            return "failed: starting the pipeline"
        return self.http.readiness() if self.http else "ok"
