"""telegen.decode.records.RecordDecoder: raw http_exchange_event records to HttpExchange."""

from __future__ import annotations

import ipaddress
import socket
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telegen.capture.layouts import EVENT_HTTP_EXCHANGE, EVENT_TCP_CONNECTION, http_exchange_layout
from telegen.decode.records import AF_INET, AF_INET6, RecordDecoder

CAP = 256
LAYOUT = http_exchange_layout(CAP)
STRUCT = struct.Struct(LAYOUT.format)
REQ = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
RESP = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"


def v4(addr: str) -> bytes:
    return socket.inet_pton(socket.AF_INET, addr).ljust(16, b"\0")


def v6(addr: str) -> bytes:
    return socket.inet_pton(socket.AF_INET6, addr)


def record(cap: int = CAP, **fields: Any) -> bytes:
    values: dict[str, Any] = {
        "type": EVENT_HTTP_EXCHANGE, "role": 1, "flags": 1, "family": AF_INET,
        "pid": 1234, "tid": 1235, "fd": 7, "cgroup_id": 99,
        "start_ns": 1_000, "resp_start_ns": 1_500, "end_ns": 2_000,
        "req_size": len(REQ), "resp_size": len(RESP),
        "local_addr": v4("10.0.0.1"), "peer_addr": v4("10.0.0.2"),
        "local_port": 8080, "peer_port": 50000, "req_len": len(REQ), "resp_len": len(RESP),
        "sample_permille": 500, "_pad": b"", "trace_id": bytes(range(16)), "span_id": bytes(range(16, 24)),
        "parent_span_id": bytes(8), "req": REQ, "resp": RESP,
    }
    values.update(fields)
    layout = http_exchange_layout(cap)
    return struct.pack(layout.format, *(values[name] for name, _ in layout.fields))


def test_layout_size_matches_header_plus_payload() -> None:
    assert STRUCT.size == 144 + 2 * CAP


def test_decodes_every_field() -> None:
    dec = RecordDecoder(CAP)
    (ex,) = dec.decode([record()])
    assert (ex.role, ex.flags, ex.pid, ex.tid, ex.fd, ex.cgroup_id) == (1, 1, 1234, 1235, 7, 99)
    assert (ex.start_ns, ex.resp_start_ns, ex.end_ns) == (1_000, 1_500, 2_000)
    assert (ex.req_size, ex.resp_size) == (len(REQ), len(RESP))
    assert (ex.local_addr, ex.local_port, ex.peer_addr, ex.peer_port) == ("10.0.0.1", 8080, "10.0.0.2", 50000)
    assert ex.request == REQ and ex.response == RESP  # trimmed to req_len/resp_len
    assert ex.sample_permille == 500
    assert (ex.trace_id, ex.span_id, ex.parent_span_id) == (bytes(range(16)), bytes(range(16, 24)), b"")
    assert not dec.errors


def test_a_local_clients_span_id_is_the_parent() -> None:
    (ex,) = RecordDecoder(CAP).decode([record(parent_span_id=b"\x09" * 8)])
    assert ex.parent_span_id == b"\x09" * 8


def test_ipv6_addresses() -> None:
    (ex,) = RecordDecoder(CAP).decode([record(family=AF_INET6, local_addr=v6("2001:db8::1"),
                                              peer_addr=v6("::1"))])
    assert (ex.local_addr, ex.peer_addr) == ("2001:db8::1", "::1")


def test_v4_mapped_ipv6_addresses_become_ipv4() -> None:
    (ex,) = RecordDecoder(CAP).decode([record(family=AF_INET6, local_addr=v6("::ffff:127.0.0.1"),
                                              peer_addr=v6("::ffff:192.0.2.7"))])
    assert (ex.local_addr, ex.peer_addr) == ("127.0.0.1", "192.0.2.7")


def test_record_padded_to_eight_bytes_is_accepted() -> None:
    dec = RecordDecoder(CAP)
    assert len(dec.decode([record() + b"\0" * 8])) == 1
    assert not dec.errors


