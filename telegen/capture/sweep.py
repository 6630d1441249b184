"""Emit exchanges whose response finished but whose connection went quiet.

The kernel emits an exchange when the next request starts, at close, or at the last chunk
of a chunked body. A keep-alive connection that idles after a Content-Length response
would hold its last exchange indefinitely, so user space reads such entries from the
pairing map (layout: struct http_conn_state in events.h), turns each into the same record
the kernel would have written, and deletes the entry (the next request re-tracks it).
"""

from __future__ import annotations

import struct
import time

from telegen.capture.layouts import (
    EVENT_HTTP_EXCHANGE,
    HTTP_FLAG_HAS_RESPONSE,
    HTTP_FLAG_IDLE_SWEPT,
    ST_RESPONSE,
    http_conn_state_layout,
    http_exchange_layout,
)


class IdleSweeper:
    def __init__(self, capture_bytes: int, idle_ns: int = 250_000_000) -> None:
        self.capture_bytes = capture_bytes
        self.idle_ns = idle_ns
        self._state = struct.Struct(http_conn_state_layout(capture_bytes).format)
        self._event = struct.Struct(http_exchange_layout(capture_bytes).format)
        self.emitted = 0
        self.sampled_out = 0
        self.pipelined_merged = 0

    def sweep(self, items: list[tuple[int, bytes]], now_ns: int | None = None) -> tuple[list[bytes], list[int]]:
        """(records to decode, keys to delete) for every idle entry with a finished response."""
        now_ns = time.monotonic_ns() if now_ns is None else now_ns
        records: list[bytes] = []
        done: list[int] = []
        cap = self.capture_bytes
        for key, raw in items:
            if len(raw) < self._state.size:
                continue
            (role, state, flags, family, sampled, _p0, tid, lport, pport, req_len, resp_len, permille, _p1,
             cgroup_id, start, resp_start, end, req_size, resp_size, pipe_start, _pipe_offset, laddr, paddr,
             trace_id, span_id, parent, _sk, _req_seq, _p2, req, resp) = \
                self._state.unpack(raw[: self._state.size])
            if state != ST_RESPONSE or not end or now_ns - end < self.idle_ns:
                continue
            done.append(key)
            if pipe_start:
                self.pipelined_merged += 1  # its second answer never started a read of its own
            if not sampled:
                self.sampled_out += 1
                continue
            records.append(self._event.pack(
                EVENT_HTTP_EXCHANGE, role, flags | HTTP_FLAG_HAS_RESPONSE | HTTP_FLAG_IDLE_SWEPT, family,
                key >> 32, tid, key & 0xFFFFFFFF, cgroup_id, start, resp_start, end, req_size, resp_size,
                laddr, paddr, lport, pport, min(req_len, cap), min(resp_len, cap), permille, b"\0" * 6,
                trace_id, span_id, parent, req[:cap], resp[:cap]))
            self.emitted += 1
        return records, done
