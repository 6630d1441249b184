"""Typed, frozen configuration models: every key telegen reads, with its default and bounds.

Unknown keys are rejected (extra="forbid") so a typo is an error that names the field;
telegen/config.py loads YAML and the environment into these.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AuthConfig(_Model):
    enabled: bool = False
    bearer_token: str = ""
    exempt_paths: tuple[str, ...] = ("/healthz", "/ready")

    @model_validator(mode="after")
    def _token_required(self) -> AuthConfig:
        if self.enabled and not self.bearer_token.strip():
            raise ValueError("bearer_token must be set (non-empty) when auth is enabled")
        return self


class RateLimitConfig(_Model):
    enabled: bool = True
    requests_per_second: float = Field(100.0, gt=0)
    burst: int = Field(200, ge=1)
    admin_requests_per_second: float = Field(1.0, gt=0)
    admin_burst: int = Field(5, ge=1)


class CorsConfig(_Model):
    enabled: bool = False
    allowed_origins: tuple[str, ...] = ()


class DebugConfig(_Model):
    enabled: bool = False


def parse_listen(value: str) -> tuple[str, int]:
    """Split ':19090', '127.0.0.1:19090', '[::1]:19090' into (host, port); '' host means all."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not port_text.isdigit():
        raise ValueError(f"{value!r} is not host:port (e.g. ':19090' or '127.0.0.1:19090')")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is out of range 1..65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        ipaddress.IPv6Address(host)
    elif host and host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            if not re.fullmatch(r"[A-Za-z0-9.-]+", host):
                raise ValueError(f"{host!r} is not an address or host name") from None
    return host, port


class SelfTelemetryConfig(_Model):
    listen: str = ":19090"
    auth: AuthConfig = AuthConfig()
    rate_limit: RateLimitConfig = RateLimitConfig()
    cors: CorsConfig = CorsConfig()
    debug: DebugConfig = DebugConfig()

    @field_validator("listen")
    @classmethod
    def _valid_listen(cls, value: str) -> str:
        parse_listen(value)
        return value

    @model_validator(mode="after")
    def _no_wildcard_with_auth(self) -> SelfTelemetryConfig:
        if self.cors.enabled and self.auth.enabled and "*" in self.cors.allowed_origins:
            raise ValueError("cors.allowed_origins may contain '*' only when auth is disabled")
        return self


class TlsConfig(_Model):
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""


class OtlpConfig(_Model):
    endpoint: str = ""
    insecure: bool = True
    compression: Literal["gzip", "none"] = "none"
    headers: dict[str, str] = {}
    timeout: float = Field(10.0, gt=0, le=300)
    tls: TlsConfig = TlsConfig()

    @field_validator("endpoint")
    @classmethod
    def _valid_endpoint(cls, value: str) -> str:
        if value and not re.fullmatch(r"(https?://)?[^\s/]+:\d{1,5}/?", value):
            raise ValueError(f"{value!r} is not host:port or http(s)://host:port")
        return value


class SignalQueueConfig(_Model):
    queue_size: int = Field(10000, ge=1, le=10_000_000)
    batch_size: int = Field(512, ge=1, le=100_000)
    interval: float = Field(1.0, gt=0, le=3600)


class PrometheusConfig(_Model):
    enabled: bool = True


class ConsoleConfig(_Model):
    enabled: bool | None = None  # None: on exactly when no OTLP endpoint is set
    summary_interval: float = Field(10.0, gt=0)


class ExportConfig(_Model):
    traces: SignalQueueConfig = SignalQueueConfig()
    metrics: SignalQueueConfig = SignalQueueConfig(queue_size=5000, batch_size=1000, interval=15)
    logs: SignalQueueConfig = SignalQueueConfig()
    prometheus: PrometheusConfig = PrometheusConfig()
    console: ConsoleConfig = ConsoleConfig()


class FeatureToggle(_Model):
    enabled: bool = True


class EbpfConfig(_Model):
    enabled: bool = True
    http: FeatureToggle = FeatureToggle()
    tcp: FeatureToggle = FeatureToggle()
    network: FeatureToggle = FeatureToggle(enabled=False)
    capture_bytes: int = Field(256, ge=16, le=4096)
    cpu_budget: float = Field(0.25, gt=0, le=8)  # cores the agent may use before the kernel sheds span work
    cpu_budget_saturated: float = Field(0.01, gt=0, le=8)  # the same while the node has < 25 % idle CPU
    exclude_self: bool = True
    ringbuf_pages: int = Field(2048, ge=1)
    max_connections: int = Field(65536, ge=64, le=4_194_304)

    @field_validator("ringbuf_pages", "capture_bytes")
    @classmethod
    def _power_of_two(cls, value: int) -> int:
        if value & (value - 1):
            raise ValueError("must be a power of two")
        return value


class RoutePattern(_Model):
    pattern: str

    @field_validator("pattern")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("route patterns start with '/'")
        return value


class HttpConfig(_Model):
    routes: tuple[RoutePattern, ...] = ()
    max_routes_per_service: int = Field(100, ge=1, le=100_000)
    capture_query: bool = False


class ProfilingConfig(_Model):
    enabled: bool = False
    sample_rate: int = Field(99, ge=1, le=1000)


class AgentConfig(_Model):
    ebpf: EbpfConfig = EbpfConfig()
    http: HttpConfig = HttpConfig()
    profiling: ProfilingConfig = ProfilingConfig()
    # background: the agent's threads give way to the workloads' (telegen/cpu_scheduling.py)
    cpu_scheduling: Literal["background", "normal"] = "background"


AutoToggle = bool | Literal["auto"]


class SourceToggle(_Model):
    enabled: AutoToggle = "auto"


class KubernetesDiscoveryConfig(SourceToggle):
    kubeconfig: str = ""  # empty: in-cluster credentials, else $KUBECONFIG / ~/.kube/config
    label_allowlist: tuple[str, ...] = ()
    annotation_allowlist: tuple[str, ...] = ()
    max_pods: int = Field(20000, ge=1)


class DockerDiscoveryConfig(SourceToggle):
    url: str = "unix:///var/run/docker.sock"
    label_allowlist: tuple[str, ...] = ()


class CloudDiscoveryConfig(SourceToggle):
    base_urls: dict[str, str] = {}  # aws | gcp | azure -> metadata base URL (tests point these at loopback)
    timeout: float = Field(1.0, gt=0, le=10)


class DiscoveryConfig(_Model):
    kubernetes: KubernetesDiscoveryConfig = KubernetesDiscoveryConfig()
    docker: DockerDiscoveryConfig = DockerDiscoveryConfig()
    cloud: CloudDiscoveryConfig = CloudDiscoveryConfig()


class ResourceConfig(_Model):
    """Filled from OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES; describes the agent itself."""

    service_name: str = "telegen"
    attributes: dict[str, str] = {}


class Config(_Model):
    mode: Literal["agent"] = "agent"
    cluster_name: str = ""
    node_name: str = ""  # from NODE_NAME (the chart sets it from spec.nodeName) when unset
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    shutdown_grace_seconds: float = Field(10.0, gt=0, le=600)
    self_telemetry: SelfTelemetryConfig = SelfTelemetryConfig()
    otlp: OtlpConfig = OtlpConfig()
    export: ExportConfig = ExportConfig()
    agent: AgentConfig = AgentConfig()
    discovery: DiscoveryConfig = DiscoveryConfig()
    resource: ResourceConfig = ResourceConfig()

    @property
    def console_enabled(self) -> bool:
        enabled = self.export.console.enabled
        return not self.otlp.endpoint if enabled is None else enabled
