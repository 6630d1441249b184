"""The only module that imports bcc: compile a BPF source with -D flags, attach, describe.

Everything above this module works with plain Python values (program descriptions, counter
sums, raw record bytes), so the rest of the agent and its tests never touch BCC objects.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from telegen.capture.probes import LoadError, ProbeChoice, cflags_for

__all__ = ["LoadError", "LoadedBpf", "ProgramInfo", "bpf_source_dir", "release_compiler_memory"]

log = logging.getLogger(__name__)

RecordSink = Callable[[bytes], None]


_MADV_PAGEOUT = 21  # Linux 5.4+: reclaim these pages now (they fault back in if ever touched)
_COMPILER_LIBS = ("libLLVM", "libclang", "libbcc")


def release_compiler_memory() -> int:
    """After compiling, give back what LLVM/clang held: ~130 MB of library text touched by the
    compile (file-backed, paged out) and freed heap (malloc_trim). Returns bytes advised."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    advised = 0
    try:
        with open("/proc/self/maps", encoding="ascii", errors="replace") as fh:
            maps = fh.readlines()
    except OSError:
        return 0
    for line in maps:
        parts = line.split()
        if len(parts) < 6 or not any(lib in parts[5] for lib in _COMPILER_LIBS):
            continue
        start, end = (int(x, 16) for x in parts[0].split("-"))
        if libc.madvise(start, end - start, _MADV_PAGEOUT) == 0:
            advised += end - start
    if hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)
    return advised


def bpf_source_dir() -> Path:
    """bpf/ next to the package (source checkout), or the installed share/telegen/bpf."""
    env = os.environ.get("TELEGEN_BPF_DIR")
    candidates = [Path(env)] if env else []
    candidates += [Path(__file__).resolve().parents[2] / "bpf", Path(sys.prefix) / "share" / "telegen" / "bpf"]
    for candidate in candidates:
        if (candidate / "include" / "events.h").exists():
            return candidate
    raise LoadError("BPF sources not found (looked in: " + ", ".join(map(str, candidates)) + ")")


