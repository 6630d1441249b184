"""POST /admin/reload and POST /admin/flush; the audit line and counter are written by the dispatcher."""

from __future__ import annotations

import math

from aiohttp import web

from telegen.api.context import ApiContext
from telegen.api.responses import ApiError, json_response
from telegen.config import ConfigError
from telegen.control import ReloadApplyError

RELOAD_DEADLINE = 30.0  # a reload rebuilds stages: longer than a snapshot, still bounded
FLUSH_DEFAULT = 10.0
FLUSH_MAX = 60.0


async def reload(request: web.BaseRequest, ctx: ApiContext) -> web.StreamResponse:
    try:
        result = await ctx.call(ctx.control.reload, deadline=RELOAD_DEADLINE)
    except ConfigError as exc:
        raise ApiError(400, "the new configuration is invalid; the running configuration is unchanged",
                       exc.problems) from None
    except ReloadApplyError as exc:
        raise ApiError(500, "applying the new configuration failed; the previous configuration was restored",
                       {"reason": str(exc)[:300]}) from None
    # The agent also calls ApiServer.apply_settings; doing it here too makes the API's own
    # auth/rate-limit/CORS take effect before this answer, whoever triggered the reload.
    try:
        running = await ctx.call(ctx.control.config)
        ctx.settings = running.self_telemetry
    except ApiError:
        pass
    return json_response({"status": "ok", "message": "Configuration reloaded",
                          "changed": list(result.changed), "restart_required": list(result.restart_required)})


def flush_timeout(raw: str | None) -> float:
    if raw is None:
        return FLUSH_DEFAULT
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not 0 <= value <= FLUSH_MAX:
        raise ApiError(400, f"timeout must be a number of seconds between 0 and {FLUSH_MAX:g}",
                       {"timeout": raw[:100]})
    return value


async def flush(request: web.BaseRequest, ctx: ApiContext) -> web.StreamResponse:
    timeout = flush_timeout(request.query.get("timeout"))
    result = await ctx.call(ctx.control.flush, timeout, deadline=timeout + 5.0)
    if not result.ok:
        raise ApiError(503, "the collector could not be reached in time; queued items are kept",
                       {"waiting": dict(result.waiting), "flushed": dict(result.flushed)})
    return json_response({"status": "ok", "flushed": dict(result.flushed)})
