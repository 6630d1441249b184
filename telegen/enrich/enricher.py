"""pid/cgroup id -> OpenTelemetry resource (process, container, pod, service, host, cloud), cached."""

from __future__ import annotations

import platform
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path

from telegen.discovery.cgroup import (
    CgroupIdIndex,
    ContainerRef,
    container_from_lines,
    parse_cgroup_path,
    read_proc_cgroup,
)
from telegen.discovery.docker import ContainerMeta, DockerWatcher
from telegen.discovery.kube_store import KubeStore, PodMeta
from telegen.discovery.procfs import ProcessTable
from telegen.enrich.misses import MissCounter
from telegen.enrich.peers import PeerResolver
from telegen.enrich.service_name import service_identity
from telegen.signals import AttrValue, LogRecordItem, Resource, SpanRecord, make_resource

_GO_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "armv7l": "arm32",
            "i686": "x86", "i386": "x86", "ppc64le": "ppc64", "s390x": "s390x"}
_WORKLOAD_ATTR = {"Deployment": "k8s.deployment.name", "ReplicaSet": "k8s.replicaset.name",
                  "StatefulSet": "k8s.statefulset.name", "DaemonSet": "k8s.daemonset.name",
                  "Job": "k8s.job.name", "CronJob": "k8s.cronjob.name"}


def host_attributes(node_name: str | None = None) -> dict[str, AttrValue]:
    machine = platform.machine()
    return {"host.name": node_name or socket.gethostname(), "host.arch": _GO_ARCH.get(machine, machine),
            "os.type": "linux"}


def split_image(image: str) -> tuple[str, str]:
    """'registry:5000/app:1.2@sha256:..' -> ('registry:5000/app', '1.2')."""
    image = image.split("@", 1)[0]
    slash = image.rfind("/")
    colon = image.rfind(":")
    if colon > slash:
        return image[:colon], image[colon + 1 :]
    return image, ""


