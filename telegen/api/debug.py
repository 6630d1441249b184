"""Debug endpoints: Python equivalents of Go's pprof and expvar (only when debug is enabled)."""

from __future__ import annotations

import asyncio
import gc
import platform
import sys
import threading
import time
import traceback
import tracemalloc

import psutil
from aiohttp import web

from telegen.api.context import ApiContext
from telegen.api.pprof import Frame, ProfileBuilder
from telegen.api.responses import ApiError, json_response
from telegen.api.sampler import collapsed, sample_cpu, stack_of

PPROF_TYPE = "application/octet-stream"
TRACEMALLOC_FRAMES = 32

PROFILES = {
    "profile": "CPU: the agent's Python threads sampled at 100 Hz, weighted by per-thread CPU time "
               "(?seconds=1..120, default 30; ?format=collapsed for folded stacks)",
    "heap": "live Python allocations traced by tracemalloc (started on first request); ?format=text",
    "goroutine": "stack of every Python thread as text; ?debug=2 adds the types of each frame's locals",
    "threadcreate": "the agent's threads: name, ident, native id, daemon (JSON)",
    "block": "not available: CPython has no blocking profile (501)",
    "mutex": "not available: CPython has no lock-contention profile (501)",
    "trace": "not available: CPython has no execution tracer like Go's (501)",
}

UNSUPPORTED = {
    "block": "CPython records no blocking events; use /debug/pprof/profile and /goroutine instead",
    "mutex": "CPython's locks are not instrumented for contention; there is no mutex profile",
    "trace": "CPython has no scheduler/GC event tracer equivalent to Go's runtime/trace",
}


