from __future__ import annotations

import shutil
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

from telegen.discovery.cgroup import CgroupIdIndex
from telegen.discovery.docker import ContainerMeta, DockerWatcher
from telegen.discovery.kube_store import KubeStore
from telegen.discovery.procfs import ProcessTable
from telegen.enrich.enricher import Enricher, split_image
from telegen.signals import SPAN_KIND_CLIENT, LogRecordItem, SpanRecord
from tests.fixtures.k8s_objects import pod, replicaset, service

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "proc"
CID = "3f5c1e0a9b8d7c6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e"
POD = "8f4d2c3a-1b2e-4c5d-9e8f-0a1b2c3d4e5f"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def span(pid: int = 4242, cgroup_id: int = 0, **attrs: str) -> SpanRecord:
    return SpanRecord(b"\1" * 16, b"\2" * 8, b"", "GET", SPAN_KIND_CLIENT, 1, 2, dict(attrs),
                      pid=pid, cgroup_id=cgroup_id)


def docker_with(*metas: ContainerMeta) -> DockerWatcher:
    w = DockerWatcher()
    for m in metas:
        w._put(m)
    return w


def meta(name: str = "shop-web-1", **kw: str) -> ContainerMeta:
    return ContainerMeta(CID, name, "telegen-test/busybox:latest", (), kw.get("project", ""),
                         kw.get("svc", ""), 4242, True)


def test_bare_process() -> None:
    e = Enricher(ProcessTable(FIXTURES / "bare_v1_host"), node_name="node-1")
    res = dict(e.resource_for(4242))
    assert res["service.name"] == "app" and res["process.executable.name"] == "app"
    assert res["process.pid"] == 4242 and res["process.command_line"] == "/usr/bin/app --port 8080"
    assert res["host.name"] == "node-1" and res["os.type"] == "linux"
    assert res["host.arch"] in ("amd64", "arm64")
    assert "container.id" not in res and res["service.instance.id"] == "node-1:4242:987654"


def test_docker_container_compose_service() -> None:
    e = Enricher(ProcessTable(FIXTURES / "docker_v1_cgroupfs"),
                 docker=docker_with(meta(project="shop", svc="web")))
    res = dict(e.resource_for(4242))
    assert res["container.id"] == CID and res["container.name"] == "shop-web-1"
    assert res["container.runtime"] == "docker"
    assert res["container.image.name"] == "telegen-test/busybox" and res["container.image.tags"] == "latest"
    assert (res["service.name"], res["service.namespace"], res["service.instance.id"]) == ("web", "shop", CID)


def test_container_name_beats_executable() -> None:
    e = Enricher(ProcessTable(FIXTURES / "docker_v2_systemd"), docker=docker_with(meta("lonely")))
    assert dict(e.resource_for(4242))["service.name"] == "lonely"


def test_pid_seen_before_container_event_is_re_enriched() -> None:
    clock = Clock()
    docker = DockerWatcher()
    e = Enricher(ProcessTable(FIXTURES / "docker_v1_cgroupfs"), docker=docker, clock=clock)
    first = dict(e.resource_for(4242))
    assert first["container.id"] == CID and "container.name" not in first
    assert e.misses.snapshot()["docker"] == 1
    docker._put(meta("late"))  # the container event arrives shortly after
    clock.now += 0.05
    assert dict(e.resource_for(4242))["container.name"] == "late"


def test_complete_entries_are_cached() -> None:
    clock = Clock()
    e = Enricher(ProcessTable(FIXTURES / "bare_v1_host"), clock=clock, ttl=10)
    e.resource_for(4242)
    e.resource_for(4242)
    assert e.computed == 1
    clock.now += 11
    e.resource_for(4242)
    assert e.computed == 2


