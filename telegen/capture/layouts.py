"""Python mirrors of bpf/include/events.h (checked field by field by tests/layout)."""

from __future__ import annotations

import struct
from dataclasses import dataclass

EVENT_HTTP_EXCHANGE = 1
EVENT_TCP_CONNECTION = 2

ROLE_UNKNOWN, ROLE_SERVER, ROLE_CLIENT = 0, 1, 2

HTTP_FLAG_HAS_RESPONSE = 0x01
HTTP_FLAG_CLOSED = 0x02
HTTP_FLAG_NEXT_REQUEST = 0x04
HTTP_FLAG_IDLE_SWEPT = 0x08
HTTP_FLAG_CHUNKED_DONE = 0x10
HTTP_FLAG_ROLE_INFERRED = 0x20
HTTP_FLAG_SENDFILE = 0x40
HTTP_FLAG_PIPELINED = 0x80

# enum telegen_counter
COUNTERS = {
    "http_exchanges": 0, "http_emitted": 1, "http_ringbuf_full": 2, "http_conn_map_full": 3,
    "http_no_response": 4, "http_sampled_out": 5, "http_interim": 6, "http_active_map_full": 7,
    "http_pipelined": 15,
    "tcp_emitted": 8, "tcp_ringbuf_full": 9, "tcp_sock_map_full": 10,
    "tcp_opened": 11, "tcp_failed": 12, "tcp_syn_recv_dropped": 13,
}
CNT_MAX = 16


@dataclass(frozen=True)
class Layout:
    """A C struct as (field, struct format) pairs; offsets and size follow from them."""

    name: str
    fields: tuple[tuple[str, str], ...]

    @property
    def format(self) -> str:
        return "<" + "".join(fmt for _, fmt in self.fields)

    @property
    def size(self) -> int:
        return struct.calcsize(self.format)

    def offsets(self) -> dict[str, int]:
        out, fmt = {}, "<"
        for name, f in self.fields:
            out[name] = struct.calcsize(fmt)
            fmt += f
        return out


def http_exchange_layout(capture_bytes: int) -> Layout:
    return Layout("http_exchange_event", (
        ("type", "B"), ("role", "B"), ("flags", "B"), ("family", "B"),
        ("pid", "I"), ("tid", "I"), ("fd", "I"), ("cgroup_id", "Q"),
        ("start_ns", "Q"), ("resp_start_ns", "Q"), ("end_ns", "Q"),
        ("req_size", "Q"), ("resp_size", "Q"),
        ("local_addr", "16s"), ("peer_addr", "16s"),
        ("local_port", "H"), ("peer_port", "H"), ("req_len", "H"), ("resp_len", "H"),
        ("sample_permille", "H"), ("_pad", "6s"),
        ("trace_id", "16s"), ("span_id", "8s"), ("parent_span_id", "8s"),
        ("req", f"{capture_bytes}s"), ("resp", f"{capture_bytes}s"),
    ))


ST_IDLE, ST_REQUEST, ST_RESPONSE = 0, 1, 2


def http_conn_state_layout(capture_bytes: int) -> Layout:
    return Layout("http_conn_state", (
        ("role", "B"), ("state", "B"), ("flags", "B"), ("family", "B"), ("sampled", "B"), ("local_client", "B"),
        ("_pad0", "2s"),
        ("tid", "I"), ("local_port", "H"), ("peer_port", "H"), ("req_len", "H"), ("resp_len", "H"),
        ("sample_permille", "H"), ("_pad1", "2s"), ("cgroup_id", "Q"),
        ("start_ns", "Q"), ("resp_start_ns", "Q"), ("end_ns", "Q"), ("req_size", "Q"), ("resp_size", "Q"),
        ("pipe_start_ns", "Q"), ("pipe_offset", "Q"), ("local_addr", "16s"), ("peer_addr", "16s"),
        ("trace_id", "16s"), ("span_id", "8s"), ("parent_span_id", "8s"), ("sk", "Q"),
        ("req_seq", "I"), ("_pad2", "4s"), ("tuple_hash", "Q"),
        ("req", f"{2 * capture_bytes}s"), ("resp", f"{2 * capture_bytes}s"),
    ))


# enum tcp_outcome and TCP_FLAG_*
TCP_OUTCOME_CLOSED, TCP_OUTCOME_FAILED, TCP_OUTCOME_OPEN = 0, 1, 2
TCP_FLAG_PID_LISTENER = 0x01
TCP_FLAG_PID_ACCEPT = 0x02
TCP_FLAG_PID_CLOSE = 0x04

TCP_CONNECTION = Layout("tcp_connection_event", (
    ("type", "B"), ("role", "B"), ("family", "B"), ("outcome", "B"), ("pid", "I"),
    ("cgroup_id", "Q"), ("start_ns", "Q"), ("established_ns", "Q"), ("end_ns", "Q"),
    ("bytes_sent", "Q"), ("bytes_received", "Q"), ("retransmits", "I"), ("srtt_us", "I"),
    ("local_addr", "16s"), ("peer_addr", "16s"), ("local_port", "H"), ("peer_port", "H"),
    ("resets_sent", "H"), ("resets_received", "H"), ("sock_id", "Q"), ("error", "H"), ("flags", "B"),
    ("_pad", "5s"),
))

TCP_SOCK_STATE = Layout("tcp_sock_state", (
    ("role", "B"), ("family", "B"), ("flags", "B"), ("_pad0", "B"), ("pid", "I"), ("cgroup_id", "Q"),
    ("start_ns", "Q"), ("established_ns", "Q"), ("end_ns", "Q"), ("retransmits", "I"), ("resets_sent", "H"),
    ("resets_received", "H"), ("local_addr", "16s"), ("peer_addr", "16s"), ("local_port", "H"),
    ("peer_port", "H"), ("srtt_us", "I"), ("bytes_sent", "Q"), ("bytes_received", "Q"),
))

HTTP_EXCHANGE_HEADER_SIZE = 144