def int_param(request: web.BaseRequest, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or not low <= int(raw) <= high:
        raise ApiError(400, f"{name} must be an integer from {low} to {high}", {name: raw[:100]})
    return int(raw)


def enum_param(request: web.BaseRequest, name: str, allowed: tuple[str, ...]) -> str:
    raw = request.query.get(name, allowed[0])
    if raw not in allowed:
        raise ApiError(400, f"{name} must be one of {', '.join(allowed)}", {name: raw[:100]})
    return raw


async def index(request: web.BaseRequest, ctx: ApiContext) -> web.StreamResponse:
    return json_response({"profiles": [{"name": n, "path": f"/debug/pprof/{n}", "description": d}
                                       for n, d in PROFILES.items()]})


async def profile(request: web.BaseRequest, ctx: ApiContext) -> web.StreamResponse:
    seconds = int_param(request, "seconds", 30, 1, 120)
    fmt = enum_param(request, "format", ("pprof", "collapsed"))
    if ctx.cpu_profile_running:
        raise ApiError(429, "a CPU profile is already being taken; one runs at a time", {},
                       {"Retry-After": str(max(1, seconds))})
    ctx.cpu_profile_running = True
    stop = threading.Event()
    try:
        samples = await asyncio.get_running_loop().run_in_executor(None, sample_cpu, seconds, stop)
    finally:
        stop.set()  # a client that went away cancels us: end the sampler too
        ctx.cpu_profile_running = False
    if fmt == "collapsed":
        return web.Response(text=collapsed(samples), content_type="text/plain", charset="utf-8")
    builder = ProfileBuilder([("samples", "count"), ("cpu", "nanoseconds")], ("cpu", "nanoseconds"),
                             1_000_000_000 // samples.hz)
    for (thread, stack), values in samples.stacks.items():
        builder.add_sample(list(stack), values, {"thread": thread})
    body = builder.build(samples.started_ns, samples.duration_ns, ["telegen python cpu profile"])
    return _pprof_response(body, "profile")


def _pprof_response(body: bytes, name: str) -> web.Response:
    resp = web.Response(body=body, content_type=PPROF_TYPE)
    resp.headers["Content-Disposition"] = f'attachment; filename="{name}.pb.gz"'
    return resp


def _heap_profile(fmt: str) -> tuple[bytes, str]:
    if not tracemalloc.is_tracing():
        tracemalloc.start(TRACEMALLOC_FRAMES)
    snapshot = tracemalloc.take_snapshot().filter_traces([
        tracemalloc.Filter(False, tracemalloc.__file__),
    ])
    if fmt == "text":
        stats = snapshot.statistics("lineno")[:50]
        lines = [f"{s.size} bytes in {s.count} blocks: {s.traceback[0].filename}:{s.traceback[0].lineno}"
                 for s in stats]
        current, peak = tracemalloc.get_traced_memory()
        header = f"# tracemalloc: {current} bytes traced now, peak {peak}\n"
        return (header + "\n".join(lines) + "\n").encode(), "text/plain; charset=utf-8"
    builder = ProfileBuilder([("inuse_objects", "count"), ("inuse_space", "bytes")], ("space", "bytes"), 1)
    for stat in snapshot.statistics("traceback"):
        # tracemalloc lists frames oldest first; pprof wants the leaf first. Line-level only.
        stack: list[Frame] = [(f"{frame.filename}:{frame.lineno}", frame.filename, 0, frame.lineno)
                              for frame in reversed(stat.traceback)]
        builder.add_sample(stack, [stat.count, stat.size])
    return builder.build(time.time_ns(), 0, ["telegen tracemalloc heap"]), PPROF_TYPE


async def heap(request: web.BaseRequest, ctx: ApiContext) -> web.StreamResponse:
    fmt = enum_param(request, "format", ("pprof", "text"))
    body, content_type = await ctx.call(_heap_profile, fmt, deadline=30.0)
    if fmt == "pprof":
        return _pprof_response(body, "heap")
    resp = web.Response(body=body)
    resp.headers["Content-Type"] = content_type
    return resp


def _thread_stacks(full: bool) -> str:
    threads = {t.ident: t for t in threading.enumerate()}
    out: list[str] = []
    for ident, frame in sorted(sys._current_frames().items()):
        thread = threads.get(ident)
        name = thread.name if thread else f"thread-{ident}"
        native = getattr(thread, "native_id", None)
        out.append(f'thread {ident} "{name}" native_id={native} daemon={thread.daemon if thread else None}:')
        for entry in traceback.extract_stack(frame):
            out.append(f'  File "{entry.filename}", line {entry.lineno}, in {entry.name}')
            if entry.line:
                out.append(f"    {entry.line}")
        if full:
            for _name, _file, _start, _line in stack_of(frame)[:1]:
                types = ", ".join(f"{k}={type(v).__name__}" for k, v in list(frame.f_locals.items())[:50])
                out.append(f"  locals of {_name}: {types}")
        out.append("")
    return "\n".join(out)


async def goroutine(request: web.BaseRequest, ctx: ApiContext) -> web.StreamResponse:
    level = int_param(request, "debug", 1, 0, 2)
    text = _thread_stacks(full=level >= 2)
    return web.Response(text=text, content_type="text/plain", charset="utf-8")


async def threadcreate(request: web.BaseRequest, ctx: ApiContext) -> web.StreamResponse:
    threads = [{"name": t.name, "ident": t.ident, "native_id": t.native_id, "daemon": t.daemon,
                "alive": t.is_alive()} for t in threading.enumerate()]
    return json_response({"count": len(threads), "threads": threads})


async def unsupported(request: web.BaseRequest, ctx: ApiContext) -> web.StreamResponse:
    name = request.path.rstrip("/").rsplit("/", 1)[-1]
    raise ApiError(501, UNSUPPORTED.get(name, "not available in CPython"), {"profile": name})


def _vars() -> dict[str, object]:
    mem = psutil.Process().memory_info()
    traced = tracemalloc.get_traced_memory()[0] if tracemalloc.is_tracing() else None
    return {
        "cmdline": list(sys.argv),
        "memstats": {"Alloc": mem.rss, "TotalAlloc": traced, "Sys": mem.vms,
                     "NumGC": sum(gen["collections"] for gen in gc.get_stats())},
        "threads": threading.active_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "gc_counts": list(gc.get_count()),
        "tracemalloc": tracemalloc.is_tracing(),
    }


async def variables(request: web.BaseRequest, ctx: ApiContext) -> web.StreamResponse:
    return json_response(await ctx.call(_vars))