def _kube() -> KubeStore:
    s = KubeStore(annotation_allowlist=["team"])
    s.replace_replicasets([replicaset("checkout-7f9c", "checkout", namespace="shop")])
    s.replace_pods([pod("checkout-7f9c-abcde", POD, namespace="shop", ip="10.1.0.7", container_id=CID,
                        container="server", image="registry.local:5000/checkout:2.1",
                        owner=("ReplicaSet", "checkout-7f9c"), labels={"app": "checkout", "tier": "backend"},
                        annotations={"team": "payments"})])
    s.replace_services([service("checkout", namespace="shop", cluster_ip="10.96.0.42",
                                selector={"app": "checkout"}, ports=(8080,))])
    return s


def test_cronjob_pod_carries_the_cronjob_and_its_job() -> None:
    kube = KubeStore()
    kube.replace_pods([pod("backup-29391840-x7k2p", POD, namespace="ops", container_id=CID, container="backup",
                           owner=("Job", "backup-29391840"))])
    res = dict(Enricher(ProcessTable(FIXTURES / "containerd_v2_systemd_k8s"), kube=kube).resource_for(4242))
    assert res["k8s.cronjob.name"] == "backup" and res["k8s.job.name"] == "backup-29391840"
    assert res["k8s.pod.name"] == "backup-29391840-x7k2p"


def test_kubernetes_pod() -> None:
    e = Enricher(ProcessTable(FIXTURES / "containerd_v2_systemd_k8s"), kube=_kube(), node_name="node-1",
                 cluster_name="prod", label_allowlist=["tier"], annotation_allowlist=["team"])
    res = dict(e.resource_for(4242))
    assert res["k8s.pod.name"] == "checkout-7f9c-abcde" and res["k8s.pod.uid"] == POD
    assert res["k8s.namespace.name"] == "shop" and res["k8s.container.name"] == "server"
    assert res["k8s.deployment.name"] == "checkout" and res["k8s.replicaset.name"] == "checkout-7f9c"
    assert res["k8s.cluster.name"] == "prod" and res["k8s.node.name"] == "node-1"
    assert res["k8s.pod.label.tier"] == "backend" and "k8s.pod.label.app" not in res
    assert res["k8s.pod.annotation.team"] == "payments"
    assert res["container.image.name"] == "registry.local:5000/checkout"
    assert res["container.image.tags"] == "2.1"
    assert res["service.name"] == "checkout"  # the app label
    assert res["service.namespace"] == "shop"
    assert res["service.instance.id"] == "shop.checkout-7f9c-abcde.server"


def test_service_name_precedence() -> None:
    s = _kube()
    e = Enricher(ProcessTable(FIXTURES / "containerd_v2_systemd_k8s"), kube=s)
    s.apply_pod("MODIFIED", pod("checkout-7f9c-abcde", POD, namespace="shop", container_id=CID,
                                owner=("ReplicaSet", "checkout-7f9c")))
    assert dict(e.resource_for(4242, 1))["service.name"] == "checkout"  # deployment (owner chain)
    s.apply_pod("MODIFIED", pod("checkout-7f9c-abcde", POD, namespace="shop", container_id=CID,
                                owner=("ReplicaSet", "checkout-7f9c"),
                                labels={"app.kubernetes.io/name": "payments-api"}))
    assert dict(e.resource_for(4242, 2))["service.name"] == "payments-api"
    s.apply_pod("MODIFIED", pod("checkout-7f9c-abcde", POD, namespace="shop", container_id=CID,
                                labels={"app.kubernetes.io/name": "payments-api"},
                                annotations={"resource.opentelemetry.io/service.name": "explicit",
                                             "resource.opentelemetry.io/service.namespace": "team-a"}))
    res = dict(e.resource_for(4242, 3))
    assert (res["service.name"], res["service.namespace"]) == ("explicit", "team-a")
    s.apply_pod("MODIFIED", pod("standalone", POD, namespace="shop", container_id=CID))
    assert dict(e.resource_for(4242, 4))["service.name"] == "standalone"  # pod name


