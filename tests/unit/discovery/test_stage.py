from __future__ import annotations

import socket
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from telegen.config import validate
from telegen.discovery.backoff import Backoff
from telegen.discovery.stage import DiscoveryOptions, DiscoveryStage


def _off() -> DiscoveryStage:
    cfg = validate({"discovery": {"kubernetes": {"enabled": False}, "docker": {"enabled": False},
                                  "cloud": {"enabled": False}}})
    return DiscoveryStage(cfg, "node-x", options=DiscoveryOptions(agent_namespace="ns"))


def test_everything_off_is_disabled_and_shaped() -> None:
    st = _off()
    st.start()
    try:
        assert st.readiness() == "disabled" and st.healthy()
        status = st.status()
        assert set(status) == {"kubernetes", "docker", "cloud", "discovered_services"}
        assert status["kubernetes"] == {"enabled": False, "connected": False, "cluster": "unknown",
                                        "namespace": "ns", "node": "node-x", "pods_watched": 0,
                                        "services_watched": 0}
        assert status["docker"] == {"enabled": False, "connected": False, "containers": 0}
        assert status["cloud"] is None
        for svc in status["discovered_services"]:
            assert set(svc) == {"name", "namespace", "instances", "ports"}
            assert svc["ports"] == sorted(svc["ports"])
        assert st.summary() == {"kubernetes": False, "docker": False, "pods_discovered": 0,
                                "containers_discovered": 0}
    finally:
        st.stop(1)


def test_auto_without_anything_to_talk_to(tmp_path: object) -> None:
    cfg = validate({"discovery": {"cloud": {"enabled": False}}})
    st = DiscoveryStage(cfg, None, options=DiscoveryOptions(
        kubeconfig="/nonexistent/kubeconfig", docker_url="unix:///nonexistent/docker.sock"))
    assert not st.docker_enabled and st.readiness() == "ok"


def test_auto_docker_needs_a_socket_that_answers(tmp_path: Path) -> None:
    """A socket file left by a dead dockerd is nothing to talk to: auto leaves Docker off, so /ready
    does not wait the sync timeout for it; a listening socket turns it on; `true` is always on."""
    stale, live = str(tmp_path / "stale.sock"), str(tmp_path / "live.sock")
    with socket.socket(socket.AF_UNIX) as dead:
        dead.bind(stale)  # the file stays, nobody listens
    cfg = validate({"discovery": {"kubernetes": {"enabled": False}, "cloud": {"enabled": False}}})
    on = validate({"discovery": {"kubernetes": {"enabled": False}, "docker": {"enabled": True},
                                 "cloud": {"enabled": False}}})
    with socket.socket(socket.AF_UNIX) as listening:
        listening.bind(live)
        listening.listen(1)
        assert DiscoveryStage(cfg, None, options=DiscoveryOptions(docker_url=f"unix://{live}")).docker_enabled
    stage = DiscoveryStage(cfg, None, options=DiscoveryOptions(docker_url=f"unix://{stale}"))
    assert not stage.docker_enabled and stage.readiness() == "ok"
    assert DiscoveryStage(on, None, options=DiscoveryOptions(docker_url=f"unix://{stale}")).docker_enabled


def test_collectors_expose_objects_and_misses() -> None:
    st = _off()
    st.enricher.resource_for(2**22 + 12345)  # no such pid: a procfs miss
    reg = CollectorRegistry()
    for c in st.collectors():
        reg.register(c)
    text = generate_latest(reg).decode()
    assert 'telegen_discovery_objects{kind="process",source="procfs"}' in text
    assert 'telegen_metadata_misses_total{source="procfs"} 1.0' in text


def test_backoff_doubles_to_the_cap_with_jitter() -> None:
    b = Backoff(0.8, 30.0, jitter=0.2)
    delays = [b.next() for _ in range(8)]
    assert 0.64 <= delays[0] <= 0.96 and 1.28 <= delays[1] <= 1.92
    assert all(24.0 <= d <= 36.0 for d in delays[6:])
    b.reset()
    assert b.next() <= 0.96


def test_connected_docker_with_no_containers_says_connected() -> None:
    """The watcher is sized (len = cached containers): an empty cache must not read as 'off'."""
    cfg = validate({"discovery": {"kubernetes": {"enabled": False}, "docker": {"enabled": True},
                                  "cloud": {"enabled": False}}})
    st = DiscoveryStage(cfg, "node-x", options=DiscoveryOptions(docker_url="unix:///nonexistent.sock"))
    assert st.docker is not None and len(st.docker) == 0
    st.docker.connected = True  # as after a successful list of zero containers; the thread is not started
    assert st.status()["docker"] == {"enabled": True, "connected": True, "containers": 0}
