"""Rate limiting (per client, probes exempt, tighter admin bucket) and CORS."""

from __future__ import annotations

from telegen.api.ratelimit import TokenBuckets
from tests.unit.api.helpers import TOKEN, assert_error, running, settings


def test_burst_past_limit_is_429_with_retry_after() -> None:
    st = settings(rate_limit={"requests_per_second": 0.5, "burst": 5})
    with running(st=st) as (client, _, _):
        codes = [client.get("/status").status for _ in range(5)]
        assert codes == [200] * 5
        resp = client.get("/status")
        body = assert_error(resp, 429, "rate_limited")
        retry = resp.header("Retry-After")
        assert retry is not None and retry.isdigit() and int(retry) >= 1
        assert body["details"]["retry_after_seconds"] == int(retry)
        # Probes are never limited.
        assert all(client.get(p).status == 200 for p in ["/healthz", "/ready"] * 10)


def test_admin_bucket_is_separate_and_tighter() -> None:
    st = settings(rate_limit={"requests_per_second": 100, "burst": 200,
                              "admin_requests_per_second": 1, "admin_burst": 2})
    with running(st=st) as (client, _, _):
        assert [client.post("/admin/flush").status for _ in range(2)] == [200, 200]
        resp = client.post("/admin/flush")
        assert_error(resp, 429, "rate_limited")
        assert int(resp.header("Retry-After") or "0") >= 1
        assert client.get("/status").status == 200


def test_rate_limit_disabled() -> None:
    st = settings(rate_limit={"enabled": False, "requests_per_second": 1, "burst": 1})
    with running(st=st) as (client, _, _):
        assert all(client.get("/status").status == 200 for _ in range(10))


def test_token_bucket_math() -> None:
    buckets = TokenBuckets(max_clients=2)
    assert buckets.take("a", 1.0, 2, now=0.0) == 0
    assert buckets.take("a", 1.0, 2, now=0.0) == 0
    assert buckets.take("a", 1.0, 2, now=0.0) == 1
    assert buckets.take("a", 0.1, 2, now=0.0) == 10
    assert buckets.take("a", 1.0, 2, now=1.5) == 0  # refilled
    buckets.take("b", 1.0, 1, now=0.0)
    buckets.take("c", 1.0, 1, now=0.0)
    assert buckets.take("a", 1.0, 1, now=1.5) == 0  # 'a' was evicted: a fresh bucket


ORIGIN = "http://localhost:3000"


def test_cors_allowed_origin_is_echoed_with_vary() -> None:
    st = settings(cors={"enabled": True, "allowed_origins": [ORIGIN]})
    with running(st=st) as (client, _, _):
        resp = client.get("/status", headers={"Origin": ORIGIN})
        assert resp.header("Access-Control-Allow-Origin") == ORIGIN
        assert resp.header("Vary") == "Origin"
        assert resp.header("Access-Control-Allow-Credentials") is None
        other = client.get("/status", headers={"Origin": "http://evil.example"})
        assert other.status == 200 and other.header("Access-Control-Allow-Origin") is None
        errors = client.get("/nope", headers={"Origin": ORIGIN})
        assert errors.header("Access-Control-Allow-Origin") == ORIGIN


def test_cors_preflight_allowed_and_refused() -> None:
    st = settings(auth={"enabled": True, "bearer_token": TOKEN},
                  cors={"enabled": True, "allowed_origins": [ORIGIN]})
    pre = {"Access-Control-Request-Method": "GET", "Access-Control-Request-Headers": "authorization"}
    with running(st=st) as (client, _, _):
        resp = client.request("OPTIONS", "/api/v1/status", headers={"Origin": ORIGIN, **pre})
        assert resp.status == 204
        assert resp.header("Access-Control-Allow-Origin") == ORIGIN
        assert "GET" in (resp.header("Access-Control-Allow-Methods") or "")
        assert resp.header("Access-Control-Allow-Headers") == "Authorization, Content-Type"
        assert (resp.header("Access-Control-Max-Age") or "").isdigit()
        assert resp.header("Vary") == "Origin"
        bad = client.request("OPTIONS", "/status", headers={"Origin": "http://evil.example", **pre})
        assert_error(bad, 403, "forbidden")
        assert not [h for h in bad.headers if h.lower().startswith("access-control-")]
        for origin in ("http://localhost:3000.evil.example", "http://localhost", "null"):
            resp = client.request("OPTIONS", "/status", headers={"Origin": origin, **pre})
            assert resp.status == 403


def test_cors_disabled_refuses_preflight_and_adds_nothing() -> None:
    pre = {"Origin": ORIGIN, "Access-Control-Request-Method": "GET"}
    with running() as (client, _, _):
        assert_error(client.request("OPTIONS", "/status", headers=pre), 403, "forbidden")
        assert client.get("/status", headers={"Origin": ORIGIN}).header("Access-Control-Allow-Origin") is None


def test_cors_wildcard_without_auth() -> None:
    st = settings(cors={"enabled": True, "allowed_origins": ["*"]})
    with running(st=st) as (client, _, _):
        resp = client.get("/status", headers={"Origin": "http://any.example"})
        assert resp.header("Access-Control-Allow-Origin") == "*"