def _prog_id(fd: int) -> int | None:
    """The kernel's program id (as bpftool shows it), from the fd's fdinfo."""
    try:
        with open(f"/proc/self/fdinfo/{fd}", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("prog_id:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


_MAP_TYPES = {1: "hash", 2: "array", 4: "perf_event_array", 5: "percpu_hash", 6: "percpu_array",
              9: "lru_hash", 10: "lru_percpu_hash", 27: "ringbuf"}


@dataclass
class ProgramInfo:
    name: str
    type: str
    target: str
    attached: bool
    id: int | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "target": self.target, "attached": self.attached,
                "id": self.id, "reason": self.reason}


class LoadedBpf:
    """One compiled BPF module with its attached programs."""

    def __init__(self, source_file: str, choices: list[ProbeChoice], defines: dict[str, int],
                 program_prefix: str) -> None:
        from bcc import BPF  # the only bcc import in telegen

        src_dir = bpf_source_dir()
        cflags = [f"-I{src_dir / 'include'}", "-Wno-macro-redefined", "-Wno-unused-function"]
        cflags += [f"-D{k}={v}" for k, v in sorted(defines.items())]
        cflags += cflags_for(choices)
        text = (src_dir / source_file).read_text(encoding="utf-8")
        started = time.monotonic()
        try:
            self._bpf = BPF(text=text.encode(), cflags=cflags)
        except Exception as exc:  # BCC raises bare Exception on compile/verifier errors
            raise LoadError(f"{source_file}: {exc}") from exc
        self.compile_seconds = time.monotonic() - started
        release_compiler_memory()
        self._lock = threading.Lock()
        self._programs: list[ProgramInfo] = []
        self._attach(choices, program_prefix)
        self._entries_cache: dict[str, tuple[float, int]] = {}

    def _attach(self, choices: list[ProbeChoice], prefix: str) -> None:
        bpf = self._bpf
        for choice in choices:
            spec = choice.spec
            if choice.method is None:
                self._programs.append(ProgramInfo(f"{prefix}_{spec.name}", "tracepoint", spec.tracepoint[0],
                                                  False, None, choice.reason))
                continue
            if choice.method == "tracepoint":
                # BCC attached TRACEPOINT_PROBE functions when it loaded the module.
                for tp in spec.tracepoint:
                    category, _, event = tp.partition(":")
                    fn = bpf.funcs.get(f"tracepoint__{category}__{event}".encode())
                    self._programs.append(ProgramInfo(f"{prefix}_{event}", "tracepoint", tp, fn is not None,
                                                      _prog_id(fn.fd) if fn else None, choice.reason))
                continue
            symbol = bpf.get_syscall_fnname(spec.name.removesuffix("64") if spec.name == "sendfile64"
                                            else spec.name).decode()
            try:
                bpf.attach_kprobe(event=symbol, fn_name=f"syscall__{spec.name}")
                fn = bpf.funcs[f"syscall__{spec.name}".encode()]
                self._programs.append(ProgramInfo(f"{prefix}_enter_{spec.name}", "kprobe", symbol, True,
                                                  _prog_id(fn.fd), choice.reason))
                if spec.kretprobe:
                    bpf.attach_kretprobe(event=symbol, fn_name=f"kret__{spec.name}")
                    fn = bpf.funcs[f"kret__{spec.name}".encode()]
                    self._programs.append(ProgramInfo(f"{prefix}_exit_{spec.name}", "kretprobe", symbol, True,
                                                      _prog_id(fn.fd), choice.reason))
            except Exception as exc:
                if spec.required:
                    raise LoadError(f"attaching kprobe {symbol}: {exc}") from exc
                self._programs.append(ProgramInfo(f"{prefix}_{spec.name}", "kprobe", symbol, False, None,
                                                  f"attach failed: {exc}"))

    # ---- descriptions ----

    def programs(self) -> list[ProgramInfo]:
        return list(self._programs)

    def maps(self) -> list[dict[str, Any]]:
        out = []
        now = time.monotonic()
        for raw_name, table in self._bpf.tables.items():
            name = raw_name.decode() if isinstance(raw_name, bytes) else str(raw_name)
            map_type = _MAP_TYPES.get(int(table.ttype), str(table.ttype))
            entries: int | None = None
            if map_type in ("hash", "lru_hash", "percpu_hash", "lru_percpu_hash"):
                cached = self._entries_cache.get(name)
                if cached and now - cached[0] < 1.0:
                    entries = cached[1]
                else:
                    with self._lock:
                        entries = sum(1 for _ in table.keys())  # noqa: SIM118 (a BCC table, not a dict)
                    self._entries_cache[name] = (now, entries)
            elif map_type in ("array", "percpu_array"):
                entries = int(table.max_entries)
            out.append({"name": name, "type": map_type, "entries": entries,
                        "max_entries": int(table.max_entries)})
        return out

    def percpu_sums(self, map_name: str) -> list[int]:
        table = self._bpf[map_name.encode()]
        with self._lock:
            return [int(sum(table[ctypes.c_int(i)])) for i in range(int(table.max_entries))]

    def set_array(self, map_name: str, index: int, value: int) -> None:
        table = self._bpf[map_name.encode()]
        with self._lock:
            table[ctypes.c_int(index)] = ctypes.c_uint32(value)

    def hash_keys(self, map_name: str) -> list[int]:
        with self._lock:
            return [int(k.value) for k in self._bpf[map_name.encode()].keys()]  # noqa: SIM118

    def hash_items_raw(self, map_name: str) -> list[tuple[int, bytes]]:
        """Every (key, value bytes) of a hash map; values in the C layout."""
        table = self._bpf[map_name.encode()]
        with self._lock:
            return [(int(k.value), ctypes.string_at(ctypes.addressof(v), ctypes.sizeof(v)))
                    for k, v in table.items()]

    def delete_keys(self, map_name: str, keys: list[int]) -> None:
        table = self._bpf[map_name.encode()]
        with self._lock:
            for key in keys:
                with contextlib.suppress(KeyError):  # the kernel may have deleted it first
                    del table[table.Key(key)]

    # ---- ring buffers ----

    def open_ringbuf(self, map_name: str, sink: RecordSink) -> None:
        """Each record is copied out as bytes and handed to `sink` (kept short: it runs in C's loop)."""

        def callback(_ctx: Any, data: Any, size: int) -> int:
            sink(ctypes.string_at(data, size))
            return 0

        self._bpf[map_name.encode()].open_ring_buffer(callback)

    def consume(self) -> None:
        """Drain every ring buffer of this module without blocking."""
        self._bpf.ring_buffer_consume()

    def close(self) -> None:
        try:
            self._bpf.cleanup()
        except Exception as exc:  # cleanup during shutdown must not mask the exit path
            log.debug("bpf cleanup: %s", exc)
