"""Batch decoding of http_exchange_event records (layout: capture/layouts.py)."""

from __future__ import annotations

import collections
import struct
from dataclasses import dataclass

from telegen.capture.layouts import EVENT_HTTP_EXCHANGE, http_exchange_layout
from telegen.decode.addresses import AF_INET, AF_INET6, AddressCache


@dataclass(slots=True)
class HttpExchange:
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


class RecordDecoder:
    """Turns raw records into HttpExchange; counts what it rejects by kind."""

    def __init__(self, capture_bytes: int) -> None:
        self.layout = http_exchange_layout(capture_bytes)
        self._struct = struct.Struct(self.layout.format)
        self.errors: collections.Counter[str] = collections.Counter()
        self._cached_addr = AddressCache()

    def decode(self, records: list[bytes]) -> list[HttpExchange]:
        out: list[HttpExchange] = []
        size, unpack = self._struct.size, self._struct.unpack
        for rec in records:
            # BCC hands ring-buffer records rounded up to 8 bytes; anything else is foreign.
            if len(rec) < size or len(rec) > size + 8:
                self.errors["record_size"] += 1
                continue
            (etype, role, flags, family, pid, tid, fd, cgroup_id, start, resp_start, end, req_size, resp_size,
             laddr, paddr, lport, pport, req_len, resp_len, permille, _pad, req, resp) = unpack(rec[:size])
            if etype != EVENT_HTTP_EXCHANGE:
                self.errors["event_type"] += 1
                continue
            if (req_len > len(req) or resp_len > len(resp) or end < start or role not in (1, 2)
                    or family not in (AF_INET, AF_INET6)):
                self.errors["record_fields"] += 1
                continue
            out.append(HttpExchange(role, flags, pid, tid, fd, cgroup_id, start, resp_start, end, req_size,
                                    resp_size, self._cached_addr(laddr, family), self._cached_addr(paddr, family),
                                    lport, pport, req[:req_len], resp[:resp_len], permille))
        return out
