"""Shared by the HTTP capture tests: a loaded CaptureStage that collects decoded exchanges,
and a tiny raw-socket HTTP server on loopback."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

from telegen.capture.probes import AttachType
from telegen.config import EbpfConfig
from telegen.decode.records import HttpExchange, RecordDecoder
from telegen.pipeline import BoundedQueue


class Capture:
    def __init__(self, force: AttachType | None = None) -> None:
        from telegen.capture.stage import CaptureStage

        self.cfg = EbpfConfig(ringbuf_pages=256, max_connections=8192)
        self.records: BoundedQueue[bytes] = BoundedQueue("test", 100000)
        self.stage = CaptureStage(self.cfg, self.records, self_pid=0, force_method=force)  # self: the test
        self.stage.start()
        self.decoder = RecordDecoder(self.cfg.capture_bytes)
        self.seen: list[HttpExchange] = []

    def wait(self, marker: str, count: int, timeout: float = 5.0) -> list[HttpExchange]:
        deadline = time.monotonic() + timeout
        while True:
            self.seen += self.decoder.decode(self.records.get_batch(100000))
            got = [e for e in self.seen if marker.encode() in e.request]
            if len(got) >= count or time.monotonic() > deadline:
                return got
            time.sleep(0.1)


def serve(handler: Callable[[socket.socket], None], family: int = socket.AF_INET,
          dual_stack: bool = False) -> tuple[str, int]:
    """A one-connection-at-a-time raw TCP server on loopback running `handler` per connection.
    `dual_stack`: an IPv6 socket that takes IPv4 clients, which it sees as ::ffff:127.0.0.1."""
    host = "127.0.0.1" if family == socket.AF_INET else "::1"
    srv = socket.socket(socket.AF_INET6 if dual_stack else family, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if dual_stack:
        srv.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    srv.bind(("::ffff:127.0.0.1", 0) if dual_stack else (host, 0))
    srv.listen(16)

    def loop() -> None:
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            with conn:
                handler(conn)

    threading.Thread(target=loop, daemon=True).start()
    return host, srv.getsockname()[1]


def read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    return data


def ok_handler(body: bytes = b"hello") -> Callable[[socket.socket], None]:
    def handle(conn: socket.socket) -> None:
        while read_request(conn):
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    return handle


def roles(exchanges: list[HttpExchange]) -> list[int]:
    return sorted(e.role for e in exchanges)


def keepalive_gets(host: str, port: int, path: str, count: int) -> None:
    """`count` GETs of `path`/0, `path`/1, ... on one keep-alive connection to an ok_handler()."""
    with socket.create_connection((host, port)) as c:
        for i in range(count):
            c.sendall(f"GET {path}/{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            assert c.recv(4096).endswith(b"hello")
