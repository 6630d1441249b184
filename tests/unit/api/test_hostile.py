"""Hostile clients: oversized lines and headers, garbage, big bodies, slowloris, idle sockets."""

from __future__ import annotations

import json
import socket
import threading
import time

from telegen.api.context import Limits
from tests.unit.api.helpers import Client, assert_error, running

FAST = Limits(client_timeout=1.5)


def _status_and_body(raw: bytes) -> tuple[int, dict[str, object]]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body)


def test_70kb_request_line_is_refused_and_server_keeps_serving(client: Client) -> None:
    raw = client.raw(b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    status, body = _status_and_body(raw)
    assert status == 431 and body["error"] == "invalid_request"
    assert client.get("/healthz").status == 200


def test_binary_garbage_gets_400_json(client: Client) -> None:
    raw = client.raw(bytes(range(256)) * 4 + b"\r\n\r\n")
    status, body = _status_and_body(raw)
    assert status == 400 and body["error"] == "invalid_request" and body["details"] == {}
    assert client.get("/healthz").status == 200


def test_header_block_over_16k_is_431(client: Client) -> None:
    headers = {f"X-Pad-{i}": "v" * 7000 for i in range(3)}
    assert_error(client.get("/status", headers=headers), 431, "invalid_request")
    assert client.get("/status", headers={"X-Pad": "v" * 7000}).status == 200


def test_single_header_line_over_16k_is_431(client: Client) -> None:
    raw = client.raw(b"GET /status HTTP/1.1\r\nHost: x\r\nX-Big: " + b"v" * 20_000 + b"\r\n\r\n")
    assert _status_and_body(raw)[0] == 431


def test_body_over_1mib_is_413_before_it_is_sent(client: Client) -> None:
    # Refused on the declared length alone: the server never reads (or buffers) the upload.
    for length in (1024 * 1024 + 1, 50_000_000):
        raw = client.raw(b"POST /admin/flush HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % length)
        status, body = _status_and_body(raw)
        assert status == 413 and body["error"] == "invalid_request"
    assert client.get("/healthz").status == 200


def test_chunked_body_over_1mib_is_413(client: Client) -> None:
    chunk = b"y" * 100_000
    # Just past the limit, so the server has read all of it when it answers (no RST on close).
    conn_body = b"%x\r\n%s\r\n" % (len(chunk), chunk) * 11
    head = b"POST /admin/flush HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    raw = client.raw(head + conn_body)
    assert _status_and_body(raw)[0] == 413


def test_small_body_is_accepted(client: Client) -> None:
    assert client.request("POST", "/admin/flush", body=b"{}").status == 200


def test_slowloris_is_cut_and_others_are_served_promptly() -> None:
    with running(limits=FAST) as (client, _, _):
        sock = socket.create_connection((client.host, client.port))
        sock.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\n")
        closed_at: list[float] = []
        start = time.monotonic()

        def trickle() -> None:
            try:
                for i in range(40):
                    sock.sendall(b"X-%d: y\r\n" % i)
                    time.sleep(0.2)
            except OSError:
                closed_at.append(time.monotonic() - start)

        thread = threading.Thread(target=trickle)
        thread.start()
        t0 = time.monotonic()
        assert client.get("/status", timeout=2).status == 200
        assert time.monotonic() - t0 < 0.5
        thread.join(10)
        sock.close()
        assert closed_at, "the slow client was never cut off"
        assert closed_at[0] < FAST.client_timeout + 2.0


def test_idle_connection_is_closed() -> None:
    with running(limits=FAST) as (client, _, _), socket.create_connection((client.host, client.port)) as sock:
        sock.settimeout(5)
        t0 = time.monotonic()
        assert sock.recv(1) == b""
        assert time.monotonic() - t0 < FAST.client_timeout + 1.5


def test_slow_body_is_cut() -> None:
    with running(limits=FAST) as (client, _, _):
        raw = client.raw(b"POST /admin/flush HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc",
                         read_timeout=5)
        assert _status_and_body(raw)[0] == 408
