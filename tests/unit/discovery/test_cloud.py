from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from telegen.discovery.cloud import MetadataClient, detect, detect_provider

DMI = Path(__file__).resolve().parents[2] / "fixtures" / "dmi"


class _Metadata(BaseHTTPRequestHandler):
    requests: list[tuple[str, str, dict[str, str]]] = []
    hang = False

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, code: int, body: str) -> None:
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_PUT(self) -> None:
        self.requests.append(("PUT", self.path, dict(self.headers)))
        if self.path == "/latest/api/token" and self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
            self._send(200, "tok-123")
        else:
            self._send(400, "")

    def do_GET(self) -> None:
        self.requests.append(("GET", self.path, dict(self.headers)))
        if self.hang:
            threading.Event().wait(1.0)
        if self.path == "/latest/dynamic/instance-identity/document":
            if self.headers.get("X-aws-ec2-metadata-token") != "tok-123":
                return self._send(401, "")
            return self._send(200, json.dumps({"region": "eu-west-1", "availabilityZone": "eu-west-1b",
                                               "accountId": "123456789012", "instanceId": "i-0abc",
                                               "instanceType": "m5.large"}))
        if self.path.startswith("/computeMetadata/v1/") and self.headers.get("Metadata-Flavor") == "Google":
            if "project-id" in self.path:
                return self._send(200, "my-project")
            return self._send(200, json.dumps({"id": 4567, "zone": "projects/1/zones/us-central1-a",
                                               "machineType": "projects/1/machineTypes/e2-small"}))
        if self.path.startswith("/metadata/instance") and self.headers.get("Metadata") == "true":
            return self._send(200, json.dumps({"compute": {"location": "westeurope", "vmId": "vm-1",
                                                           "subscriptionId": "sub-1", "vmSize": "B2s",
                                                           "zone": "2"}}))
        self._send(404, "")


@pytest.fixture
def metadata_server() -> Iterator[str]:
    _Metadata.requests = []
    _Metadata.hang = False
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Metadata)
    server.daemon_threads = True
    server.block_on_close = False
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(("case", "provider"), [
    ("aws_nitro", "aws"), ("aws_xen", "aws"), ("gcp", "gcp"), ("azure", "azure"),
    ("hyperv_not_azure", None), ("qemu", None), ("empty", None),
])
def test_provider_from_dmi(case: str, provider: str | None) -> None:
    assert detect_provider(DMI / case) == provider


@pytest.mark.parametrize("case", ["qemu", "empty", "hyperv_not_azure"])
def test_no_request_without_cloud_dmi(case: str, metadata_server: str) -> None:
    http = MetadataClient()
    urls = {"aws": metadata_server, "gcp": metadata_server, "azure": metadata_server}
    assert detect(DMI / case, urls, http=http) is None
    assert http.requests == 0
    assert _Metadata.requests == []


def test_aws_imdsv2(metadata_server: str) -> None:
    info = detect(DMI / "aws_nitro", {"aws": metadata_server})
    assert info is not None
    assert (info.provider, info.region, info.instance_id) == ("aws", "eu-west-1", "i-0abc")
    assert info.resource_attributes()["cloud.availability_zone"] == "eu-west-1b"
    assert [r[:2] for r in _Metadata.requests] == [
        ("PUT", "/latest/api/token"), ("GET", "/latest/dynamic/instance-identity/document")]


def test_gcp(metadata_server: str) -> None:
    info = detect(DMI / "gcp", {"gcp": metadata_server})
    assert info is not None
    assert (info.region, info.availability_zone, info.account_id, info.instance_id, info.instance_type) == (
        "us-central1", "us-central1-a", "my-project", "4567", "e2-small")


def test_azure(metadata_server: str) -> None:
    info = detect(DMI / "azure", {"azure": metadata_server})
    assert info is not None
    assert (info.provider, info.region, info.instance_id, info.platform) == (
        "azure", "westeurope", "vm-1", "azure_vm")


def test_metadata_timeout_keeps_provider(metadata_server: str) -> None:
    _Metadata.hang = True
    info = detect(DMI / "gcp", {"gcp": metadata_server}, timeout=0.3)
    assert info is not None and info.provider == "gcp" and info.error and not info.region


def test_unreachable_metadata() -> None:
    info = detect(DMI / "aws_nitro", {"aws": "http://127.0.0.1:9"}, timeout=0.5)
    assert info is not None and info.provider == "aws" and info.error
