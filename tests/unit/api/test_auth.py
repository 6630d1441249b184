"""Bearer auth: exempt probes, every negative case, WWW-Authenticate, loopback-only admin."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterator

import psutil
import pytest

from telegen.api import ApiServer
from telegen.api.auth import bearer_token, fingerprint, is_loopback, token_matches
from tests.conftest import require
from tests.unit.api.fake_control import FakeControl
from tests.unit.api.helpers import TOKEN, Client, assert_error, auth_settings, running, settings


@pytest.fixture
def authed() -> Iterator[Client]:
    with running(st=auth_settings()) as (client, _, _):
        yield client


BAD_HEADERS = {
    "missing": None,
    "empty": "",
    "wrong": "Bearer not-the-token",
    "prefix": f"Bearer {TOKEN[:-1]}",
    "suffix": f"Bearer {TOKEN}x",
    "wrong scheme": f"Basic {TOKEN}",
    "token only": TOKEN,
    "no token": "Bearer ",
    "two tokens": f"Bearer {TOKEN} {TOKEN}",
}


@pytest.mark.parametrize("case", list(BAD_HEADERS))
@pytest.mark.parametrize("path", ["/status", "/api/v1/config", "/metrics", "/openapi.json"])
def test_bad_or_missing_token_is_401(authed: Client, case: str, path: str) -> None:
    header = BAD_HEADERS[case]
    resp = authed.get(path, headers={} if header is None else {"Authorization": header})
    assert_error(resp, 401, "unauthorized")
    assert resp.header("WWW-Authenticate") == 'Bearer realm="telegen"'


def test_admin_without_token_is_401_and_not_run() -> None:
    with running(st=auth_settings()) as (client, _, control):
        assert_error(client.post("/admin/reload"), 401, "unauthorized")
        assert "reload" not in control.calls


def test_good_token_passes(authed: Client) -> None:
    assert authed.get("/status", token=TOKEN).status == 200
    assert authed.get("/status", headers={"Authorization": f"bearer {TOKEN}"}).status == 200
    assert authed.post("/admin/flush", token=TOKEN).status == 200


def test_probes_are_exempt(authed: Client) -> None:
    for path in ("/healthz", "/ready", "/api/v1/healthz", "/api/v1/ready"):
        assert authed.get(path).status == 200


def test_unknown_path_needs_token_before_404(authed: Client) -> None:
    assert authed.get("/nope").status == 401
    assert_error(authed.get("/nope", token=TOKEN), 404, "not_found")


def test_configured_exempt_paths() -> None:
    st = settings(auth={"enabled": True, "bearer_token": TOKEN, "exempt_paths": ["/healthz", "/metrics"]})
    with running(st=st) as (client, _, _):
        assert client.get("/metrics").status == 200
        assert client.get("/ready").status == 401


def test_token_helpers() -> None:
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("BEARER abc") == "abc"
    assert bearer_token("Basic abc") is None
    assert bearer_token("Bearer a b") is None
    assert token_matches("abc", "abc")
    assert not token_matches(None, "abc")
    assert not token_matches("ab", "abc")
    assert fingerprint(None) == "anonymous"
    assert fingerprint("abc") == hashlib.sha256(b"abc").hexdigest()[:8]
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("::ffff:127.0.0.1")
    assert not is_loopback("10.0.0.1") and not is_loopback(None) and not is_loopback("garbage")


def _non_loopback_ipv4() -> str | None:
    for addrs in psutil.net_if_addrs().values():
        for addr in addrs:
            if addr.family == socket.AF_INET and not addr.address.startswith("127."):
                return str(addr.address)
    return None


def test_admin_and_debug_are_loopback_only_without_auth() -> None:
    address = _non_loopback_ipv4()
    require(address is not None, "a non-loopback IPv4 address on this host")
    assert address is not None
    control = FakeControl()
    server = ApiServer(control, settings(listen="0.0.0.0:0", debug={"enabled": True}))
    server.start()
    try:
        port = server.bound_address[1]
        remote = Client(address, port)
        body = assert_error(remote.post("/admin/reload"), 403, "forbidden")
        assert "auth" in body["message"]
        assert_error(remote.get("/debug/vars"), 403, "forbidden")
        assert "reload" not in control.calls
        assert remote.get("/status").status == 200
        local = Client("127.0.0.1", port)
        assert local.post("/admin/reload").status == 200
        # With auth on, a remote client with the token may use admin endpoints.
        server.apply_settings(settings(listen="0.0.0.0:0", auth={"enabled": True, "bearer_token": TOKEN}))
        assert remote.post("/admin/reload", token=TOKEN).status == 200
    finally:
        server.stop()
