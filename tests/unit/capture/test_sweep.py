"""telegen.capture.sweep.IdleSweeper: finished-but-idle pairing-map entries become exchange records."""

from __future__ import annotations

import socket
import struct
from typing import Any

import pytest

from telegen.capture.layouts import (
    HTTP_FLAG_CLOSED,
    HTTP_FLAG_HAS_RESPONSE,
    HTTP_FLAG_IDLE_SWEPT,
    ST_IDLE,
    ST_REQUEST,
    ST_RESPONSE,
    http_conn_state_layout,
)
from telegen.capture.sweep import IdleSweeper
from telegen.decode.records import AF_INET, AF_INET6, RecordDecoder

CAP = 64
IDLE = 250_000_000
NOW = 10_000_000_000
REQ = b"GET /idle HTTP/1.1\r\nHost: a\r\n\r\n"
RESP = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def state(cap: int = CAP, **fields: Any) -> bytes:
    values: dict[str, Any] = {
        "role": 1, "state": ST_RESPONSE, "flags": 0, "family": AF_INET, "sampled": 1, "local_client": 0, "_pad0": b"",
        "tid": 77, "local_port": 8080, "peer_port": 40000, "req_len": len(REQ), "resp_len": len(RESP),
        "sample_permille": 1000, "_pad1": b"", "cgroup_id": 5,
        "start_ns": NOW - 2 * IDLE, "resp_start_ns": NOW - 2 * IDLE + 10, "end_ns": NOW - IDLE - 1,
        "req_size": len(REQ), "resp_size": len(RESP), "pipe_start_ns": 0, "pipe_offset": 0,
        "local_addr": socket.inet_aton("127.0.0.1").ljust(16, b"\0"),
        "peer_addr": socket.inet_aton("127.0.0.2").ljust(16, b"\0"),
        "trace_id": b"\x11" * 16, "span_id": b"\x22" * 8, "parent_span_id": b"\x33" * 8,
        "sk": 0xFFFF888012345678, "req_seq": 7, "_pad2": b"", "tuple_hash": 0x0123456789ABCDEF,
        "req": REQ, "resp": RESP,
    }
    values.update(fields)
    layout = http_conn_state_layout(cap)
    return struct.pack(layout.format, *(values[name] for name, _ in layout.fields))


def key(pid: int, fd: int) -> int:
    return pid << 32 | fd


def test_idle_finished_entry_becomes_a_decodable_record() -> None:
    sweeper = IdleSweeper(CAP, IDLE)
    records, done = sweeper.sweep([(key(4242, 9), state())], now_ns=NOW)
    assert done == [key(4242, 9)]
    (ex,) = RecordDecoder(CAP).decode(records)
    assert (ex.pid, ex.fd, ex.tid, ex.cgroup_id) == (4242, 9, 77, 5)
    assert ex.flags & HTTP_FLAG_HAS_RESPONSE and ex.flags & HTTP_FLAG_IDLE_SWEPT
    assert (ex.local_addr, ex.local_port, ex.peer_addr, ex.peer_port) == ("127.0.0.1", 8080, "127.0.0.2", 40000)
    assert ex.request == REQ and ex.response == RESP
    assert ex.end_ns == NOW - IDLE - 1
    assert (ex.trace_id, ex.span_id, ex.parent_span_id) == (b"\x11" * 16, b"\x22" * 8, b"\x33" * 8)
    assert sweeper.emitted == 1


@pytest.mark.parametrize("fields", [
    {"state": ST_IDLE}, {"state": ST_REQUEST},
    {"end_ns": NOW - IDLE + 1},  # not idle long enough
    {"end_ns": 0},  # response not finished
])
def test_entries_not_finished_or_not_idle_are_left_alone(fields: dict[str, int]) -> None:
    sweeper = IdleSweeper(CAP, IDLE)
    assert sweeper.sweep([(key(1, 1), state(**fields))], now_ns=NOW) == ([], [])
    assert sweeper.emitted == 0


def test_exactly_at_threshold_is_swept() -> None:
    records, done = IdleSweeper(CAP, IDLE).sweep([(1, state(end_ns=NOW - IDLE))], now_ns=NOW)
    assert len(records) == 1 and done == [1]


def test_unsampled_entries_are_deleted_and_counted_not_emitted() -> None:
    sweeper = IdleSweeper(CAP, IDLE)
    shed = state(sampled=0, end_ns=0)  # the kernel takes no time for a shed exchange
    records, done = sweeper.sweep([(1, shed), (2, state())], now_ns=NOW)
    assert (len(records), done) == (1, [2])  # the shed one is first seen answered here
    assert sweeper.sweep([(1, shed)], now_ns=NOW + IDLE - 1) == ([], [])
    records, done = sweeper.sweep([(1, shed)], now_ns=NOW + IDLE)
    assert (records, done) == ([], [1])
    assert (sweeper.sampled_out, sweeper.emitted) == (1, 1)


@pytest.mark.parametrize("field", ["req_seq", "req_size", "resp_size"])
def test_a_shed_entry_with_a_new_exchange_waits_again(field: str) -> None:
    sweeper = IdleSweeper(CAP, IDLE)
    assert sweeper.sweep([(1, state(sampled=0, end_ns=0))], now_ns=NOW) == ([], [])
    moved = state(sampled=0, end_ns=0, **{field: 1000})
    assert sweeper.sweep([(1, moved)], now_ns=NOW + IDLE) == ([], [])
    assert sweeper.sweep([(1, moved)], now_ns=NOW + 2 * IDLE) == ([], [1])
    assert sweeper.sampled_out == 1