def test_process_environment_names_the_service(tmp_path: Path) -> None:
    shutil.copytree(FIXTURES / "bare_v1_host" / "4242", tmp_path / "4242", symlinks=True)
    (tmp_path / "4242" / "environ").write_bytes(
        b"OTEL_SERVICE_NAME=billing\0OTEL_RESOURCE_ATTRIBUTES=service.namespace=fin,x=y\0")
    res = dict(Enricher(ProcessTable(tmp_path)).resource_for(4242))
    assert (res["service.name"], res["service.namespace"]) == ("billing", "fin")


def test_pod_missing_is_counted_and_retried() -> None:
    s = KubeStore()
    e = Enricher(ProcessTable(FIXTURES / "containerd_v2_systemd_k8s"), kube=s)
    assert "k8s.pod.name" not in dict(e.resource_for(4242))
    assert e.misses.snapshot()["kubernetes"] == 1
    s.replace_pods(_kube().pods and [pod("p", POD, container_id=CID)])
    assert dict(e.resource_for(4242))["k8s.pod.name"] == "p"


def test_cgroup_id_resolution(tmp_path: Path) -> None:
    leaf = tmp_path / "system.slice" / f"docker-{CID}.scope"
    leaf.mkdir(parents=True)
    e = Enricher(ProcessTable(FIXTURES / "bare_v1_host"), cgroup_ids=CgroupIdIndex(tmp_path),
                 docker=docker_with(meta("via-cgroup-id")))
    res = dict(e.resource_for(4242, leaf.stat().st_ino))
    assert res["container.name"] == "via-cgroup-id"
    e.resource_for(4242, 999999999)
    assert e.misses.snapshot()["cgroup"] == 1


def test_gone_process_is_a_procfs_miss() -> None:
    e = Enricher(ProcessTable(FIXTURES / "bare_v1_host"))
    res = dict(e.resource_for(77))
    assert res["process.pid"] == 77 and res["service.name"] == "unknown_service"
    assert e.misses.snapshot()["procfs"] == 1


def test_enrich_spans_and_peers() -> None:
    e = Enricher(ProcessTable(FIXTURES / "containerd_v2_systemd_k8s"), kube=_kube())
    spans = [span(**{"server.address": "10.96.0.42", "server.port": "8080"}),
             span(**{"server.address": "10.1.0.7"}), span(**{"server.address": "example.com"}),
             span(**{"server.address": "10.9.9.9"})]
    for s in spans:  # as the builder leaves them: shape attributes shared with RED and the encoder
        s.base_attrs, s.metric_attrs = s.attributes, (("server.address", s.attributes["server.address"]),)
    shared = spans[0].attributes
    twin = span(**{"server.address": "10.96.0.42"})
    twin.attributes = twin.base_attrs = shared  # another span of the same shape: the same dict
    e.enrich_spans(spans)
    assert shared["server.address"] == "10.96.0.42" and twin.attributes is shared  # renamed in a copy
    # a rewritten server.address makes the shape's precomputed attributes stale: both are dropped
    assert spans[0].base_attrs is None and spans[0].metric_attrs is None
    assert spans[2].base_attrs is not None and spans[2].metric_attrs is not None
    assert all(dict(s.resource)["k8s.pod.name"] == "checkout-7f9c-abcde" for s in spans)
    assert spans[0].attributes["server.address"] == "checkout"
    assert spans[0].attributes["network.peer.address"] == "10.96.0.42"
    assert spans[1].attributes["server.address"] == "checkout"  # the pod's service
    assert spans[2].attributes["server.address"] == "example.com"
    assert spans[3].attributes["server.address"] == "10.9.9.9"
    assert e.computed == 1  # one lookup per (pid, cgroup) per batch


def _bridged(cid: str, name: str, ips: tuple[str, ...], svc: str = "", running: bool = True) -> ContainerMeta:
    return ContainerMeta(cid, name, "telegen-test/busybox:latest", (), "shop" if svc else "", svc,
                         5000 if running else 0, running, ips if running else ())


