"""The container image: built by `make image`, run as docs/install.md says, captures host loopback HTTP.

Slow: the first `make image` on a machine builds the Debian base with debootstrap (about 40 s
here) and the image (about 80 s); later runs reuse Docker's cache (seconds).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from telegen.buildinfo import checkout_commit
from tests.conftest import REPO, have_docker, have_root, require

pytestmark = [pytest.mark.slow, pytest.mark.docker, pytest.mark.root, pytest.mark.bpf,
              pytest.mark.timeout(1200)]

IMAGE = os.environ.get("TELEGEN_TEST_IMAGE", "telegen:dev")
PORT = 19191  # not the default 19090, so a developer's agent on the host does not clash
API = f"http://127.0.0.1:{PORT}"


def http_get(path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(API + path, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, f"docker {' '.join(args)}: {proc.stderr}"
    return proc


CAP_SYS_RESOURCE = 24


def privilege_args() -> list[str]:
    """`--privileged`, as documented; or its equivalent where the host cannot grant every capability.

    Docker's --privileged asks runc for every capability it knows; in a sandbox whose own
    bounding set lacks one (this machine lacks CAP_SYS_RESOURCE), runc then fails with
    "unable to apply caps". The equivalent keeps everything else --privileged does.
    """
    bounding = 0
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapBnd:"):
            bounding = int(line.split()[1], 16)
    if bounding & (1 << CAP_SYS_RESOURCE):
        return ["--privileged"]
    return ["--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE", "--security-opt", "seccomp=unconfined",
            "--security-opt", "apparmor=unconfined", "--security-opt", "systempaths=unconfined",
            "--device-cgroup-rule", "a *:* rwm"]


def run_args(name: str, config: Path) -> list[str]:
    """The documented `docker run` line (docs/install.md), with a config listening on PORT."""
    return [
        "run", "-d", "--name", name,
        *privilege_args(), "--pid=host", "--network", "host",
        "-v", "/sys/kernel/tracing:/sys/kernel/tracing:ro",
        "-v", "/sys/fs/cgroup:/sys/fs/cgroup:ro",
        "-v", "/proc:/host/proc:ro",
        "-v", "/lib/modules:/host/lib/modules:ro",
        "-v", "/usr/src:/host/usr/src:ro",
        "-v", "/var/run/docker.sock:/var/run/docker.sock:ro",
        "-v", f"{config}:/etc/telegen/config.yaml:ro",
        IMAGE, "run", "--config", "/etc/telegen/config.yaml",
    ]


@pytest.fixture(scope="module")
def built_image() -> float:
    require(have_root(), "root, to build and run the privileged image")
    require(have_docker(), "a running Docker engine (make setup starts dockerd)")
    require(Path("/usr/sbin/debootstrap").exists() or
            subprocess.run(["docker", "image", "inspect", "telegen/bookworm-base:latest"],
                           capture_output=True).returncode == 0,
            "debootstrap (to build the base image) or telegen/bookworm-base:latest")
    start = time.monotonic()
    proc = subprocess.run(["make", "--no-print-directory", "image", f"IMAGE={IMAGE}"], cwd=REPO,
                          capture_output=True, text=True, timeout=1100)
    took = time.monotonic() - start
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    print(f"\nmake image took {took:.1f}s", file=sys.stderr)
    return took


@pytest.fixture(scope="module")
def agent(built_image: float, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    require(Path("/sys/kernel/tracing/events").is_dir(), "tracefs at /sys/kernel/tracing (make setup mounts it)")
    require(port_free(PORT), f"port {PORT} free on 127.0.0.1")
    cfg_dir = tmp_path_factory.mktemp("image-config")
    config = cfg_dir / "config.yaml"
    config.write_text(f'self_telemetry:\n  listen: "127.0.0.1:{PORT}"\nlog_level: info\n')
    config.chmod(0o644)
    name = f"telegen-e2e-{os.getpid()}"
    docker("rm", "-f", name, check=False)
    try:
        docker(*run_args(name, config))
        deadline = time.monotonic() + 240  # first start compiles the BPF programs
        while True:
            state = docker("inspect", "-f", "{{.State.Status}}", name).stdout.strip()
            if state != "running":
                logs = docker("logs", name, check=False)
                pytest.fail(f"container {state}:\n{logs.stdout[-3000:]}{logs.stderr[-3000:]}")
            try:
                if http_get("/healthz", timeout=2)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                logs = docker("logs", name, check=False)
                pytest.fail(f"/healthz not 200 within 240 s:\n{logs.stderr[-4000:]}")
            time.sleep(1)
        yield name
    finally:
        logs = docker("logs", name, check=False)
        print(f"--- container logs (tail) ---\n{logs.stderr[-3000:]}", file=sys.stderr)
        docker("rm", "-f", name, check=False, timeout=60)
    assert port_free(PORT)


def ebpf_status() -> dict[str, Any]:
    status, body = http_get("/status/ebpf")
    assert status == 200, body[:500]
    doc: dict[str, Any] = json.loads(body)
    return doc


def spans_collected() -> float:
    status, body = http_get("/metrics")
    assert status == 200
    m = re.search(rb"^telegen_spans_collected_total(?:\{[^}]*\})? ([0-9.e+]+)$", body, re.M)
    return float(m.group(1)) if m else 0.0


SERVER = r"""
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = b"hello from the host\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
srv = http.server.HTTPServer(("127.0.0.1", 0), H)
print(srv.server_address[1], flush=True)
srv.serve_forever()
"""


def test_image_runs_and_is_healthy(agent: str, built_image: float) -> None:
    status, body = http_get("/healthz")
    assert status == 200 and json.loads(body)["status"] == "ok"
    # the image's HEALTHCHECK finds the port from the mounted config
    hc = docker("exec", agent, "/opt/telegen/venv/bin/python", "/opt/telegen/healthcheck.py", check=False)
    assert hc.returncode == 0, hc.stdout + hc.stderr
    assert f"127.0.0.1:{PORT}/healthz" in hc.stdout


def test_image_names_its_commit_and_build_time(agent: str) -> None:
    status, body = http_get("/status")
    assert status == 200
    info = json.loads(body)
    assert info["commit"] == (checkout_commit(REPO) or "unknown")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", info["built"]), info
    labels = json.loads(docker("image", "inspect", "-f", "{{json .Config.Labels}}", IMAGE).stdout)
    assert labels["org.opencontainers.image.revision"] == info["commit"].replace("unknown", "")
    assert labels["org.opencontainers.image.created"] == info["built"]


def test_kernel_headers_come_from_the_host(agent: str) -> None:
    logs = docker("logs", agent).stderr
    assert "telegen-hostenv: kernel headers: using the host's" in logs, logs[-2000:]
    doc = ebpf_status()
    assert doc["enabled"] is True
    assert doc["kernel"]["release"] == os.uname().release
    assert doc["kernel"]["headers"] == f"host:/lib/modules/{os.uname().release}/build"


def test_host_loopback_http_is_captured_from_inside_the_container(agent: str) -> None:
    before_events = ebpf_status()["ringbuf"]["events_received"]
    before_spans = spans_collected()
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        requests = 20
        for i in range(requests):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/e2e/image/{i}", timeout=5) as resp:
                assert resp.status == 200
                resp.read()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            events = ebpf_status()["ringbuf"]["events_received"]
            spans = spans_collected()
            if events - before_events >= requests and spans - before_spans >= requests:
                break
            time.sleep(1)
        assert events - before_events >= requests, (before_events, events)
        assert spans - before_spans >= requests, (before_spans, spans)
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_sigterm_drains_and_exits_zero(agent: str) -> None:
    # last in the module: docker stop sends SIGTERM (the agent drains, <= 10 s grace)
    start = time.monotonic()
    docker("stop", "-t", "30", agent, timeout=60)
    took = time.monotonic() - start
    code = docker("inspect", "-f", "{{.State.ExitCode}}", agent).stdout.strip()
    assert code == "0", docker("logs", agent, check=False).stderr[-2000:]
    assert took < 15, took
