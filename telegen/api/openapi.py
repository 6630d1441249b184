"""/openapi.json: an OpenAPI 3.1 document built from the route table and the running settings.

Security, 401 and 429 answers are described as the server applies them right now (auth and
rate limit on or off), so a schema-driven fuzzer's expectations match the live server.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from telegen import __version__ as telegen_version
from telegen.api import openapi_schemas as s
from telegen.api.context import ApiContext
from telegen.api.responses import json_response
from telegen.api.routes import API_PREFIX, canonical
from telegen.config import SelfTelemetryConfig

JSON = "application/json"
TEXT = "text/plain"
PPROF = "application/octet-stream"


@dataclass(frozen=True)
class Op:
    summary: str
    ok: dict[str, s.Schema]  # 200 answer: media type -> schema
    params: list[dict[str, Any]] = field(default_factory=list)
    errors: tuple[int, ...] = ()  # statuses beyond the common ones
    snapshot: bool = True  # may answer 503 when agent state is late


def _q(name: str, schema: s.Schema, description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


_BINARY: s.Schema = {"type": "string", "format": "binary"}
_TEXT: s.Schema = {"type": "string"}
_PROBE_OK = {JSON: s.HEALTH}
_DBG = (403, 404)
_UNSUPPORTED = Op("Not available in CPython (501)", {}, errors=(403, 404, 501), snapshot=False)

OPS: dict[str, dict[str, Op]] = {
    "/healthz": {"get": Op("Liveness", _PROBE_OK, errors=(503,))},
    "/ready": {"get": Op("Readiness", {JSON: s.READY}, errors=(503,))},
    "/metrics": {"get": Op("Prometheus exposition (text 0.0.4, or OpenMetrics by Accept)",
                           {TEXT: {"type": "string"}, "application/openmetrics-text": {"type": "string"}})},
    "/status": {"get": Op("Agent summary", {JSON: s.STATUS})},
    "/status/ebpf": {"get": Op("BPF programs, maps and ring buffer", {JSON: s.EBPF})},
    "/status/export": {"get": Op("Export endpoint and queues", {JSON: s.EXPORT})},
    "/status/discovery": {"get": Op("Discovery sources and services", {JSON: s.DISCOVERY})},
    "/status/topology": {"get": Op(
        "Service map seen by this node", {JSON: s.TOPOLOGY, TEXT: {"type": "string"}},
        [_q("format", {"type": "string", "enum": ["json", "mermaid"]}, "mermaid: text/plain graph LR")],
        errors=(400,))},
    "/config": {"get": Op("Running configuration, secrets redacted", {JSON: s.CONFIG})},
    "/openapi.json": {"get": Op("This document", {JSON: {"type": "object"}}, snapshot=False)},
    "/admin/reload": {"post": Op("Re-read, validate and apply the config file", {JSON: s.RELOAD},
                                 errors=(400, 403, 413, 500))},
    "/admin/flush": {"post": Op(
        "Export everything queued and wait for the collector", {JSON: s.FLUSH},
        [_q("timeout", {"type": "number", "minimum": 0, "maximum": 60}, "seconds to wait (default 10)")],
        errors=(400, 403, 413))},
    "/debug/pprof/": {"get": Op("Index of the profiles", {JSON: s.PPROF_INDEX}, errors=_DBG, snapshot=False)},
    "/debug/pprof/profile": {"get": Op(
        "CPU profile (gzipped pprof profile.proto, or folded stacks)", {PPROF: _BINARY, TEXT: _TEXT},
        [_q("seconds", {"type": "integer", "minimum": 1, "maximum": 120}, "sampling time (default 30)"),
         _q("format", {"type": "string", "enum": ["pprof", "collapsed"]}, "collapsed: folded stacks")],
        errors=(400, 403, 404), snapshot=False)},
    "/debug/pprof/heap": {"get": Op(
        "Heap profile from tracemalloc (pprof, or top sites as text)", {PPROF: _BINARY, TEXT: _TEXT},
        [_q("format", {"type": "string", "enum": ["pprof", "text"]}, "text: top allocation sites")],
        errors=(400, 403, 404))},
    "/debug/pprof/goroutine": {"get": Op(
        "Stacks of every Python thread", {TEXT: {"type": "string"}},
        [_q("debug", {"type": "integer", "minimum": 0, "maximum": 2}, "2: add the types of locals")],
        errors=(400, 403, 404), snapshot=False)},
    "/debug/pprof/threadcreate": {"get": Op("The agent's threads", {JSON: s.THREADS}, errors=_DBG,
                                            snapshot=False)},
    "/debug/pprof/block": {"get": _UNSUPPORTED},
    "/debug/pprof/mutex": {"get": _UNSUPPORTED},
    "/debug/pprof/trace": {"get": _UNSUPPORTED},
    "/debug/vars": {"get": Op("expvar-like process variables", {JSON: s.VARS}, errors=(403, 404))},
}

_DESCRIPTIONS = {200: "OK", 400: "Invalid request", 401: "Missing or wrong bearer token",
                 403: "Forbidden", 404: "Not found (or debug disabled)", 413: "Body too large",
                 429: "Rate limited", 500: "Internal error", 501: "Not implemented",
                 503: "State not available in time"}
_PROBES = {"/healthz": s.HEALTH, "/ready": s.READY}


def _error(status: int) -> dict[str, Any]:
    out: dict[str, Any] = {"description": _DESCRIPTIONS[status],
                           "content": {JSON: {"schema": {"$ref": "#/components/schemas/Error"}}}}
    header = {401: "WWW-Authenticate", 429: "Retry-After"}.get(status)
    if header:
        schema = {"type": "integer", "minimum": 1} if status == 429 else {"type": "string"}
        out["headers"] = {header: {"required": True, "schema": schema}}
    return out


def _operation(path: str, op: Op, settings: SelfTelemetryConfig) -> dict[str, Any]:
    exempt = path in settings.auth.exempt_paths
    responses: dict[str, Any] = {}
    if op.ok:
        responses["200"] = {"description": "OK",
                            "content": {mt: {"schema": schema} for mt, schema in op.ok.items()}}
    statuses = set(op.errors) | {500}
    if op.snapshot:
        statuses.add(503)
    if settings.auth.enabled and not exempt:
        statuses.add(401)
    if settings.rate_limit.enabled and path not in _PROBES:
        statuses.add(429)
    for status in sorted(statuses):
        if status == 503 and path in _PROBES:  # probes answer 503 with their own body
            responses["503"] = {"description": "Not live / not ready",
                                "content": {JSON: {"schema": _PROBES[path]}}}
        else:
            responses[str(status)] = _error(status)
    out: dict[str, Any] = {"summary": op.summary, "responses": responses,
                           "operationId": path.strip("/").replace("/", "_").replace(".", "_") or "root"}
    if op.params:
        out["parameters"] = op.params
    if settings.auth.enabled:
        out["security"] = [] if exempt else [{"bearerAuth": []}]
    return out


def build_document(settings: SelfTelemetryConfig) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for path, methods in OPS.items():
        if path.startswith("/debug/") and not settings.debug.enabled:
            continue  # not served while debug is off: the document describes the live server
        for prefix in ("", API_PREFIX):
            item = {}
            for method, op in methods.items():
                operation = _operation(path, op, settings)
                if prefix:
                    operation["operationId"] = "v1_" + operation["operationId"]
                item[method] = operation
            paths[prefix + path] = item
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "telegen self-telemetry API", "version": telegen_version,
                 "description": "Status, health, metrics, admin and debug endpoints of the telegen agent. "
                                "Every path is also served under /api/v1."},
        "paths": paths,
        "components": {"schemas": {"Error": s.ERROR}},
    }
    if settings.auth.enabled:
        doc["components"]["securitySchemes"] = {"bearerAuth": {"type": "http", "scheme": "bearer"}}
    return doc


async def document(request: web.BaseRequest, ctx: ApiContext) -> web.StreamResponse:
    return json_response(build_document(ctx.settings))


def documented_operations(doc: dict[str, Any]) -> set[tuple[str, str]]:
    """(path, METHOD) pairs the document describes, for the route-parity test."""
    return {(path, method.upper()) for path, item in doc["paths"].items() for method in item}


__all__ = ["OPS", "build_document", "canonical", "document", "documented_operations"]
