"""Peer IPs -> Kubernetes service or pod names, from the watch-fed store (no DNS, no API call)."""

from __future__ import annotations

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


class PeerResolver:
    """Memoises peer_name per store generation: a pod IP's service costs one selector scan."""

    def __init__(self, store: KubeStore, capacity: int = 8192) -> None:
        self.store = store
        self.capacity = capacity
        self._memo: dict[str, tuple[str, str] | None] = {}
        self._generation = -1

    def lookup(self, ip: str) -> tuple[str, str] | None:
        if self._generation != self.store.generation or len(self._memo) >= self.capacity:
            self._memo = {}
            self._generation = self.store.generation
        if ip in self._memo:
            return self._memo[ip]
        got = self._memo[ip] = peer_name(self.store, ip)
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
            out.setdefault(key.split(".")[0] + ".k8s.namespace.name", got[1])
        return out
