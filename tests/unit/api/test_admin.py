"""POST /admin/reload and /admin/flush: outcomes, audit lines and the admin counter."""

from __future__ import annotations

import hashlib
import logging

import pytest
from prometheus_client.parser import text_string_to_metric_families

from telegen.config import ConfigError, validate
from telegen.control import FlushResult, ReloadApplyError
from tests.unit.api.fake_control import FakeControl
from tests.unit.api.helpers import TOKEN, Client, assert_error, auth_settings, running


def _admin_counts(client: Client, token: str | None = None) -> dict[tuple[str, str], float]:
    text = client.get("/metrics", token=token).body.decode()
    out = {}
    for family in text_string_to_metric_families(text):
        if family.name == "telegen_admin_actions":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    out[(sample.labels["action"], sample.labels["outcome"])] = sample.value
    return out


def test_reload_valid() -> None:
    with running() as (client, _, control):
        resp = client.post("/admin/reload")
        assert resp.status == 200
        assert resp.json() == {"status": "ok", "message": "Configuration reloaded",
                               "changed": ["otlp.endpoint"], "restart_required": []}
        assert control.calls.count("reload") == 1


def test_reload_invalid_is_400_with_field_details() -> None:
    control = FakeControl()
    control.reload_error = ConfigError({"otlp.timeout": "Input should be greater than 0",
                                        "self_telemetry.auth.bearer_token": "must be set"})
    with running(control) as (client, _, _):
        body = assert_error(client.post("/admin/reload"), 400, "invalid_request")
        assert body["details"] == control.reload_error.problems
        assert client.get("/config").json()["otlp"]["timeout"] == 10.0  # unchanged


def test_reload_apply_failure_is_500_without_internals() -> None:
    control = FakeControl()
    control.reload_error = ReloadApplyError("exporter restart failed")
    with running(control) as (client, _, _):
        body = assert_error(client.post("/admin/reload"), 500, "internal_error")
        assert "restored" in body["message"]
        assert "Traceback" not in str(body)


def test_reload_applies_new_api_settings_at_once() -> None:
    control = FakeControl()
    control.next_config = validate({"self_telemetry": {"auth": {"enabled": True, "bearer_token": "new-tok"}}})
    with running(control) as (client, server, _):
        assert client.post("/admin/reload").status == 200
        assert client.get("/status").status == 401
        assert client.get("/status", token="new-tok").status == 200
        assert server.settings.auth.bearer_token == "new-tok"


def test_flush_ok_and_timeout_param() -> None:
    with running() as (client, _, control):
        resp = client.post("/admin/flush?timeout=2.5")
        assert resp.status == 200
        assert resp.json() == {"status": "ok", "flushed": {"traces": 128, "metrics": 64, "logs": 256}}
        assert client.post("/api/v1/admin/flush").status == 200
        assert control.calls[-2:] == ["flush:2.5", "flush:10"]


@pytest.mark.parametrize("value", ["abc", "-1", "61", "nan", "inf", ""])
def test_flush_bad_timeout_is_400(value: str) -> None:
    with running() as (client, _, control):
        assert_error(client.post(f"/admin/flush?timeout={value}"), 400, "invalid_request")
        assert not [c for c in control.calls if c.startswith("flush")]


def test_flush_unreachable_collector_is_503_with_waiting_counts() -> None:
    control = FakeControl()
    control.flush_result = FlushResult(ok=False, flushed={"traces": 0}, waiting={"traces": 7, "logs": 2})
    with running(control) as (client, _, _):
        body = assert_error(client.post("/admin/flush?timeout=1"), 503, "service_unavailable")
        assert body["details"]["waiting"] == {"traces": 7, "logs": 2}


def test_audit_line_and_counter_per_admin_call(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="telegen.api.audit")
    control = FakeControl(validate({"self_telemetry": {"auth": {"enabled": True, "bearer_token": TOKEN}}}))
    with running(control, st=auth_settings()) as (client, _, _):
        client.post("/admin/reload", token=TOKEN)
        client.post("/admin/reload", token="wrong")
        control.reload_error = ConfigError({"x": "bad"})
        client.post("/api/v1/admin/reload", token=TOKEN)
        client.post("/admin/flush", token=TOKEN)
        counts = _admin_counts(client, TOKEN)
    lines = [r.getMessage() for r in caplog.records if r.name == "telegen.api.audit"]
    assert len(lines) == 4
    fp = hashlib.sha256(TOKEN.encode()).hexdigest()[:8]
    assert f"token={fp}" in lines[0] and "outcome=ok" in lines[0] and "path=/admin/reload" in lines[0]
    assert "client=127.0.0.1" in lines[0] and "time=" in lines[0]
    assert "outcome=unauthorized" in lines[1] and TOKEN not in " ".join(lines) and "wrong" not in lines[1]
    assert "outcome=invalid" in lines[2]
    assert counts == {("reload", "ok"): 1, ("reload", "unauthorized"): 1, ("reload", "invalid"): 1,
                      ("flush", "ok"): 1}


def test_audit_anonymous_without_auth(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="telegen.api.audit")
    with running() as (client, _, _):
        client.post("/admin/flush")
    lines = [r.getMessage() for r in caplog.records if r.name == "telegen.api.audit"]
    assert len(lines) == 1 and "token=anonymous" in lines[0]
