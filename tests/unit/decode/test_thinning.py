"""telegen.decode.thinning: queued records re-drawn at the kernel's new keep rate, before decode."""

from __future__ import annotations

import random
import struct

from telegen.capture.layouts import http_exchange_layout
from telegen.decode.records import RecordDecoder
from telegen.decode.thinning import RecordThinner

CAPTURE = 64
LAYOUT = http_exchange_layout(CAPTURE)
RNG = random.Random(20261206)


def record(permille: int, trace_id: bytes | None = None, start_ns: int = 1) -> bytes:
    values = {name: 0 for name, _ in LAYOUT.fields}
    values.update(type=1, role=1, family=2, pid=7, start_ns=start_ns, resp_start_ns=start_ns + 1,
                  end_ns=start_ns + 2, req_size=18, resp_size=19, req_len=18, resp_len=19,
                  sample_permille=permille, trace_id=RNG.randbytes(16) if trace_id is None else trace_id,
                  span_id=RNG.randbytes(8), parent_span_id=bytes(8), local_addr=bytes(16), peer_addr=bytes(16),
                  _pad=bytes(6), req=b"GET / HTTP/1.1\r\n\r\n", resp=b"HTTP/1.1 200 OK\r\n\r\n")
    return struct.pack(LAYOUT.format, *(values[name] for name, _ in LAYOUT.fields))


def test_records_drawn_at_a_higher_rate_are_thinned_to_the_current_one_and_reweighted() -> None:
    thinner = RecordThinner(LAYOUT)
    batch = [record(1000) for _ in range(20_000)]
    kept = thinner.thin(batch, 100)
    assert 2_000 - 300 < len(kept) < 2_000 + 300  # 10 %, within 7 sigma
    assert thinner.thinned == len(batch) - len(kept)
    exchanges = RecordDecoder(CAPTURE).decode(kept)
    assert {ex.sample_permille for ex in exchanges} == {100}  # each stands for 10: RED unbiased
    assert sum(1000 / ex.sample_permille for ex in exchanges) == len(kept) * 10


def test_rates_already_at_or_under_the_current_one_pass_untouched() -> None:
    thinner = RecordThinner(LAYOUT)
    batch = [record(50), record(100), record(0)]
    assert thinner.thin(batch, 100) == batch
    everything = [record(1000) for _ in range(10)]
    assert thinner.thin(everything, 1000) is everything
    assert thinner.thinned == 0


def test_both_ends_of_a_linked_call_share_the_draw() -> None:
    thinner = RecordThinner(LAYOUT)
    pairs = [RNG.randbytes(16) for _ in range(2_000)]
    batch = [record(1000, trace) for trace in pairs for _ in (0, 1)]  # client and server
    kept = thinner.thin(batch, 300)
    survivors = [rec[LAYOUT.offsets()["trace_id"]:][:16] for rec in kept]
    assert all(survivors.count(t) == 2 for t in set(survivors))
    assert 600 - 150 < len(set(survivors)) < 600 + 150


def test_records_without_ids_are_drawn_on_their_start_time_not_all_together() -> None:
    thinner = RecordThinner(LAYOUT)
    batch = [record(1000, bytes(16), start_ns=RNG.getrandbits(62)) for _ in range(5_000)]
    kept = thinner.thin(batch, 500)
    assert 2_500 - 400 < len(kept) < 2_500 + 400


def test_short_or_foreign_records_pass_to_the_decoder() -> None:
    thinner = RecordThinner(LAYOUT)
    garbage = [b"", b"\x01" * 10, b"\x09" + bytes(len(record(1000)) - 1)]
    assert thinner.thin(garbage, 1) == garbage and thinner.thinned == 0
