"""ApiServer: the API's own asyncio loop in a daemon thread; start, stop, hot settings, liveness."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time

from aiohttp import web

from telegen.api.app import build_routes
from telegen.api.context import ApiContext, Limits
from telegen.api.middleware import Dispatcher
from telegen.api.protocol import GuardedServer, loop_exception_handler
from telegen.config import SelfTelemetryConfig, parse_listen
from telegen.control import AgentControl
from telegen.threads import NamedThread

log = logging.getLogger(__name__)

HEARTBEAT_SECONDS = 0.25
WEDGED_AFTER_SECONDS = 5.0


def split_listen(listen: str) -> tuple[str, int]:
    """parse_listen, plus port 0 (an ephemeral port) which tests and embedders may ask for."""
    if listen.endswith(":0"):
        host, _ = parse_listen(listen[:-1] + "1")
        return host, 0
    return parse_listen(listen)


class ApiServer:
    """Serves the self-telemetry API from its own thread; never blocks the pipeline."""

    def __init__(
        self, control: AgentControl, settings: SelfTelemetryConfig, limits: Limits | None = None
    ) -> None:
        self._ctx = ApiContext(control, settings, limits or Limits())
        self._table = build_routes()
        self._listen = settings.listen
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.ServerRunner | None = None
        self._bound: tuple[str, int] | None = None
        self._beat = time.monotonic()
        self._registered = False

    @property
    def bound_address(self) -> tuple[str, int]:
        """(host, port) actually bound; with port 0 in the listen address, the port chosen."""
        if self._bound is None:
            raise RuntimeError("the API server is not listening")
        return self._bound

    @property
    def settings(self) -> SelfTelemetryConfig:
        return self._ctx.settings

    def start(self, timeout: float = 10.0) -> None:
        """Bind and serve; returns once listening. Raises OSError naming the address if it cannot bind."""
        if self._thread is not None:
            raise RuntimeError("the API server was already started")
        host, port = split_listen(self._listen)
        ready = threading.Event()
        failure: list[BaseException] = []
        self._thread = NamedThread(target=self._run, args=(host, port, ready, failure),
                                        name="telegen-api", daemon=True)
        self._thread.start()
        if not ready.wait(timeout):
            raise OSError(f"API server did not start listening on {self._listen!r} within {timeout:g}s")
        if failure:
            self._thread.join(timeout)
            self._thread = None
            exc = failure[0]
            if isinstance(exc, OSError):
                raise OSError(exc.errno, f"cannot listen on {self._listen!r} (self_telemetry.listen): "
                                         f"{exc.strerror or exc}") from exc
            raise exc
        self._register_metrics()
        log.info("API listening on %s:%d", *self.bound_address)

    def stop(self, timeout: float = 5.0) -> None:
        """Close the listener and open connections, end the loop thread, free the executor."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if self._runner is not None and loop.is_running():
            fut = asyncio.run_coroutine_threadsafe(self._runner.cleanup(), loop)
            with contextlib.suppress(Exception):
                fut.result(timeout)
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        self._ctx.executor.shutdown(wait=False, cancel_futures=True)
        if self._registered:
            with contextlib.suppress(KeyError):
                self._ctx.control.registry.unregister(self._ctx.metrics)
            self._registered = False
        self._thread = None
        self._bound = None

    def apply_settings(self, settings: SelfTelemetryConfig) -> None:
        """Hot reload of auth, rate limit, CORS and debug; the listener stays as it is.

        A listen change needs a restart of this server; the agent reports it as restart_required.
        """
        if settings.listen != self._listen:
            log.info("self_telemetry.listen changed to %r; it takes effect on restart", settings.listen)
        self._ctx.settings = settings  # one reference swap: each request sees old or new, never a mix

    def healthy(self) -> tuple[bool, str]:
        """(False, reason) when the API thread died or its loop stopped turning (wedged)."""
        if self._thread is None or not self._thread.is_alive():
            return False, "api server thread is not running"
        lag = time.monotonic() - self._beat
        if lag > WEDGED_AFTER_SECONDS:
            return False, f"api event loop wedged: no progress for {lag:.0f}s"
        return True, ""

    def _register_metrics(self) -> None:
        try:
            self._ctx.control.registry.register(self._ctx.metrics)
            self._registered = True
        except ValueError as exc:  # already registered by a previous server on this registry
            log.warning("API metrics not registered: %s", exc)

    def _run(self, host: str, port: int, ready: threading.Event, failure: list[BaseException]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        loop.set_exception_handler(loop_exception_handler)
        asyncio.set_event_loop(loop)
        self._ctx.api_thread_ident = threading.get_ident()
        try:
            loop.run_until_complete(self._listen_on(host, port))
        except BaseException as exc:
            failure.append(exc)
            ready.set()
            loop.close()
            return
        heartbeat = loop.create_task(self._heartbeat())
        ready.set()
        try:
            loop.run_forever()
        finally:
            heartbeat.cancel()
            with contextlib.suppress(BaseException):
                loop.run_until_complete(asyncio.gather(heartbeat, return_exceptions=True))
            loop.close()

    async def _listen_on(self, host: str, port: int) -> None:
        limits = self._ctx.limits
        server = GuardedServer(Dispatcher(self._ctx, self._table), client_timeout=limits.client_timeout,
                               max_line=limits.header_bytes, handler_cancellation=True)
        runner = web.ServerRunner(server, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, host or None, port, reuse_address=True)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        sockets = runner.addresses
        first = sockets[0] if sockets else (host, port)
        self._bound = (str(first[0]), int(first[1]))

    async def _heartbeat(self) -> None:
        while True:
            self._beat = time.monotonic()
            await asyncio.sleep(HEARTBEAT_SECONDS)
