"""Cloud provider from local DMI data; only then the provider's metadata service (1 s timeout)."""

from __future__ import annotations

import json
import logging
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

AZURE_ASSET_TAG = "7783-7084-3265-9085-8269-3286-77"
DEFAULT_BASE_URLS = {
    "aws": "http://169.254.169.254",
    "gcp": "http://metadata.google.internal",
    "azure": "http://169.254.169.254",
}
_PLATFORM = {"aws": "aws_ec2", "gcp": "gcp_compute_engine", "azure": "azure_vm"}


@dataclass
class CloudInfo:
    provider: str
    platform: str = ""
    region: str = ""
    availability_zone: str = ""
    account_id: str = ""
    instance_id: str = ""
    instance_type: str = ""
    error: str = ""  # the metadata call failed: provider known from DMI, the rest empty

    def resource_attributes(self) -> dict[str, str]:
        out = {"cloud.provider": self.provider, "cloud.platform": self.platform,
               "cloud.region": self.region, "cloud.availability_zone": self.availability_zone,
               "cloud.account.id": self.account_id, "host.id": self.instance_id,
               "host.type": self.instance_type}
        return {k: v for k, v in out.items() if v}


def _dmi(sys_root: Path, name: str) -> str:
    try:
        return (sys_root / "class" / "dmi" / "id" / name).read_text(errors="replace").strip()
    except OSError:
        return ""


def detect_provider(sys_root: str | Path = "/sys") -> str | None:
    """aws | gcp | azure from /sys/class/dmi/id/*, or None: no network involved."""
    root = Path(sys_root)
    vendor, product = _dmi(root, "sys_vendor"), _dmi(root, "product_name")
    bios_vendor, bios_version = _dmi(root, "bios_vendor"), _dmi(root, "bios_version")
    uuid = _dmi(root, "product_uuid").lower() or _dmi(root, "board_asset_tag").lower()
    if "amazon" in vendor.lower() or "amazon" in bios_vendor.lower() or "amazon" in bios_version.lower() \
            or (uuid.startswith("ec2") and "xen" in bios_vendor.lower()):
        return "aws"
    if "google" in vendor.lower() or product == "Google Compute Engine":
        return "gcp"
    if vendor == "Microsoft Corporation" and _dmi(root, "chassis_asset_tag") == AZURE_ASSET_TAG:
        return "azure"
    return None


class MetadataClient:
    """Plain HTTP with a deadline and no proxies (the metadata address is link-local)."""

    def __init__(self, timeout: float = 1.0) -> None:
        self.timeout = timeout
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self.requests = 0

    def call(self, url: str, headers: dict[str, str], method: str = "GET") -> str:
        self.requests += 1
        req = urllib.request.Request(url, headers=headers, method=method)
        with self._opener.open(req, timeout=self.timeout) as resp:
            return str(resp.read(65536).decode("utf-8", "replace"))


def _aws(http: MetadataClient, base: str) -> CloudInfo:
    token = http.call(f"{base}/latest/api/token", {"X-aws-ec2-metadata-token-ttl-seconds": "300"}, "PUT")
    doc: dict[str, Any] = json.loads(http.call(
        f"{base}/latest/dynamic/instance-identity/document", {"X-aws-ec2-metadata-token": token}))
    return CloudInfo("aws", _PLATFORM["aws"], doc.get("region", ""), doc.get("availabilityZone", ""),
                     doc.get("accountId", ""), doc.get("instanceId", ""), doc.get("instanceType", ""))


def _gcp(http: MetadataClient, base: str) -> CloudInfo:
    hdr = {"Metadata-Flavor": "Google"}
    inst: dict[str, Any] = json.loads(http.call(f"{base}/computeMetadata/v1/instance/?recursive=true", hdr))
    project = http.call(f"{base}/computeMetadata/v1/project/project-id", hdr).strip()
    zone = str(inst.get("zone", "")).rsplit("/", 1)[-1]  # projects/<n>/zones/us-central1-a
    return CloudInfo("gcp", _PLATFORM["gcp"], zone.rsplit("-", 1)[0] if zone else "", zone, project,
                     str(inst.get("id", "")), str(inst.get("machineType", "")).rsplit("/", 1)[-1])


def _azure(http: MetadataClient, base: str) -> CloudInfo:
    doc: dict[str, Any] = json.loads(http.call(
        f"{base}/metadata/instance?api-version=2021-02-01", {"Metadata": "true"}))
    c = doc.get("compute") or {}
    zone = c.get("zone", "")
    return CloudInfo("azure", _PLATFORM["azure"], c.get("location", ""),
                     f"{c.get('location', '')}-{zone}" if zone else "", c.get("subscriptionId", ""),
                     c.get("vmId", ""), c.get("vmSize", ""))


def detect(sys_root: str | Path = "/sys", base_urls: dict[str, str] | None = None,
           timeout: float = 1.0, http: MetadataClient | None = None) -> CloudInfo | None:
    """None when DMI says no known cloud (then no request is made at all)."""
    provider = detect_provider(sys_root)
    if provider is None:
        return None
    base = {**DEFAULT_BASE_URLS, **(base_urls or {})}[provider].rstrip("/")
    client = http or MetadataClient(timeout)
    try:
        return {"aws": _aws, "gcp": _gcp, "azure": _azure}[provider](client, base)
    except Exception as exc:  # unreachable or malformed metadata: keep what DMI told us
        log.warning("cloud: %s metadata unavailable: %s", provider, exc)
        return CloudInfo(provider, _PLATFORM[provider], error=f"{type(exc).__name__}: {exc}"[:200])
