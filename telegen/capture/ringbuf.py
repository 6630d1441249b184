"""Batch reads of a BPF ring buffer mapped into this process: libbpf's ringbuf.c consumer, in Python.

BCC's consumer calls back into Python once per record (measured 1.7 µs each, mostly the ctypes
trampoline). Walking the mapped buffer here copies each record out with one slice and costs a
fraction of that; see bench/ringbuf_read_cost.py.

Layout (kernel/bpf/ringbuf.c): page 0 is the consumer page, writable by us, consumer_pos its first
u64. From page 1, read-only: the producer page (producer_pos first) and then the data area mapped
twice in a row, so a record that wraps past the end is still contiguous in our mapping. Each
record is an 8-byte header (u32 len with the BUSY and DISCARD bits, u32 pg_off) and len bytes of
data; the next header starts at round_up(len + 8, 8).

Memory ordering. libbpf loads producer_pos and each header with load-acquire and stores
consumer_pos with store-release. Python cannot emit barriers, so this reader is used only where
plain aligned loads and stores already have those semantics: x86-64 (TSO: loads are not
reordered with other loads, nor stores with earlier loads). Each u32/u64 here is accessed as a
memoryview item (one aligned memcpy of 4 or 8 bytes: a single mov on x86-64, so never torn)
in program order: producer_pos, then the header, then the data slice; consumer_pos is stored
after the slices are copied. On arm64 and others plain loads may be reordered and the loader
keeps BCC's callback (see mapped_reads_safe).
"""

from __future__ import annotations

import ctypes
import mmap
import os
import platform
from typing import Any, Protocol

BUSY_BIT = 1 << 31  # reserved, not yet submitted: stop here, later records must wait for it
DISCARD_BIT = 1 << 30  # submitted as discarded: skip, but still advance past it
HEADER_SIZE = 8
_LEN_MASK = ~(BUSY_BIT | DISCARD_BIT) & 0xFFFFFFFF

_FIRST_PROBE = 16  # headers read ahead in a run before it has shown it is long


class RingbufCorrupt(Exception):
    """Positions or a header the kernel cannot have produced (a torn read, or a layout change)."""


class RecordSource(Protocol):
    """What the drain thread reads from: every committed record since the last call, in order."""

    def read(self) -> list[bytes]: ...

    def wakeup_fd(self) -> int:
        """The ring map's fd, for epoll: readable when the kernel forces a wakeup."""
        ...

    def close(self) -> None: ...


