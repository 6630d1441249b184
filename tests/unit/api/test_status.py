"""/status*, /config and the snapshot deadline."""

from __future__ import annotations

from datetime import UTC, datetime

from telegen.api.context import Limits
from telegen.api.redact import REDACTED, redact
from telegen.api.responses import jsonable
from telegen.config import validate
from telegen.timefmt import go_duration
from tests.unit.api.fake_control import EBPF, EXPORT, FakeControl
from tests.unit.api.helpers import Client, assert_error, running


def test_status_has_contract_fields_and_derived_uptime(client: Client) -> None:
    body = client.get("/status").json()
    for key in ("version", "commit", "built", "uptime", "uptime_seconds", "mode", "host", "ebpf",
                "profiling", "export", "discovery"):
        assert key in body
    assert body["uptime"] == "24h15m30s"
    assert body["uptime_seconds"] == 87330
    assert body["host"]["arch"] == "amd64"


def test_status_keeps_an_uptime_the_snapshot_gives() -> None:
    control = FakeControl()
    control.snapshots["status"]["uptime"] = "1h0m0s"
    with running(control) as (client, _, _):
        assert client.get("/status").json()["uptime"] == "1h0m0s"


def test_sections_come_from_their_snapshots(client: Client) -> None:
    assert client.get("/status/ebpf").json() == EBPF
    assert client.get("/api/v1/status/export").json() == EXPORT
    body = client.get("/status/discovery").json()
    assert body["cloud"] is None and body["discovered_services"][0]["ports"] == [80, 443]


def test_datetimes_in_snapshots_become_rfc3339_z() -> None:
    control = FakeControl()
    control.snapshots["export"]["last_export"] = datetime(2026, 1, 15, 10, 30, tzinfo=UTC)
    with running(control) as (client, _, _):
        assert client.get("/status/export").json()["last_export"] == "2026-01-15T10:30:00Z"


def test_topology_json_and_mermaid(client: Client) -> None:
    body = client.get("/status/topology").json()
    assert body["edges"][0]["source"] == "default/frontend"
    resp = client.get("/status/topology?format=mermaid")
    assert resp.status == 200
    assert resp.header("Content-Type") == "text/plain; charset=utf-8"
    text = resp.body.decode()
    assert text.startswith("graph LR\n")
    assert '"default/frontend"' in text and "-->" in text
    assert_error(client.get("/status/topology?format=dot"), 400, "invalid_request")


def test_topology_empty_map() -> None:
    control = FakeControl()
    control.snapshots["topology"] = {}
    with running(control) as (client, _, _):
        assert client.get("/status/topology").json() == {"nodes": [], "edges": []}
        assert client.get("/status/topology?format=mermaid").body == b"graph LR\n"


def test_slow_snapshot_is_503_within_deadline() -> None:
    control = FakeControl()
    control.snapshot_delay = 2.0
    with running(control, limits=Limits(snapshot_deadline=0.3)) as (client, _, _):
        body = assert_error(client.get("/status"), 503, "service_unavailable")
        assert "0.3" in body["message"]
        # The loop stays free while the executor is stuck: a probe still answers.
        assert client.get("/healthz").status == 200


def test_config_redacts_secrets_everywhere() -> None:
    config = validate({
        "self_telemetry": {"auth": {"enabled": True, "bearer_token": "tok-123"}},
        "otlp": {"endpoint": "collector:4317", "headers": {"x-api": "abc", "dd-site": "eu"},
                 "tls": {"key_file": "/k.pem", "ca_file": "/ca.pem"}},
        "resource": {"attributes": {"deployment.password": "pw", "team": "core"}},
    })
    with running(FakeControl(config)) as (client, _, _):
        body = client.get("/config").json()
    text = str(body)
    for secret in ("tok-123", "abc", "/k.pem", "pw"):
        assert f"'{secret}'" not in text
    assert body["self_telemetry"]["auth"]["bearer_token"] == REDACTED
    assert body["otlp"]["headers"] == {"x-api": REDACTED, "dd-site": REDACTED}
    assert body["otlp"]["tls"] == {"ca_file": "/ca.pem", "cert_file": "", "key_file": REDACTED}
    assert body["resource"]["attributes"] == {"deployment.password": REDACTED, "team": "core"}
    assert body["otlp"]["endpoint"] == "collector:4317"


def test_redact_walks_lists_and_spares_keepalive() -> None:
    tree = {"a": [{"client_secret": "x", "keepalive": 5}, [{"API_KEY": "y"}]],
            "Authorization": "Bearer z", "credentials": {"u": 1}, "tcp_keepalive_time": 3}
    assert redact(tree) == {"a": [{"client_secret": REDACTED, "keepalive": 5}, [{"API_KEY": REDACTED}]],
                            "Authorization": REDACTED, "credentials": REDACTED, "tcp_keepalive_time": 3}


def test_value_helpers() -> None:
    assert go_duration(87330) == "24h15m30s"
    assert go_duration(300) == "5m0s"
    assert go_duration(0) == "0s"
    assert jsonable({"t": (1, float("nan"))}) == {"t": [1, None]}