@pytest.mark.parametrize("cap", [16, 64, 4096])
def test_other_capture_sizes(cap: int) -> None:
    rec = record(cap, req=REQ[:cap], req_len=min(len(REQ), cap), resp=RESP[:cap], resp_len=min(len(RESP), cap))
    (ex,) = RecordDecoder(cap).decode([rec])
    assert ex.request == REQ[:cap]


def test_wrong_sizes_are_counted() -> None:
    dec = RecordDecoder(CAP)
    good = record()
    assert dec.decode([b"", good[:-1], good[:100], good + b"\0" * 9, record(cap=512)]) == []
    assert dec.errors == {"record_size": 5}


def test_wrong_event_type_is_counted() -> None:
    dec = RecordDecoder(CAP)
    assert dec.decode([record(type=EVENT_TCP_CONNECTION), record(type=0)]) == []
    assert dec.errors == {"event_type": 2}


@pytest.mark.parametrize("fields", [
    {"req_len": CAP + 1},
    {"resp_len": 65535},
    {"end_ns": 999},  # ends before it starts
    {"role": 0},
    {"role": 3},
    {"family": 1},
    {"family": 0},
])
def test_bad_fields_are_counted(fields: dict[str, int]) -> None:
    dec = RecordDecoder(CAP)
    assert dec.decode([record(**fields)]) == []
    assert dec.errors == {"record_fields": 1}


def test_good_records_survive_bad_neighbours() -> None:
    dec = RecordDecoder(CAP)
    out = dec.decode([b"junk", record(pid=1), record(role=9), record(pid=2), record(type=7)])
    assert [ex.pid for ex in out] == [1, 2]
    assert dec.errors == {"record_size": 1, "record_fields": 1, "event_type": 1}


def test_address_cache_is_bounded() -> None:
    dec = RecordDecoder(CAP)
    recs = [record(peer_addr=v4(str(ipaddress.IPv4Address(0x0A000000 + i)))) for i in range(5000)]
    out = dec.decode(recs)
    assert out[-1].peer_addr == str(ipaddress.IPv4Address(0x0A000000 + 4999))
    assert len(dec._cached_addr) <= 4096


@settings(derandomize=True, max_examples=300, deadline=None)
@given(records=st.lists(st.one_of(st.binary(max_size=700), st.binary(min_size=STRUCT.size, max_size=STRUCT.size)),
                        max_size=8))
def test_arbitrary_bytes_never_raise_and_every_reject_is_counted(records: list[bytes]) -> None:
    dec = RecordDecoder(CAP)
    out = dec.decode(records)
    assert len(out) + sum(dec.errors.values()) == len(records)


_fields = st.fixed_dictionaries({
    "type": st.integers(0, 255), "role": st.integers(0, 255), "flags": st.integers(0, 255),
    "family": st.sampled_from([0, 1, AF_INET, AF_INET6, 255]),
    "pid": st.integers(0, 2**32 - 1), "fd": st.integers(0, 2**32 - 1),
    "start_ns": st.integers(0, 2**64 - 1), "end_ns": st.integers(0, 2**64 - 1),
    "req_size": st.integers(0, 2**64 - 1),
    "local_addr": st.binary(min_size=16, max_size=16), "peer_addr": st.binary(min_size=16, max_size=16),
    "req_len": st.integers(0, 65535), "resp_len": st.integers(0, 65535),
    "sample_permille": st.integers(0, 65535),
    "req": st.binary(max_size=CAP), "resp": st.binary(max_size=CAP),
})


@settings(derandomize=True, max_examples=300, deadline=None)
@given(batch=st.lists(_fields, min_size=1, max_size=5))
def test_random_field_values_never_raise(batch: list[dict[str, Any]]) -> None:
    dec = RecordDecoder(CAP)
    out = dec.decode([record(**fields) for fields in batch])
    assert len(out) + sum(dec.errors.values()) == len(batch)
    assert set(dec.errors) <= {"event_type", "record_fields"}
    for ex in out:
        assert ex.role in (1, 2)
        assert ex.end_ns >= ex.start_ns
        assert len(ex.request) <= CAP and len(ex.response) <= CAP
        ipaddress.ip_address(ex.local_addr)
        ipaddress.ip_address(ex.peer_addr)
