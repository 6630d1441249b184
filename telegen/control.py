"""What the API may ask of the running agent: published snapshots and admin actions.

agent.Agent implements AgentControl; the API depends only on this protocol, so it can be
tested against a stand-in and never reaches into stages directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client import CollectorRegistry

from telegen.config import Config


@dataclass(frozen=True)
class ReloadResult:
    changed: list[str]
    restart_required: list[str]


class ReloadApplyError(Exception):
    """Applying a valid new config failed; the previous config was restored."""


@dataclass(frozen=True)
class FlushResult:
    ok: bool  # False when the collector could not be reached in time
    flushed: dict[str, int]  # items acknowledged by this flush, per signal
    waiting: dict[str, int] = field(default_factory=dict)  # still queued when not ok


class AgentControl(Protocol):
    registry: CollectorRegistry

    def config(self) -> Config:
        """The running configuration."""
        ...

    def snapshot(self, section: str) -> dict[str, Any]:
        """Published state: 'status', 'ebpf', 'export', 'discovery', 'topology'."""
        ...

    def health(self) -> tuple[bool, str]:
        """(True, '') or (False, reason) for /healthz."""
        ...

    def readiness(self) -> dict[str, str]:
        """Check name -> 'ok' | 'disabled' | 'failed: reason', for /ready."""
        ...

    def reload(self) -> ReloadResult:
        """Re-read the config file; raises config.ConfigError (invalid) or ReloadApplyError."""
        ...

    def flush(self, timeout: float) -> FlushResult:
        """Export everything queued now and wait up to `timeout` for the collector."""
        ...
