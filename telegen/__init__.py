"""telegen: eBPF node telemetry agent."""

__version__ = "0.1.0"
