"""Self-telemetry HTTP API: status, health, metrics, admin and debug endpoints on their own loop."""

from telegen.api.server import ApiServer

__all__ = ["ApiServer"]
