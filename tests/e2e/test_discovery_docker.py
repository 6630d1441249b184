"""The Docker source against the real engine: events keep the cache right, dockerd restarts survive."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from telegen.config import validate
from telegen.discovery.stage import DiscoveryOptions, DiscoveryStage
from telegen.signals import SPAN_KIND_SERVER, SpanRecord
from tests.docker_images import busybox_image
from tests.dockerd_control import ensure_dockerd, stop_dockerd

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def docker(*args: str, check: bool = True) -> str:
    out = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60)
    if check and out.returncode:
        raise AssertionError(f"docker {' '.join(args)}: {out.stderr}")
    return out.stdout.strip()


def wait_for(cond: Callable[[], object], timeout: float = 15.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def restart_dockerd(while_down: Callable[[], None] = lambda: None) -> None:
    """Stop dockerd, run while_down, and start it again with set-up's dockerd step."""
    stop_dockerd()
    while_down()
    result = ensure_dockerd()
    assert result.returncode == 0, result.stderr


@pytest.fixture
def stage(need_docker: None) -> Iterator[DiscoveryStage]:
    busybox_image()
    cfg = validate({"discovery": {"docker": {"enabled": True}, "kubernetes": {"enabled": False},
                                  "cloud": {"enabled": False}}})
    st = DiscoveryStage(cfg, "test-node", options=DiscoveryOptions(
        docker_label_allowlist=("telegen.test",), backoff_initial=0.2, backoff_max=1.0,
        status_cache_seconds=0))
    st.start()
    assert st.docker is not None
    wait_for(st.docker.synced.is_set, 20, "docker first sync")
    yield st
    st.stop(5)


@pytest.fixture
def names() -> Iterator[list[str]]:
    made: list[str] = []
    yield made
    for name in made:
        docker("rm", "-f", name, check=False)


def run_container(names: list[str], *extra: str) -> tuple[str, str]:
    name = f"telegen-disc-{uuid.uuid4().hex[:8]}"
    names.append(name)
    cid = docker("run", "-d", "--network", "host", "--name", name, "--label", "telegen.test=yes",
                 "--label", "com.docker.compose.project=shop", "--label", "com.docker.compose.service=web",
                 *extra, busybox_image(), "sleep", "300")
    return cid, name


def test_lifecycle_events_keep_the_cache(stage: DiscoveryStage, names: list[str]) -> None:
    w = stage.docker
    assert w is not None and w.connected and stage.readiness() == "ok"
    cid, name = run_container(names)
    wait_for(lambda: (m := w.get(cid)) is not None and m.running and m.pid, what="start event")
    meta = w.get(cid)
    assert meta is not None and meta.name == name and meta.compose_service == "web"
    assert meta.labels == (("telegen.test", "yes"),)  # only allowlisted labels kept

    span = SpanRecord(b"\1" * 16, b"\2" * 8, b"", "GET /", SPAN_KIND_SERVER, 1, 2, {}, pid=meta.pid)
    stage.enricher.enrich_spans([span])
    res = dict(span.resource)
    assert res["container.id"] == cid and res["container.name"] == name
    assert res["service.name"] == "web" and res["service.namespace"] == "shop"
    assert res["container.image.name"] == "telegen-test/busybox"

    docker("rename", name, name + "-renamed")
    names.append(name + "-renamed")
    wait_for(lambda: (m := w.get(cid)) is not None and m.name == name + "-renamed", what="rename event")
    docker("kill", cid)
    wait_for(lambda: (m := w.get(cid)) is not None and not m.running, what="die event")
    docker("rm", cid)
    wait_for(lambda: w.get(cid) is None, what="destroy event")
    # a stream dockerd closed is reconnected within the backoff; status says so meanwhile
    wait_for(lambda: stage.status()["docker"]["connected"], what="connected status")
    status = stage.status()
    assert status["docker"] == {"enabled": True, "connected": True, "containers": len(w)}


