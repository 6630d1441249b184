"""The Kubernetes source: the real `kubernetes` client against the loopback API server."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from telegen.config import validate
from telegen.discovery.stage import DiscoveryOptions, DiscoveryStage
from telegen.signals import SPAN_KIND_CLIENT, SpanRecord
from tests.fixtures.k8s_objects import cid, pod, replicaset, service, uid
from tests.fixtures.sizes import deep_size
from tests.k8s_api_server import FakeApiServer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "proc"
FIXTURE_CID = "3f5c1e0a9b8d7c6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e"
FIXTURE_POD = "8f4d2c3a-1b2e-4c5d-9e8f-0a1b2c3d4e5f"


def wait_for(cond: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def api() -> Iterator[FakeApiServer]:
    server = FakeApiServer(bookmark_interval=0.3).start()
    server.bulk_load("replicasets", [replicaset("checkout-7f9c", "checkout", namespace="shop")])
    server.bulk_load("pods", [
        pod("checkout-7f9c-abcde", FIXTURE_POD, namespace="shop", ip="10.1.0.7", container_id=FIXTURE_CID,
            container="server", owner=("ReplicaSet", "checkout-7f9c"), labels={"app": "checkout"}),
        pod("other-node", uid(99), node="node-2", ip="10.2.0.9", container_id=cid(99)),
    ])
    server.bulk_load("services", [service("checkout", namespace="shop", cluster_ip="10.96.0.42",
                                          selector={"app": "checkout"}, ports=(8080, 443))])
    yield server
    server.stop()


def make_stage(api: FakeApiServer, tmp_path: Path, proc_root: str = "/proc",
               **opts: object) -> DiscoveryStage:
    cfg = validate({"cluster_name": "test-cluster",
                    "discovery": {"kubernetes": {"enabled": "auto"}, "docker": {"enabled": False},
                                  "cloud": {"enabled": False}}})
    settings: dict[str, object] = {"k8s_read_timeout": 1.0, **opts}
    options = DiscoveryOptions(kubeconfig=str(api.write_kubeconfig(tmp_path / "kubeconfig")),
                               agent_namespace="monitoring", k8s_watch_timeout=30,
                               backoff_initial=0.05, backoff_max=0.4, status_cache_seconds=0,
                               **settings)  # type: ignore[arg-type]
    return DiscoveryStage(cfg, "node-1", proc_root=proc_root, options=options)


@pytest.fixture
def stage(api: FakeApiServer, tmp_path: Path) -> Iterator[DiscoveryStage]:
    st = make_stage(api, tmp_path, proc_root=str(FIXTURES / "containerd_v2_systemd_k8s"))
    assert st.k8s_enabled  # auto: a kubeconfig exists
    st.start()
    assert st.kube is not None and st.kube.wait_synced(10)
    wait_for(lambda: st.kube is not None and all(w.watches for w in st.kube.watches), what="watches open")
    yield st
    st.stop(5)


def pods(st: DiscoveryStage) -> set[str]:
    assert st.kube is not None
    return {p.name for p in st.kube.store.pods.values()}


def watch(st: DiscoveryStage, kind: str) -> object:
    assert st.kube is not None
    return next(w for w in st.kube.watches if w.kind == kind)


def test_sync_node_pods_and_status(stage: DiscoveryStage, api: FakeApiServer) -> None:
    assert pods(stage) == {"checkout-7f9c-abcde"}  # node-2's pod is not ours
    lists = [p for r, v, p in api.requests if r == "pods" and v == "list"]
    assert lists[0]["fieldSelector"] == "spec.nodeName=node-1"
    first_watch = next(p for r, v, p in api.requests if r == "pods" and v == "watch")
    assert first_watch["allowWatchBookmarks"] == "true" and first_watch["resourceVersion"]
    assert stage.readiness() == "ok"
    status = stage.status()
    assert status["kubernetes"] == {"enabled": True, "connected": True, "cluster": "test-cluster",
                                    "namespace": "monitoring", "node": "node-1", "pods_watched": 1,
                                    "services_watched": 1}
    assert {"name": "checkout", "namespace": "shop", "instances": 1, "ports": [443, 8080]} in \
        status["discovered_services"]
    assert stage.summary()["pods_discovered"] == 1


def test_span_from_a_pod_carries_its_identity(stage: DiscoveryStage) -> None:
    s = SpanRecord(b"\1" * 16, b"\2" * 8, b"", "GET", SPAN_KIND_CLIENT, 1, 2,
                   {"server.address": "10.96.0.42", "server.port": 8080}, pid=4242)
    stage.enricher.enrich_spans([s])
    res = dict(s.resource)
    assert res["k8s.pod.name"] == "checkout-7f9c-abcde" and res["k8s.namespace.name"] == "shop"
    assert res["k8s.deployment.name"] == "checkout" and res["service.name"] == "checkout"
    assert res["k8s.cluster.name"] == "test-cluster" and res["container.id"] == FIXTURE_CID
    assert s.attributes["server.address"] == "checkout"


def test_watch_events_update_the_cache(stage: DiscoveryStage, api: FakeApiServer) -> None:
    api.put("pods", pod("new-1", uid(1), ip="10.1.0.8"))
    wait_for(lambda: "new-1" in pods(stage), what="ADDED")
    api.put("pods", pod("new-1", uid(1), ip="10.1.0.9"))
    assert stage.kube is not None
    wait_for(lambda: stage.kube is not None and "10.1.0.9" in stage.kube.store.pod_by_ip, what="MODIFIED")
    api.delete("pods", "default", "new-1")
    wait_for(lambda: "new-1" not in pods(stage), what="DELETED")
    api.put("pods", pod("elsewhere", uid(2), node="node-2"))
    api.put("services", service("api", cluster_ip="10.96.0.50"))
    wait_for(lambda: stage.kube is not None and ("default", "api") in stage.kube.store.services, what="svc")
    assert "elsewhere" not in pods(stage)
    lists = api.count("pods", "list")
    time.sleep(0.8)  # bookmarks flow; they advance the resourceVersion but change nothing
    assert api.count("pods", "list") == lists


def test_410_error_event_relists_and_replaces(stage: DiscoveryStage, api: FakeApiServer) -> None:
    w = watch(stage, "pods")
    api.put("pods", pod("doomed", uid(3)))
    wait_for(lambda: "doomed" in pods(stage), what="doomed added")
    api.compact()  # history gone; the deletion below is never delivered as an event
    api.delete("pods", "default", "doomed")
    api.compact()
    api.put("pods", pod("survivor", uid(4)))
    api.compact()
    api.drop_watches()
    wait_for(lambda: w.relists_on_gone >= 1, what="410 relist")  # type: ignore[attr-defined]
    wait_for(lambda: pods(stage) == {"checkout-7f9c-abcde", "survivor"}, what="cache replaced")


def test_410_http_status_relists(stage: DiscoveryStage, api: FakeApiServer) -> None:
    w = watch(stage, "services")
    api.gone_as_http = True
    api.compact()
    api.put("services", service("fresh", cluster_ip="10.96.0.77"))
    api.compact()
    api.drop_watches()
    wait_for(lambda: w.relists_on_gone >= 1, what="HTTP 410 relist")  # type: ignore[attr-defined]
    wait_for(lambda: stage.kube is not None and "10.96.0.77" in stage.kube.store.service_by_ip, what="svc")


def test_500s_and_resets_back_off_and_recover(stage: DiscoveryStage, api: FakeApiServer) -> None:
    w = watch(stage, "pods")
    api.inject("pods", "watch", "500", "500", "500")
    api.drop_watches()
    api.put("pods", pod("after-500", uid(5)))
    wait_for(lambda: "after-500" in pods(stage), what="recovery after 500s")
    assert w.errors >= 3  # type: ignore[attr-defined]
    assert stage.kube is not None and stage.kube.connected
    lists = api.count("pods", "list")
    for i in range(3):  # resets resume from the last resourceVersion: no relist needed
        api.drop_watches()
        api.put("pods", pod(f"reset-{i}", uid(10 + i)))
        wait_for(lambda i=i: f"reset-{i}" in pods(stage), what=f"event after reset {i}")  # type: ignore[misc]
    assert api.count("pods", "list") == lists


def test_hung_watch_is_abandoned(stage: DiscoveryStage, api: FakeApiServer) -> None:
    api.inject("pods", "watch", "hang")
    api.drop_watches()
    api.put("pods", pod("after-hang", uid(6)))
    wait_for(lambda: "after-hang" in pods(stage), 8, what="event after a hung watch")
    w = watch(stage, "pods")
    assert "Timeout" in w.last_error or "timed out" in w.last_error  # type: ignore[attr-defined]


def test_readiness_waits_then_starts_partial(api: FakeApiServer, tmp_path: Path) -> None:
    api.inject("pods", "list", *["hang_nothing"] * 3)
    st = make_stage(api, tmp_path, sync_timeout=1.5)
    st.start()
    try:
        assert st.readiness().startswith("failed: kubernetes watch not synced")
        time.sleep(1.6)
        assert st.readiness() == "ok"  # partial data after the deadline (logged)
        assert st.kube is not None
        wait_for(lambda: st.kube is not None and st.kube.synced, 10, what="eventual sync")
    finally:
        st.stop(3)


def test_5000_pods_stay_bounded(api: FakeApiServer, tmp_path: Path) -> None:
    api.bulk_load("pods", [pod(f"bulk-{i}", uid(1000 + i), ip=f"10.3.{i // 250}.{i % 250}",
                               container_id=cid(1000 + i), labels={"app": f"a{i % 50}"},
                               annotations={"kubectl.kubernetes.io/last-applied-configuration": "x" * 2000},
                               owner=("ReplicaSet", f"rs-{i % 50}")) for i in range(5000)])
    st = make_stage(api, tmp_path, k8s_read_timeout=10.0)
    st.start()
    try:
        assert st.kube is not None and st.kube.wait_synced(30)
        store = st.kube.store
        assert len(store.pods) == 5001 and api.count("pods", "list") >= 10  # paginated, 500 a page
        indexes = (store.pods, store.pod_by_container, store.pod_by_ip)
        per_pod = deep_size(indexes) / len(store.pods)
        assert per_pod < 2500, per_pod  # only the needed fields: the dropped annotation alone is 2 KB
    finally:
        st.stop(3)


def test_pod_cap_counts_overflow(api: FakeApiServer, tmp_path: Path) -> None:
    api.bulk_load("pods", [pod(f"bulk-{i}", uid(1000 + i)) for i in range(300)])
    st = make_stage(api, tmp_path, max_pods=200)
    st.start()
    try:
        assert st.kube is not None and st.kube.wait_synced(10)
        assert len(st.kube.store.pods) == 200 and st.kube.store.dropped["pod"] == 101
    finally:
        st.stop(3)
