"""Configuration loading: YAML + ${ENV} expansion + OTEL_* variables, validated into the frozen
models of config_models.py (re-exported here).

This is the only module that reads the environment for configuration.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from telegen.config_models import (  # re-exported: callers import models from here
    AgentConfig,
    AuthConfig,
    AutoToggle,
    CloudDiscoveryConfig,
    Config,
    ConsoleConfig,
    CorsConfig,
    DebugConfig,
    DiscoveryConfig,
    DockerDiscoveryConfig,
    EbpfConfig,
    ExportConfig,
    FeatureToggle,
    HttpConfig,
    KubernetesDiscoveryConfig,
    OtlpConfig,
    ProfilingConfig,
    PrometheusConfig,
    RateLimitConfig,
    ResourceConfig,
    RoutePattern,
    SelfTelemetryConfig,
    SignalQueueConfig,
    SourceToggle,
    TlsConfig,
    parse_listen,
)
from telegen.yaml_loader import UniqueKeyLoader

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "AgentConfig",
    "AuthConfig",
    "AutoToggle",
    "CloudDiscoveryConfig",
    "Config",
    "ConfigError",
    "ConsoleConfig",
    "CorsConfig",
    "DebugConfig",
    "DiscoveryConfig",
    "DockerDiscoveryConfig",
    "EbpfConfig",
    "ExportConfig",
    "FeatureToggle",
    "HttpConfig",
    "KubernetesDiscoveryConfig",
    "LoadedConfig",
    "OtlpConfig",
    "ProfilingConfig",
    "PrometheusConfig",
    "RateLimitConfig",
    "ResourceConfig",
    "RoutePattern",
    "SelfTelemetryConfig",
    "SignalQueueConfig",
    "SourceToggle",
    "TlsConfig",
    "diff",
    "embedded_defaults_text",
    "expand_env",
    "load",
    "parse_listen",
    "parse_yaml",
    "validate",
]

DEFAULT_CONFIG_PATH = Path("/etc/telegen/config.yaml")

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(Exception):
    """A configuration that cannot be used; `problems` maps each field path to its problem."""

    def __init__(self, problems: dict[str, str], source: str = "") -> None:
        self.problems = problems
        self.source = source
        lines = [f"{path}: {msg}" for path, msg in problems.items()]
        super().__init__("; ".join(lines))


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
        return yaml.load(text, Loader=UniqueKeyLoader)
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