def test_a_shed_entry_gone_from_the_map_is_forgotten() -> None:
    sweeper = IdleSweeper(CAP, IDLE)
    shed = state(sampled=0, end_ns=0)
    sweeper.sweep([(1, shed)], now_ns=NOW)
    sweeper.sweep([], now_ns=NOW + 1)  # deleted by the kernel (closed) in between
    assert sweeper.sweep([(1, shed)], now_ns=NOW + IDLE) == ([], [])  # a new entry under the key waits
    assert sweeper.sampled_out == 0


def test_short_values_are_skipped() -> None:
    assert IdleSweeper(CAP, IDLE).sweep([(1, state()[:-1]), (2, b"")], now_ns=NOW) == ([], [])


def test_payload_longer_than_capture_is_trimmed() -> None:
    # the map keeps 2*cap bytes of each side; the event carries only cap
    big_req = b"GET /" + b"a" * 100 + b" HTTP/1.1\r\n\r\n"
    raw = state(req=big_req, req_len=len(big_req), req_size=len(big_req))
    records, _ = IdleSweeper(CAP, IDLE).sweep([(1, raw)], now_ns=NOW)
    dec = RecordDecoder(CAP)
    (ex,) = dec.decode(records)
    assert ex.request == big_req[:CAP]
    assert ex.req_size == len(big_req)
    assert not dec.errors


def test_ipv6_entry() -> None:
    raw = state(family=AF_INET6, local_addr=socket.inet_pton(socket.AF_INET6, "::1"),
                peer_addr=socket.inet_pton(socket.AF_INET6, "fe80::2"))
    records, _ = IdleSweeper(CAP, IDLE).sweep([(1, raw)], now_ns=NOW)
    (ex,) = RecordDecoder(CAP).decode(records)
    assert (ex.local_addr, ex.peer_addr) == ("::1", "fe80::2")


def test_default_now_is_monotonic_clock() -> None:
    import time

    raw = state(end_ns=max(1, time.monotonic_ns() - 10 * IDLE))
    records, done = IdleSweeper(CAP, IDLE).sweep([(1, raw)])
    assert len(records) == 1 and done == [1]


def test_mixed_batch() -> None:
    sweeper = IdleSweeper(CAP, IDLE)
    items = [(key(1, i), state(state=ST_RESPONSE if i % 2 else ST_REQUEST)) for i in range(10)]
    records, done = sweeper.sweep(items, now_ns=NOW)
    assert done == [key(1, i) for i in range(1, 10, 2)]
    assert [ex.fd for ex in RecordDecoder(CAP).decode(records)] == [1, 3, 5, 7, 9]


def _alive(pid: int) -> bool:
    return pid == 1  # every other process has exited


def test_a_dead_process_in_flight_request_is_emitted_without_a_response() -> None:
    """A client killed mid-call (wrk stopping) closes its socket without close(): its request is
    an exchange without a response, as the kernel's close path would have emitted it."""
    sweeper = IdleSweeper(CAP, IDLE)
    entry = state(state=ST_REQUEST, resp_start_ns=0, end_ns=0, resp_len=0, resp_size=0, resp=b"")
    records, done, unreadable = sweeper.flush_dead([(key(4242, 9), entry)], _alive, now_ns=NOW)
    assert (done, unreadable) == ([key(4242, 9)], 0)
    (ex,) = RecordDecoder(CAP).decode(records)
    assert ex.flags & HTTP_FLAG_CLOSED and not ex.flags & HTTP_FLAG_HAS_RESPONSE
    assert ex.end_ns == NOW and ex.request == REQ and ex.response == b""
    assert (sweeper.emitted, sweeper.no_response, sweeper.sampled_out) == (1, 1, 0)


def test_a_dead_process_answered_exchange_is_emitted_at_once() -> None:
    sweeper = IdleSweeper(CAP, IDLE)
    fresh = state(end_ns=NOW - 1)  # answered a moment ago: the idle sweep would still wait
    records, _done, _ = sweeper.flush_dead([(key(4242, 9), fresh)], _alive, now_ns=NOW)
    (ex,) = RecordDecoder(CAP).decode(records)
    assert ex.flags & HTTP_FLAG_CLOSED and ex.flags & HTTP_FLAG_HAS_RESPONSE
    assert ex.end_ns == NOW - 1 and ex.response == RESP
    assert sweeper.no_response == 0


def test_dead_process_entries_idle_shed_or_unreadable_are_deleted_without_records() -> None:
    sweeper = IdleSweeper(CAP, IDLE)
    items = [(key(4242, 1), state(state=ST_IDLE)),
             (key(4242, 2), state(state=ST_REQUEST, sampled=0)),
             (key(4242, 3), b"short"),
             (key(1, 4), state(state=ST_REQUEST))]  # alive: left for close() or the idle sweep
    records, done, unreadable = sweeper.flush_dead(items, _alive, now_ns=NOW)
    assert records == [] and unreadable == 1
    assert done == [key(4242, 1), key(4242, 2), key(4242, 3)]
    assert (sweeper.sampled_out, sweeper.no_response, sweeper.emitted) == (1, 1, 0)
