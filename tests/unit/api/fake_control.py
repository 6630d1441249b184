"""A stand-in AgentControl with settable snapshots, health, readiness, reload and flush."""

from __future__ import annotations

import copy
import threading
import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from telegen.config import Config, ConfigError, validate
from telegen.control import FlushResult, ReloadApplyError, ReloadResult

STATUS = {
    "version": "0.1.0", "commit": "unknown", "built": "unknown",
    "uptime_seconds": 87330, "mode": "agent",
    "host": {"name": "node-1", "os": "linux", "arch": "amd64", "kernel": "6.18.44"},
    "ebpf": {"enabled": True, "programs_loaded": 15, "maps_created": 25, "ringbuf_size": 16777216},
    "profiling": {"enabled": False, "sample_rate": 99, "profiles_collected": 0},
    "export": {"endpoint": "127.0.0.1:4317", "connected": True, "last_export": "2026-01-15T10:30:00Z",
               "spans_exported": 123456, "metrics_exported": 789012},
    "discovery": {"kubernetes": True, "docker": True, "pods_discovered": 45, "containers_discovered": 78},
}
EBPF = {
    "enabled": True,
    "kernel": {"release": "6.18.44", "btf": True, "kprobes": False, "headers": "linked:/usr/src/x"},
    "programs": [{"name": "trace_http_request", "type": "tracepoint", "target": "syscalls:sys_enter_write",
                  "attached": True, "id": 124, "reason": "kprobes not available in this kernel"}],
    "maps": [{"name": "connection_map", "type": "hash", "entries": 1234, "max_entries": 100000}],
    "ringbuf": {"size": 16777216, "events_received": 1234567, "events_lost": 0},
}
_Q = {"size": 1, "capacity": 10000, "exported": 5, "dropped": 0}
EXPORT = {
    "endpoint": "127.0.0.1:4317", "protocol": "grpc", "tls": False, "compression": "gzip",
    "connected": True, "last_export": "2026-01-15T10:30:00Z", "last_error": None,
    "queues": {"traces": dict(_Q), "metrics": dict(_Q), "logs": dict(_Q)},
}
DISCOVERY = {
    "kubernetes": {"enabled": True, "connected": True, "cluster": "prod", "namespace": "monitoring",
                   "node": "node-1", "pods_watched": 145, "services_watched": 32},
    "docker": {"enabled": True, "connected": True, "containers": 12},
    "cloud": None,
    "discovered_services": [{"name": "frontend", "namespace": "default", "instances": 3, "ports": [80, 443]}],
}
TOPOLOGY = {
    "nodes": [{"id": "default/frontend", "kind": "deployment", "namespace": "default"},
              {"id": "default/api", "kind": "deployment", "namespace": "default"}],
    "edges": [{"source": "default/frontend", "target": "default/api", "port": 8080, "protocol": "http",
               "connections": 12, "requests": 3400, "errors": 3, "p50_ms": 4.1, "p99_ms": 31.0}],
    "window_seconds": 300,
}


class FakeControl:
    def __init__(self, config: Config | None = None) -> None:
        self.registry = CollectorRegistry()
        self.spans = Counter("telegen_spans_collected", "spans", registry=self.registry)
        self.spans.inc(3)
        self._config = config or validate({})
        self.snapshots: dict[str, dict[str, Any]] = {
            "status": copy.deepcopy(STATUS), "ebpf": copy.deepcopy(EBPF), "export": copy.deepcopy(EXPORT),
            "discovery": copy.deepcopy(DISCOVERY), "topology": copy.deepcopy(TOPOLOGY),
        }
        self.snapshot_delay = 0.0
        self.health_result: tuple[bool, str] = (True, "")
        self.readiness_result = {"ebpf": "ok", "otlp": "ok", "discovery": "disabled"}
        self.reload_error: Exception | None = None
        self.reload_result = ReloadResult(changed=["otlp.endpoint"], restart_required=[])
        self.next_config: Config | None = None
        self.flush_result = FlushResult(ok=True, flushed={"traces": 128, "metrics": 64, "logs": 256})
        self.calls: list[str] = []
        self._lock = threading.Lock()

    def config(self) -> Config:
        return self._config

    def snapshot(self, section: str) -> dict[str, Any]:
        self.calls.append(f"snapshot:{section}")
        if self.snapshot_delay:
            time.sleep(self.snapshot_delay)
        return copy.deepcopy(self.snapshots[section])

    def health(self) -> tuple[bool, str]:
        return self.health_result

    def readiness(self) -> dict[str, str]:
        return dict(self.readiness_result)

    def reload(self) -> ReloadResult:
        self.calls.append("reload")
        if isinstance(self.reload_error, ConfigError | ReloadApplyError):
            raise self.reload_error
        if self.next_config is not None:
            self._config = self.next_config
        return self.reload_result

    def flush(self, timeout: float) -> FlushResult:
        self.calls.append(f"flush:{timeout:g}")
        return self.flush_result
