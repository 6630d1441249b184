"""telegen.capture.map_batch on a real kernel: the batched walk returns exactly what a key-by-key
walk returns, across many chunks, and an empty map reads as empty."""

from __future__ import annotations

import ctypes
import struct

import pytest

from telegen.capture.map_batch import MapBatchReader
from tests.conftest import have_bcc, have_root, require

pytestmark = [pytest.mark.bpf, pytest.mark.root]

SOURCE = """
struct value { u64 a; u8 blob[300]; };
BPF_F_TABLE("hash", u64, struct value, entries, 8192, BPF_F_NO_PREALLOC);
"""


def _table():  # type: ignore[no-untyped-def]
    require(have_root(), "root, to create BPF maps")
    require(have_bcc(), "BCC's python module (Debian python3-bpfcc)")
    from bcc import BPF

    bpf = BPF(text=SOURCE.encode())
    return bpf, bpf[b"entries"]


def test_batch_walk_equals_key_by_key_walk() -> None:
    bpf, table = _table()
    try:
        for i in range(3000):  # ~6 chunks of 512
            value = table.Leaf()
            value.a = i * 7
            ctypes.memmove(ctypes.addressof(value) + 8, bytes([i % 251]) * 300, 300)
            table[table.Key((i << 32) | (i % 97))] = value
        reader = MapBatchReader(table.map_fd, ctypes.sizeof(table.Leaf), chunk=512)
        got = dict(reader.items())
        expected = {int(k.value): ctypes.string_at(ctypes.addressof(v), ctypes.sizeof(v)) for k, v in table.items()}
        assert len(got) == 3000
        assert got == expected
        key = (1234 << 32) | (1234 % 97)
        assert struct.unpack_from("<Q", got[key])[0] == 1234 * 7
    finally:
        bpf.cleanup()


def test_empty_map_and_small_chunks() -> None:
    bpf, table = _table()
    try:
        reader = MapBatchReader(table.map_fd, ctypes.sizeof(table.Leaf), chunk=4)
        assert reader.items() == []
        for i in range(10):
            table[table.Key(i)] = table.Leaf()
        assert sorted(k for k, _ in reader.items()) == list(range(10))
    finally:
        bpf.cleanup()
