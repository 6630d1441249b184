"""MappedRingbuf against the real kernel: a tiny program on sys_enter_write (this process, one
/dev/null fd) writes one record per write() with the sequence number the test put in the buffer.
Every record must arrive once, in order, byte for byte as BCC's callback would deliver it, across
hundreds of wraps of a one-page ring, with discards, and when the ring fills (reserve failures
are counted by the program, so sent == received + discarded + failed)."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from telegen.capture.reader import RingbufReader
from telegen.capture.ringbuf import MappedRingbuf, mapped_reads_safe
from telegen.pipeline import BoundedQueue
from tests.conftest import have_bcc, have_root, require

pytestmark = [pytest.mark.bpf, pytest.mark.root]

SIZES = (20, 44, 100, 300)  # chosen by seq % 4; none a multiple of 8, so the 8-byte rounding is tested
DISCARD_EVERY = 7  # seq % 7 == 3 is reserved then discarded

PROGRAM = r"""
BPF_RINGBUF_OUTPUT(test_events, RING_PAGES); /* first map: BCC's placeholder fd -1 below */
BPF_ARRAY(stats, u64, 4); /* 0: reserve failed, 1: discarded, 2: last consumer_pos seen, 3: it went back */

static __always_inline void bump(int idx) {
    u64 *v = stats.lookup(&idx);
    if (v) __sync_fetch_and_add(v, 1);
}

/* The consumer position as reserve sees it must only grow; a store that passes through another
 * value (struct.pack_into zeroes the field first) makes reserves fail with the ring near empty. */
static __always_inline void watch_consumer(void) {
    int idx = 2;
    u64 cons = bpf_ringbuf_query((void *)bpf_pseudo_fd(1, -1), BPF_RB_CONS_POS);
    u64 *last = stats.lookup(&idx);
    if (!last)
        return;
    if (cons < *last)
        bump(3);
    else
        *last = cons;
}

/* inlined per call site, so each reserve has the constant size the verifier needs */
static __always_inline int emit(u64 seq, const u32 size) {
    watch_consumer();
    u8 *p = test_events.ringbuf_reserve(size);
    if (!p) { bump(0); return 0; }
    __builtin_memset(p, 0, size);
    u64 tail = ~seq;
    __builtin_memcpy(p, &seq, 8);
    __builtin_memcpy(p + 8, &size, 4);
    __builtin_memcpy(p + size - 8, &tail, 8);
    if (seq % 7 == 3) { test_events.ringbuf_discard(p, BPF_RB_NO_WAKEUP); bump(1); }
    else test_events.ringbuf_submit(p, BPF_RB_NO_WAKEUP);
    return 0;
}

TRACEPOINT_PROBE(syscalls, sys_enter_write) {
    if ((bpf_get_current_pid_tgid() >> 32) != TEST_TGID || args->fd != TEST_FD)
        return 0;
    u64 seq = 0;
    bpf_probe_read_user(&seq, sizeof(seq), (void *)args->buf);
    switch (seq % 4) {
    case 0: return emit(seq, 20);
    case 1: return emit(seq, 44);
    case 2: return emit(seq, 100);
    default: return emit(seq, 300);
    }
}
"""


def expected(seq: int) -> bytes:
    size = SIZES[seq % 4]
    return struct.pack("<QI", seq, size) + bytes(size - 20) + struct.pack("<Q", ~seq & (2**64 - 1))


class Emitter:
    """The program, filtered to this process's /dev/null fd or to (tgid, fd) of another process."""

    def __init__(self, pages: int, writer: tuple[int, int] | None = None) -> None:
        from bcc import BPF

        self.null = os.open("/dev/null", os.O_WRONLY)
        tgid, fd = writer or (os.getpid(), self.null)
        self.bpf: Any = BPF(text=PROGRAM.encode(), cflags=[f"-DRING_PAGES={pages}", f"-DTEST_TGID={tgid}",
                                                          f"-DTEST_FD={fd}"])
        table = self.bpf[b"test_events"]
        self.size = int(table.max_entries)
        self.ring = MappedRingbuf(int(table.map_fd), self.size)
        self.seq = 0

    def write(self, n: int) -> list[int]:
        sent = list(range(self.seq, self.seq + n))
        for seq in sent:
            os.write(self.null, struct.pack("<Q", seq))
        self.seq += n
        return sent

    def stats(self) -> tuple[int, int]:
        """(reserves failed, records discarded)"""
        return self.stat(0), self.stat(1)

    def stat(self, idx: int) -> int:
        table = self.bpf[b"stats"]
        return int(table[table.Key(idx)].value)

    def close(self) -> None:
        self.ring.close()
        self.bpf.cleanup()
        os.close(self.null)


def prerequisites() -> None:
    require(have_root(), "root, to load BPF programs")
    require(have_bcc(), "BCC's python module (Debian python3-bpfcc via the --system-site-packages venv)")
    require(mapped_reads_safe(), "x86-64 (the mapped reader is used only there)")


def make(pages: int) -> Iterator[Emitter]:
    prerequisites()
    emitter = Emitter(pages)
    yield emitter
    assert emitter.stat(3) == 0, "the kernel saw the consumer position go backwards"
    emitter.close()


