"""/healthz and /ready, and the server's own liveness."""

from __future__ import annotations

from telegen.api import ApiServer
from tests.unit.api.fake_control import FakeControl
from tests.unit.api.helpers import Client


def test_healthz_ok_and_unhealthy(api: tuple[Client, ApiServer, FakeControl]) -> None:
    client, _, control = api
    resp = client.get("/healthz")
    assert resp.status == 200 and resp.json() == {"status": "ok"}
    control.health_result = (False, "capture reader thread died")
    resp = client.get("/healthz")
    assert resp.status == 503
    assert resp.json() == {"status": "unhealthy", "reason": "capture reader thread died"}


def test_ready_states(api: tuple[Client, ApiServer, FakeControl]) -> None:
    client, _, control = api
    resp = client.get("/ready")
    assert resp.status == 200
    assert resp.json() == {"status": "ready", "checks": {"ebpf": "ok", "otlp": "ok", "discovery": "disabled"}}
    control.readiness_result = {"ebpf": "ok", "otlp": "failed: connection refused", "discovery": "ok"}
    resp = client.get("/api/v1/ready")
    assert resp.status == 503
    assert resp.json()["status"] == "not_ready"
    assert resp.json()["checks"]["otlp"] == "failed: connection refused"


def test_server_liveness_and_stop(api: tuple[Client, ApiServer, FakeControl]) -> None:
    _, server, _ = api
    assert server.healthy() == (True, "")
    server.stop()
    ok, reason = server.healthy()
    assert not ok and "not running" in reason
