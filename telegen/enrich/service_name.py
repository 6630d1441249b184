"""service.name / service.namespace / service.instance.id by the documented precedence."""

from __future__ import annotations

from telegen.discovery.docker import ContainerMeta
from telegen.discovery.kube_store import OTEL_ANNOTATION_PREFIX, PodMeta
from telegen.discovery.procfs import ProcessInfo

NAME_LABELS = ("app.kubernetes.io/name", "app")


def otel_env(proc: ProcessInfo | None) -> dict[str, str]:
    """service.* keys a process set for itself through OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES."""
    out: dict[str, str] = {}
    if proc is None:
        return out
    env = dict(proc.otel_env)
    for item in env.get("OTEL_RESOURCE_ATTRIBUTES", "").split(","):
        key, sep, val = item.partition("=")
        if sep and key.strip() in ("service.name", "service.namespace") and val.strip():
            out[key.strip()] = val.strip()
    if env.get("OTEL_SERVICE_NAME", "").strip():
        out["service.name"] = env["OTEL_SERVICE_NAME"].strip()
    return out


def service_identity(pod: PodMeta | None, workload: tuple[str, str], k8s_container: str,
                     docker: ContainerMeta | None, proc: ProcessInfo | None,
                     host_name: str) -> tuple[str, str, str, str]:
    """(service.name, where it came from, service.namespace, service.instance.id)."""
    env = otel_env(proc)
    name, source = "", ""
    candidates: list[tuple[str, str]] = []
    if pod is not None:
        candidates.append((pod.annotation(OTEL_ANNOTATION_PREFIX + "service.name"), "pod annotation"))
    candidates.append((env.get("service.name", ""), "process environment"))
    if pod is not None:
        candidates += [(pod.label(k), f"pod label {k}") for k in NAME_LABELS]
        candidates += [(workload[1], f"k8s {workload[0].lower()}"), (pod.name, "k8s pod")]
    if docker is not None:
        candidates += [(docker.compose_service, "compose service"), (docker.name, "container name")]
    if proc is not None:
        candidates.append((proc.exe_name, "executable"))
    for value, where in candidates:
        if value:
            name, source = value, where
            break
    if not name:
        name, source = "unknown_service", "default"

    namespace = ""
    if pod is not None:
        namespace = pod.annotation(OTEL_ANNOTATION_PREFIX + "service.namespace")
    namespace = namespace or env.get("service.namespace", "")
    if not namespace and pod is not None:
        namespace = pod.namespace
    if not namespace and docker is not None:
        namespace = docker.compose_project

    if pod is not None:
        instance = f"{pod.namespace}.{pod.name}.{k8s_container}" if k8s_container else pod.uid
    elif docker is not None:
        instance = docker.id
    elif proc is not None:
        instance = f"{host_name}:{proc.pid}:{proc.start_ticks}"
    else:
        instance = ""
    return name, source, namespace, instance
