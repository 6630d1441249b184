"""TCP lifecycle capture on the real kernel, with real sockets: loopback and two network
namespaces joined by a veth pair (10.200.77.0/30, assigned here and removed after).

Faults the test makes and what must come out: a refused connect, a connect that times out
(nftables drops the SYNs), a reset (SO_LINGER 0), retransmits (nftables drops a random share
of segments), and a long-lived connection that moves bytes: bytes equal, counts equal,
latency within bounds, nothing twice.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from telegen.capture.layouts import (
    ROLE_CLIENT,
    ROLE_SERVER,
    TCP_FLAG_PID_ACCEPT,
    TCP_FLAG_PID_CLOSE,
    TCP_FLAG_PID_LISTENER,
)
from telegen.capture.probes import AttachType
from telegen.config import EbpfConfig
from telegen.decode.tcp_records import TcpConnection
from telegen.pipeline import BoundedQueue
from tests.conftest import have_bcc, have_root, require

pytestmark = [pytest.mark.bpf, pytest.mark.root]

NS_A, NS_B = f"tgtcpa{os.getpid() % 10000}", f"tgtcpb{os.getpid() % 10000}"
ADDR_A, ADDR_B = "10.200.77.1", "10.200.77.2"


class Capture:
    def __init__(self, force: AttachType | None = None) -> None:
        from telegen.capture.tcp_stage import TcpCaptureStage

        self.records: BoundedQueue[bytes] = BoundedQueue("test", 200000)
        self.stage = TcpCaptureStage(EbpfConfig(max_connections=8192), self.records, self_pid=0, force_method=force)
        self.stage.start()
        self.seen: list[TcpConnection] = []

    def wait(self, match: Callable[[TcpConnection], bool], count: int, timeout: float = 5.0,
             settle: float = 0.3) -> list[TcpConnection]:
        """Records matching `match`; waits for `count`, then a little longer to catch duplicates."""
        deadline = time.monotonic() + timeout
        settled: float | None = None
        while True:
            self.seen += self.stage.decoder.decode(self.records.get_batch(200000))
            got = [c for c in self.seen if match(c)]
            now = time.monotonic()
            if len(got) >= count and settled is None:
                settled = now + settle
            if (settled is not None and now >= settled) or now > deadline:
                return got
            time.sleep(0.05)


@pytest.fixture(scope="module")
def capture() -> Iterator[Capture]:
    require(have_root(), "root, to load BPF programs")
    require(have_bcc(), "BCC's python module (Debian python3-bpfcc via the --system-site-packages venv)")
    cap = Capture()
    yield cap
    assert cap.stage.events_lost() == 0
    cap.stage.stop(2.0)


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=30)


@pytest.fixture(scope="module")
def netns() -> Iterator[tuple[str, str]]:
    """Two namespaces joined by a veth pair; only addresses assigned here are used."""
    require(have_root(), "root, to create network namespaces")
    require(sh("which", "nft", check=False).returncode == 0, "nftables (nft)")
    for ns in (NS_A, NS_B):
        sh("ip", "netns", "del", ns, check=False)
    try:
        sh("ip", "netns", "add", NS_A)
        sh("ip", "netns", "add", NS_B)
        sh("ip", "link", "add", "tgva", "netns", NS_A, "type", "veth", "peer", "name", "tgvb", "netns", NS_B)
        for ns, dev, addr in ((NS_A, "tgva", ADDR_A), (NS_B, "tgvb", ADDR_B)):
            sh("ip", "-n", ns, "addr", "add", f"{addr}/30", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        yield NS_A, NS_B
    finally:
        for ns in (NS_A, NS_B):
            sh("ip", "netns", "del", ns, check=False)


def in_ns(ns: str, code: str) -> subprocess.Popen[str]:
    return subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", code],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def nft(ns: str, table: str, rule: str) -> None:
    """One input-hook rule in its own table inside namespace `ns` (never the host's ruleset)."""
    rules = (f"table inet {table} {{\n chain tgin {{\n  type filter hook input priority 0;\n  {rule}\n }}\n}}\n")
    subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=rules, check=True, text=True,
                   capture_output=True, timeout=10)


# When each test's listener was opened (CLOCK_MONOTONIC, the records' clock): bind(0) can hand
# out a port an earlier test's client used, and the capture keeps every record it has seen.
_LISTENED_AT: dict[int, int] = {}


def listener() -> tuple[socket.socket, int]:
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    port = srv.getsockname()[1]
    _LISTENED_AT[port] = time.monotonic_ns()
    return srv, port


def recv_exact(sock: socket.socket, n: int) -> int:
    got = 0
    while got < n:
        chunk = sock.recv(min(65536, n - got))
        if not chunk:
            break
        got += len(chunk)
    return got


def by_port(port: int) -> Callable[[TcpConnection], bool]:
    since = _LISTENED_AT.get(port, 0)
    return lambda c: (port in (c.local_port, c.peer_port) and c.peer_addr in ("127.0.0.1", ADDR_A, ADDR_B)
                      and c.start_ns >= since)


