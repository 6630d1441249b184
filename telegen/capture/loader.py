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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from telegen.capture.map_batch import MapBatchReader
from telegen.capture.probes import (
    RAW_SYSCALL_TRACEPOINTS,
    SOCK_IO_TRACEPOINTS,
    SOCK_STATE,
    LoadError,
    ProbeChoice,
    cflags_for,
)
from telegen.capture.ringbuf import CallbackRingbuf, MappedRingbuf, RecordSource, mapped_reads_safe

__all__ = ["LoadError", "LoadedBpf", "ProgramInfo", "bpf_source_dir", "release_compiler_memory"]

log = logging.getLogger(__name__)

RingbufMethod = Literal["auto", "mmap", "callback"]


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
    # raw_syscalls programs: the syscalls they dispatch, [{"name": "read", "nr": 0}, ...]
    syscalls: list[dict[str, Any]] | None = None

    def as_dict(self) -> dict[str, Any]:
        out = {"name": self.name, "type": self.type, "target": self.target, "attached": self.attached,
               "id": self.id, "reason": self.reason}
        if self.syscalls is not None:
            out["syscalls"] = self.syscalls
        return out


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
        self._batch_readers: dict[str, MapBatchReader | None] = {}  # None: fall back to key by key
        self._ringbufs: list[RecordSource] = []

    def _attach(self, choices: list[ProbeChoice], prefix: str) -> None:
        bpf = self._bpf
        for choice in choices:
            spec = choice.spec
            if choice.method in ("raw_tracepoint", "sock_tracepoint"):
                continue  # one shared pair each, described below
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
        # The two dispatching pairs: BCC attached their functions when it loaded the module.
        raw = [c for c in choices if c.method == "raw_tracepoint"]
        for tp in RAW_SYSCALL_TRACEPOINTS if raw else ():
            event = tp.partition(":")[2]
            fn = self._bpf.funcs.get(f"raw_tracepoint__{event}".encode())
            attached = fn is not None and event.encode() in self._bpf.raw_tracepoint_fds
            handled = [c for c in raw if event == "sys_enter" or c.spec.kretprobe]  # close: enter only
            self._describe_dispatch(prefix, "raw_tracepoint", tp, fn, attached, handled)
        sock = [c for c in choices if c.method == "sock_tracepoint"]
        for tp in SOCK_IO_TRACEPOINTS if any(c.spec.data for c in sock) else ():
            event = tp.partition(":")[2]
            fn = self._bpf.funcs.get(f"raw_tracepoint__{event}".encode())
            attached = fn is not None and event.encode() in self._bpf.raw_tracepoint_fds
            self._describe_dispatch(prefix, "raw_tracepoint", tp, fn, attached,
                                    [c for c in sock if c.spec.sock_event == tp])
        by_state = [c for c in sock if not c.spec.data]
        if by_state:
            fn = self._bpf.funcs.get(b"tracepoint__sock__inet_sock_set_state")
            if any(c.method == "tracepoint" and SOCK_STATE in c.spec.tracepoint for c in choices):
                # the module's own state-change program (tcp) does their job too: listed by name
                for c in by_state:
                    self._programs.append(ProgramInfo(f"{prefix}_{c.spec.name}", "tracepoint", SOCK_STATE,
                                                      fn is not None, _prog_id(fn.fd) if fn else None, c.reason))
            else:
                self._describe_dispatch(prefix, "tracepoint", SOCK_STATE, fn, fn is not None, by_state)

    def _describe_dispatch(self, prefix: str, prog_type: str, tp: str, fn: Any, attached: bool,
                           handled: list[ProbeChoice]) -> None:
        """One program of a pair that switches on the syscall id, listing the syscalls it handles."""
        reason = "; ".join(dict.fromkeys(c.reason for c in handled))
        self._programs.append(ProgramInfo(
            f"{prefix}_{tp.partition(':')[2]}", prog_type, tp, attached, _prog_id(fn.fd) if fn else None, reason,
            [{"name": c.spec.name, "nr": c.spec.syscall_nr} for c in handled]))

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
        """Every (key, value bytes) of a hash map with u64 keys; values in the C layout. Batched
        (a few syscalls for the whole map) where the kernel supports it, else key by key."""
        table = self._bpf[map_name.encode()]
        with self._lock:
            batch = self._batch_readers.get(map_name)
            if batch is None and map_name not in self._batch_readers:
                batch = self._batch_readers[map_name] = MapBatchReader(table.map_fd, ctypes.sizeof(table.Leaf))
            if batch is not None:
                try:
                    return batch.items()
                except OSError as exc:  # kernels before 5.6 have no batch lookup for hash maps
                    log.info("batch lookup on %s unavailable (%s): reading key by key", map_name, exc)
                    self._batch_readers[map_name] = None
            return [(int(k.value), ctypes.string_at(ctypes.addressof(v), ctypes.sizeof(v)))
                    for k, v in table.items()]

    def delete_keys(self, map_name: str, keys: list[int]) -> None:
        table = self._bpf[map_name.encode()]
        with self._lock:
            for key in keys:
                with contextlib.suppress(KeyError):  # the kernel may have deleted it first
                    del table[table.Key(key)]

    # ---- ring buffers ----

    def open_ringbuf(self, map_name: str, method: RingbufMethod = "auto") -> RecordSource:
        """A batch reader of one ring buffer: mapped into this process where plain loads are
        ordered enough (x86-64, see ringbuf.py), BCC's per-record callback elsewhere."""
        table = self._bpf[map_name.encode()]
        source: RecordSource
        if method == "mmap" or (method == "auto" and mapped_reads_safe()):
            source = MappedRingbuf(int(table.map_fd), int(table.max_entries))
        else:
            source = CallbackRingbuf(self._bpf, map_name)
        log.debug("ring buffer %s read by %s", map_name, type(source).__name__)
        self._ringbufs.append(source)
        return source

    def close(self) -> None:
        for source in self._ringbufs:  # unmap first: the mappings hold the map alive
            try:
                source.close()
            except BufferError:  # a reader that outlived its join is mid-read: leave it mapped
                log.debug("ring buffer still being read at close; left mapped until exit")
        self._ringbufs.clear()
        try:
            self._bpf.cleanup()
        except Exception as exc:  # cleanup during shutdown must not mask the exit path
            log.debug("bpf cleanup: %s", exc)
