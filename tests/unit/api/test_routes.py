"""Routing rules of the contract: aliases, 404, 405 with Allow, HEAD, OPTIONS, JSON form."""

from __future__ import annotations

import pytest

from tests.unit.api.helpers import Client, assert_error

GET_PATHS = ["/healthz", "/ready", "/metrics", "/status", "/status/ebpf", "/status/export",
             "/status/discovery", "/status/topology", "/config", "/openapi.json"]


@pytest.mark.parametrize("path", GET_PATHS)
def test_every_get_path_answers_bare_and_versioned(client: Client, path: str) -> None:
    bare, versioned = client.get(path), client.get("/api/v1" + path)
    assert bare.status == 200 and versioned.status == 200
    if path != "/metrics":
        assert bare.header("Content-Type") == "application/json; charset=utf-8"
        assert bare.json().keys() == versioned.json().keys()


def test_unknown_path_is_404_with_error_body(client: Client) -> None:
    assert_error(client.get("/nope"), 404, "not_found")
    assert_error(client.get("/api/v1/nope"), 404, "not_found")
    assert_error(client.get("/api/v2/status"), 404, "not_found")


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("POST", "/status", "GET, HEAD, OPTIONS"),
    ("DELETE", "/api/v1/status/ebpf", "GET, HEAD, OPTIONS"),
    ("PUT", "/metrics", "GET, HEAD, OPTIONS"),
    ("GET", "/admin/reload", "POST, OPTIONS"),
    ("GET", "/api/v1/admin/flush", "POST, OPTIONS"),
    ("PATCH", "/healthz", "GET, HEAD, OPTIONS"),
])
def test_wrong_method_is_405_with_allow(client: Client, method: str, path: str, allow: str) -> None:
    resp = client.request(method, path)
    assert_error(resp, 405, "method_not_allowed")
    assert resp.header("Allow") == allow


def test_head_allowed_where_get_is(client: Client) -> None:
    resp = client.request("HEAD", "/status")
    assert resp.status == 200 and resp.body == b""
    assert resp.header("Content-Type") == "application/json; charset=utf-8"


def test_plain_options_lists_methods(client: Client) -> None:
    resp = client.request("OPTIONS", "/admin/reload")
    assert resp.status == 204
    assert resp.header("Allow") == "POST, OPTIONS"


def test_debug_paths_are_404_when_debug_disabled(client: Client) -> None:
    for path in ("/debug/pprof/", "/debug/pprof/profile", "/debug/vars", "/api/v1/debug/pprof/heap"):
        assert_error(client.get(path), 404, "not_found")


def test_status_bodies_are_utf8_snake_case(client: Client) -> None:
    body = client.get("/status").json()
    def walk(node: object) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                assert key == key.lower() and " " not in key and "-" not in key
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)
    walk(body)
