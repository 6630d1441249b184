"""/metrics exposition formats and the API's request counter."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from tests.unit.api.helpers import Client, running


def test_text_format_by_default(client: Client) -> None:
    resp = client.get("/metrics")
    assert resp.status == 200
    assert resp.header("Content-Type") == "text/plain; version=0.0.4; charset=utf-8"
    names = {f.name for f in text_string_to_metric_families(resp.body.decode())}
    assert "telegen_spans_collected" in names


def test_openmetrics_by_accept(client: Client) -> None:
    resp = client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert (resp.header("Content-Type") or "").startswith("application/openmetrics-text; version=1.0.0")
    assert resp.body.rstrip().endswith(b"# EOF")


def test_request_counter_uses_route_templates(client: Client) -> None:
    client.get("/status")
    client.get("/api/v1/status")
    for i in range(5):
        client.get(f"/random/{i}")
    text = client.get("/metrics").body.decode()
    samples = {(s.labels["path"], s.labels["code"]): s.value
               for f in text_string_to_metric_families(text) if f.name == "telegen_api_requests"
               for s in f.samples if s.name == "telegen_api_requests_total"}
    assert samples[("/status", "200")] == 1
    assert samples[("/api/v1/status", "200")] == 1
    assert samples[("unmatched", "404")] == 5
    assert not [p for p, _ in samples if p.startswith("/random")]


def test_collector_unregistered_on_stop_so_a_new_server_can_register() -> None:
    with running() as (_, _server, control):
        pass
    with running(control) as (client, _, _):
        assert b"telegen_api_requests_total" in client.get("/metrics").body