class Enricher:
    """Answers from caches only; an incomplete answer is recomputed when metadata changes."""

    def __init__(self, processes: ProcessTable, cgroup_ids: CgroupIdIndex | None = None,
                 docker: DockerWatcher | None = None, kube: KubeStore | None = None,
                 node_name: str | None = None, cluster_name: str = "",
                 label_allowlist: Iterable[str] = (), annotation_allowlist: Iterable[str] = (),
                 cache_size: int = 16384, ttl: float = 10.0, incomplete_ttl: float = 2.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.processes = processes
        self.proc_root = Path(processes.proc_root)
        self.cgroup_ids = cgroup_ids
        self.docker = docker
        self.kube = kube
        self.peers = PeerResolver(kube, docker) if kube is not None or docker is not None else None
        self.cluster_name = cluster_name
        self.labels = tuple(label_allowlist)
        self.annotations = tuple(annotation_allowlist)
        self.host = host_attributes(node_name)
        self.node_name = node_name or ""
        self.cache_size, self.ttl, self.incomplete_ttl = cache_size, ttl, incomplete_ttl
        self.misses = MissCounter()
        self._clock = clock
        self._extra: dict[str, AttrValue] = {}
        self._extra_gen = 0
        # (pid, cgroup_id) -> (resource, expires, complete, generation)
        self._cache: OrderedDict[tuple[int, int], tuple[Resource, float, bool, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.lookups = self.computed = 0

    def set_extra(self, attrs: dict[str, str]) -> None:
        """Attributes every resource carries that arrive late (cloud.*): existing entries recompute."""
        self._extra = dict(attrs)
        self._extra_gen += 1
        with self._lock:
            self._cache.clear()

    def _generation(self) -> int:
        docker = self.docker.generation if self.docker is not None else 0  # an empty cache is still a cache
        kube = self.kube.generation if self.kube is not None else 0
        return docker + kube + self._extra_gen

    def cache_len(self) -> int:
        return len(self._cache)

    def resource_for(self, pid: int, cgroup_id: int = 0) -> Resource:
        self.lookups += 1
        key = (pid, cgroup_id)
        now = self._clock()
        gen = self._generation()
        hit = self._cache.get(key)
        if hit is not None:
            res, expires, complete, seen_gen = hit
            if now < expires and (complete or seen_gen == gen):
                return res
        res, complete = self._compute(pid, cgroup_id)
        with self._lock:
            self._cache[key] = (res, now + (self.ttl if complete else self.incomplete_ttl), complete, gen)
            self._cache.move_to_end(key)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return res

    def enrich_spans(self, spans: list[SpanRecord]) -> None:
        memo: dict[tuple[int, int], Resource] = {}
        peers = self.peers
        if peers is not None:
            peers.refresh()
        for span in spans:
            key = (span.pid, span.cgroup_id)
            res = memo.get(key)
            if res is None:
                res = memo[key] = self.resource_for(span.pid, span.cgroup_id)
            span.resource = res if not span.resource else make_resource({**dict(res), **dict(span.resource)})
            if peers is not None and (renamed := peers.resolve(span.attributes)) is not None:
                # server.address changed: RED and the encoder work the attributes out again
                span.attributes, span.metric_attrs, span.base_attrs = renamed, None, None

    def enrich_logs(self, logs: list[LogRecordItem]) -> None:
        memo: dict[tuple[int, int], Resource] = {}
        for item in logs:
            key = (item.pid, item.cgroup_id)
            res = memo.get(key)
            if res is None:
                res = memo[key] = self.resource_for(item.pid, item.cgroup_id)
            item.resource = res if not item.resource else make_resource({**dict(res), **dict(item.resource)})

    # --- the actual resolution (cache miss path) ---
    def _container_ref(self, pid: int, cgroup_id: int) -> ContainerRef | None:
        if cgroup_id and self.cgroup_ids is not None and self.cgroup_ids.available:
            path = self.cgroup_ids.path(cgroup_id)
            if path is None:
                self.misses.miss("cgroup")
            else:
                ref = parse_cgroup_path(path)
                if ref is not None:
                    return ref
        # No v2 id, or the v2 path names no container (v1 hosts): the pid's own cgroup lines
        return container_from_lines(read_proc_cgroup(self.proc_root, pid)) if pid else None

    def _compute(self, pid: int, cgroup_id: int) -> tuple[Resource, bool]:
        self.computed += 1
        attrs: dict[str, AttrValue] = dict(self.host)
        attrs.update(self._extra)
        complete = True
        proc = self.processes.get(pid) if pid > 0 else None
        if pid > 0 and proc is None:
            self.misses.miss("procfs")
            complete = False
        ref = self._container_ref(pid, cgroup_id)
        pod: PodMeta | None = None
        k8s_container, k8s_image = "", ""
        dmeta: ContainerMeta | None = None
        if ref is not None:
            attrs["container.id"] = ref.container_id
            if ref.runtime:
                attrs["container.runtime"] = ref.runtime
            if self.kube is not None:
                hit = self.kube.pod_by_container.get(ref.container_id)
                pod = self.kube.pods.get(hit[0]) if hit else (self.kube.pods.get(ref.pod_uid)
                                                               if ref.pod_uid else None)
                if hit:
                    k8s_container, k8s_image = hit[1].name, hit[1].image
                if ref.pod_uid and (pod is None or not hit):
                    self.misses.miss("kubernetes")
                    complete = False
            if self.docker is not None and ref.runtime in ("docker", ""):
                dmeta = self.docker.get(ref.container_id)
                if dmeta is None and ref.runtime == "docker" and pod is None:
                    self.misses.miss("docker")
                    complete = False
        elif self.docker is not None and pid > 0:
            dmeta = self.docker.by_pid(pid)
            if dmeta is not None:
                attrs["container.id"] = dmeta.id
        if proc is not None:
            attrs.update({"process.pid": proc.pid, "process.parent_pid": proc.ppid,
                          "process.executable.name": proc.exe_name, "process.executable.path": proc.exe_path,
                          "process.command": proc.command, "process.command_line": proc.command_line,
                          "process.owner": proc.user})
        elif pid > 0:
            attrs["process.pid"] = pid
        workload = ("", "")
        if pod is not None and self.kube is not None:
            workload = self.kube.workload(pod)
            attrs.update({"k8s.namespace.name": pod.namespace, "k8s.pod.name": pod.name,
                          "k8s.pod.uid": pod.uid,
                          "k8s.node.name": pod.node or self.node_name, "k8s.container.name": k8s_container})
            if workload[0] in _WORKLOAD_ATTR:
                attrs[_WORKLOAD_ATTR[workload[0]]] = workload[1]
            if pod.owner_kind in ("ReplicaSet", "Job"):  # the owner under a Deployment or a CronJob
                attrs[_WORKLOAD_ATTR[pod.owner_kind]] = pod.owner_name
            for k, v in pod.labels:
                if k in self.labels:
                    attrs[f"k8s.pod.label.{k}"] = v
            for k, v in pod.annotations:
                if k in self.annotations:
                    attrs[f"k8s.pod.annotation.{k}"] = v
            if k8s_image:
                attrs["container.image.name"], tag = split_image(k8s_image)
                if tag:
                    attrs["container.image.tags"] = tag
        if self.kube is not None and self.cluster_name:
            attrs["k8s.cluster.name"] = self.cluster_name
        if dmeta is not None:
            attrs["container.name"] = dmeta.name
            name, tag = split_image(dmeta.image)
            attrs.setdefault("container.image.name", name)
            if tag:
                attrs.setdefault("container.image.tags", tag)
            for k, v in dmeta.labels:
                attrs[f"container.label.{k}"] = v
        elif pod is not None and k8s_container:
            attrs["container.name"] = k8s_container
        name, _source, namespace, instance = service_identity(
            pod, workload, k8s_container, dmeta, proc, str(self.host["host.name"]))
        attrs.update({"service.name": name, "service.namespace": namespace, "service.instance.id": instance})
        return make_resource(attrs), complete