def wake_every(ring_bytes: int, record_bytes: int, cpus: int) -> int:
    """Records per CPU between two forced wakeups: all CPUs together stay under a quarter of
    the ring, so a flood is drained before it fills; at most 1,024 (a drain's worth), at least 1."""
    records = ring_bytes // ((record_bytes + HEADER_SIZE + 7) & ~7)
    return max(1, min(1024, records // (4 * max(1, cpus))))


def mapped_reads_safe(machine: str | None = None) -> bool:
    """Whether plain loads/stores give the acquire/release order the ring protocol needs."""
    return (machine if machine is not None else platform.machine()) in ("x86_64", "AMD64")


def walk(buf: bytes | mmap.mmap, base: int, mask: int, cons: int, prod: int) -> tuple[list[bytes], int]:
    """Records from position `cons` up to `prod` (or the first uncommitted one), and where to resume.

    `buf[base:]` is the data area mapped twice (2 * (mask + 1) bytes; `base` a multiple of 8);
    positions are the kernel's free-running byte counters, masked to an offset. Discarded
    records are skipped.
    """
    size = mask + 1
    if prod - cons > size or prod < cons:
        raise RingbufCorrupt(f"consumer {cons} / producer {prod} more than {size} bytes apart")
    out: list[bytes] = []
    append, extend = out.append, out.extend
    longest = size - HEADER_SIZE
    prev, probe = -1, _FIRST_PROBE
    with memoryview(buf) as raw, raw.cast("I") as words:  # released on exit: mmap.close() refuses while exported
        while cons < prod:
            off = base + (cons & mask)
            word = words[off >> 2]
            if word & BUSY_BIT:
                break
            length = word & _LEN_MASK
            if length > longest:
                raise RingbufCorrupt(f"record of {length} bytes at position {cons} in a {size}-byte ring")
            step = (length + HEADER_SIZE + 7) & ~7
            if word == prev:
                # Two equal headers in a row: a ring of one struct, the usual case. Read the next
                # headers at that stride in one C call (in order, all before their data, as the
                # protocol needs) and slice the run of equal ones. The double map keeps every
                # offset up to prod contiguous, so no masking inside the run.
                n = min((prod - cons) // step, probe)
                ahead = words[off >> 2:(off + n * step) >> 2:step >> 2].tolist()
                run = n if ahead.count(word) == n else _leading(ahead, word)
                if not word & DISCARD_BIT:
                    start = off + HEADER_SIZE
                    extend([buf[o:o + length] for o in range(start, start + run * step, step)])
                cons += run * step
                probe = probe * 2 if run == n else _FIRST_PROBE  # bounded waste when sizes vary
                continue
            if not word & DISCARD_BIT:
                append(buf[off + HEADER_SIZE:off + HEADER_SIZE + length])
            cons += step
            prev = word
    if cons > prod:
        raise RingbufCorrupt(f"record at position {cons} runs past the producer ({prod})")
    return out, cons


def _leading(values: list[int], value: int) -> int:
    """How many of `values` from the start equal `value`."""
    for i, v in enumerate(values):
        if v != value:
            return i
    return len(values)


class MappedRingbuf:
    """A BPF_MAP_TYPE_RINGBUF map read through mmap; `read()` returns list[bytes] as BCC's callback
    delivered them (each record's exact length). One reader per map: the consumer position is ours."""

    def __init__(self, map_fd: int, data_size: int, page_size: int = mmap.PAGESIZE, passes: int = 4) -> None:
        if data_size <= 0 or data_size & (data_size - 1) or data_size % page_size:
            raise ValueError(f"ring size {data_size} is not a power-of-two multiple of the page size")
        # mmap dup()s the fd, so the map lives until close() even if BCC closes its own fd first.
        self._consumer = mmap.mmap(map_fd, page_size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        try:
            self._data = mmap.mmap(map_fd, page_size + 2 * data_size, mmap.MAP_SHARED, mmap.PROT_READ,
                                   offset=page_size)
        except OSError:
            self._consumer.close()
            raise
        self._fd = os.dup(map_fd)  # for epoll, ours for the same reason
        # Positions go through memoryviews: an item load or store is one aligned 8-byte memcpy (a
        # single mov). Never struct.pack_into: it zeroes the field before writing it, the kernel
        # then sees consumer_pos 0 for a moment and refuses reserves (measured: records lost).
        self._views = [memoryview(self._consumer), memoryview(self._data)]
        self._views += [self._views[0].cast("Q"), self._views[1].cast("Q")]
        self._cons, self._prod = self._views[2], self._views[3]
        self._base = page_size
        self._mask = data_size - 1
        self._passes = passes  # re-read producer_pos after a pass, as libbpf does, but not forever
        self.data_size = data_size

    def read(self) -> list[bytes]:
        records: list[bytes] = []
        for _ in range(self._passes):
            cons, prod = self._cons[0], self._prod[0]
            got, new_cons = walk(self._data, self._base, self._mask, cons, prod)
            if new_cons == cons:
                break
            records += got
            self._cons[0] = new_cons  # after the copies: from here on the kernel may reuse the space
            if new_cons != prod:  # stopped at a record still being written
                break
        return records

    def pending_bytes(self) -> int:
        """Bytes between consumer and producer (committed or not): how full the ring is."""
        return int(self._prod[0] - self._cons[0])

    def wakeup_fd(self) -> int:
        return self._fd

    def close(self) -> None:
        for view in reversed(self._views):  # derived views first: a base with exports refuses release
            view.release()
        self._data.close()
        self._consumer.close()
        os.close(self._fd)


class CallbackRingbuf:
    """BCC's consumer: libbpf calls into Python once per record (~1.7 µs each). Kept for
    architectures where MappedRingbuf's plain loads lack acquire/release order (arm64...).
    `bpf` is the BCC module object, which only capture/loader.py creates."""

    def __init__(self, bpf: Any, map_name: str) -> None:
        self._bpf = bpf
        self._batch: list[bytes] = []
        self._table = bpf[map_name.encode()]
        self._table.open_ring_buffer(self._callback)

    def _callback(self, _ctx: Any, data: Any, size: int) -> int:
        self._batch.append(ctypes.string_at(data, size))  # runs inside libbpf's loop: only copy
        return 0

    def read(self) -> list[bytes]:
        self._bpf.ring_buffer_consume()  # every ring opened on this module; each keeps its own batch
        batch, self._batch = self._batch, []
        return batch

    def wakeup_fd(self) -> int:
        return int(self._table.map_fd)  # BCC's, open as long as the module is

    def close(self) -> None:
        """Nothing to release: BPF.cleanup() frees libbpf's ring_buffer."""
