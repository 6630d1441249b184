"""The workloads seen on this node, for /status/discovery's discovered_services."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from telegen.discovery.cgroup import container_from_lines, read_proc_cgroup
from telegen.discovery.docker import DockerWatcher
from telegen.discovery.kube_store import KubeStore
from telegen.discovery.listeners import listening_ports
from telegen.discovery.procfs import ProcessTable


def discovered_services(kube: KubeStore | None, docker: DockerWatcher | None, processes: ProcessTable,
                        scan_listeners: bool = True) -> list[dict[str, Any]]:
    """Kubernetes services (else owners), Docker containers, bare processes with listening ports."""
    groups: dict[tuple[str, str], tuple[set[str], set[int]]] = {}

    def add(name: str, namespace: str, instance: str, ports: set[int] | tuple[int, ...]) -> None:
        inst, prt = groups.setdefault((namespace, name), (set(), set()))
        inst.add(instance)
        prt.update(ports)

    if kube is not None:
        for pod in list(kube.pods.values()):
            services = kube.services_for(pod)
            for svc in services:
                add(svc.name, svc.namespace, pod.uid, svc.ports)
            if not services:
                _kind, owner = kube.workload(pod)
                add(owner or pod.name, pod.namespace, pod.uid, pod.ports)
    listeners = listening_ports(processes.proc_root) if scan_listeners else {}
    container_pids: set[int] = set()
    if docker is not None:
        for c in docker.containers():
            if not c.running or (kube is not None and c.id in kube.pod_by_container):
                continue
            container_pids.add(c.pid)
            add(c.compose_service or c.name, c.compose_project, c.id, listeners.get(c.pid, set()))
    root = Path(processes.proc_root)
    for pid, ports in listeners.items():
        if pid in container_pids:
            continue
        ref = container_from_lines(read_proc_cgroup(root, pid))
        if ref is not None and ((docker is not None and docker.get(ref.container_id)) or
                                (kube is not None and ref.container_id in kube.pod_by_container)):
            continue  # a process inside a container already listed
        info = processes.get(pid)
        if info is not None:
            add(info.exe_name, "", str(pid), ports)
    return [{"name": name, "namespace": ns, "instances": len(inst), "ports": sorted(prt)}
            for (ns, name), (inst, prt) in sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0]))]
