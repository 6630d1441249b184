"""Batch decoding of tcp_connection_event records and tcp_sock_state map values (layouts.py)."""

from __future__ import annotations

import collections
import errno
import struct
from dataclasses import dataclass

from telegen.capture.layouts import (
    EVENT_TCP_CONNECTION,
    ROLE_CLIENT,
    TCP_CONNECTION,
    TCP_OUTCOME_CLOSED,
    TCP_OUTCOME_FAILED,
    TCP_OUTCOME_OPEN,
    TCP_SOCK_STATE,
)
from telegen.decode.addresses import AF_INET, AF_INET6, AddressCache

# Why a connection failed or ended badly (the error.type attribute).
REASON_REFUSED = "refused"
REASON_TIMEOUT = "timeout"
REASON_UNREACHABLE = "unreachable"
REASON_RESET = "reset"
_UNREACHABLE = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN, errno.EADDRNOTAVAIL}


@dataclass(slots=True)
class TcpConnection:
    role: int  # ROLE_CLIENT / ROLE_SERVER
    outcome: int  # TCP_OUTCOME_*
    pid: int
    cgroup_id: int
    start_ns: int  # CLOCK_MONOTONIC
    established_ns: int  # 0: never established
    end_ns: int
    bytes_sent: int
    bytes_received: int
    retransmits: int
    srtt_us: int
    local_addr: str
    peer_addr: str
    local_port: int
    peer_port: int
    resets_sent: int
    resets_received: int
    sock_id: int
    error: int  # errno from sk_err, 0 when none
    flags: int

    @property
    def client(self) -> bool:
        return self.role == ROLE_CLIENT

    @property
    def connect_ns(self) -> int | None:
        """Handshake time of a client connect; None for server sides and failures."""
        if self.role != ROLE_CLIENT or not self.established_ns:
            return None
        return max(0, self.established_ns - self.start_ns)

    @property
    def failure(self) -> str:
        """'' for a clean connection, else refused | timeout | unreachable | reset."""
        if self.outcome == TCP_OUTCOME_FAILED:
            if self.error == errno.ECONNREFUSED or self.resets_received:
                return REASON_REFUSED
            if self.error in _UNREACHABLE:
                return REASON_UNREACHABLE
            # ETIMEDOUT from the kernel, or 0: the application stopped waiting for the SYN-ACK
            return REASON_TIMEOUT
        if self.outcome == TCP_OUTCOME_CLOSED and (self.resets_sent or self.resets_received):
            return REASON_RESET
        return ""

    def four_tuple(self) -> tuple[str, int, str, int]:
        """(client addr, client port, server addr, server port)."""
        if self.role == ROLE_CLIENT:
            return self.local_addr, self.local_port, self.peer_addr, self.peer_port
        return self.peer_addr, self.peer_port, self.local_addr, self.local_port


class TcpDecoder:
    """Raw records / map values -> TcpConnection; rejects are counted by kind."""

    def __init__(self) -> None:
        self._event = struct.Struct(TCP_CONNECTION.format)
        self._state = struct.Struct(TCP_SOCK_STATE.format)
        self.errors: collections.Counter[str] = collections.Counter()
        self._a = AddressCache()

    def decode(self, records: list[bytes]) -> list[TcpConnection]:
        out: list[TcpConnection] = []
        size, unpack = self._event.size, self._event.unpack
        for rec in records:
            if len(rec) < size or len(rec) > size + 8:
                self.errors["tcp_record_size"] += 1
                continue
            (etype, role, family, outcome, pid, cgroup_id, start, established, end, sent, received, retrans,
             srtt, laddr, paddr, lport, pport, rst_sent, rst_recv, sock_id, error, flags, _pad) = unpack(rec[:size])
            if etype != EVENT_TCP_CONNECTION:
                self.errors["tcp_event_type"] += 1
                continue
            if (role not in (1, 2) or family not in (AF_INET, AF_INET6) or end < start
                    or outcome not in (TCP_OUTCOME_CLOSED, TCP_OUTCOME_FAILED)):
                self.errors["tcp_record_fields"] += 1
                continue
            out.append(TcpConnection(role, outcome, pid, cgroup_id, start, established, end, sent, received,
                                     retrans, srtt, self._a(laddr, family), self._a(paddr, family), lport, pport,
                                     rst_sent, rst_recv, sock_id, error, flags))
        return out

    def decode_live(self, items: list[tuple[int, bytes]], now_ns: int) -> list[TcpConnection]:
        """Open, established sockets from the tcp_socks map (outcome OPEN, end_ns = now)."""
        out: list[TcpConnection] = []
        size, unpack = self._state.size, self._state.unpack
        for sock_id, raw in items:
            if len(raw) < size:
                self.errors["tcp_state_size"] += 1
                continue
            (role, family, flags, _p0, pid, cgroup_id, start, established, end, retrans, rst_sent, rst_recv,
             laddr, paddr, lport, pport, _srtt, _sent, _received) = unpack(raw[:size])
            if end or not established or family not in (AF_INET, AF_INET6):
                continue
            out.append(TcpConnection(role, TCP_OUTCOME_OPEN, pid, cgroup_id, start, established, now_ns, 0, 0,
                                     retrans, 0, self._a(laddr, family), self._a(paddr, family), lport, pport,
                                     rst_sent, rst_recv, sock_id, 0, flags & 0x7F))
        return out