def test_long_lived_connection_bytes_latency_and_live_snapshot(capture: Capture) -> None:
    srv, port = listener()
    up, down = 300_000, 123_457
    accepted: list[socket.socket] = []

    def serve() -> None:
        conn, _ = srv.accept()
        accepted.append(conn)
        assert recv_exact(conn, up) == up
        conn.sendall(b"d" * down)

    t = threading.Thread(target=serve)
    t.start()
    started = time.monotonic()
    client = socket.create_connection(("127.0.0.1", port))
    connect_wall = time.monotonic() - started
    client.sendall(b"u" * up)
    assert recv_exact(client, down) == down
    t.join(5)
    live = [c for c in capture.stage.live(0) if by_port(port)(c)]
    assert sorted(c.role for c in live) == [ROLE_SERVER, ROLE_CLIENT]  # open: in the gauge, no record yet
    time.sleep(1.0)
    client.close()
    accepted[0].close()
    srv.close()
    got = capture.wait(by_port(port), 2)
    assert len(got) == 2, got  # one record per socket, nothing twice
    cli = next(c for c in got if c.role == ROLE_CLIENT)
    ser = next(c for c in got if c.role == ROLE_SERVER)
    assert (cli.bytes_sent, cli.bytes_received) == (up, down)
    assert (ser.bytes_sent, ser.bytes_received) == (down, up)
    assert cli.pid == ser.pid == os.getpid()
    assert ser.flags & TCP_FLAG_PID_CLOSE  # it closed its socket: see the next test
    assert cli.four_tuple() == ser.four_tuple()
    assert cli.connect_ns is not None and 0 < cli.connect_ns / 1e9 <= connect_wall + 0.01
    assert ser.connect_ns is None
    for c in (cli, ser):
        assert c.failure == "" and c.retransmits == 0 and c.resets_sent == c.resets_received == 0
        assert 1.0 <= (c.end_ns - c.established_ns) / 1e9 < 5.0
        assert 0 < c.srtt_us < 100_000


# A prefork server's worker: inherits the listening socket, accepts, answers and closes.
_WORKER = """
import socket, sys
srv = socket.socket(fileno=int(sys.argv[1]))
conn, _ = srv.accept(); conn.recv(5); conn.sendall(b"world")
if sys.argv[2] == "reset-by-peer":
    try:
        conn.recv(1)  # the client resets the connection before this process closes it
    except ConnectionResetError:
        pass
conn.close()
"""


def _serve_once_in_a_worker(srv: socket.socket, port: int, how: str) -> int:
    worker = subprocess.Popen([sys.executable, "-c", _WORKER, str(srv.fileno()), how], pass_fds=[srv.fileno()])
    client = socket.create_connection(("127.0.0.1", port))
    client.sendall(b"hello")
    assert client.recv(5) == b"world"
    if how == "reset-by-peer":
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()
    assert worker.wait(10) == 0
    return worker.pid


def test_server_side_belongs_to_the_process_that_served_it(capture: Capture) -> None:
    """The listener's owner (this process) is not the server: its worker is. By default the
    worker's close says so (no syscalls:* tracepoint, which would slow every syscall on the
    node); forced onto syscalls:sys_exit_accept4, its accept does. A connection the peer resets
    before the worker closes it stays with the listener's owner."""
    assert capture.stage.bpf is not None
    assert not [p.name for p in capture.stage.bpf.programs() if p.target.startswith("syscalls:")]
    srv, port = listener()
    forced = Capture(force="tracepoint")
    try:
        worker = _serve_once_in_a_worker(srv, port, "close")
        for cap, flag in ((capture, TCP_FLAG_PID_CLOSE), (forced, TCP_FLAG_PID_ACCEPT)):
            ser = next(c for c in cap.wait(by_port(port), 2) if c.role == ROLE_SERVER)
            assert (ser.pid, ser.flags) == (worker, flag), cap.stage.choices
        srv2, port2 = listener()
        _serve_once_in_a_worker(srv2, port2, "reset-by-peer")
        ser = next(c for c in capture.wait(by_port(port2), 2) if c.role == ROLE_SERVER)
        assert (ser.pid, ser.flags, ser.resets_received) == (os.getpid(), TCP_FLAG_PID_LISTENER, 1)
        srv2.close()
    finally:
        forced.stage.stop(2.0)
        srv.close()


def test_refused_connect(capture: Capture) -> None:
    srv, port = listener()
    srv.close()  # nothing listens on port now
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2)
    got = capture.wait(lambda c: c.peer_port == port, 1)
    assert len(got) == 1
    assert got[0].role == ROLE_CLIENT and got[0].failure == "refused" and got[0].error == errno.ECONNREFUSED
    assert got[0].established_ns == 0 and got[0].resets_received == 1 and got[0].pid == os.getpid()


