"""DiscoveryStage: builds the sources config enables, feeds the Enricher, reports status."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from telegen.config import Config, SourceToggle
from telegen.discovery import cloud as cloudmod
from telegen.discovery.backoff import Backoff
from telegen.discovery.cgroup import CgroupIdIndex, find_cgroup2_mount
from telegen.discovery.docker import DockerWatcher
from telegen.discovery.kubernetes import KubernetesWatcher, credentials_available, own_namespace
from telegen.discovery.procfs import ProcessTable
from telegen.discovery.workloads import discovered_services
from telegen.enrich.enricher import Enricher
from telegen.threads import NamedThread

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DiscoveryOptions:
    """Settings not (yet) in Config: see docs/discovery.md for the proposed config keys."""

    kubeconfig: str | None = None
    label_allowlist: tuple[str, ...] = ()
    annotation_allowlist: tuple[str, ...] = ()
    docker_label_allowlist: tuple[str, ...] = ()
    docker_url: str = "unix:///var/run/docker.sock"
    cloud_base_urls: dict[str, str] = field(default_factory=dict)
    cloud_timeout: float = 1.0
    agent_namespace: str | None = None
    cgroup_root: str | None = None  # None: the cgroup2 mount from mountinfo
    sync_timeout: float = 30.0
    max_pods: int = 20000
    k8s_watch_timeout: int = 300
    k8s_read_timeout: float = 120.0
    backoff_initial: float = 0.8
    backoff_max: float = 30.0
    status_cache_seconds: float = 10.0

    @classmethod
    def from_config(cls, cfg: Config) -> DiscoveryOptions:
        d = cfg.discovery
        return cls(
            kubeconfig=d.kubernetes.kubeconfig or None, label_allowlist=d.kubernetes.label_allowlist,
            annotation_allowlist=d.kubernetes.annotation_allowlist, max_pods=d.kubernetes.max_pods,
            docker_url=d.docker.url, docker_label_allowlist=d.docker.label_allowlist,
            cloud_base_urls=dict(d.cloud.base_urls), cloud_timeout=d.cloud.timeout)


def _on(toggle: SourceToggle, auto: bool) -> bool:
    return auto if toggle.enabled == "auto" else bool(toggle.enabled)


def docker_answers(url: str) -> bool:
    """A unix socket that accepts a connection (a socket file left by a dead dockerd refuses it,
    and waiting on it would hold /ready for the whole sync timeout); other URLs: assume so."""
    if not url.startswith("unix://"):
        return True
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        try:
            sock.connect(url.removeprefix("unix://"))
        except FileNotFoundError:
            return False
        except OSError as exc:
            log.info("docker: %s does not answer (%s): Docker discovery stays off", url, exc.strerror or exc)
            return False
    return True


class _ObjectsCollector(Collector):
    def __init__(self, stage: DiscoveryStage) -> None:
        self.stage = stage

    def collect(self) -> Iterator[Metric]:
        fam = GaugeMetricFamily("telegen_discovery_objects", "Objects in the discovery caches",
                                labels=["source", "kind"])
        for (source, kind), n in sorted(self.stage.object_counts().items()):
            fam.add_metric([source, kind], n)
        yield fam


class DiscoveryStage:
    def __init__(self, config: Config, node_name: str | None, proc_root: str = "/proc",
                 sys_root: str = "/sys", options: DiscoveryOptions | None = None) -> None:
        self.config = config
        self.opts = opts = options or DiscoveryOptions()
        self.node_name = node_name
        self.proc_root, self.sys_root = proc_root, sys_root
        d = config.discovery
        self.docker_enabled = _on(d.docker, d.docker.enabled == "auto" and docker_answers(opts.docker_url))
        self.k8s_enabled = _on(d.kubernetes, credentials_available(opts.kubeconfig))
        self.cloud_enabled = _on(d.cloud, True)  # auto: DMI is local; a metadata call follows only on a match
        self.processes = ProcessTable(proc_root)
        self.cgroup_ids = CgroupIdIndex(opts.cgroup_root or find_cgroup2_mount(proc_root))
        self.docker = DockerWatcher(opts.docker_url, opts.docker_label_allowlist,
                                    backoff=Backoff(opts.backoff_initial, opts.backoff_max),
                                    ) if self.docker_enabled else None
        self.kube = KubernetesWatcher(
            node_name, opts.kubeconfig, annotation_allowlist=opts.annotation_allowlist,
            max_pods=opts.max_pods,
            watch_timeout=opts.k8s_watch_timeout, read_timeout=opts.k8s_read_timeout,
            backoff_initial=opts.backoff_initial, backoff_max=opts.backoff_max) if self.k8s_enabled else None
        self._enricher = Enricher(
            self.processes, self.cgroup_ids, self.docker, self.kube.store if self.kube is not None else None,
            node_name=node_name, cluster_name=config.cluster_name, label_allowlist=opts.label_allowlist,
            annotation_allowlist=opts.annotation_allowlist)
        self.cloud: cloudmod.CloudInfo | None = None
        self.cloud_done = threading.Event()
        self._started = 0.0
        self._partial_logged = False
        self._status_cache: tuple[float, list[dict[str, Any]]] = (-1e9, [])

    @property
    def enricher(self) -> Enricher:
        return self._enricher

    # --- lifecycle ---
    def start(self) -> None:
        self._started = time.monotonic()
        if self.cgroup_ids.available:
            self.cgroup_ids.rescan()
        if self.docker is not None:
            self.docker.start()
        if self.kube is not None:
            self.kube.start()
        if self.cloud_enabled:
            NamedThread(target=self._detect_cloud, name="telegen-cloud", daemon=True).start()
        else:
            self.cloud_done.set()

    def _detect_cloud(self) -> None:
        try:
            self.cloud = cloudmod.detect(self.sys_root, self.opts.cloud_base_urls, self.opts.cloud_timeout)
            if self.cloud is not None:
                self._enricher.set_extra(self.cloud.resource_attributes())
        finally:
            self.cloud_done.set()

    def stop(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        if self.kube is not None:
            self.kube.stop(max(0.1, deadline - time.monotonic()))
        if self.docker is not None:
            self.docker.stop(max(0.1, deadline - time.monotonic()))

    # --- health ---
    def readiness(self) -> str:
        d = self.config.discovery
        if not any(t.enabled for t in (d.kubernetes, d.docker, d.cloud)):
            return "disabled"
        waiting = []
        if self.kube is not None and not self.kube.synced:
            err = self.kube.last_error()
            waiting.append("kubernetes watch not synced" + (f" ({err})" if err else ""))
        if self.docker is not None and not self.docker.synced.is_set():
            err = self.docker.last_error
            waiting.append("docker not synced" + (f" ({err})" if err else ""))
        if not waiting:
            return "ok"
        if time.monotonic() - self._started >= self.opts.sync_timeout:
            if not self._partial_logged:
                self._partial_logged = True
                log.warning("discovery: %s after %.0f s; starting with partial metadata",
                            "; ".join(waiting), self.opts.sync_timeout)
            return "ok"
        return "failed: " + "; ".join(waiting)

    def healthy(self) -> bool:
        if not self._started:
            return True
        return (self.docker is None or self.docker.alive()) and (self.kube is None or self.kube.alive())

    # --- status ---
    def object_counts(self) -> dict[tuple[str, str], int]:
        out = {("procfs", "process"): len(self.processes), ("cgroup", "cgroup"): len(self.cgroup_ids)}
        if self.docker is not None:
            out[("docker", "container")] = len(self.docker)
        if self.kube is not None:
            s = self.kube.store
            out.update({("kubernetes", "pod"): len(s.pods), ("kubernetes", "service"): len(s.services),
                        ("kubernetes", "replicaset"): len(s.replicasets)})
        return out

    def discovered(self) -> list[dict[str, Any]]:
        at, cached = self._status_cache
        now = time.monotonic()
        if now - at < self.opts.status_cache_seconds:
            return cached
        got = discovered_services(self.kube.store if self.kube is not None else None, self.docker, self.processes)
        self._status_cache = (now, got)
        return got

    def status(self) -> dict[str, Any]:
        k = self.kube
        cloud = None
        if self.cloud is not None:
            cloud = {"provider": self.cloud.provider, "region": self.cloud.region,
                     "instance_id": self.cloud.instance_id}
        return {
            "kubernetes": {
                "enabled": self.k8s_enabled, "connected": k is not None and k.connected,
                "cluster": self.config.cluster_name or "unknown",
                "namespace": self.opts.agent_namespace or own_namespace(),
                "node": self.node_name or "", "pods_watched": len(k.store.pods) if k is not None else 0,
                "services_watched": len(k.store.services) if k is not None else 0,
            },
            "docker": {"enabled": self.docker_enabled,
                       "connected": self.docker is not None and self.docker.connected,
                       "containers": len(self.docker) if self.docker is not None else 0},
            "cloud": cloud,
            "discovered_services": self.discovered(),
        }

    def summary(self) -> dict[str, Any]:
        return {"kubernetes": self.k8s_enabled, "docker": self.docker_enabled,
                "pods_discovered": len(self.kube.store.pods) if self.kube is not None else 0,
                "containers_discovered": len(self.docker) if self.docker is not None else 0}

    def collectors(self) -> list[Collector]:
        return [_ObjectsCollector(self), self._enricher.misses]
