"""Typed configuration: YAML + ${ENV} expansion + OTEL_* variables, validated into frozen models.

This is the only module that reads the environment for configuration.
"""

from __future__ import annotations

import copy
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

DEFAULT_CONFIG_PATH = Path("/etc/telegen/config.yaml")

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(Exception):
    """A configuration that cannot be used; `problems` maps each field path to its problem."""

    def __init__(self, problems: dict[str, str], source: str = "") -> None:
        self.problems = problems
        self.source = source
        lines = [f"{path}: {msg}" for path, msg in problems.items()]
        super().__init__("; ".join(lines))


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
    compression: Literal["gzip", "none"] = "gzip"
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
    cpu_budget: float = Field(0.25, gt=0, le=8)  # cores the span pipeline may use before the kernel sheds
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


@dataclass(frozen=True)
class LoadedConfig:
    config: Config
    path: Path | None  # None: embedded defaults


def expand_env(value: Any, env: Mapping[str, str], path: str = "") -> Any:
    """Expand ${VAR} and ${VAR:-default} in every string of a YAML tree."""
    if isinstance(value, str):
        def repl(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            got = env.get(name)
            if got is None or (got == "" and default is not None):
                return default if default is not None else ""
            return got
        return _ENV_REF.sub(repl, value)
    if isinstance(value, dict):
        return {k: expand_env(v, env, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, env, path) for v in value]
    return value


def _parse_kv_list(text: str) -> dict[str, str]:
    """OTEL's 'k1=v1,k2=v2' (values percent-decoded) as used by headers and resource attributes."""
    from urllib.parse import unquote

    out: dict[str, str] = {}
    for item in text.split(","):
        if "=" in item:
            key, _, val = item.partition("=")
            if key.strip():
                out[unquote(key.strip())] = unquote(val.strip())
    return out


def _apply_otel_env(raw: dict[str, Any], env: Mapping[str, str]) -> None:
    """Standard OTEL_* variables fill what the file leaves unset (the file wins where it speaks)."""
    otlp = raw.setdefault("otlp", {}) if isinstance(raw.get("otlp", {}), dict) else {}
    tls = otlp.setdefault("tls", {}) if isinstance(otlp.get("tls", {}), dict) else {}

    def get(*names: str) -> str | None:
        for name in names:
            if env.get(name):
                return env[name]
        return None

    endpoint = get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
    if endpoint and not otlp.get("endpoint"):
        otlp["endpoint"] = endpoint
        if endpoint.startswith("https://") and "insecure" not in otlp:
            otlp["insecure"] = False
    if (insecure := get("OTEL_EXPORTER_OTLP_INSECURE")) and "insecure" not in otlp:
        otlp["insecure"] = insecure.strip().lower() == "true"
    if (headers := get("OTEL_EXPORTER_OTLP_HEADERS")) and not otlp.get("headers"):
        otlp["headers"] = _parse_kv_list(headers)
    if (compression := get("OTEL_EXPORTER_OTLP_COMPRESSION")) and "compression" not in otlp:
        otlp["compression"] = compression.strip().lower()
    if (timeout := get("OTEL_EXPORTER_OTLP_TIMEOUT")) and "timeout" not in otlp:
        try:
            otlp["timeout"] = float(timeout) / 1000.0  # the variable is in milliseconds
        except ValueError:
            otlp["timeout"] = timeout  # let validation name the field
    for var, key in (("OTEL_EXPORTER_OTLP_CERTIFICATE", "ca_file"),
                     ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "cert_file"),
                     ("OTEL_EXPORTER_OTLP_CLIENT_KEY", "key_file")):
        if (val := get(var)) and not tls.get(key):
            tls[key] = val
    resource = raw.setdefault("resource", {}) if isinstance(raw.get("resource", {}), dict) else {}
    attrs = _parse_kv_list(env.get("OTEL_RESOURCE_ATTRIBUTES", ""))
    if attrs:
        merged = dict(attrs)
        merged.update(resource.get("attributes") or {})
        resource["attributes"] = merged
    if env.get("NODE_NAME") and not raw.get("node_name"):
        raw["node_name"] = env["NODE_NAME"]
    service = env.get("OTEL_SERVICE_NAME") or attrs.get("service.name")
    if service and "service_name" not in resource:
        resource["service_name"] = service


_UNION_LABELS = frozenset({"bool", "str", "int", "float"})
_UNION_LABEL_PREFIXES = ("function-after[", "function-before[", "function-wrap[", "literal[")


def _format_loc(loc: tuple[int | str, ...], key_last: bool = False) -> str:
    """Dotted field path; with key_last the final item is a user's key, never a union label."""
    parts: list[str] = []
    for i, item in enumerate(loc):
        if isinstance(item, int):
            parts[-1:] = [f"{parts[-1]}[{item}]"] if parts else [f"[{item}]"]
        elif (item in _UNION_LABELS or item.startswith(_UNION_LABEL_PREFIXES)) and not (
                key_last and i == len(loc) - 1):
            continue  # pydantic's union-branch labels, not config keys
        else:
            parts.append(item)
    return ".".join(parts) or "(root)"


def _problem_text(err: Any) -> str:
    if err["type"] == "extra_forbidden":
        return "unknown key"
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")


def validate(raw: Any, source: str = "<config>") -> Config:
    """Validate a raw tree into a Config, or raise ConfigError naming every bad field path."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError({"(root)": "the configuration must be a YAML mapping"}, source)
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        problems: dict[str, str] = {}
        for err in exc.errors():
            problems.setdefault(_format_loc(err["loc"], err["type"] == "extra_forbidden"), _problem_text(err))
        raise ConfigError(problems, source) from None


def embedded_defaults_text() -> str:
    return resources.files("telegen").joinpath("defaults.yaml").read_text(encoding="utf-8")


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_yaml(text: str, source: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError({"(yaml)": f"invalid YAML{where}: {getattr(exc, 'problem', exc)}"}, source) from None


def load(path: Path | None = None, env: Mapping[str, str] | None = None) -> LoadedConfig:
    """Load the config file (or the embedded defaults), expand ${ENV}, apply OTEL_*, validate.

    With path None, /etc/telegen/config.yaml is used when it exists.
    """
    env = os.environ if env is None else env
    if path is None and DEFAULT_CONFIG_PATH.exists():
        path = DEFAULT_CONFIG_PATH
    defaults = parse_yaml(embedded_defaults_text(), "<embedded defaults>")
    raw: Any = {}
    source = "<embedded defaults>"
    if path is not None:
        source = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError({"(file)": f"cannot read {path}: {exc.strerror or exc}"}, source) from None
        raw = parse_yaml(text, source)
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise ConfigError({"(root)": "the configuration must be a YAML mapping"}, source)
    raw = expand_env(raw, env)
    _apply_otel_env(raw, env)
    merged = _deep_merge(defaults, raw)
    return LoadedConfig(validate(merged, source), path)


def diff(old: Config, new: Config) -> list[str]:
    """Dotted paths of every leaf that differs between two configs."""
    changed: list[str] = []

    def walk(a: Any, b: Any, prefix: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict) and a and b and prefix != "otlp.headers":
            for key in sorted(set(a) | set(b)):
                walk(a.get(key), b.get(key), f"{prefix}.{key}" if prefix else key)
        elif a != b:
            changed.append(prefix)

    walk(old.model_dump(mode="json"), new.model_dump(mode="json"), "")
    return changed
