"""telegen.assemble.routes: id folding, configured patterns, per-service cap."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telegen.assemble.routes import OVERFLOW_ROUTE, RouteResolver, fold_path


@pytest.mark.parametrize(("path", "route"), [
    ("/", "/"),
    ("", "/"),
    ("/health", "/health"),
    ("/users/123", "/users/{id}"),
    ("/users/123/orders/-7", "/users/{id}/orders/{id}"),
    ("/price/12.50", "/price/{id}"),
    ("/items/550e8400-e29b-41d4-a716-446655440000", "/items/{id}"),
    ("/items/550E8400E29B41D4A716446655440000", "/items/{id}"),
    ("/blobs/deadbeef01", "/blobs/{id}"),
    ("/blobs/0xCAFEBABE", "/blobs/{id}"),
    ("/s/AbCdEfGhIjKlMnOpQr5t", "/s/{id}"),  # 20-char token with a digit
    ("/v1/users", "/v1/users"),  # short segment with a digit is a word, not an id
    ("/a-very-long-segment-name-without-digits", "/a-very-long-segment-name-without-digits"),
    ("/cafe", "/cafe"),  # hex letters but too short
    ("/users/42/", "/users/{id}/"),
])
def test_fold_path(path: str, route: str) -> None:
    assert fold_path(path) == route


def test_configured_patterns_win_over_folding() -> None:
    r = RouteResolver(["/api/users/{id}", "/static/*"], 100)
    assert r.route("/api/users/alice", "svc") == "/api/users/{id}"
    assert r.route("/api/users/42/", "svc") == "/api/users/{id}"
    assert r.route("/static/css/site.css", "svc") == "/static/*"
    assert r.route("/api/users/42/orders", "svc") == "/api/users/{id}/orders"  # no pattern: folded


def test_first_matching_pattern_wins() -> None:
    r = RouteResolver(["/a/{x}", "/a/b"], 100)
    assert r.route("/a/b", "svc") == "/a/{x}"


def test_pattern_special_characters_are_literal() -> None:
    r = RouteResolver(["/v1.0/items"], 100)
    assert r.route("/v1.0/items", "svc") == "/v1.0/items"
    assert r.route("/v1x0/items", "svc") == "/v1x0/items"


def test_per_service_cap_sends_new_routes_to_overflow() -> None:
    r = RouteResolver([], 3)
    routes = [r.route(f"/r{c}", "svc") for c in "abcde"]
    assert routes == ["/ra", "/rb", "/rc", OVERFLOW_ROUTE, OVERFLOW_ROUTE]
    assert r.overflowed == {"svc": 2}
    assert r.route("/ra", "svc") == "/ra"  # known routes keep resolving
    assert r.route("/rd", "other") == "/rd"  # the cap is per service
    assert r.known_routes() == 4


def test_ids_do_not_consume_the_cap() -> None:
    r = RouteResolver([], 2)
    for i in range(1000):
        assert r.route(f"/users/{i}", "svc") == "/users/{id}"
    assert r.overflowed == {}
    assert r.known_routes() == 1


_segment = st.one_of(
    st.integers(0, 10**12).map(str),
    st.uuids().map(str),
    st.text(alphabet="0123456789abcdef", min_size=1, max_size=40),
    st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0xFF, exclude_characters="/?"),
            max_size=30),
    st.just(""),
)


@settings(derandomize=True, max_examples=500, deadline=None)
@given(segments=st.lists(_segment, max_size=8))
def test_folded_route_never_has_a_digit_only_segment(segments: list[str]) -> None:
    route = fold_path("/" + "/".join(segments))
    assert route.startswith("/")
    assert not any(re.fullmatch(r"[0-9]+", seg) for seg in route.split("/"))
    r = RouteResolver([], 5)
    resolved = r.route("/" + "/".join(segments), "svc")
    assert not any(re.fullmatch(r"[0-9]+", seg) for seg in resolved.split("/"))
