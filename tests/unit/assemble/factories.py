"""HttpExchange objects as the record decoder would produce them."""

from __future__ import annotations

import os
from typing import Any

from telegen.capture.layouts import HTTP_FLAG_HAS_RESPONSE, ROLE_CLIENT, ROLE_SERVER
from telegen.decode.records import HttpExchange

OK_RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def exchange(request: bytes = b"GET / HTTP/1.1\r\nHost: svc:8080\r\n\r\n", response: bytes = OK_RESPONSE,
             *, server: bool = True, **fields: Any) -> HttpExchange:
    """A server exchange 10.0.0.2:50000 -> 10.0.0.1:8080 unless fields say otherwise, with ids
    drawn as the kernel draws them and no local client (parent)."""
    values: dict[str, Any] = {
        "role": ROLE_SERVER if server else ROLE_CLIENT,
        "flags": HTTP_FLAG_HAS_RESPONSE if response else 0,
        "pid": 100, "tid": 100, "fd": 5, "cgroup_id": 7,
        "start_ns": 1_000_000, "resp_start_ns": 1_500_000, "end_ns": 3_000_000,
        "req_size": len(request), "resp_size": len(response),
        "local_addr": "10.0.0.1" if server else "10.0.0.2",
        "peer_addr": "10.0.0.2" if server else "10.0.0.1",
        "local_port": 8080 if server else 50000,
        "peer_port": 50000 if server else 8080,
        "request": request, "response": response, "sample_permille": 0,
        "trace_id": os.urandom(16), "span_id": os.urandom(7) + b"\x01", "parent_span_id": b"",
    }
    values.update(fields)
    return HttpExchange(**values)
