"""Debug endpoints: pprof CPU and heap profiles (decoded back), stacks, threads, 501s, vars."""

from __future__ import annotations

import threading
import time
import tracemalloc
from collections.abc import Iterator

import pytest

from telegen.api.pprof import ProfileBuilder
from tests.unit.api.helpers import Client, assert_error, running, settings
from tests.unit.api.pprof_decode import check_consistent, decode_profile


@pytest.fixture
def dbg() -> Iterator[Client]:
    was_tracing = tracemalloc.is_tracing()
    with running(st=settings(debug={"enabled": True})) as (client, _, _):
        yield client
    if not was_tracing:
        tracemalloc.stop()


def _busy_work(stop: threading.Event) -> None:
    def spin_the_cpu() -> int:
        total = 0
        for i in range(20_000):
            total += i * i
        return total
    while not stop.is_set():
        spin_the_cpu()


@pytest.fixture
def busy_thread() -> Iterator[None]:
    stop = threading.Event()
    thread = threading.Thread(target=_busy_work, args=(stop,), name="busy-worker", daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(5)


def test_encoder_round_trip() -> None:
    builder = ProfileBuilder([("samples", "count"), ("cpu", "nanoseconds")], ("cpu", "nanoseconds"),
                             10_000_000)
    builder.add_sample([("leaf", "a.py", 1, 3), ("root", "b.py", 10, 12)], [2, 20_000_000], {"thread": "t"})
    builder.add_sample([("leaf", "a.py", 1, 3)], [1, 10_000_000])
    profile = decode_profile(builder.build(123, 456))
    check_consistent(profile)
    assert profile["sample_types"] == [("samples", "count"), ("cpu", "nanoseconds")]
    assert profile["period"] == 10_000_000 and profile["period_type"] == ("cpu", "nanoseconds")
    assert profile["time_nanos"] == 123 and profile["duration_nanos"] == 456
    first = profile["samples"][0]
    assert first["values"] == [2, 20_000_000] and first["labels"] == {"thread": "t"}
    leaf = profile["locations"][first["location_ids"][0]]
    assert profile["functions"][leaf["lines"][0][0]]["name"] == "leaf"
    assert len(profile["functions"]) == 2  # interned


def test_cpu_profile_is_valid_pprof_with_the_busy_thread(dbg: Client, busy_thread: None) -> None:
    resp = dbg.get("/debug/pprof/profile?seconds=1", timeout=15)
    assert resp.status == 200
    assert resp.header("Content-Type") == "application/octet-stream"
    assert resp.body[:2] == b"\x1f\x8b"  # gzip
    profile = decode_profile(resp.body)
    check_consistent(profile)
    assert profile["sample_types"] == [("samples", "count"), ("cpu", "nanoseconds")]
    assert 0.9e9 < profile["duration_nanos"] < 3e9
    names = {f["name"] for f in profile["functions"].values()}
    assert any("spin_the_cpu" in n for n in names)
    threads = {s["labels"].get("thread") for s in profile["samples"]}
    assert "busy-worker" in threads
    busy = sum(s["values"][0] for s in profile["samples"] if s["labels"].get("thread") == "busy-worker")
    assert busy >= 30  # ~100 Hz for 1 s on a thread that is always on CPU


def test_cpu_profile_collapsed(dbg: Client, busy_thread: None) -> None:
    resp = dbg.get("/api/v1/debug/pprof/profile?seconds=1&format=collapsed", timeout=15)
    assert resp.status == 200 and resp.header("Content-Type") == "text/plain; charset=utf-8"
    lines = resp.body.decode().splitlines()
    assert lines
    for line in lines:
        stack, _, count = line.rpartition(" ")
        assert stack and count.isdigit()
    assert any(line.startswith("busy-worker;") and "spin_the_cpu" in line for line in lines)


def test_one_cpu_profile_at_a_time(dbg: Client) -> None:
    results: list[int] = []
    first = threading.Thread(target=lambda: results.append(dbg.get("/debug/pprof/profile?seconds=2").status))
    first.start()
    time.sleep(0.5)
    second = dbg.get("/debug/pprof/profile?seconds=1")
    assert_error(second, 429, "rate_limited")
    assert int(second.header("Retry-After") or "0") >= 1
    first.join(10)
    assert results == [200]


@pytest.mark.parametrize("query", ["seconds=0", "seconds=121", "seconds=abc", "seconds=1.5", "format=svg"])
def test_cpu_profile_bad_params(dbg: Client, query: str) -> None:
    assert_error(dbg.get(f"/debug/pprof/profile?{query}"), 400, "invalid_request")


def test_heap_profile_pprof_and_text(dbg: Client) -> None:
    resp = dbg.get("/debug/pprof/heap")
    assert resp.status == 200 and resp.body[:2] == b"\x1f\x8b"
    keep = [bytearray(1000) for _ in range(200)]  # something live to see on the next snapshot
    profile = decode_profile(dbg.get("/debug/pprof/heap").body)
    check_consistent(profile)
    assert profile["sample_types"] == [("inuse_objects", "count"), ("inuse_space", "bytes")]
    text = dbg.get("/debug/pprof/heap?format=text")
    assert text.status == 200 and text.body.startswith(b"# tracemalloc:")
    assert keep


def test_goroutine_stacks(dbg: Client, busy_thread: None) -> None:
    text = dbg.get("/debug/pprof/goroutine").body.decode()
    assert '"busy-worker"' in text and "MainThread" in text and 'File "' in text
    full = dbg.get("/debug/pprof/goroutine?debug=2").body.decode()
    assert "locals of" in full
    assert_error(dbg.get("/debug/pprof/goroutine?debug=3"), 400, "invalid_request")


def test_threadcreate(dbg: Client) -> None:
    body = dbg.get("/debug/pprof/threadcreate").json()
    names = {t["name"] for t in body["threads"]}
    assert "telegen-api" in names and "MainThread" in names
    assert body["count"] == len(body["threads"])
    assert all({"ident", "native_id", "daemon"} <= t.keys() for t in body["threads"])


@pytest.mark.parametrize("name", ["block", "mutex", "trace"])
def test_unsupported_profiles_are_501(dbg: Client, name: str) -> None:
    body = assert_error(dbg.get(f"/debug/pprof/{name}"), 501, "not_implemented")
    assert "CPython" in body["message"]


def test_index_and_vars(dbg: Client) -> None:
    index = dbg.get("/debug/pprof/").json()
    assert {p["name"] for p in index["profiles"]} >= {"profile", "heap", "goroutine", "threadcreate"}
    body = dbg.get("/debug/vars").json()
    assert body["memstats"]["Alloc"] > 0 and body["memstats"]["Sys"] >= body["memstats"]["Alloc"]
    assert isinstance(body["memstats"]["NumGC"], int)
    assert body["threads"] >= 2 and body["python"].count(".") == 2
    assert isinstance(body["cmdline"], list)
