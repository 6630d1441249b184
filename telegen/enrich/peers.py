"""Peer IPs -> names, from the watch-fed caches (no DNS, no API call): a Kubernetes service or
pod first, else a Docker container on a Docker network (bridge or user-defined)."""

from __future__ import annotations

from telegen.discovery.docker import DockerWatcher
from telegen.discovery.kube_store import KubeStore
from telegen.signals import Attributes


def peer_name(store: KubeStore, ip: str) -> tuple[str, str] | None:
    """(name, namespace) of a ClusterIP's service, or of a pod (its service when one selects it)."""
    key = store.service_by_ip.get(ip)
    if key is not None:
        return key[1], key[0]
    uid = store.pod_by_ip.get(ip)
    pod = store.pods.get(uid) if uid else None
    if pod is None:
        return None
    services = store.services_for(pod)
    return (services[0].name, pod.namespace) if services else (pod.name, pod.namespace)


def container_peer_name(docker: DockerWatcher, ip: str) -> tuple[str, str] | None:
    """(name, "") of the running container holding ip on a Docker network: no namespace."""
    meta = docker.by_ip(ip)
    return (meta.peer_name(), "") if meta is not None and meta.running else None


class PeerResolver:
    """Memoises the lookups per cache generation: a pod IP's service costs one selector scan."""

    def __init__(self, store: KubeStore | None, docker: DockerWatcher | None = None, capacity: int = 8192) -> None:
        self.store = store
        self.docker = docker
        self.capacity = capacity
        self._memo: dict[str, tuple[str, str] | None] = {}
        self._generation = -1

    def refresh(self) -> None:
        """Forget what the caches have changed since (once per batch, not per span)."""
        generation = ((self.store.generation if self.store is not None else 0)
                      + (self.docker.generation if self.docker is not None else 0))
        if self._generation != generation or len(self._memo) >= self.capacity:
            self._memo = {}
            self._generation = generation

    def lookup(self, ip: str) -> tuple[str, str] | None:
        """The name for ip as of the last refresh()."""
        if ip in self._memo:
            return self._memo[ip]
        got = peer_name(self.store, ip) if self.store is not None else None
        if got is None and self.docker is not None:
            got = container_peer_name(self.docker, ip)
        self._memo[ip] = got
        return got

    def resolve(self, attrs: Attributes) -> Attributes | None:
        """server.address / client.address IPs rewritten to names (the IP stays in
        network.peer.address), in a new dict: spans share theirs. None when nothing changed."""
        out: Attributes | None = None
        for key in ("server.address", "client.address"):
            ip = attrs.get(key)
            if not isinstance(ip, str) or not ip or not (ip[0].isdigit() or ":" in ip):
                continue
            got = self.lookup(ip)
            if got is None:
                continue
            if out is None:
                out = attrs.copy()
            out.setdefault("network.peer.address", ip)
            out[key] = got[0]
            if got[1]:
                out.setdefault(key.split(".")[0] + ".k8s.namespace.name", got[1])
        return out
