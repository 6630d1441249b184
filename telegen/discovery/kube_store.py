"""Compact, bounded Kubernetes metadata: pods of this node, services, replicaset -> deployment.

Only the fields enrichment needs are kept (no managedFields, no last-applied annotations),
strings interned, and each kind has a cap whose overflow is counted.
"""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

OTEL_ANNOTATION_PREFIX = "resource.opentelemetry.io/"
Pairs = tuple[tuple[str, str], ...]


def _pairs(data: Mapping[str, Any] | None, keep: Iterable[str] | None = None, prefix: str = "") -> Pairs:
    if not data:
        return ()
    wanted = None if keep is None else set(keep)
    return tuple(sorted(
        (sys.intern(str(k)), sys.intern(str(v))) for k, v in data.items()
        if wanted is None or k in wanted or (prefix and str(k).startswith(prefix))
    ))


def _strip_runtime(container_id: str) -> str:
    # containerStatuses[].containerID is "<runtime>://<id>"
    return container_id.partition("://")[2] or container_id


@dataclass(frozen=True, slots=True)
class PodContainer:
    container_id: str
    name: str
    image: str


@dataclass(frozen=True, slots=True)
class PodMeta:
    uid: str
    name: str
    namespace: str
    node: str
    ips: tuple[str, ...]
    host_network: bool
    labels: Pairs  # all labels (service selectors need them); values interned
    annotations: Pairs  # allowlisted + resource.opentelemetry.io/* only
    owner_kind: str
    owner_name: str
    containers: tuple[PodContainer, ...]
    ports: tuple[int, ...]

    def label(self, key: str) -> str:
        for k, v in self.labels:
            if k == key:
                return v
        return ""

    def annotation(self, key: str) -> str:
        for k, v in self.annotations:
            if k == key:
                return v
        return ""


@dataclass(frozen=True, slots=True)
class ServiceMeta:
    name: str
    namespace: str
    cluster_ips: tuple[str, ...]
    selector: Pairs
    ports: tuple[int, ...]


def pod_from_json(obj: Mapping[str, Any], annotation_allowlist: Iterable[str] = ()) -> PodMeta:
    md, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    owners = md.get("ownerReferences") or []
    owner = next((o for o in owners if o.get("controller")), owners[0] if owners else {})
    containers = []
    images = {c.get("name"): c.get("image", "") for c in spec.get("containers") or []}
    for cs in (status.get("containerStatuses") or []) + (status.get("initContainerStatuses") or []):
        if cs.get("containerID"):
            containers.append(PodContainer(_strip_runtime(cs["containerID"]), sys.intern(cs.get("name", "")),
                                           sys.intern(images.get(cs.get("name"), "") or cs.get("image", ""))))
    ips = tuple(p["ip"] for p in status.get("podIPs") or [] if p.get("ip")) or \
        ((status["podIP"],) if status.get("podIP") else ())
    ports = sorted({int(p["containerPort"]) for c in spec.get("containers") or []
                    for p in c.get("ports") or [] if p.get("containerPort")})
    return PodMeta(
        uid=str(md.get("uid", "")), name=str(md.get("name", "")),
        namespace=sys.intern(str(md.get("namespace", ""))), node=sys.intern(str(spec.get("nodeName", ""))),
        ips=ips, host_network=bool(spec.get("hostNetwork")),
        labels=_pairs(md.get("labels")),
        annotations=_pairs(md.get("annotations"), annotation_allowlist, OTEL_ANNOTATION_PREFIX),
        owner_kind=sys.intern(str(owner.get("kind", ""))), owner_name=str(owner.get("name", "")),
        containers=tuple(containers), ports=tuple(ports),
    )


def service_from_json(obj: Mapping[str, Any]) -> ServiceMeta:
    md, spec = obj.get("metadata") or {}, obj.get("spec") or {}
    ips = [ip for ip in (spec.get("clusterIPs") or [spec.get("clusterIP")]) if ip and ip != "None"]
    return ServiceMeta(
        name=str(md.get("name", "")), namespace=sys.intern(str(md.get("namespace", ""))),
        cluster_ips=tuple(ips), selector=_pairs(spec.get("selector")),
        ports=tuple(sorted({int(p["port"]) for p in spec.get("ports") or [] if p.get("port")})),
    )


# A CronJob names each Job it starts "<cronjob>-<scheduled time in minutes since the epoch>", 8
# digits from 1989 to the 22nd century. Jobs are not watched (no field selector keeps the list to
# one node), so the name is how a pod's CronJob is known, as OpenTelemetry's k8sattributes
# processor does; 8 digits or more keep a Job named by hand like "migrate-2" a Job.
_CRONJOB_JOB_NAME = re.compile(r"^(.+)-[0-9]{8,}$")


def cronjob_of(job_name: str) -> str:
    """The CronJob that started the Job `job_name`, by its name; "" if none did."""
    m = _CRONJOB_JOB_NAME.match(job_name)
    return m.group(1) if m else ""


def replicaset_owner(obj: Mapping[str, Any]) -> tuple[tuple[str, str], str]:
    md = obj.get("metadata") or {}
    owners = md.get("ownerReferences") or []
    dep = next((o.get("name", "") for o in owners if o.get("kind") == "Deployment"), "")
    return (sys.intern(str(md.get("namespace", ""))), str(md.get("name", ""))), str(dep)


