"""HTTP capture stage: choose attach methods, load bpf/http.bpf.c, drain its ring buffer,
keep the pairing map clean, and publish /status/ebpf."""

from __future__ import annotations

import logging
import mmap
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Any

from telegen.capture.btf import BtfError, http_defines, kernel_btf
from telegen.capture.layouts import COUNTERS, http_exchange_layout
from telegen.capture.loader import LoadedBpf, LoadError
from telegen.capture.probes import HTTP_PROBES, AttachType, KernelFeatures, ProbeChoice, detect_kernel, plan
from telegen.capture.reader import RingbufReader
from telegen.capture.ringbuf import wake_every
from telegen.capture.sweep import IdleSweeper
from telegen.config import EbpfConfig
from telegen.pipeline import BoundedQueue
from telegen.threads import NamedThread

log = logging.getLogger(__name__)
PAGE = 4096
# Counters whose increments are events the kernel could not hand over.
LOSS_COUNTERS = ("http_ringbuf_full", "http_conn_map_full", "http_active_map_full")


def kernel_headers() -> str:
    """Which headers BCC compiles against, as /status/ebpf reports it."""
    if env := os.environ.get("TELEGEN_KERNEL_HEADERS"):
        return env
    build = Path(f"/lib/modules/{os.uname().release}/build")
    if not build.exists():
        return "missing"
    target = build.resolve()
    if build.is_symlink() and os.uname().release not in str(target):
        return f"linked:{target}"
    return f"host:{target}"


