"""The request pipeline: limits, rate limit, CORS, auth, routing (404/405), client rules, errors.

Order matters: hostile input is refused before anything else, the rate limit runs before the
token check so tokens cannot be guessed at line rate, and preflights pass without a token
because browsers never send one on them.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web

from telegen.api import cors
from telegen.api.auth import bearer_token, fingerprint, is_loopback, token_matches
from telegen.api.context import ApiContext
from telegen.api.ratelimit import TokenBuckets
from telegen.api.responses import ApiError, error_response
from telegen.api.routes import Route, RouteTable, canonical
from telegen.config import AuthConfig

log = logging.getLogger(__name__)
audit_log = logging.getLogger("telegen.api.audit")

PROBE_PATHS = frozenset({"/healthz", "/ready"})
ADMIN_ACTIONS = frozenset({"reload", "flush"})
AUDIT_OUTCOMES = {200: "ok", 400: "invalid", 401: "unauthorized", 403: "forbidden", 404: "not_found",
                  405: "method_not_allowed", 413: "invalid", 429: "rate_limited", 500: "failed",
                  503: "unavailable"}


class Dispatcher:
    def __init__(self, ctx: ApiContext, table: RouteTable) -> None:
        self._ctx = ctx
        self._table = table
        self._buckets = TokenBuckets()
        self._admin_buckets = TokenBuckets()

    async def __call__(self, request: web.BaseRequest) -> web.StreamResponse:
        settings = self._ctx.settings  # one consistent view for the whole request
        origin = request.headers.get("Origin")
        resolved = self._table.resolve(request.path, settings.debug.enabled)
        template = resolved[1] if resolved else "unmatched"
        try:
            response = await self._pipeline(request, resolved)
        except ApiError as exc:
            response = error_response(exc)
        except asyncio.CancelledError:
            raise
        except Exception:
            # Logged here with the trace; the client sees a generic message, never internals.
            log.exception("handler for %s %s failed", request.method, template)
            response = error_response(ApiError(500, "the request could not be handled"))
        if not cors.is_preflight(request):
            cors.decorate(response, settings.cors, origin)
        if request.body_exists and not request.content.at_eof():
            # Unread body left on the socket: close rather than drain an upload we refused.
            response.force_close()
        self._ctx.metrics.count_request(template, response.status)
        self._audit(request, response.status, settings.auth)
        return response

    async def _pipeline(
        self, request: web.BaseRequest, resolved: tuple[Route, str] | None
    ) -> web.StreamResponse:
        settings = self._ctx.settings
        path = canonical(request.path)
        self._check_header_block(request)
        self._rate_limit(request, path)
        if cors.is_preflight(request):
            return self._preflight(request, resolved)
        if request.method != "OPTIONS":
            self._authenticate(request, path)
        if resolved is None:
            raise ApiError(404, f"no such path: {request.path[:200]}")
        route = resolved[0]
        if request.method == "OPTIONS":
            resp = web.Response(status=204)
            resp.headers["Allow"] = ", ".join(route.allowed())
            return resp
        handler = route.handler_for(request.method)
        if handler is None:
            raise ApiError(405, f"{request.method[:20]} is not allowed on {path}",
                           {"allowed": route.allowed()}, {"Allow": ", ".join(route.allowed())})
        if path.startswith(("/admin/", "/debug/")) and not settings.auth.enabled \
                and not is_loopback(request.remote):
            raise ApiError(403, "admin and debug endpoints answer only loopback clients while auth is "
                                "disabled; enable self_telemetry.auth to use them remotely")
        await self._read_body(request)
        return await handler(request, self._ctx)

    def _check_header_block(self, request: web.BaseRequest) -> None:
        size = len(request.method) + len(request.raw_path) + 12
        size += sum(len(name) + len(value) + 4 for name, value in request.raw_headers)
        if size > self._ctx.limits.header_bytes:
            raise ApiError(431, f"request header block over {self._ctx.limits.header_bytes} bytes",
                           {"limit_bytes": self._ctx.limits.header_bytes})

    def _rate_limit(self, request: web.BaseRequest, path: str) -> None:
        limits = self._ctx.settings.rate_limit
        if not limits.enabled or path in PROBE_PATHS:
            return
        client = request.remote or "unknown"
        if path.startswith("/admin/"):
            wait = self._admin_buckets.take(client, limits.admin_requests_per_second, limits.admin_burst)
        else:
            wait = self._buckets.take(client, limits.requests_per_second, limits.burst)
        if wait:
            raise ApiError(429, f"rate limit exceeded; retry in {wait}s", {"retry_after_seconds": wait},
                           {"Retry-After": str(wait)})

    def _preflight(self, request: web.BaseRequest, resolved: tuple[Route, str] | None) -> web.StreamResponse:
        settings = self._ctx.settings
        origin = request.headers.get("Origin", "")
        value = cors.allowed_origin(settings.cors, origin)
        if value is None:
            raise ApiError(403, "CORS preflight from an origin that is not allowed", {"origin": origin[:200]})
        if resolved is None:
            raise ApiError(404, f"no such path: {request.path[:200]}")
        return cors.preflight_response(value, resolved[0].allowed())

    def _authenticate(self, request: web.BaseRequest, path: str) -> None:
        auth = self._ctx.settings.auth
        if not auth.enabled or path in auth.exempt_paths or request.path in auth.exempt_paths:
            return
        header = request.headers.get("Authorization")
        if not token_matches(bearer_token(header), auth.bearer_token):
            reason = "missing" if not header else "invalid"
            raise ApiError(401, f"a valid bearer token is required ({reason} Authorization header)", {},
                           {"WWW-Authenticate": 'Bearer realm="telegen"'})

    async def _read_body(self, request: web.BaseRequest) -> None:
        """Bound the body (no handler needs one) so a huge or trickled upload cannot hold a slot."""
        limit = self._ctx.limits.body_bytes
        if request.content_length is not None and request.content_length > limit:
            raise ApiError(413, f"request body over {limit} bytes", {"limit_bytes": limit})
        if not request.body_exists:
            return
        received = 0
        try:
            async with asyncio.timeout(self._ctx.limits.client_timeout):
                async for chunk in request.content.iter_chunked(64 * 1024):
                    received += len(chunk)
                    if received > limit:
                        raise ApiError(413, f"request body over {limit} bytes", {"limit_bytes": limit})
        except TimeoutError:
            raise ApiError(408, "request body not received in time") from None

    def _audit(self, request: web.BaseRequest, status: int, auth: AuthConfig) -> None:
        path = canonical(request.path)
        if not path.startswith("/admin/") or request.method == "OPTIONS":
            return
        action = path.removeprefix("/admin/")
        action = action if action in ADMIN_ACTIONS else "unknown"
        outcome = AUDIT_OUTCOMES.get(status, f"status_{status // 100}xx")
        token = bearer_token(request.headers.get("Authorization")) if auth.enabled else None
        who = fingerprint(token) if token and token_matches(token, auth.bearer_token) else "anonymous"
        if token and who == "anonymous":
            who = "invalid:" + fingerprint(token)
        self._ctx.metrics.count_admin(action, outcome)
        audit_log.info("audit time=%s client=%s token=%s method=%s path=%s outcome=%s status=%d",
                       time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), request.remote, who,
                       request.method[:20], request.path[:200], outcome, status)
