"""The route table: every path the API serves, bare and under /api/v1."""

from __future__ import annotations

from telegen.api import admin, debug, health, metrics, openapi, status
from telegen.api.routes import Route, RouteTable


def build_routes() -> RouteTable:
    return RouteTable([
        Route("/healthz", {"GET": health.healthz}),
        Route("/ready", {"GET": health.ready}),
        Route("/metrics", {"GET": metrics.metrics}),
        Route("/status", {"GET": status.status}),
        Route("/status/ebpf", {"GET": status.ebpf}),
        Route("/status/export", {"GET": status.export}),
        Route("/status/discovery", {"GET": status.discovery}),
        Route("/status/topology", {"GET": status.topology}, query=("format",)),
        Route("/config", {"GET": status.config}),
        Route("/openapi.json", {"GET": openapi.document}),
        Route("/admin/reload", {"POST": admin.reload}),
        Route("/admin/flush", {"POST": admin.flush}, query=("timeout",)),
        Route("/debug/pprof/", {"GET": debug.index}, debug=True),
        Route("/debug/pprof/profile", {"GET": debug.profile}, debug=True, query=("seconds", "format")),
        Route("/debug/pprof/heap", {"GET": debug.heap}, debug=True, query=("format",)),
        Route("/debug/pprof/goroutine", {"GET": debug.goroutine}, debug=True, query=("debug",)),
        Route("/debug/pprof/threadcreate", {"GET": debug.threadcreate}, debug=True),
        Route("/debug/pprof/block", {"GET": debug.unsupported}, debug=True),
        Route("/debug/pprof/mutex", {"GET": debug.unsupported}, debug=True),
        Route("/debug/pprof/trace", {"GET": debug.unsupported}, debug=True),
        Route("/debug/vars", {"GET": debug.variables}, debug=True),
    ])