def test_docker_peers_are_named_after_their_container() -> None:
    docker = docker_with(_bridged("a" * 64, "shop-db-1", ("172.18.0.5",), svc="db"),
                         _bridged("b" * 64, "cache", ("172.18.0.6", "fd00::6")))
    e = Enricher(ProcessTable(FIXTURES / "bare_v1_host"), docker=docker)
    spans = [span(**{"server.address": "172.18.0.5"}), span(**{"server.address": "fd00::6"}),
             span(**{"client.address": "172.18.0.6"}), span(**{"server.address": "172.18.0.99"})]
    e.enrich_spans(spans)
    assert spans[0].attributes["server.address"] == "db"  # the compose service, as its own spans say
    assert spans[0].attributes["network.peer.address"] == "172.18.0.5"
    assert "server.k8s.namespace.name" not in spans[0].attributes
    assert spans[1].attributes["server.address"] == "cache"
    assert spans[2].attributes["client.address"] == "cache"
    assert spans[3].attributes["server.address"] == "172.18.0.99"


def test_kubernetes_names_a_peer_before_docker() -> None:
    docker = docker_with(_bridged("a" * 64, "k8s_POD_checkout", ("10.96.0.42",)))
    e = Enricher(ProcessTable(FIXTURES / "containerd_v2_systemd_k8s"), kube=_kube(), docker=docker)
    s = span(**{"server.address": "10.96.0.42"})
    e.enrich_spans([s])
    assert s.attributes["server.address"] == "checkout"


def test_docker_peer_names_follow_the_containers() -> None:
    docker = docker_with(_bridged("a" * 64, "old", ("172.18.0.5",)))
    e = Enricher(ProcessTable(FIXTURES / "bare_v1_host"), docker=docker)
    first = span(**{"server.address": "172.18.0.5"})
    e.enrich_spans([first])
    assert first.attributes["server.address"] == "old"
    docker._put(_bridged("a" * 64, "old", (), running=False))  # stopped: its address went back
    stopped = span(**{"server.address": "172.18.0.5"})
    e.enrich_spans([stopped])
    assert stopped.attributes["server.address"] == "172.18.0.5"
    docker._put(_bridged("c" * 64, "new", ("172.18.0.5",)))  # handed out again
    docker._remove("a" * 64)  # the old one's removal must not unmap the new holder
    reused = span(**{"server.address": "172.18.0.5"})
    e.enrich_spans([reused])
    assert reused.attributes["server.address"] == "new"


def test_enrich_logs_keeps_own_attributes() -> None:
    e = Enricher(ProcessTable(FIXTURES / "bare_v1_host"))
    item = LogRecordItem(1, 9, "INFO", "hello", {}, resource=(("service.name", "own"),), pid=4242)
    e.enrich_logs([item])
    res = dict(item.resource)
    assert res["service.name"] == "own" and res["process.pid"] == 4242


def test_cloud_attributes_arrive_late() -> None:
    e = Enricher(ProcessTable(FIXTURES / "bare_v1_host"))
    assert "cloud.provider" not in dict(e.resource_for(4242))
    e.set_extra({"cloud.provider": "aws", "cloud.region": "eu-west-1"})
    assert dict(e.resource_for(4242))["cloud.region"] == "eu-west-1"


def test_cache_is_bounded() -> None:
    e = Enricher(ProcessTable(FIXTURES / "bare_v1_host"), cache_size=10)
    for pid in range(100):
        e.resource_for(pid)
    assert e.cache_len() == 10


def test_misses_collector() -> None:
    e = Enricher(ProcessTable(FIXTURES / "bare_v1_host"))
    e.resource_for(1)
    reg = CollectorRegistry()
    reg.register(e.misses)
    text = generate_latest(reg).decode()
    assert 'telegen_metadata_misses_total{source="procfs"} 1.0' in text


def test_split_image() -> None:
    assert split_image("nginx") == ("nginx", "")
    assert split_image("reg:5000/a/b:1.2@sha256:abc") == ("reg:5000/a/b", "1.2")
    assert split_image("reg:5000/a/b") == ("reg:5000/a/b", "")
