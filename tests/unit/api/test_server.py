"""ApiServer lifecycle: binding, port conflicts, hot settings, liveness of its loop."""

from __future__ import annotations

import socket

import pytest

from telegen.api import ApiServer
from telegen.api.server import split_listen
from tests.unit.api.fake_control import FakeControl
from tests.unit.api.helpers import TOKEN, Client, running, settings


def test_port_in_use_raises_clear_oserror() -> None:
    with running() as (_, server, _):
        port = server.bound_address[1]
        other = ApiServer(FakeControl(), settings(listen=f"127.0.0.1:{port}"))
        with pytest.raises(OSError) as info:
            other.start()
        assert f"127.0.0.1:{port}" in str(info.value) and "self_telemetry.listen" in str(info.value)
        other.stop()


def test_listen_forms() -> None:
    assert split_listen(":0") == ("", 0)
    assert split_listen("127.0.0.1:0") == ("127.0.0.1", 0)
    assert split_listen("[::1]:19090") == ("::1", 19090)
    with pytest.raises(ValueError):
        split_listen("nonsense")


def test_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")
    with running(st=settings(listen="[::1]:0")) as (_, server, _):
        host, port = server.bound_address
        assert host == "::1"
        assert Client("::1", port).get("/healthz").status == 200


def test_apply_settings_hot_reloads_auth_debug_and_limits() -> None:
    with running() as (client, server, _):
        assert client.get("/debug/vars").status == 404
        server.apply_settings(settings(auth={"enabled": True, "bearer_token": TOKEN},
                                       debug={"enabled": True},
                                       rate_limit={"requests_per_second": 0.1, "burst": 3}))
        assert client.get("/status").status == 401
        assert client.get("/debug/vars", token=TOKEN).status == 200
        assert client.get("/status", token=TOKEN).status == 200
        assert client.get("/status", token=TOKEN).status == 429  # burst of 3 used up
        assert server.bound_address[1] == client.port  # same listener throughout


def test_stop_is_idempotent_and_start_once() -> None:
    server = ApiServer(FakeControl(), settings())
    server.start()
    with pytest.raises(RuntimeError):
        server.start()
    server.stop()
    server.stop()
    with pytest.raises(RuntimeError):
        _ = server.bound_address


def test_wedged_loop_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    import time as _time

    from telegen.api import server as server_module

    monkeypatch.setattr(server_module, "WEDGED_AFTER_SECONDS", 0.5)
    with running() as (_, server, _):
        loop = server._loop
        assert loop is not None
        loop.call_soon_threadsafe(_time.sleep, 1.5)  # block the API loop like a stuck handler would
        _time.sleep(1.0)
        ok, reason = server.healthy()
        assert not ok and "wedged" in reason
        _time.sleep(1.0)
        assert server.healthy() == (True, "")