def test_created_only_container_is_seen(stage: DiscoveryStage, names: list[str]) -> None:
    w = stage.docker
    assert w is not None
    name = f"telegen-disc-{uuid.uuid4().hex[:8]}"
    names.append(name)
    cid = docker("create", "--network", "host", "--name", name, busybox_image(), "sleep", "1")
    wait_for(lambda: (m := w.get(cid)) is not None and not m.running, what="create event")
    services = {s["name"] for s in stage.status()["discovered_services"]}
    assert name not in services  # not running: not a workload


def test_dockerd_restart(stage: DiscoveryStage, names: list[str]) -> None:
    w = stage.docker
    assert w is not None
    before, _ = run_container(names)
    wait_for(lambda: (m := w.get(before)) is not None and m.running, what="first container")
    reconnects = w.reconnects

    def while_down() -> None:  # the cache keeps answering, and connected tells the truth
        wait_for(lambda: not w.connected, 10, "connected to turn false")
        assert stage.status()["docker"]["connected"] is False
        assert w.get(before) is not None

    restart_dockerd(while_down)
    wait_for(lambda: w.connected and w.reconnects > reconnects, 30, "reconnect")
    assert stage.status()["docker"]["connected"] is True
    after, _ = run_container(names)
    wait_for(lambda: (m := w.get(after)) is not None and m.running, what="container after restart")
    truth = set(docker("ps", "-a", "-q", "--no-trunc").split())
    wait_for(lambda: set(c.id for c in w.containers()) == truth, what="cache == docker ps -a")
    m = w.get(before)
    running_truth = docker("inspect", "-f", "{{.State.Running}}", before) == "true"
    assert m is not None and m.running == running_truth


def test_disconnected_is_truthful(need_docker: None, tmp_path: object) -> None:
    cfg = validate({"discovery": {"docker": {"enabled": True}, "kubernetes": {"enabled": False},
                                  "cloud": {"enabled": False}}})
    st = DiscoveryStage(cfg, None, options=DiscoveryOptions(docker_url="unix:///nonexistent/docker.sock",
                                                            backoff_initial=0.1, backoff_max=0.2,
                                                            sync_timeout=60))
    st.start()
    try:
        assert st.docker is not None
        wait_for(lambda: st.docker is not None and st.docker.last_error, what="a connection error")
        assert st.status()["docker"]["connected"] is False
        assert st.readiness().startswith("failed: docker not synced")
        assert st.healthy()
    finally:
        st.stop(2)


@pytest.fixture
def network() -> Iterator[str]:
    """A Docker network of the test's own: internal (no route out) on a /24 of 198.18.0.0/15 (set
    aside for benchmarks), removed afterwards. Nothing is sent to it: only its addresses count."""
    name = f"telegen-disc-net-{uuid.uuid4().hex[:8]}"
    subnet = f"198.18.{uuid.uuid4().int % 256}.0/24"
    docker("network", "create", "--internal", "--subnet", subnet, name)
    yield name
    attached = docker("ps", "-aq", "--filter", f"network={name}").split()  # a test that failed midway
    if attached:
        docker("rm", "-f", *attached)
    docker("network", "rm", name)


def test_a_peer_on_a_docker_network_is_named_after_its_container(stage: DiscoveryStage, names: list[str],
                                                                 network: str) -> None:
    w = stage.docker
    assert w is not None
    name = f"telegen-disc-{uuid.uuid4().hex[:8]}"
    names.append(name)
    cid = docker("run", "-d", "--network", network, "--name", name,
                 "--label", "com.docker.compose.service=db", busybox_image(), "sleep", "300")
    ip = docker("inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", cid)
    assert ip.startswith("198.18.")
    wait_for(lambda: w.by_ip(ip) is not None, what="the container's address")

    span = SpanRecord(b"\1" * 16, b"\2" * 8, b"", "GET /", SPAN_KIND_SERVER, 1, 2, {"server.address": ip})
    stage.enricher.enrich_spans([span])
    assert span.attributes["server.address"] == "db" and span.attributes["network.peer.address"] == ip

    docker("network", "disconnect", network, cid)  # a network event, not a container one
    wait_for(lambda: w.by_ip(ip) is None, what="the disconnect to reach the cache")
