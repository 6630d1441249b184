"""telegen.capture.ringbuf: the record walker over a synthetic ring, and MappedRingbuf over a memfd
laid out like the kernel's mapping (data area written twice to stand in for the double map)."""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Iterator

import pytest

from telegen.capture.ringbuf import (
    BUSY_BIT,
    DISCARD_BIT,
    MappedRingbuf,
    RingbufCorrupt,
    mapped_reads_safe,
    walk,
)

SIZE = 4096
MASK = SIZE - 1
BASE = 64  # the walker only needs the data area's offset in the buffer


def rounded(length: int) -> int:
    return (length + 8 + 7) & ~7


class Ring:
    """The data area as the kernel fills it: free-running positions, headers, wrap at SIZE."""

    def __init__(self, start: int = 0) -> None:
        self.area = bytearray(SIZE)
        self.prod = start
        self.headers: list[int] = []

    def reserve(self, data: bytes, bits: int = BUSY_BIT) -> int:
        pos = self.prod
        self._put(pos, struct.pack("<II", len(data) | bits, 0) + data)
        self.prod += rounded(len(data))
        return pos

    def set_bits(self, pos: int, length: int, bits: int) -> None:
        self._put(pos, struct.pack("<I", length | bits))

    def _put(self, pos: int, blob: bytes) -> None:
        for i, b in enumerate(blob):
            self.area[(pos + i) & MASK] = b

    def buffer(self) -> bytes:
        return b"\xee" * BASE + bytes(self.area) * 2


def payload(i: int, length: int) -> bytes:
    return bytes((i + k) % 251 for k in range(length))


def test_no_records() -> None:
    assert walk(Ring().buffer(), BASE, MASK, 128, 128) == ([], 128)


def test_committed_records_come_out_with_their_exact_length() -> None:
    ring = Ring()
    sent = [payload(i, n) for i, n in enumerate((1, 7, 8, 9, 100, 624))]
    for data in sent:
        ring.reserve(data, bits=0)
    got, cons = walk(ring.buffer(), BASE, MASK, 0, ring.prod)
    assert got == sent
    assert cons == ring.prod == sum(rounded(len(d)) for d in sent)


def test_busy_record_stops_the_walk_until_it_is_committed() -> None:
    ring = Ring()
    a, b, c = payload(1, 20), payload(2, 30), payload(3, 40)
    ring.reserve(a, bits=0)
    pos_b = ring.reserve(b)  # reserved, not yet submitted
    ring.reserve(c, bits=0)  # submitted after b was reserved: must wait behind it
    got, cons = walk(ring.buffer(), BASE, MASK, 0, ring.prod)
    assert got == [a]
    assert cons == pos_b
    ring.set_bits(pos_b, len(b), 0)
    got, cons = walk(ring.buffer(), BASE, MASK, cons, ring.prod)
    assert got == [b, c]
    assert cons == ring.prod


def test_discarded_records_are_skipped_but_consumed() -> None:
    ring = Ring()
    a, d, c = payload(1, 16), payload(2, 300), payload(3, 5)
    ring.reserve(a, bits=0)
    ring.reserve(d, bits=DISCARD_BIT)
    ring.reserve(c, bits=0)
    assert walk(ring.buffer(), BASE, MASK, 0, ring.prod) == ([a, c], ring.prod)


def test_only_discarded_records_advance_with_nothing_returned() -> None:
    ring = Ring()
    ring.reserve(payload(0, 10), bits=DISCARD_BIT)
    assert walk(ring.buffer(), BASE, MASK, 0, ring.prod) == ([], ring.prod)


def test_record_wrapping_past_the_end_is_contiguous_through_the_double_map() -> None:
    start = 5 * SIZE - 24  # free-running positions, several laps in, header 24 bytes from the end
    ring = Ring(start)
    wrapped, after = payload(7, 200), payload(8, 33)
    ring.reserve(wrapped, bits=0)
    ring.reserve(after, bits=0)
    got, cons = walk(ring.buffer(), BASE, MASK, start, ring.prod)
    assert got == [wrapped, after]
    assert cons == ring.prod
    assert cons & MASK < start & MASK  # it really wrapped


def test_header_exactly_at_the_end_of_the_area() -> None:
    start = SIZE - 8
    ring = Ring(start)
    data = payload(9, 64)
    ring.reserve(data, bits=0)
    assert walk(ring.buffer(), BASE, MASK, start, ring.prod) == ([data], ring.prod)


def test_positions_past_32_bits() -> None:
    start = (1 << 40) + 16
    ring = Ring(start)
    data = payload(1, 50)
    ring.reserve(data, bits=0)
    assert walk(ring.buffer(), BASE, MASK, start, ring.prod) == ([data], ring.prod)


