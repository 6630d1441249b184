"""/metrics: the agent registry in Prometheus text 0.0.4 or OpenMetrics, chosen by Accept."""

from __future__ import annotations

from aiohttp import web
from prometheus_client.exposition import choose_encoder

from telegen.api.context import ApiContext


async def metrics(request: web.BaseRequest, ctx: ApiContext) -> web.StreamResponse:
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    # Collectors read stage counters under their locks: collect off the loop, with the deadline.
    body = await ctx.call(encoder, ctx.control.registry)
    resp = web.Response(body=body)
    resp.headers["Content-Type"] = content_type
    return resp
