"""HTTP capture on the real kernel: both roles, keep-alive, split syscalls, vectored and
sendfile I/O, chunked bodies, 100-continue, IPv6, close without response, counters."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import cast

import pytest

from telegen.assemble.http_parse import parse_request, parse_response
from telegen.capture.layouts import HTTP_FLAG_ROLE_INFERRED
from telegen.capture.probes import HTTP_PROBES, AttachType
from telegen.decode.records import HttpExchange
from tests.bpf.http_fixtures import Capture, keepalive_gets, ok_handler, read_request, roles, serve
from tests.conftest import have_bcc, have_root

pytestmark = [pytest.mark.bpf, pytest.mark.root]


# Every test runs on the method this kernel gets and on the raw_syscalls pair, the default of
# kernels without kprobes before 6.3; TELEGEN_TEST_ATTACH=tracepoint (or kprobe, sock_tracepoint,
# raw_tracepoint) runs them on that method alone.
METHODS = [os.environ["TELEGEN_TEST_ATTACH"]] if os.environ.get("TELEGEN_TEST_ATTACH") else ["auto", "raw_tracepoint"]


@pytest.fixture(scope="module", params=METHODS)
def capture(request: pytest.FixtureRequest) -> Iterator[Capture]:
    from tests.conftest import require

    require(have_root(), "root, to load BPF programs")
    require(have_bcc(), "BCC's python module (Debian python3-bpfcc via the --system-site-packages venv)")
    method = None if request.param == "auto" else cast("AttachType", request.param)
    cap = Capture(method)
    yield cap
    cap.stage.stop(2.0)


def test_a_burst_wakes_the_reader_before_its_timer(capture: Capture) -> None:
    """Records are submitted without a wakeup, except each CPU's every RINGBUF_WAKE_EVERY-th
    (ring_wakeup_flag): enough exchanges that some CPU crosses its watermark must wake the
    reader through epoll, and every exchange still arrives."""
    from telegen.capture.layouts import http_exchange_layout
    from telegen.capture.ringbuf import wake_every

    reader = capture.stage.reader
    assert reader is not None
    cpus = os.cpu_count() or 1
    per_cpu = wake_every(capture.cfg.ringbuf_pages * 4096, http_exchange_layout(capture.cfg.capture_bytes).size, cpus)
    requests = (per_cpu * cpus) // 2 + 1  # two records each: one CPU must emit per_cpu or more
    marker = uuid.uuid4().hex
    before = reader.wakeups
    host, port = serve(ok_handler())
    keepalive_gets(host, port, f"/burst/{marker}", requests)
    got = capture.wait(marker, 2 * requests, timeout=10.0)
    assert len(got) == 2 * requests
    assert reader.wakeups > before, f"{2 * requests} records, {per_cpu} per CPU between wakeups, none forced"


def test_keepalive_exchanges_both_sides(capture: Capture) -> None:
    marker = uuid.uuid4().hex
    host, port = serve(ok_handler())
    keepalive_gets(host, port, f"/ka/{marker}", 3)
    got = capture.wait(marker, 6)
    assert roles(got) == [1, 1, 1, 2, 2, 2]
    for ex in got:
        req, resp = parse_request(ex.request), parse_response(ex.response)
        assert req.method == "GET" and resp.status == 200
        assert ex.req_size == len(ex.request) and ex.resp_size == 43
        assert ex.end_ns >= ex.resp_start_ns >= ex.start_ns > 0
        assert ex.pid == os.getpid()
    server = next(e for e in got if e.role == 1)
    client = next(e for e in got if e.role == 2)
    assert (server.local_port, client.peer_port) == (port, port)
    assert server.peer_port == client.local_port and server.local_addr == "127.0.0.1"


def _calls(got: list[HttpExchange]) -> dict[bytes, dict[int, HttpExchange]]:
    """Exchanges by request line, then role: both ends of each call."""
    out: dict[bytes, dict[int, HttpExchange]] = {}
    for ex in got:
        out.setdefault(ex.request.split(b"\r\n", 1)[0], {})[ex.role] = ex
    return out


def _assert_linked(calls: dict[bytes, dict[int, HttpExchange]]) -> None:
    """Each call's server exchange carries its client's trace id and the client's span id as
    its parent; span ids are unique and never zero."""
    for line, ends in calls.items():
        assert set(ends) == {1, 2}, line
        server, client = ends[1], ends[2]
        assert client.parent_span_id == b"" and client.span_id != bytes(8) and client.trace_id != bytes(16)
        assert server.span_id not in (client.span_id, bytes(8))
        assert server.trace_id == client.trace_id and server.parent_span_id == client.span_id, line
    spans = [e.span_id for ends in calls.values() for e in ends.values()]
    assert len(set(spans)) == len(spans)


def test_kernel_links_the_server_end_of_a_local_call_to_its_client(capture: Capture) -> None:
    """Trace context is derived in the kernel at both ends from the 4-tuple and the request's TCP
    sequence number: every call links, a connection's first request included (the client's
    connect() registered it before the server could read)."""
    marker = uuid.uuid4().hex
    host, port = serve(ok_handler())
    keepalive_gets(host, port, f"/link/{marker}/ka", 40)
    for i in range(10):
        keepalive_gets(host, port, f"/link/{marker}/fresh{i}", 1)  # a fresh connection each
    got = capture.wait(marker, 100)
    calls = _calls(got)
    assert len(calls) == 50, len(got)
    _assert_linked(calls)


def test_a_dual_stack_server_links_to_its_ipv4_client(capture: Capture) -> None:
    """The server's socket is IPv6 and sees the client as ::ffff:127.0.0.1 (shown as IPv4): the
    same call."""
    marker = uuid.uuid4().hex
    host, port = serve(ok_handler(), dual_stack=True)
    keepalive_gets(host, port, f"/dual/{marker}", 3)
    calls = _calls(capture.wait(marker, 6))
    assert len(calls) == 3
    _assert_linked(calls)


@pytest.mark.parametrize("method", METHODS)
def test_a_connection_older_than_the_capture_links_once_its_client_is_seen(method: str) -> None:
    """Both ends of a keep-alive connection opened before the capture started get inferred
    roles, and its client registers its 4-tuple only at the first write the capture sees. Here
    the server reads a request written before the start, so its pairing entry is made before
    the client has registered. The next call may still race (on loopback the server can read
    it before the client's write, and its registration, returns); the ones after it link."""
    from tests.conftest import require

    require(have_root(), "root, to load BPF programs")
    require(have_bcc(), "BCC's python module (Debian python3-bpfcc via the --system-site-packages venv)")
    marker = uuid.uuid4().hex
    started = threading.Event()

    def handle(conn: socket.socket) -> None:
        for i in range(5):
            if i == 1:
                started.wait(60)  # request 1 waits unread until the capture runs
            if not read_request(conn):
                return
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")

    host, port = serve(handle)
    with socket.create_connection((host, port)) as c:
        for i in range(5):
            c.sendall(f"GET /old/{marker}/{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            if i == 1:
                cap = Capture(None if method == "auto" else cast("AttachType", method))
                started.set()
            assert c.recv(4096).endswith(b"hello")
    try:
        calls = _calls(cap.wait(marker, 7))
    finally:
        cap.stage.stop(2.0)
    assert set(calls[f"GET /old/{marker}/1 HTTP/1.1".encode()]) == {1}  # its client's write came before
    later = {line: ends for line, ends in calls.items() if line.endswith((b"/3 HTTP/1.1", b"/4 HTTP/1.1"))}
    assert len(later) == 2, calls.keys()
    _assert_linked(later)
    assert all(ends[1].flags & HTTP_FLAG_ROLE_INFERRED for ends in later.values())


def test_server_that_reads_before_the_clients_write_returns_still_links(capture: Capture) -> None:
    """A 16 MiB request keeps the client inside one write while the server already reads its
    head: the server's exchange starts first, and both ends still derive the same ids. So do
    the small calls right before and after it, whose two ends start within microseconds."""
    marker = uuid.uuid4().hex
    body = b"x" * (16 << 20)

    def handle(conn: socket.socket) -> None:
        while head := read_request(conn):
            found = re.search(rb"Content-Length: (\d+)", head)
            left = (int(found.group(1)) if found else 0) - len(head.split(b"\r\n\r\n", 1)[1])
            while left > 0 and (chunk := conn.recv(1 << 20)):
                left -= len(chunk)
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")

    host, port = serve(handle)
    with socket.create_connection((host, port)) as c:
        for i, payload in enumerate((b"", body, b"")):  # the big one in the middle of a keep-alive connection
            method = b"POST" if payload else b"GET"
            c.sendall(b"%s /race/%s/%d HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s"
                      % (method, marker.encode(), i, len(payload), payload))
            assert c.recv(4096).endswith(b"hello")
    got = capture.wait(marker, 6)
    calls = _calls(got)
    big = calls[f"POST /race/{marker}/1 HTTP/1.1".encode()]
    assert big[2].req_size == big[1].req_size > len(body)
    assert big[1].start_ns < big[2].start_ns, "the server's exchange did not start first"
    _assert_linked(calls)


def test_fresh_connections_and_split_request(capture: Capture) -> None:
    marker = uuid.uuid4().hex
    host, port = serve(ok_handler(b"x" * 5000))
    for i in range(2):
        with socket.create_connection((host, port)) as c:
            head = f"POST /split/{marker}/{i} HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n".encode()
            c.sendall(head)
            time.sleep(0.01)
            c.sendall(b"\r\n0123456789")
            data = b""
            while len(data) < 5000:
                data += c.recv(65536)
    got = capture.wait(marker, 4)
    assert roles(got) == [1, 1, 2, 2]
    for ex in got:
        assert ex.req_size == len(head) + 12
        assert ex.resp_size == len(b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n") + 5000


def test_ipv6_and_vectored_io(capture: Capture) -> None:
    marker = uuid.uuid4().hex

    def handle(conn: socket.socket) -> None:
        if read_request(conn):
            conn.sendmsg([b"HTTP/1.1 201 Created\r\n", b"Content-Length: 2\r\n\r\n", b"ok"])

    host, port = serve(handle, socket.AF_INET6)
    with socket.create_connection((host, port)) as c:
        c.sendmsg([f"PUT /v6/{marker} HTTP/1.1\r\n".encode(), b"Host: x\r\n\r\n"])
        c.recv(4096)
    got = capture.wait(marker, 2)
    assert roles(got) == [1, 2]
    assert all(e.local_addr == "::1" and e.peer_addr == "::1" for e in got)
    # every iovec captured, nothing read past one (the sendmsg side of each role is vectored)
    assert all(e.request.endswith(b"Host: x\r\n\r\n") and e.response.endswith(b"\r\n\r\nok") for e in got)
    assert all(parse_response(e.response).status == 201 for e in got)


def test_chunked_response_and_100_continue(capture: Capture) -> None:
    marker = uuid.uuid4().hex

    def handle(conn: socket.socket) -> None:
        if read_request(conn):
            conn.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            conn.recv(4096)
            conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            conn.sendall(b"5\r\nhello\r\n")
            conn.sendall(b"0\r\n\r\n")
            time.sleep(2)  # keep the connection open: the chunk terminator alone must complete it

    host, port = serve(handle)
    with socket.create_connection((host, port)) as c:
        c.sendall(f"POST /chunk/{marker} HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"
                  .encode())
        assert c.recv(4096).startswith(b"HTTP/1.1 100")
        c.sendall(b"body")
        data = b""
        while not data.endswith(b"0\r\n\r\n"):
            data += c.recv(4096)
        got = capture.wait(marker, 1, timeout=1.5)
    server = [e for e in got if e.role == 1]
    assert server, "chunked response not emitted while the connection stayed open"
    assert parse_response(server[0].response).status == 200  # not the interim 100
    assert capture.stage.counters()["http_interim"] >= 1


def test_sendfile_body_and_close_without_response(capture: Capture, tmp_path: object) -> None:
    marker = uuid.uuid4().hex
    path = os.path.join(str(tmp_path), "body.bin")
    with open(path, "wb") as fh:
        fh.write(b"z" * 20000)

    def handle(conn: socket.socket) -> None:
        req = read_request(conn)
        if b"/nothing/" in req:
            return  # close without answering
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 20000\r\n\r\n")
        with open(path, "rb") as fh:
            os.sendfile(conn.fileno(), fh.fileno(), 0, 20000)

    host, port = serve(handle)
    with socket.create_connection((host, port)) as c:
        c.sendall(f"GET /file/{marker} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = b""
        while len(data) < 20000:
            data += c.recv(65536)
    with socket.create_connection((host, port)) as c:
        c.sendall(f"GET /nothing/{marker} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert c.recv(4096) == b""
    got = capture.wait(marker, 4)
    served = [e for e in got if e.role == 1 and b"/file/" in e.request]
    assert served and served[0].resp_size == len(b"HTTP/1.1 200 OK\r\nContent-Length: 20000\r\n\r\n") + 20000
    assert served[0].flags & 0x40  # HTTP_FLAG_SENDFILE
    unanswered = [e for e in got if b"/nothing/" in e.request]
    assert unanswered and all(not e.flags & 0x01 for e in unanswered)


def test_a_client_killed_mid_call_leaves_an_exchange_without_response(capture: Capture) -> None:
    """A process that exits closes its sockets without close(): its request is emitted as
    closed without a response, not lost. Where state changes stand in for close (this kernel's
    default) the exit's FIN_WAIT1 does it in the kernel; where close() is traced, the
    dead-process sweep does."""
    marker = uuid.uuid4().hex
    release = threading.Event()

    def hold(conn: socket.socket) -> None:
        read_request(conn)
        release.wait(10)  # never answers while the client lives

    host, port = serve(hold)
    code = (f"import socket,sys,time; c=socket.create_connection(({host!r},{port})); "
            f"c.sendall(b'GET /killed/{marker} HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n'); "
            "print('sent', flush=True); time.sleep(60)")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "sent"
        time.sleep(0.2)  # the server has read it
    finally:
        child.kill()
        child.wait()
    lost_before = capture.stage.events_lost()
    by_state = any(c.method == "sock_tracepoint" and not c.spec.data for c in capture.stage.choices)
    swept = capture.stage.sweep_dead()
    assert swept == 0 if by_state else swept >= 1  # by_state: ended in the kernel at the exit's FIN_WAIT1
    release.set()
    got = [e for e in capture.wait(marker, 2) if e.role == 2]
    assert got and got[0].pid == child.pid
    assert got[0].flags & 0x02 and not got[0].flags & 0x01  # HTTP_FLAG_CLOSED, no response
    assert capture.stage.events_lost() == lost_before


def test_a_client_that_half_closes_after_its_request_still_gets_its_answer(capture: Capture) -> None:
    """shutdown(SHUT_WR) after the request (HTTP/1.0 tools, `nc -N`): the server answers and
    closes, and this end's socket reaches CLOSE (through TIME_WAIT) before the client reads the
    answer. The exchange waits for it; a client that closes with a request outstanding does not
    wait (the killed-client test above)."""
    marker = uuid.uuid4().hex
    host, port = serve(ok_handler(b"half-closed"))
    client = socket.create_connection((host, port))
    client.sendall(f"GET /half/{marker} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    client.shutdown(socket.SHUT_WR)
    time.sleep(0.3)  # answered and closed by the server: this end went FIN_WAIT2 -> CLOSE
    answer = b""
    while chunk := client.recv(65536):
        answer += chunk
    client.close()
    assert answer.startswith(b"HTTP/1.1 200")
    got = [e for e in capture.wait(marker, 2) if e.role == 2]
    assert len(got) == 1 and got[0].flags & 0x01, got  # HTTP_FLAG_HAS_RESPONSE
    assert got[0].response.startswith(b"HTTP/1.1 200") and got[0].resp_size == len(answer)


def test_status_reports_programs_maps_and_no_loss(capture: Capture) -> None:
    status = capture.stage.status()
    assert status["kernel"]["btf"] is True
    attached = [p for p in status["programs"] if p["attached"]]
    for prog in attached:
        assert prog["type"] in ("tracepoint", "kprobe", "kretprobe", "raw_tracepoint")
        assert isinstance(prog["id"], int) and prog["id"] > 0
        assert prog["reason"]
    # every syscall is covered: by its own program(s), or dispatched by the raw_syscalls pair
    covered = {s["name"] for p in attached for s in p.get("syscalls", [])}
    covered |= {re.sub(r"^http_(sys_)?(enter_|exit_)", "", p["name"]) for p in attached if "syscalls" not in p}
    assert {p.name for p in HTTP_PROBES if p.required} <= covered
    names = {m["name"] for m in status["maps"]}
    assert {"http_conns", "http_events", "counters"} <= names
    assert status["ringbuf"]["events_lost"] == 0
    assert status["ringbuf"]["events_received"] > 0


def test_kernel_shedding_keeps_exact_counts(capture: Capture) -> None:
    marker = uuid.uuid4().hex
    before = capture.stage.counters()
    capture.stage.set_shed(1000)  # shed everything: nothing emitted, everything counted
    try:
        host, port = serve(ok_handler())
        with socket.create_connection((host, port)) as c:
            for i in range(5):
                c.sendall(f"GET /shed/{marker}/{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                c.recv(4096)
        time.sleep(0.6)
    finally:
        capture.stage.set_shed(0)
    after = capture.stage.counters()
    assert capture.wait(marker, 1, timeout=0.5) == []
    assert after["http_sampled_out"] - before["http_sampled_out"] >= 10
    assert after["http_exchanges"] - before["http_exchanges"] >= 10


def test_shed_answers_in_several_writes_leave_the_next_exchange_whole(capture: Capture) -> None:
    """A shed exchange's answer after its first write is not looked at (the kernel returns
    early): each still counts once, with its response, and the exchange kept after them on the
    same connection has exactly its own request and answer."""
    marker = uuid.uuid4().hex

    def handle(conn: socket.socket) -> None:
        while read_request(conn):  # head, then the body in two writes the client reads apart
            for part in (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", b"hello", b"world"):
                conn.sendall(part)
                time.sleep(0.005)

    def get(c: socket.socket, path: str) -> bytes:
        c.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        answer = b""
        while not answer.endswith(b"helloworld"):
            answer += c.recv(4096)
        return answer

    host, port = serve(handle)
    before = capture.stage.counters()
    with socket.create_connection((host, port)) as c:
        capture.stage.set_shed(1000)
        try:
            for i in range(5):
                get(c, f"/shed/{marker}/{i}")
        finally:
            capture.stage.set_shed(0)
        assert get(c, f"/kept/{marker}").endswith(b"helloworld")
    got = capture.wait(f"/kept/{marker}", 2)
    after = capture.stage.counters()
    assert capture.wait(f"/shed/{marker}", 1, timeout=0.3) == []
    assert after["http_sampled_out"] - before["http_sampled_out"] >= 10  # both ends of 5 calls
    assert after["http_no_response"] - before["http_no_response"] == 0
    assert sorted(e.role for e in got) == [1, 2]
    for ex in got:
        assert ex.request == f"GET /kept/{marker} HTTP/1.1\r\nHost: x\r\n\r\n".encode()
        assert ex.response.endswith(b"\r\n\r\nhelloworld") and ex.resp_size == len(ex.response)
        assert ex.flags & 0x01 and not ex.flags & 0x80, ex.flags  # HAS_RESPONSE, not PIPELINED


def test_partial_shedding_keeps_whole_captures(capture: Capture) -> None:
    """On a keep-alive connection shed exchanges and kept ones alternate at random: a kept one
    right after a shed one still has its whole request and response."""
    marker = uuid.uuid4().hex
    capture.stage.set_shed(500)
    try:
        host, port = serve(ok_handler())
        keepalive_gets(host, port, f"/half/{marker}", 60)
        capture.wait(marker, 120, timeout=1.5)
    finally:
        capture.stage.set_shed(0)
    got = [e for e in capture.seen if port in (e.local_port, e.peer_port)]  # by port: a cut request has no marker
    assert 10 <= len(got) <= 110, len(got)  # about half of 120 (both sides of 60 requests)
    assert all(e.sample_permille == 500 for e in got)
    for ex in got:
        assert ex.request.endswith(b"Host: x\r\n\r\n"), ex.request
        assert ex.response.endswith(b"hello") and parse_response(ex.response).status == 200
    # Both ends of a call draw the same: each call is kept or shed whole.
    calls = _calls(got)
    assert all(set(ends) == {1, 2} for ends in calls.values()), calls
    _assert_linked(calls)


def test_pipelined_pair_is_split_into_two_exchanges(capture: Capture) -> None:
    marker = uuid.uuid4().hex

    def handle(conn: socket.socket) -> None:
        first = conn.recv(4096)  # the client sends the second request 50 ms later
        second = conn.recv(4096)
        if first and second:
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na")
            time.sleep(0.05)
            conn.sendall(b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nbb")
            time.sleep(0.5)

    host, port = serve(handle)
    with socket.create_connection((host, port)) as c:
        c.sendall(f"GET /pipe/{marker}/1 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        time.sleep(0.05)
        c.sendall(f"GET /pipe/{marker}/2 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert c.recv(4096).startswith(b"HTTP/1.1 200")
        assert c.recv(4096).startswith(b"HTTP/1.1 201")
        got = capture.wait(marker, 4, timeout=3)
    pairs = sorted((e.role, parse_request(e.request).target, parse_response(e.response).status) for e in got)
    assert pairs == [(1, f"/pipe/{marker}/1", 200), (1, f"/pipe/{marker}/2", 201),
                     (2, f"/pipe/{marker}/1", 200), (2, f"/pipe/{marker}/2", 201)]
    assert all(e.flags & 0x80 for e in got)  # HTTP_FLAG_PIPELINED
    second = [e for e in got if e.request.endswith(b"\r\n\r\n") and b"/2 " in e.request]
    assert all(e.req_size == len(e.request) for e in second)


def test_unsplittable_pipelining_is_counted(capture: Capture) -> None:
    marker = uuid.uuid4().hex

    def handle(conn: socket.socket) -> None:
        time.sleep(0.1)  # both requests arrive before the first answer and are read at once
        data = b""
        while data.count(b"\r\n\r\n") < 2:
            chunk = conn.recv(4096)
            if not chunk:
                return
            data += chunk
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na" * 2)

    before = capture.stage.counters()["http_pipelined"]
    host, port = serve(handle)
    with socket.create_connection((host, port)) as c:
        c.sendall(f"GET /pipe/{marker}/1 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        time.sleep(0.02)
        c.sendall(f"GET /pipe/{marker}/2 HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = b""
        while data.count(b"HTTP/1.1") < 2:
            data += c.recv(4096)
    assert capture.wait(marker, 1)  # reported (merged), not lost
    assert capture.stage.counters()["http_pipelined"] > before