def test_partial_walk_stops_at_the_producer_position() -> None:
    ring = Ring()
    first = [payload(i, 40) for i in range(3)]
    for data in first:
        ring.reserve(data, bits=0)
    seen_prod = ring.prod
    later = payload(9, 40)
    ring.reserve(later, bits=0)  # written after producer_pos was read: not part of this walk
    assert walk(ring.buffer(), BASE, MASK, 0, seen_prod) == (first, seen_prod)
    assert walk(ring.buffer(), BASE, MASK, seen_prod, ring.prod) == ([later], ring.prod)


def test_full_ring_of_records() -> None:
    ring = Ring(3 * SIZE + 512)
    sent = []
    while ring.prod - 3 * SIZE - 512 + rounded(56) <= SIZE:
        sent.append(payload(len(sent), 56))
        ring.reserve(sent[-1], bits=0)
    got, cons = walk(ring.buffer(), BASE, MASK, 3 * SIZE + 512, ring.prod)
    assert got == sent and cons == ring.prod == 4 * SIZE + 512


@pytest.mark.parametrize(("cons", "prod"), [(0, SIZE + 8), (100, 50)])
def test_impossible_positions_are_reported(cons: int, prod: int) -> None:
    with pytest.raises(RingbufCorrupt):
        walk(Ring().buffer(), BASE, MASK, cons, prod)


def test_impossible_length_is_reported() -> None:
    ring = Ring()
    ring.set_bits(0, SIZE, 0)
    with pytest.raises(RingbufCorrupt):
        walk(ring.buffer(), BASE, MASK, 0, 64)


def test_record_running_past_the_producer_is_reported() -> None:
    ring = Ring()
    ring.reserve(payload(0, 100), bits=0)
    with pytest.raises(RingbufCorrupt):
        walk(ring.buffer(), BASE, MASK, 0, 16)


def test_mapped_reads_only_where_plain_loads_are_ordered() -> None:
    assert mapped_reads_safe("x86_64")
    assert not mapped_reads_safe("aarch64")
    assert not mapped_reads_safe("i686")  # 8-byte loads are not single instructions there


# ---- MappedRingbuf over a file laid out like the kernel's mapping ----

PAGE = mmap.PAGESIZE


class MemfdRing:
    """consumer page | producer page | data | data (the second copy stands in for the kernel's
    second mapping of the same pages; writes go to both)."""

    def __init__(self) -> None:
        self.fd = os.memfd_create("telegen-test-ring")
        os.ftruncate(self.fd, 2 * PAGE + 2 * SIZE)
        self.map = mmap.mmap(self.fd, 2 * PAGE + 2 * SIZE)
        self.ring = Ring()

    def publish(self) -> None:
        area = bytes(self.ring.area)
        self.map[2 * PAGE:] = area + area
        struct.pack_into("<Q", self.map, PAGE, self.ring.prod)

    def consumer_pos(self) -> int:
        return int(struct.unpack_from("<Q", self.map, 0)[0])

    def close(self) -> None:
        self.map.close()
        os.close(self.fd)


@pytest.fixture
def memfd_ring() -> Iterator[MemfdRing]:
    ring = MemfdRing()
    yield ring
    ring.close()


def test_mapped_read_stores_the_consumer_position(memfd_ring: MemfdRing) -> None:
    reader = MappedRingbuf(memfd_ring.fd, SIZE)
    try:
        assert reader.read() == []
        sent = [payload(i, 10 + i) for i in range(5)]
        for data in sent:
            memfd_ring.ring.reserve(data, bits=0)
        memfd_ring.publish()
        assert reader.pending_bytes() == memfd_ring.ring.prod
        assert reader.read() == sent
        assert memfd_ring.consumer_pos() == memfd_ring.ring.prod
        assert reader.read() == []  # exactly once
        assert reader.pending_bytes() == 0
    finally:
        reader.close()


def test_mapped_read_leaves_the_consumer_at_a_busy_record(memfd_ring: MemfdRing) -> None:
    reader = MappedRingbuf(memfd_ring.fd, SIZE)
    try:
        a, b = payload(1, 24), payload(2, 24)
        memfd_ring.ring.reserve(a, bits=0)
        pos_b = memfd_ring.ring.reserve(b)
        memfd_ring.publish()
        assert reader.read() == [a]
        assert memfd_ring.consumer_pos() == pos_b
        memfd_ring.ring.set_bits(pos_b, len(b), 0)
        memfd_ring.publish()
        assert reader.read() == [b]
    finally:
        reader.close()


def test_mapped_ring_size_must_be_a_power_of_two_pages(memfd_ring: MemfdRing) -> None:
    with pytest.raises(ValueError):
        MappedRingbuf(memfd_ring.fd, 3 * PAGE)
