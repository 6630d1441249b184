"""aiohttp's connection handler with the contract's limits and its error body for unparsable input.

Requests that never reach the dispatcher (70 KB request line, binary garbage, oversized header
lines) are answered here, in the same JSON error form, and the connection is closed.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.web_protocol import RequestHandler

from telegen.api.responses import error_bytes


class GuardedRequestHandler(RequestHandler):
    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:
            raise ConnectionError("response already started; cannot send an error body")
        if isinstance(exc, LineTooLong):
            status, text = 431, "request line or header field too long"
        elif status >= 500:
            text = "the request could not be handled"
        else:
            text = "malformed HTTP request"
        self.logger.debug("rejected request from %s: %s", request.remote, exc)
        resp = web.Response(status=status, body=error_bytes(status, text),
                            content_type="application/json", charset="utf-8")
        resp.force_close()
        return resp


class GuardedServer(web.Server):
    """Builds GuardedRequestHandler connections; keepalive_timeout doubles as the header deadline.

    aiohttp arms the keep-alive timer when a connection opens and after every answer, and fires
    it only while the connection waits for a complete request head, so a client trickling its
    headers (slowloris) or idling is closed when it expires.
    """

    def __init__(self, handler: Any, *, client_timeout: float, max_line: int, **kwargs: Any) -> None:
        # lingering_time 0: an unread upload closes the connection instead of being drained.
        super().__init__(handler, keepalive_timeout=client_timeout, max_line_size=max_line,
                         max_field_size=max_line, max_headers=100, lingering_time=0, **kwargs)

    def __call__(self) -> RequestHandler:
        return GuardedRequestHandler(self, loop=self._loop, **self._kwargs)


def loop_exception_handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """Hostile clients produce connection errors; keep them out of the error log."""
    exc = context.get("exception")
    if isinstance(exc, ConnectionError | OSError):
        return
    loop.default_exception_handler(context)
