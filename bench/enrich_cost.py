"""Enrichment cost per span (cached and uncached) and metadata cache memory with 5,000 pods; prints JSON.

Run: .venv/bin/python -m bench.enrich_cost   (not part of the test suite)
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from telegen.discovery.kube_store import KubeStore
from telegen.discovery.procfs import ProcessTable
from telegen.enrich.enricher import Enricher
from telegen.signals import SPAN_KIND_CLIENT, SpanRecord
from tests.fixtures.k8s_objects import cid, pod, replicaset, service, uid
from tests.fixtures.sizes import deep_size

PODS = 5000
PIDS = 200  # distinct processes sending spans


def build_proc(root: Path, template: Path) -> None:
    """PIDS fake processes, each in a containerd pod cgroup naming one of the pods."""
    for n in range(PIDS):
        d = root / str(10000 + n)
        shutil.copytree(template, d, symlinks=True)
        u = uid(n).replace("-", "_")
        (d / "cgroup").write_text(f"0::/kubepods.slice/kubepods-pod{u}.slice/cri-containerd-{cid(n)}.scope\n")


def main() -> None:
    repo = Path(__file__).resolve().parent.parent
    store = KubeStore()
    store.replace_replicasets([replicaset(f"rs-{i}", f"dep-{i}", namespace=f"ns{i % 20}")
                               for i in range(500)])
    store.replace_pods([pod(f"pod-{i}", uid(i), namespace=f"ns{i % 20}", ip=f"10.1.{i // 250}.{i % 250}",
                            container_id=cid(i), owner=("ReplicaSet", f"rs-{i % 500}"),
                            labels={"app": f"app-{i % 500}", "pod-template-hash": "abc123"},
                            annotations={"kubectl.kubernetes.io/last-applied-configuration": "x" * 1500},
                            )
                        for i in range(PODS)])
    store.replace_services([service(f"svc-{i}", namespace=f"ns{i % 20}",
                                    cluster_ip=f"10.96.{i // 250}.{i % 250}", selector={"app": f"app-{i}"})
                            for i in range(500)])
    store_bytes = deep_size((store.pods, store.pod_by_container, store.pod_by_ip, store.services,
                             store.service_by_ip, store.replicasets))
    with tempfile.TemporaryDirectory() as tmp:
        build_proc(Path(tmp), repo / "tests/fixtures/proc/bare_v1_host/4242")
        enricher = Enricher(ProcessTable(tmp), kube=store, node_name="node-1", cluster_name="bench")
        spans = [SpanRecord(os.urandom(16), os.urandom(8), b"", "GET /", SPAN_KIND_CLIENT, 1, 2,
                            {"server.address": f"10.96.0.{i % 250}", "server.port": 80},
                            pid=10000 + i % PIDS)
                 for i in range(20000)]
        t0 = time.perf_counter()
        for p in range(PIDS):  # cold: every (pid, cgroup) computed once
            enricher.resource_for(10000 + p)
        cold = (time.perf_counter() - t0) / PIDS
        batches = [spans[i:i + 512] for i in range(0, len(spans), 512)]
        t0 = time.perf_counter()
        for batch in batches:
            for s in batch:
                s.attributes["server.address"] = "10.96.0.1"
            enricher.enrich_spans(batch)
        warm = (time.perf_counter() - t0) / len(spans)
        cache_bytes = deep_size(enricher._cache)
    print(json.dumps({
        "pods": PODS, "pids": PIDS, "spans": len(spans),
        "uncached_resource_us": round(cold * 1e6, 2),
        "enrich_span_us_batched_cached": round(warm * 1e6, 3),
        "kube_store_bytes": store_bytes, "kube_store_bytes_per_pod": round(store_bytes / PODS),
        "resource_cache_bytes": cache_bytes, "resource_cache_entries": enricher.cache_len(),
        "python": sys.version.split()[0],
    }, indent=2))


if __name__ == "__main__":
    main()