@pytest.fixture
def one_page() -> Iterator[Emitter]:
    yield from make(1)


@pytest.fixture
def sixteen_pages() -> Iterator[Emitter]:
    yield from make(16)


def seqs(records: list[bytes]) -> list[int]:
    out = []
    for rec in records:
        seq = struct.unpack_from("<Q", rec)[0]
        assert rec == expected(seq), f"record {seq} arrived with the wrong bytes or length"
        out.append(seq)
    return out


def test_every_record_once_in_order_across_many_wraps(one_page: Emitter) -> None:
    got: list[int] = []
    sent: list[int] = []
    for _ in range(2500):  # 8 writes between reads fit in one page: nothing may be lost
        sent += one_page.write(8)
        got += seqs(one_page.ring.read())
    assert one_page.stats() == (0, len([s for s in sent if s % DISCARD_EVERY == 3]))
    assert got == [s for s in sent if s % DISCARD_EVERY != 3]
    wraps = sum(((SIZES[s % 4] + 15) & ~7) for s in sent) // one_page.size
    assert wraps > 500
    assert one_page.ring.read() == []


def test_full_ring_counts_failures_and_recovers(one_page: Emitter) -> None:
    sent = one_page.write(400)  # about ten pages' worth with nobody reading
    got = seqs(one_page.ring.read())
    failed, discarded = one_page.stats()
    assert failed > 0
    assert len(got) + failed + discarded == len(sent)
    assert got == sorted(set(got)) and not {s for s in got if s % DISCARD_EVERY == 3}
    assert one_page.ring.pending_bytes() == 0
    more = one_page.write(8)  # room again after the read
    assert seqs(one_page.ring.read()) == [s for s in more if s % DISCARD_EVERY != 3]
    assert one_page.stats()[0] == failed


def test_reader_thread_delivers_everything_and_drains_on_stop(sixteen_pages: Emitter) -> None:
    out: BoundedQueue[bytes] = BoundedQueue("test", 100000)
    reader = RingbufReader(sixteen_pages.ring.read, out, interval=0.002)
    reader.start()
    sent: list[int] = []
    for _ in range(200):
        sent += sixteen_pages.write(100)
        time.sleep(0.0005)
    reader.stop(2.0)
    assert not reader.alive() and reader.error == ""
    got = seqs(out.get_batch(100000))
    failed, discarded = sixteen_pages.stats()
    assert got == sorted(set(got))
    assert len(got) + failed + discarded == len(sent) == 20000
    assert reader.received == len(got)


def test_mapped_and_callback_readers_deliver_the_same_bytes(sixteen_pages: Emitter) -> None:
    from telegen.capture.ringbuf import CallbackRingbuf

    callback = CallbackRingbuf(sixteen_pages.bpf, "test_events")
    sent = sixteen_pages.write(40)
    via_callback = callback.read()
    sent += sixteen_pages.write(40)
    via_mmap = sixteen_pages.ring.read()
    assert seqs(via_callback) + seqs(via_mmap) == [s for s in sent if s % DISCARD_EVERY != 3]
    assert {len(r) for r in via_callback} == {len(r) for r in via_mmap} == set(SIZES)  # exact, not rounded


WRITER = """
import os, struct, sys
fd = os.open('/dev/null', os.O_WRONLY)
print(fd, flush=True)
sys.stdin.readline()
for seq in range(int(sys.argv[1])):
    os.write(fd, struct.pack('<Q', seq))
"""


def test_consumer_position_only_grows_while_another_cpu_produces() -> None:
    """A writer process on another CPU reserves while this one reads in a tight loop, storing the
    consumer position thousands of times: the kernel must never see it go backwards."""
    prerequisites()
    require(len(os.sched_getaffinity(0)) >= 2, "two CPUs, so the writer and the reader run at once")
    count = 300_000
    child = subprocess.Popen([sys.executable, "-c", WRITER, str(count)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    emitter: Emitter | None = None
    affinity = os.sched_getaffinity(0)
    try:
        writer_cpu, reader_cpu = sorted(affinity)[:2]  # on one CPU a bad store would go unseen
        os.sched_setaffinity(child.pid, {writer_cpu})
        os.sched_setaffinity(0, {reader_cpu})
        assert child.stdout is not None and child.stdin is not None
        emitter = Emitter(64, writer=(child.pid, int(child.stdout.readline())))
        child.stdin.write("go\n")
        child.stdin.flush()
        records: list[bytes] = []
        stores = 0
        while child.poll() is None:  # checked after, so reads stay small and stores frequent
            batch = emitter.ring.read()
            stores += bool(batch)
            records += batch
        got = seqs(records + emitter.ring.read())
        assert child.returncode == 0
        failed, discarded = emitter.stats()
        assert emitter.stat(3) == 0, "the kernel saw the consumer position go backwards"
        assert stores > 100  # enough chances to catch a bad store (a bad one shows in hundreds)
        assert got == sorted(set(got)) and len(got) + failed + discarded == count
    finally:
        os.sched_setaffinity(0, affinity)
        child.kill()
        child.wait()
        if emitter:
            emitter.close()