class KubeStore:
    """Indexes updated by the watch threads; readers do single dict lookups (atomic under the GIL)."""

    def __init__(self, max_pods: int = 20000, max_services: int = 20000, max_replicasets: int = 20000,
                 annotation_allowlist: Iterable[str] = ()) -> None:
        self.max_pods, self.max_services, self.max_replicasets = max_pods, max_services, max_replicasets
        self.annotation_allowlist = tuple(annotation_allowlist)
        self.pods: dict[str, PodMeta] = {}
        self.pod_by_container: dict[str, tuple[str, PodContainer]] = {}
        self.pod_by_ip: dict[str, str] = {}
        self.services: dict[tuple[str, str], ServiceMeta] = {}
        self.service_by_ip: dict[str, tuple[str, str]] = {}
        self.replicasets: dict[tuple[str, str], str] = {}
        self.dropped = {"pod": 0, "service": 0, "replicaset": 0}
        self.generation = 0
        self._lock = threading.Lock()

    # --- pods ---
    def _index_pod(self, pod: PodMeta) -> None:
        for c in pod.containers:
            self.pod_by_container[c.container_id] = (pod.uid, c)
        if not pod.host_network:
            for ip in pod.ips:
                self.pod_by_ip[ip] = pod.uid

    def _unindex_pod(self, pod: PodMeta) -> None:
        for c in pod.containers:
            if self.pod_by_container.get(c.container_id, ("",))[0] == pod.uid:
                del self.pod_by_container[c.container_id]
        for ip in pod.ips:
            if self.pod_by_ip.get(ip) == pod.uid:
                del self.pod_by_ip[ip]

    def apply_pod(self, kind: str, obj: Mapping[str, Any]) -> None:
        pod = pod_from_json(obj, self.annotation_allowlist)
        with self._lock:
            old = self.pods.get(pod.uid)
            if old is not None:
                self._unindex_pod(old)
            if kind == "DELETED":
                self.pods.pop(pod.uid, None)
            elif old is None and len(self.pods) >= self.max_pods:
                self.dropped["pod"] += 1
                return
            else:
                self.pods[pod.uid] = pod
                self._index_pod(pod)
            self.generation += 1

    def replace_pods(self, items: Iterable[Mapping[str, Any]]) -> None:
        pods: dict[str, PodMeta] = {}
        for obj in items:
            if len(pods) >= self.max_pods:
                self.dropped["pod"] += 1
                continue
            pod = pod_from_json(obj, self.annotation_allowlist)
            pods[pod.uid] = pod
        with self._lock:
            self.pods, self.pod_by_container, self.pod_by_ip = pods, {}, {}
            for pod in pods.values():
                self._index_pod(pod)
            self.generation += 1

    # --- services ---
    def apply_service(self, kind: str, obj: Mapping[str, Any]) -> None:
        svc = service_from_json(obj)
        key = (svc.namespace, svc.name)
        with self._lock:
            old = self.services.pop(key, None)
            for ip in old.cluster_ips if old else ():
                self.service_by_ip.pop(ip, None)
            if kind != "DELETED":
                if old is None and len(self.services) >= self.max_services:
                    self.dropped["service"] += 1
                    return
                self.services[key] = svc
                for ip in svc.cluster_ips:
                    self.service_by_ip[ip] = key
            self.generation += 1

    def replace_services(self, items: Iterable[Mapping[str, Any]]) -> None:
        services: dict[tuple[str, str], ServiceMeta] = {}
        for obj in items:
            if len(services) >= self.max_services:
                self.dropped["service"] += 1
                continue
            svc = service_from_json(obj)
            services[(svc.namespace, svc.name)] = svc
        with self._lock:
            self.services = services
            self.service_by_ip = {ip: k for k, s in services.items() for ip in s.cluster_ips}
            self.generation += 1

    # --- replicasets ---
    def apply_replicaset(self, kind: str, obj: Mapping[str, Any]) -> None:
        key, dep = replicaset_owner(obj)
        with self._lock:
            if kind == "DELETED":
                self.replicasets.pop(key, None)
            elif key in self.replicasets or len(self.replicasets) < self.max_replicasets:
                self.replicasets[key] = dep
            else:
                self.dropped["replicaset"] += 1
                return
            self.generation += 1

    def replace_replicasets(self, items: Iterable[Mapping[str, Any]]) -> None:
        fresh: dict[tuple[str, str], str] = {}
        for obj in items:
            if len(fresh) >= self.max_replicasets:
                self.dropped["replicaset"] += 1
                continue
            key, dep = replicaset_owner(obj)
            fresh[key] = dep
        with self._lock:
            self.replicasets = fresh
            self.generation += 1

    # --- queries ---
    def workload(self, pod: PodMeta) -> tuple[str, str]:
        """(kind, name) of the pod's top owner: ReplicaSet -> Deployment when the chain is known,
        Job -> CronJob when the Job's name is one a CronJob gives (cronjob_of)."""
        if pod.owner_kind == "ReplicaSet":
            dep = self.replicasets.get((pod.namespace, pod.owner_name), "")
            return ("Deployment", dep) if dep else ("ReplicaSet", pod.owner_name)
        if pod.owner_kind == "Job" and (cron := cronjob_of(pod.owner_name)):
            return "CronJob", cron
        return pod.owner_kind, pod.owner_name

    def services_for(self, pod: PodMeta) -> list[ServiceMeta]:
        labels = dict(pod.labels)
        return [s for (ns, _), s in list(self.services.items())
                if ns == pod.namespace and s.selector and all(labels.get(k) == v for k, v in s.selector)]
