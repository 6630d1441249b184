"""Start a real ApiServer on an ephemeral loopback port and talk raw HTTP to it."""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from telegen.api import ApiServer
from telegen.api.context import Limits
from telegen.config import SelfTelemetryConfig
from tests.unit.api.fake_control import FakeControl

TOKEN = "s3cret-token-for-tests-0123456789"


def settings(listen: str = "127.0.0.1:0", **sections: Any) -> SelfTelemetryConfig:
    """Validated settings (so config rules apply), then the ephemeral listen address."""
    raw: dict[str, Any] = {"listen": "127.0.0.1:19090"}
    raw.update(sections)
    return SelfTelemetryConfig.model_validate(raw).model_copy(update={"listen": listen})


def auth_settings(**sections: Any) -> SelfTelemetryConfig:
    return settings(auth={"enabled": True, "bearer_token": TOKEN}, **sections)


@dataclass
class Resp:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        return self.headers.get(name)


class Client:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port

    def request(self, method: str, path: str, headers: dict[str, str] | None = None,
                body: bytes | None = None, token: str | None = None, timeout: float = 10.0) -> Resp:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            hdrs = dict(headers or {})
            if token is not None:
                hdrs["Authorization"] = f"Bearer {token}"
            conn.request(method, path, body=body, headers=hdrs)
            resp = conn.getresponse()
            return Resp(resp.status, resp.headers, resp.read())
        finally:
            conn.close()

    def get(self, path: str, **kw: Any) -> Resp:
        return self.request("GET", path, **kw)

    def post(self, path: str, **kw: Any) -> Resp:
        return self.request("POST", path, **kw)

    def raw(self, data: bytes, read_timeout: float = 5.0) -> bytes:
        """Send raw bytes, return whatever comes back until the server closes or times out."""
        with socket.create_connection((self.host, self.port), timeout=read_timeout) as sock:
            sock.sendall(data)
            chunks = []
            try:
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
            except (TimeoutError, ConnectionResetError):
                pass
            return b"".join(chunks)


@contextmanager
def running(control: FakeControl | None = None, st: SelfTelemetryConfig | None = None,
            limits: Limits | None = None) -> Iterator[tuple[Client, ApiServer, FakeControl]]:
    control = control or FakeControl()
    server = ApiServer(control, st or settings(), limits)
    server.start()
    try:
        host, port = server.bound_address
        yield Client(host, port), server, control
    finally:
        server.stop()


def assert_error(resp: Resp, status: int, error: str) -> dict[str, Any]:
    assert resp.status == status, (resp.status, resp.body[:300])
    assert resp.header("Content-Type") == "application/json; charset=utf-8"
    body = resp.json()
    assert body["error"] == error
    assert isinstance(body["message"], str) and body["message"]
    assert isinstance(body["details"], dict)
    return body  # type: ignore[no-any-return]
