"""Batch decoding of http_exchange_event records (layout: capture/layouts.py)."""

from __future__ import annotations

import collections
import struct
from typing import NamedTuple

from telegen.capture.layouts import EVENT_HTTP_EXCHANGE, http_exchange_layout
from telegen.decode.addresses import AF_INET, AF_INET6, AddressCache


class HttpExchange(NamedTuple):
    """One exchange as the kernel paired it. A tuple, not a dataclass: it is built once per
    record and only read afterwards, and tuple construction is the cheapest Python offers."""

    role: int
    flags: int
    pid: int
    tid: int
    fd: int
    cgroup_id: int
    start_ns: int  # CLOCK_MONOTONIC
    resp_start_ns: int
    end_ns: int
    req_size: int
    resp_size: int
    local_addr: str
    peer_addr: str
    local_port: int
    peer_port: int
    request: bytes  # leading bytes of the request
    response: bytes  # leading bytes of the response
    sample_permille: int
    trace_id: bytes  # the kernel's ids (call_ids in bpf/http.bpf.c); all zero when it drew none
    span_id: bytes
    parent_span_id: bytes  # a server's local client call, else b""


_NO_PARENT = bytes(8)
_new_exchange = tuple.__new__  # skips NamedTuple's keyword-handling __new__ in the hot loop
_ROLES = (1, 2)
_FAMILIES = (AF_INET, AF_INET6)


class RecordDecoder:
    """Turns raw records into HttpExchange; counts what it rejects by kind."""

    def __init__(self, capture_bytes: int) -> None:
        self.layout = http_exchange_layout(capture_bytes)
        self._struct = struct.Struct(self.layout.format)
        # The fixed part only: the captured bytes are sliced straight from the record, so the
        # two capture areas are never copied whole.
        offsets = self.layout.offsets()
        names = [name for name, _ in self.layout.fields]
        head = self.layout.fields[:names.index("req")]
        # Padding as pad bytes ("6x"): skipped, not unpacked into a value.
        self._head = struct.Struct("<" + "".join(fmt.replace("s", "x") if name == "_pad" else fmt
                                                 for name, fmt in head))
        self._req_at, self._resp_at = offsets["req"], offsets["resp"]
        self._capture_bytes = capture_bytes
        self.errors: collections.Counter[str] = collections.Counter()
        self._cached_addr = AddressCache()

    def decode(self, records: list[bytes]) -> list[HttpExchange]:
        out: list[HttpExchange] = []
        append = out.append
        size, unpack_from = self._struct.size, self._head.unpack_from
        req_at, resp_at, cap = self._req_at, self._resp_at, self._capture_bytes
        addr_cache = self._cached_addr.cache
        addr = self._cached_addr
        for rec in records:
            # Ring-buffer records come rounded up to 8 bytes; anything else is foreign.
            if not size <= len(rec) <= size + 8:
                self.errors["record_size"] += 1
                continue
            (etype, role, flags, family, pid, tid, fd, cgroup_id, start, resp_start, end, req_size, resp_size,
             laddr, paddr, lport, pport, req_len, resp_len, permille, trace_id, span_id, parent) = unpack_from(rec)
            if etype != EVENT_HTTP_EXCHANGE:
                self.errors["event_type"] += 1
                continue
            if (req_len > cap or resp_len > cap or end < start or role not in _ROLES
                    or family not in _FAMILIES):
                self.errors["record_fields"] += 1
                continue
            local = addr_cache.get((laddr, family)) or addr(laddr, family)
            peer = addr_cache.get((paddr, family)) or addr(paddr, family)
            append(_new_exchange(HttpExchange, (
                role, flags, pid, tid, fd, cgroup_id, start, resp_start, end, req_size, resp_size, local, peer,
                lport, pport, rec[req_at:req_at + req_len], rec[resp_at:resp_at + resp_len], permille,
                trace_id, span_id, b"" if parent == _NO_PARENT else parent)))
        return out
