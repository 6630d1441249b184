from __future__ import annotations

from telegen.discovery.kube_store import KubeStore, pod_from_json
from tests.fixtures.k8s_objects import cid, pod, replicaset, service, uid


def test_pod_keeps_only_needed_fields() -> None:
    p = pod_from_json(pod("web-1", uid(1), ip="10.1.0.5", container_id=cid(1), labels={"app": "web"},
                          annotations={"kubectl.kubernetes.io/last-applied-configuration": "{...}",
                                       "resource.opentelemetry.io/service.name": "shop",
                                       "team": "a"},
                          owner=("ReplicaSet", "web-6d4b"), ports=(8080,)), annotation_allowlist=["team"])
    assert p.annotations == (("resource.opentelemetry.io/service.name", "shop"), ("team", "a"))
    assert p.containers[0].container_id == cid(1) and p.containers[0].name == "app"
    assert (p.ips, p.ports, p.owner_kind, p.owner_name) == (("10.1.0.5",), (8080,), "ReplicaSet", "web-6d4b")
    assert not hasattr(p, "__dict__")  # slotted


def test_owner_chain_and_indexes() -> None:
    s = KubeStore()
    s.replace_replicasets([replicaset("web-6d4b", "web")])
    s.replace_pods([pod("web-1", uid(1), ip="10.1.0.5", container_id=cid(1), owner=("ReplicaSet", "web-6d4b"),
                        labels={"app": "web"})])
    s.replace_services([service("web", cluster_ip="10.96.0.10", selector={"app": "web"})])
    p = s.pods[uid(1)]
    assert s.workload(p) == ("Deployment", "web")
    assert s.pod_by_container[cid(1)][0] == uid(1)
    assert s.pod_by_ip["10.1.0.5"] == uid(1)
    assert s.service_by_ip["10.96.0.10"] == ("default", "web")
    assert [x.name for x in s.services_for(p)] == ["web"]
    s.apply_pod("DELETED", pod("web-1", uid(1), ip="10.1.0.5", container_id=cid(1)))
    assert not s.pods and not s.pod_by_container and not s.pod_by_ip
    s.apply_replicaset("DELETED", replicaset("web-6d4b", "web"))
    assert s.workload(p) == ("ReplicaSet", "web-6d4b")


def test_job_pods_name_their_cronjob_by_the_jobs_name() -> None:
    s = KubeStore()
    s.replace_pods([pod("backup-29391840-x7k2p", uid(1), owner=("Job", "backup-29391840")),
                    pod("nightly-db-report-29391840-abcde", uid(2), owner=("Job", "nightly-db-report-29391840")),
                    pod("migrate-2-q9z8w", uid(3), owner=("Job", "migrate-2")),
                    pod("load-1234567-zz", uid(4), owner=("Job", "load-1234567"))])
    assert s.workload(s.pods[uid(1)]) == ("CronJob", "backup")
    assert s.workload(s.pods[uid(2)]) == ("CronJob", "nightly-db-report")
    assert s.workload(s.pods[uid(3)]) == ("Job", "migrate-2")  # a Job named by hand stays a Job
    assert s.workload(s.pods[uid(4)]) == ("Job", "load-1234567")  # 7 digits: not a scheduled time


def test_caps_count_overflow() -> None:
    s = KubeStore(max_pods=3)
    s.replace_pods([pod(f"p{i}", uid(i)) for i in range(5)])
    assert len(s.pods) == 3 and s.dropped["pod"] == 2
    s.apply_pod("ADDED", pod("p9", uid(9)))
    assert len(s.pods) == 3 and s.dropped["pod"] == 3
    s.apply_pod("MODIFIED", pod("p0", uid(0), ip="10.0.0.1"))
    assert s.pods[uid(0)].ips == ("10.0.0.1",)


def test_host_network_pods_do_not_claim_the_node_ip() -> None:
    s = KubeStore()
    s.replace_pods([pod("ds", uid(1), ip="192.168.1.10", host_network=True)])
    assert "192.168.1.10" not in s.pod_by_ip
