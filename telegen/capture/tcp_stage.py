"""TCP capture stage: load bpf/tcp.bpf.c, drain its ring buffer, read live sockets, publish status.

Status has the HTTP stage's shape (programs, maps, ring-buffer counts) so /status/ebpf can
merge the two; a live-socket snapshot of the tcp_socks map feeds the active-connections
gauge and the L4<->L7 join for connections that have not closed yet.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from telegen.capture.btf import BtfError, kernel_btf, tcp_defines
from telegen.capture.layouts import COUNTERS
from telegen.capture.loader import LoadedBpf, LoadError
from telegen.capture.probes import TCP_PROBES, AttachType, KernelFeatures, ProbeChoice, detect_kernel, plan
from telegen.capture.reader import RingbufReader
from telegen.config import EbpfConfig
from telegen.decode.tcp_records import TcpConnection, TcpDecoder
from telegen.pipeline import BoundedQueue

log = logging.getLogger(__name__)
PAGE = 4096
TCP_COUNTERS = tuple(n for n in COUNTERS if n.startswith("tcp_"))
LOSS_COUNTERS = ("tcp_ringbuf_full", "tcp_sock_map_full")
TCP_RINGBUF_PAGES = 256  # 1 MiB: a record is 120 bytes, drained every 50 ms


def _retransmit_has_err(tracefs: Path | None) -> bool:
    fmt = (tracefs / "events" / "tcp" / "tcp_retransmit_skb" / "format") if tracefs else None
    try:
        return fmt is not None and "field:int err;" in fmt.read_text()
    except OSError:
        return False


class TcpCaptureStage:
    name = "tcp_capture"

    def __init__(self, cfg: EbpfConfig, records: BoundedQueue[bytes], self_pid: int | None = None,
                 max_socks: int | None = None, ringbuf_pages: int = TCP_RINGBUF_PAGES,
                 force_method: AttachType | None = None) -> None:
        self.cfg = cfg
        self.records = records
        self.self_pid = self_pid if self_pid is not None else os.getpid()
        self.max_socks = max_socks or cfg.max_connections
        self.ringbuf_pages = ringbuf_pages
        self.force_method = force_method
        self.kernel: KernelFeatures | None = None
        self.choices: list[ProbeChoice] = []
        self.bpf: LoadedBpf | None = None
        self.reader: RingbufReader | None = None
        self.decoder = TcpDecoder()
        self.error = ""
        self.load_seconds = 0.0
        self._live_lock = threading.Lock()
        self._live: list[TcpConnection] = []
        self._live_at = 0.0

    def start(self) -> None:
        started = time.monotonic()
        self.kernel = detect_kernel(load_symbols=False)
        self.choices = [ProbeChoice(c.spec, c.method, "stable tracepoint; this probe has no kprobe variant")
                        if self.kernel.kprobes and c.method == "tracepoint" and not c.spec.kprobe_symbol else c
                        for c in plan(TCP_PROBES, self.kernel, "TCP", force=self.force_method)]
        try:
            defines = tcp_defines(kernel_btf())
        except BtfError as exc:
            raise LoadError(f"kernel BTF is needed for TCP socket counters: {exc}") from exc
        defines.update(MAX_SOCKS=self.max_socks, RINGBUF_PAGES=self.ringbuf_pages,
                       SELF_TGID=self.self_pid if self.cfg.exclude_self else 0,
                       RETRANSMIT_HAS_ERR=int(_retransmit_has_err(self.kernel.tracefs)))
        self.bpf = LoadedBpf("tcp.bpf.c", self.choices, defines, "tcp")
        self.reader = RingbufReader(self.bpf.open_ringbuf("tcp_events").read, self.records)
        self.reader.start()
        self.load_seconds = time.monotonic() - started
        log.info("TCP capture: %d programs attached in %.2fs", sum(p.attached for p in self.bpf.programs()),
                 self.load_seconds)

    def live(self, max_age: float = 1.0) -> list[TcpConnection]:
        """Established sockets now in the map; re-read at most every `max_age` seconds."""
        if not self.bpf:
            return []
        with self._live_lock:
            now = time.monotonic()
            if now - self._live_at >= max_age:
                items = self.bpf.hash_items_raw("tcp_socks")
                self._live = self.decoder.decode_live(items, time.monotonic_ns())
                self._live_at = now
            return list(self._live)

    def counters(self) -> dict[str, int]:
        if not self.bpf:
            return dict.fromkeys(TCP_COUNTERS, 0)
        sums = self.bpf.percpu_sums("tcp_counters")
        return {name: sums[COUNTERS[name]] for name in TCP_COUNTERS}

    def events_lost(self, counters: dict[str, int] | None = None) -> int:
        counters = counters or self.counters()
        return sum(counters[c] for c in LOSS_COUNTERS)

    def stop(self, timeout: float) -> None:
        if self.reader:
            self.reader.stop(timeout)
        if self.bpf:
            self.bpf.close()
            self.bpf = None

    def healthy(self) -> tuple[bool, str]:
        if self.reader and self.bpf and not self.reader.alive():
            return False, f"TCP ring-buffer reader died: {self.reader.error or 'unknown'}"
        return True, ""

    def status(self) -> dict[str, Any]:
        """The HTTP stage's shape: programs, maps, ringbuf, plus a `tcp` section."""
        counters = self.counters()
        return {
            "programs": [p.as_dict() for p in self.bpf.programs()] if self.bpf else [],
            "maps": self.bpf.maps() if self.bpf else [],
            "ringbuf": {
                "size": self.ringbuf_pages * PAGE,
                "events_received": self.reader.received if self.reader else 0,
                "events_lost": self.events_lost(counters),
                "lost_by_reason": {"tcp_ringbuf_full": counters["tcp_ringbuf_full"],
                                   "tcp_sock_map_full": counters["tcp_sock_map_full"]},
                "dropped_in_agent": self.records.dropped_total,
            },
            "tcp": {"connections_opened": counters["tcp_opened"], "connects_failed": counters["tcp_failed"],
                    "records_emitted": counters["tcp_emitted"],
                    "handshakes_not_completed": counters["tcp_syn_recv_dropped"],
                    "max_sockets": self.max_socks, "decode_errors": dict(self.decoder.errors)},
            "error": self.error or None,
        }
