"""JSON Schemas of the API's bodies, as the contract defines them (used by openapi.py)."""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]


def obj(props: dict[str, Schema], required: list[str] | None = None) -> Schema:
    """An object whose listed properties are required (all of them unless told)."""
    return {"type": "object", "properties": props,
            "required": list(props) if required is None else required}


def nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


STR: Schema = {"type": "string"}
INT: Schema = {"type": "integer"}
NUM: Schema = {"type": "number"}
BOOL: Schema = {"type": "boolean"}
TIME: Schema = nullable({"type": "string", "description": "RFC 3339 UTC with Z"})
COUNTS: Schema = {"type": "object", "additionalProperties": INT}
CHECK: Schema = {"type": "string", "pattern": "^(ok|disabled|failed: .+)$"}

ERROR: Schema = obj({
    "error": {"type": "string", "enum": ["invalid_request", "unauthorized", "forbidden", "not_found",
                                         "method_not_allowed", "rate_limited", "internal_error",
                                         "not_implemented", "service_unavailable"]},
    "message": STR,
    "details": {"type": "object"},
})

HEALTH: Schema = obj({"status": {"type": "string", "enum": ["ok", "unhealthy"]}, "reason": STR}, ["status"])

READY: Schema = obj({
    "status": {"type": "string", "enum": ["ready", "not_ready"]},
    "checks": obj({"ebpf": CHECK, "otlp": CHECK, "discovery": CHECK}) | {"additionalProperties": CHECK},
})

STATUS: Schema = obj({
    "version": STR, "commit": STR, "built": STR, "uptime": STR, "uptime_seconds": NUM,
    "mode": STR,
    "host": obj({"name": STR, "os": STR, "arch": STR, "kernel": STR}),
    "ebpf": obj({"enabled": BOOL, "programs_loaded": INT, "maps_created": INT, "ringbuf_size": INT}),
    "profiling": obj({"enabled": BOOL, "sample_rate": INT, "profiles_collected": INT}),
    "export": obj({"endpoint": nullable(STR), "connected": BOOL, "last_export": TIME,
                   "spans_exported": INT, "metrics_exported": INT}),
    "discovery": obj({"kubernetes": BOOL, "docker": BOOL, "pods_discovered": INT,
                      "containers_discovered": INT}),
})
# telegen extension, optional: how long this process took to get its capture attached, by phase
STATUS["properties"]["startup"] = obj({
    "seconds": nullable(NUM) | {"description": "process start to capture attached and pipeline running"},
    "phases": {"type": "array", "items": obj({"name": STR, "start": NUM, "seconds": NUM})
               | {"additionalProperties": NUM}},
})
# telegen extension, optional: the configured CPU scheduling mode and, as the kernel reports
# it, how many of the agent's threads run under each policy and with each slice now
STATUS["properties"]["cpu_scheduling"] = obj({
    "mode": {"type": "string", "enum": ["background", "normal"]},
    "threads": COUNTS,
    "slices_ms": COUNTS,
})

PROGRAM_TYPES = ["kprobe", "kretprobe", "tracepoint", "raw_tracepoint", "uprobe", "uretprobe",
                 "perf_event", "socket_filter", "sched_cls"]

EBPF: Schema = obj({
    "enabled": BOOL,
    "kernel": obj({"release": STR, "btf": BOOL, "kprobes": BOOL, "headers": nullable(STR)}),
    "programs": {"type": "array", "items": obj({
        "name": STR, "type": {"type": "string", "enum": PROGRAM_TYPES}, "target": STR,
        "attached": BOOL, "id": nullable(INT), "reason": nullable(STR)})},
    "maps": {"type": "array", "items": obj({"name": STR, "type": STR, "entries": nullable(INT),
                                            "max_entries": INT})},
    "ringbuf": obj({"size": INT, "events_received": INT, "events_lost": INT}),
})

QUEUE: Schema = obj({"size": INT, "capacity": INT, "exported": INT, "dropped": INT})

EXPORT: Schema = obj({
    "endpoint": nullable(STR), "protocol": STR, "tls": BOOL, "compression": STR,
    "connected": BOOL, "last_export": TIME, "last_error": nullable(STR),
    "queues": obj({"traces": QUEUE, "metrics": QUEUE, "logs": QUEUE}),
})

DISCOVERY: Schema = obj({
    "kubernetes": obj({"enabled": BOOL, "connected": BOOL, "cluster": nullable(STR),
                       "namespace": nullable(STR), "node": nullable(STR), "pods_watched": INT,
                       "services_watched": INT}, ["enabled", "connected"]),
    "docker": obj({"enabled": BOOL, "connected": BOOL, "containers": INT}, ["enabled", "connected"]),
    "cloud": nullable(obj({"provider": STR, "region": nullable(STR), "instance_id": nullable(STR)},
                          ["provider"])),
    "discovered_services": {"type": "array", "items": obj({
        "name": STR, "namespace": nullable(STR), "instances": INT,
        "ports": {"type": "array", "items": INT}}, ["name"])},
})

TOPOLOGY: Schema = obj({
    "nodes": {"type": "array", "items": obj({"id": STR, "kind": STR, "namespace": nullable(STR)}, ["id"])},
    "edges": {"type": "array", "items": obj({
        "source": STR, "target": STR, "port": nullable(INT), "protocol": STR, "connections": INT,
        "requests": INT, "errors": INT, "p50_ms": nullable(NUM), "p99_ms": nullable(NUM)},
        ["source", "target"])},
    "window_seconds": NUM,
}, ["nodes", "edges"])

CONFIG: Schema = {"type": "object", "description": "the running configuration, secrets as [REDACTED]"}

RELOAD: Schema = obj({"status": {"type": "string", "enum": ["ok"]}, "message": STR,
                      "changed": {"type": "array", "items": STR},
                      "restart_required": {"type": "array", "items": STR}})

FLUSH: Schema = obj({"status": {"type": "string", "enum": ["ok"]}, "flushed": COUNTS})

PPROF_INDEX: Schema = obj({"profiles": {"type": "array", "items": obj({"name": STR, "path": STR,
                                                                         "description": STR})}})

THREADS: Schema = obj({"count": INT, "threads": {"type": "array", "items": obj({
    "name": STR, "ident": nullable(INT), "native_id": nullable(INT), "daemon": BOOL, "alive": BOOL})}})

VARS: Schema = obj({
    "cmdline": {"type": "array", "items": STR},
    "memstats": obj({"Alloc": INT, "TotalAlloc": nullable(INT), "Sys": INT, "NumGC": INT}),
    "threads": INT, "python": STR,
}, ["cmdline", "memstats", "threads", "python"])
