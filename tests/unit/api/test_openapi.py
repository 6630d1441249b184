"""The OpenAPI document matches the routes the server answers, both ways."""

from __future__ import annotations

import pytest

from telegen.api.app import build_routes
from telegen.api.openapi import OPS, build_document, documented_operations
from tests.unit.api.helpers import TOKEN, running, settings


def _served(debug: bool) -> set[tuple[str, str]]:
    out = set()
    for path, route in build_routes().served_paths():
        if route.debug and not debug:
            continue
        out.update((path, method) for method in route.methods)
    return out


@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize("auth", [False, True])
def test_every_route_is_documented_and_vice_versa(debug: bool, auth: bool) -> None:
    st = settings(debug={"enabled": debug},
                  auth={"enabled": auth, "bearer_token": TOKEN if auth else ""})
    with running(st=st) as (client, _, _):
        doc = client.get("/openapi.json", token=TOKEN if auth else None).json()
    assert documented_operations(doc) == _served(debug)
    assert doc["openapi"].startswith("3.1")


def test_every_route_has_operation_metadata() -> None:
    assert {r.path for r in build_routes().routes()} == set(OPS)


def test_query_parameters_documented_match_routes() -> None:
    doc = build_document(settings(debug={"enabled": True}))
    for route in build_routes().routes():
        for method in route.methods:
            params = doc["paths"][route.path][method.lower()].get("parameters", [])
            assert {p["name"] for p in params} == set(route.query), route.path


def test_security_follows_auth_settings() -> None:
    open_doc = build_document(settings())
    assert "security" not in open_doc["paths"]["/status"]["get"]
    doc = build_document(settings(auth={"enabled": True, "bearer_token": TOKEN}))
    assert doc["paths"]["/status"]["get"]["security"] == [{"bearerAuth": []}]
    assert doc["paths"]["/healthz"]["get"]["security"] == []
    assert "401" in doc["paths"]["/api/v1/config"]["get"]["responses"]
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
