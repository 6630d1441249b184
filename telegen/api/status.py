"""/status, /status/ebpf, /status/export, /status/discovery, /status/topology and /config.

Bodies come from the snapshots the stages publish; the API only formats them. The one thing
it derives: `uptime` (Go duration) from `uptime_seconds` when the snapshot gives only the number.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from telegen.api.context import ApiContext
from telegen.api.redact import redact
from telegen.api.responses import ApiError, json_response
from telegen.timefmt import go_duration


async def status(request: web.BaseRequest, ctx: ApiContext) -> web.StreamResponse:
    body = await ctx.snapshot("status")
    seconds = body.get("uptime_seconds")
    if "uptime" not in body and isinstance(seconds, int | float):
        body["uptime"] = go_duration(seconds)
    return json_response(body)


async def ebpf(request: web.BaseRequest, ctx: ApiContext) -> web.StreamResponse:
    return json_response(await ctx.snapshot("ebpf"))


async def export(request: web.BaseRequest, ctx: ApiContext) -> web.StreamResponse:
    return json_response(await ctx.snapshot("export"))


async def discovery(request: web.BaseRequest, ctx: ApiContext) -> web.StreamResponse:
    return json_response(await ctx.snapshot("discovery"))


async def topology(request: web.BaseRequest, ctx: ApiContext) -> web.StreamResponse:
    fmt = request.query.get("format", "json")
    if fmt not in ("json", "mermaid"):
        raise ApiError(400, "format must be 'json' or 'mermaid'", {"format": fmt[:100]})
    body = await ctx.snapshot("topology")
    body.setdefault("nodes", [])
    body.setdefault("edges", [])
    if fmt == "mermaid":
        return web.Response(text=mermaid(body), content_type="text/plain", charset="utf-8")
    return json_response(body)


async def config(request: web.BaseRequest, ctx: ApiContext) -> web.StreamResponse:
    running = await ctx.call(ctx.control.config)
    return json_response(redact(running.model_dump(mode="json")))


def _node_id(name: str, ids: dict[str, str]) -> str:
    """Mermaid ids must be plain words; the workload name goes in the label."""
    if name not in ids:
        ids[name] = f"n{len(ids)}"
    return ids[name]


def _label(text: str) -> str:
    return '"' + text.replace('"', "#quot;") + '"'


def mermaid(topology: dict[str, Any]) -> str:
    """`graph LR` source of the same service map: one node per workload, edges labelled."""
    ids: dict[str, str] = {}
    lines = ["graph LR"]
    for node in topology.get("nodes", []):
        name = str(node.get("id", ""))
        lines.append(f"    {_node_id(name, ids)}[{_label(name)}]")
    for edge in topology.get("edges", []):
        src, dst = str(edge.get("source", "")), str(edge.get("target", ""))
        for name in (src, dst):
            if name not in ids:
                lines.append(f"    {_node_id(name, ids)}[{_label(name)}]")
        parts = [str(edge.get("protocol", "tcp"))]
        if edge.get("port") is not None:
            parts[0] += f":{edge['port']}"
        if edge.get("connections"):
            parts.append(f"{edge['connections']} conn")
        if edge.get("requests"):
            parts.append(f"{edge['requests']} req")
        if edge.get("errors"):
            parts.append(f"{edge['errors']} err")
        if edge.get("p99_ms") is not None:
            parts.append(f"p99 {edge['p99_ms']}ms")
        label = _label(", ".join(parts))
        lines.append(f"    {_node_id(src, ids)} -->|{label}| {_node_id(dst, ids)}")
    return "\n".join(lines) + "\n"
