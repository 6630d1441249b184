"""Emit exchanges whose response finished but whose connection went quiet.

The kernel emits an exchange when the next request starts, at close, or at the last chunk
of a chunked body. A keep-alive connection that idles after a Content-Length response
would hold its last exchange indefinitely, so user space reads such entries from the
pairing map (layout: struct http_conn_state in events.h), turns each into the same record
the kernel would have written, and deletes the entry (the next request re-tracks it).

A process that exits closes its sockets without a close() syscall, so the kernel never emits
what it had in flight: the dead-process pass does what the close path would have (a request
without an answer becomes an exchange without a response, as for a client killed mid-call).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Callable
from typing import Any

from telegen.capture.layouts import (
    EVENT_HTTP_EXCHANGE,
    HTTP_FLAG_CLOSED,
    HTTP_FLAG_HAS_RESPONSE,
    HTTP_FLAG_IDLE_SWEPT,
    ST_IDLE,
    ST_RESPONSE,
    http_conn_state_layout,
    http_exchange_layout,
)


class IdleSweeper:
    def __init__(self, capture_bytes: int, idle_ns: int = 250_000_000) -> None:
        self.capture_bytes = capture_bytes
        self.idle_ns = idle_ns
        state_layout = http_conn_state_layout(capture_bytes)
        self._state = struct.Struct(state_layout.format)
        self._state_names = [name for name, _ in state_layout.fields]
        index = self._state_names.index
        self._state_at, self._end_at, self._sampled_at = index("state"), index("end_ns"), index("sampled")
        self._same_exchange_at = (index("req_seq"), index("req_size"), index("resp_size"))
        # Shed entries answered but not yet idle for idle_ns: key -> (what marks their exchange,
        # when this sweeper first saw it so)
        self._shed_quiet: dict[int, tuple[tuple[int, ...], int]] = {}
        event_layout = http_exchange_layout(capture_bytes)
        self._event = struct.Struct(event_layout.format)
        self._event_names = [name for name, _ in event_layout.fields]
        self.emitted = 0
        self.sampled_out = 0
        self.pipelined_merged = 0
        self.no_response = 0

    def sweep(self, items: list[tuple[int, bytes]], now_ns: int | None = None) -> tuple[list[bytes], list[int]]:
        """(records to decode, keys to delete) for every idle entry with a finished response.

        A kept exchange is idle idle_ns after its last answer byte (end_ns). The kernel takes no
        time for a shed one, so it is idle once this sweeper has seen the same exchange (its
        request's TCP sequence number and sizes) answered for idle_ns."""
        now_ns = time.monotonic_ns() if now_ns is None else now_ns
        records: list[bytes] = []
        done: list[int] = []
        shed_quiet: dict[int, tuple[tuple[int, ...], int]] = {}
        for key, raw in items:
            if len(raw) < self._state.size:
                continue
            fields = self._state.unpack(raw[: self._state.size])
            if fields[self._state_at] != ST_RESPONSE:
                continue
            if fields[self._sampled_at]:
                end = fields[self._end_at]
                if not end or now_ns - end < self.idle_ns:
                    continue
            else:
                exchange = tuple(fields[i] for i in self._same_exchange_at)
                seen = self._shed_quiet.get(key)
                since = seen[1] if seen and seen[0] == exchange else now_ns
                if now_ns - since < self.idle_ns:
                    shed_quiet[key] = (exchange, since)
                    continue
            done.append(key)
            self._finish(records, key, fields, HTTP_FLAG_IDLE_SWEPT, now_ns)
        self._shed_quiet = shed_quiet  # entries gone from the map are forgotten
        return records, done

    def flush_dead(self, items: list[tuple[int, bytes]], alive: Callable[[int], bool],
                   now_ns: int | None = None) -> tuple[list[bytes], list[int], int]:
        """(records, keys to delete, entries unreadable) for the entries of processes that are
        gone: what they had in flight is emitted as if closed."""
        now_ns = time.monotonic_ns() if now_ns is None else now_ns
        records: list[bytes] = []
        done: list[int] = []
        unreadable = 0
        for key, raw in items:
            if alive(key >> 32):
                continue
            done.append(key)
            if len(raw) < self._state.size:
                unreadable += 1
                continue
            fields = self._state.unpack(raw[: self._state.size])
            if fields[self._state_at] != ST_IDLE:
                self._finish(records, key, fields, HTTP_FLAG_CLOSED, now_ns)
        return records, done, unreadable

    def _finish(self, records: list[bytes], key: int, fields: tuple[Any, ...], why: int, now_ns: int) -> None:
        """One finished exchange, emitted or (shed) counted, as the kernel's emit() does. Fields
        are taken by name from both layouts, so a field added to events.h cannot land in the
        wrong place (one this misses leaves None, which pack() refuses)."""
        st = dict(zip(self._state_names, fields, strict=True))
        if st["pipe_start_ns"]:
            self.pipelined_merged += 1  # its second answer never started a read of its own
        answered = st["state"] == ST_RESPONSE
        if not answered:
            self.no_response += 1
        if not st["sampled"]:
            self.sampled_out += 1
            return
        cap = self.capture_bytes
        event = {name: st.get(name) for name in self._event_names}  # the fields both carry
        event.update(
            type=EVENT_HTTP_EXCHANGE, flags=st["flags"] | why | (HTTP_FLAG_HAS_RESPONSE if answered else 0),
            pid=key >> 32, fd=key & 0xFFFFFFFF, end_ns=st["end_ns"] or now_ns,
            req_len=min(st["req_len"], cap), resp_len=min(st["resp_len"], cap), _pad=b"\0" * 6,
            req=st["req"][:cap], resp=st["resp"][:cap])
        records.append(self._event.pack(*(event[name] for name in self._event_names)))
        self.emitted += 1