class CaptureStage:
    name = "capture"

    def __init__(self, cfg: EbpfConfig, records: BoundedQueue[bytes], self_pid: int | None = None,
                 force_method: AttachType | None = None) -> None:
        self.cfg = cfg
        self.records = records
        self.self_pid = self_pid if self_pid is not None else os.getpid()
        self.force_method = force_method
        self.kernel: KernelFeatures | None = None
        self.choices: list[ProbeChoice] = []
        self.bpf: LoadedBpf | None = None
        self.reader: RingbufReader | None = None
        self.headers = kernel_headers()
        self.error = ""
        self.evicted_no_response = 0
        self.shed_permille = 0
        self._stop = threading.Event()
        self._janitor: threading.Thread | None = None
        self.sweeper = IdleSweeper(cfg.capture_bytes)
        self.load_seconds = 0.0

    def start(self) -> None:
        started = time.monotonic()
        self.kernel = detect_kernel()
        self.choices = plan(HTTP_PROBES, self.kernel, "HTTP", force=self.force_method)
        try:
            defines = http_defines(kernel_btf())
        except BtfError as exc:
            raise LoadError(f"kernel BTF is needed for socket addresses: {exc}") from exc
        defines.update(CAPTURE_BYTES=self.cfg.capture_bytes, MAX_CONNS=self.cfg.max_connections,
                       RINGBUF_PAGES=self.cfg.ringbuf_pages, SELF_TGID=self.self_pid if self.cfg.exclude_self else 0,
                       RINGBUF_WAKE_EVERY=wake_every(self.cfg.ringbuf_pages * mmap.PAGESIZE,
                                                     http_exchange_layout(self.cfg.capture_bytes).size,
                                                     os.cpu_count() or 1),
                       # keys the hash behind trace ids: unpredictable, one per start (63 bits: a C literal)
                       TRACE_SALT=secrets.randbits(63))
        self.bpf = LoadedBpf("http.bpf.c", self.choices, defines, "http")
        ring = self.bpf.open_ringbuf("http_events")
        self.reader = RingbufReader(ring.read, self.records, wakeup_fd=ring.wakeup_fd())
        self.reader.start()
        self._janitor = NamedThread(target=self._janitor_loop, name="telegen-bpf-janitor", daemon=True)
        self._janitor.start()
        self.load_seconds = time.monotonic() - started
        attached = sum(p.attached for p in self.bpf.programs())
        methods = ",".join(sorted({c.method for c in self.choices if c.method}))
        log.info("HTTP capture: %d programs attached in %.2fs (compile %.2fs) via %s, headers %s", attached,
                 self.load_seconds, self.bpf.compile_seconds, methods, self.headers)

    def set_shed(self, permille: int) -> None:
        if self.bpf and permille != self.shed_permille:
            self.bpf.set_array("http_shed", 0, permille)
            self.shed_permille = permille

    def _janitor_loop(self) -> None:
        # Every 250 ms: exchanges done but idle; every 10 s: entries of processes that died
        # without close().
        passes = 0
        while not self._stop.wait(0.25):
            passes += 1
            try:
                self.sweep_idle()
                if passes % 40 == 0:
                    self.sweep_dead()
            except Exception as exc:  # keep sweeping; one bad pass is not fatal
                log.warning("pairing-map sweep failed: %s", exc)

    def sweep_idle(self) -> None:
        if not self.bpf:
            return
        records, done = self.sweeper.sweep(self.bpf.hash_items_raw("http_conns"))
        if done:
            self.bpf.delete_keys("http_conns", done)
        if records:
            self.records.put_many(records)

    def sweep_dead(self) -> int:
        """Entries of processes gone without close(): in-flight exchanges emitted as closed."""
        if not self.bpf:
            return 0
        pids: dict[int, bool] = {}

        def alive(pid: int) -> bool:
            if pid not in pids:
                pids[pid] = os.path.exists(f"/proc/{pid}")
            return pids[pid]

        records, dead, unreadable = self.sweeper.flush_dead(self.bpf.hash_items_raw("http_conns"), alive)
        if dead:
            self.bpf.delete_keys("http_conns", dead)
            self.evicted_no_response += unreadable
        if records:
            self.records.put_many(records)
        return len(dead)

    def counters(self) -> dict[str, int]:
        if not self.bpf:
            return dict.fromkeys(COUNTERS, 0)
        sums = self.bpf.percpu_sums("counters")
        out = {name: sums[idx] for name, idx in COUNTERS.items()}
        # exchanges the sweep completed count like the kernel's own
        out["http_exchanges"] += self.sweeper.emitted + self.sweeper.sampled_out
        out["http_emitted"] += self.sweeper.emitted
        out["http_sampled_out"] += self.sweeper.sampled_out
        out["http_pipelined"] += self.sweeper.pipelined_merged
        out["http_no_response"] += self.sweeper.no_response
        return out

    def events_lost(self, counters: dict[str, int] | None = None) -> int:
        counters = counters or self.counters()
        return sum(counters[c] for c in LOSS_COUNTERS) + self.evicted_no_response

    def stop(self, timeout: float) -> None:
        self._stop.set()
        if self.reader:
            self.reader.stop(timeout)
        if self.bpf:
            self.bpf.close()
            self.bpf = None

    def healthy(self) -> tuple[bool, str]:
        if self.reader and not self.reader.alive() and not self._stop.is_set():
            return False, f"capture reader thread died: {self.reader.error or 'unknown'}"
        return True, ""

    def readiness(self) -> str:
        if self.error:
            return f"failed: {self.error}"
        if not self.bpf:
            return "failed: not loaded"
        if any(c.spec.required and c.method is None for c in self.choices):
            return "failed: required probe missing"
        return "ok"

    def status(self) -> dict[str, Any]:
        counters = self.counters()
        programs = [p.as_dict() for p in self.bpf.programs()] if self.bpf else []
        maps = self.bpf.maps() if self.bpf else []
        k = self.kernel
        return {
            "enabled": True,
            "kernel": {"release": os.uname().release, "btf": bool(k and k.btf), "kprobes": bool(k and k.kprobes),
                       "headers": self.headers},
            "programs": programs,
            "maps": maps,
            "ringbuf": {
                "size": self.cfg.ringbuf_pages * PAGE,
                "events_received": self.reader.received if self.reader else 0,
                "events_lost": self.events_lost(counters),
                "lost_by_reason": {"ringbuf_full": counters["http_ringbuf_full"],
                                   "pairing_map_full": counters["http_conn_map_full"],
                                   "syscall_map_full": counters["http_active_map_full"],
                                   "evicted_without_response": self.evicted_no_response},
                "dropped_in_agent": self.records.dropped_total,
            },
            "http": {
                "exchanges": counters["http_exchanges"], "emitted": counters["http_emitted"],
                "without_response": counters["http_no_response"], "sampled_out": counters["http_sampled_out"],
                "interim_responses": counters["http_interim"], "pipelined_merged": counters["http_pipelined"],
                "shed_permille": self.shed_permille,
            },
            "error": self.error or None,
        }
