"""/healthz (liveness) and /ready (readiness); their 503 bodies are their own, not the error form."""

from __future__ import annotations

from aiohttp import web

from telegen.api.context import ApiContext
from telegen.api.responses import ApiError, json_response

READY_CHECKS = ("ebpf", "otlp", "discovery")


async def healthz(request: web.BaseRequest, ctx: ApiContext) -> web.StreamResponse:
    try:
        ok, reason = await ctx.call(ctx.control.health)
    except ApiError as exc:
        ok, reason = False, exc.message  # an agent that cannot answer in time is not live
    if ok:
        return json_response({"status": "ok"})
    return json_response({"status": "unhealthy", "reason": reason or "unknown"}, 503)


async def ready(request: web.BaseRequest, ctx: ApiContext) -> web.StreamResponse:
    try:
        checks = dict(await ctx.call(ctx.control.readiness))
    except ApiError as exc:
        checks = {name: f"failed: {exc.message}" for name in READY_CHECKS}
    for name in READY_CHECKS:
        checks.setdefault(name, "failed: not reported")
    good = all(value in ("ok", "disabled") for value in checks.values())
    body = {"status": "ready" if good else "not_ready", "checks": checks}
    return json_response(body, 200 if good else 503)