def test_reset_with_linger_zero(capture: Capture) -> None:
    srv, port = listener()
    client = socket.create_connection(("127.0.0.1", port))
    conn, _ = srv.accept()
    client.sendall(b"hello")
    assert conn.recv(5) == b"hello"
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()  # RST instead of FIN
    time.sleep(0.1)
    conn.close()
    srv.close()
    got = capture.wait(by_port(port), 2)
    assert len(got) == 2
    cli = next(c for c in got if c.role == ROLE_CLIENT)
    ser = next(c for c in got if c.role == ROLE_SERVER)
    assert cli.resets_sent == 1 and cli.failure == "reset" and cli.bytes_sent == 5
    assert ser.resets_received == 1 and ser.failure == "reset" and ser.bytes_received == 5


SERVER_NS = """
import socket, sys
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("{addr}", {port})); srv.listen(8); print("ready", flush=True)
conn, _ = srv.accept(); got = 0
while got < {size}:
    chunk = conn.recv(65536)
    if not chunk: break
    got += len(chunk)
conn.sendall(b"ok"); conn.recv(1); conn.close(); print(got, flush=True)
"""

CLIENT_NS = """
import socket, time
t = time.monotonic()
try:
    c = socket.create_connection(("{addr}", {port}), timeout={timeout})
except OSError as e:
    print("error", type(e).__name__, round(time.monotonic() - t, 3), flush=True); raise SystemExit(0)
c.sendall(b"x" * {size}); assert c.recv(2) == b"ok"; c.close(); print("sent", {size}, flush=True)
"""


def test_timed_out_connect_between_namespaces(capture: Capture, netns: tuple[str, str]) -> None:
    a, b = netns
    port = 7777
    nft(b, "tgdrop", f"tcp dport {port} drop")
    try:
        client = in_ns(a, CLIENT_NS.format(addr=ADDR_B, port=port, timeout=1.5, size=0))
        out, err = client.communicate(timeout=20)
        assert out.startswith("error TimeoutError") or "timed out" in out, (out, err)
        got = capture.wait(lambda c: c.peer_addr == ADDR_B and c.peer_port == port, 1)
        assert len(got) == 1
        rec = got[0]
        assert rec.role == ROLE_CLIENT and rec.failure == "timeout" and rec.pid == client.pid
        assert rec.local_addr == ADDR_A and rec.established_ns == 0
        assert 1.4 <= (rec.end_ns - rec.start_ns) / 1e9 < 3.0
        assert rec.retransmits >= 1  # the SYN went again after 1 s
    finally:
        subprocess.run(["ip", "netns", "exec", b, "nft", "delete", "table", "inet", "tgdrop"], capture_output=True)


def test_retransmits_under_random_loss_between_namespaces(capture: Capture, netns: tuple[str, str]) -> None:
    a, b = netns
    port, size = 7778, 600_000
    # drop every 8th segment at the receiver, the first included: a random 1 in 8 could drop
    # none, since the veth passes GSO segments of up to 64 KiB (only ~10 for 600 KB). SYNs pass,
    # so connect latency stays deterministic.
    nft(b, "tgloss", f"tcp dport {port} tcp flags & syn == 0 numgen inc mod 8 0 drop")
    try:
        server = in_ns(b, SERVER_NS.format(addr=ADDR_B, port=port, size=size))
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        client = in_ns(a, CLIENT_NS.format(addr=ADDR_B, port=port, timeout=30, size=size))
        out, err = client.communicate(timeout=60)
        assert out.strip() == f"sent {size}", (out, err)
        sout, _ = server.communicate(timeout=30)
        assert sout.strip() == str(size)
        got = capture.wait(lambda c: ADDR_B in (c.peer_addr, c.local_addr) and port in (c.peer_port, c.local_port),
                           2, timeout=10)
        assert len(got) == 2, got
        cli = next(c for c in got if c.role == ROLE_CLIENT)
        ser = next(c for c in got if c.role == ROLE_SERVER)
        assert cli.pid == client.pid and ser.pid == server.pid
        assert cli.bytes_sent == ser.bytes_received == size
        assert cli.bytes_received == ser.bytes_sent == 2
        assert cli.retransmits > 0
        assert cli.connect_ns is not None and cli.connect_ns < 2_000_000_000
    finally:
        subprocess.run(["ip", "netns", "exec", b, "nft", "delete", "table", "inet", "tgloss"], capture_output=True)


def test_counters_add_up(capture: Capture) -> None:
    """Many short connections: every one emitted exactly once, none lost."""
    srv, port = listener()
    n = 200
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            conn.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    before = capture.stage.counters()
    for _ in range(n):
        with socket.create_connection(("127.0.0.1", port)) as c:
            c.recv(1)
    got = capture.wait(by_port(port), 2 * n, timeout=10)
    stop.set()
    srv.close()
    assert len(got) == 2 * n
    assert len({(c.sock_id, c.start_ns) for c in got}) == 2 * n
    after = capture.stage.counters()
    assert after["tcp_opened"] - before["tcp_opened"] >= 2 * n
    assert after["tcp_ringbuf_full"] == after["tcp_sock_map_full"] == 0

