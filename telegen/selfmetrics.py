"""telegen_* self metrics as a Collector: every value is read from the stages at scrape time."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import psutil
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from telegen.buildinfo import build_info

if TYPE_CHECKING:
    from telegen.capture.stage import CaptureStage
    from telegen.capture.tcp_stage import TcpCaptureStage


def ring_loss(stage: CaptureStage | TcpCaptureStage | None) -> tuple[int, dict[str, int]]:
    """(records read, kernel-side losses by reason) of one capture stage's ring buffer."""
    if stage is None:
        return 0, {}
    return stage.reader.received if stage.reader else 0, dict(stage.status()["ringbuf"]["lost_by_reason"])


class SelfCollector(Collector):
    def __init__(self, sources: Callable[[], dict[str, Any]]) -> None:
        self._sources = sources
        self._proc = psutil.Process()
        self._build = build_info()

    def collect(self) -> Iterator[Metric]:
        s = self._sources()
        info = GaugeMetricFamily("telegen_build_info", "telegen build information.", labels=["version", "commit"])
        info.add_metric([self._build["version"], self._build["commit"]], 1)
        yield info
        yield CounterMetricFamily("telegen_spans_collected", "Spans assembled from captured exchanges.",
                                  value=s["spans_collected"])
        yield GaugeMetricFamily("telegen_process_resident_memory_bytes", "Agent resident memory.",
                                value=self._proc.memory_info().rss)
        cpu = self._proc.cpu_times()
        yield CounterMetricFamily("telegen_process_cpu_seconds", "Agent CPU time, user + system.",
                                  value=cpu.user + cpu.system)
        received = CounterMetricFamily("telegen_ebpf_events_received", "Records read from BPF ring buffers.",
                                       labels=["program"])
        lost = CounterMetricFamily("telegen_ebpf_events_lost",
                                   "Events the kernel side could not hand over, by reason.",
                                   labels=["program", "reason"])
        for program, (got, lost_by_reason) in s["ebpf"].items():
            received.add_metric([program], got)
            for reason, n in lost_by_reason.items():
                lost.add_metric([program, reason], n)
        yield received
        yield lost
        shed = CounterMetricFamily("telegen_ebpf_exchanges_sampled_out",
                                   "Exchanges counted in the kernel but not emitted, shed to keep the CPU budget.",
                                   labels=["program"])
        exchanges = CounterMetricFamily("telegen_ebpf_exchanges", "Exchanges completed in the kernel (exact).",
                                        labels=["program"])
        for program, (total, sampled_out) in s["exchanges"].items():
            exchanges.add_metric([program], total)
            shed.add_metric([program], sampled_out)
        yield exchanges
        yield shed
        rate = GaugeMetricFamily("telegen_ebpf_shed_ratio", "Share of exchanges shed in the kernel now (0..1).")
        rate.add_metric([], s["shed_permille"] / 1000.0)
        yield rate
        errors = CounterMetricFamily("telegen_decode_errors", "Captured records or heads that failed to decode.",
                                     labels=["kind"])
        for kind, n in sorted(s["decode_errors"].items()):
            errors.add_metric([kind], n)
        yield errors
        overflow = CounterMetricFamily("telegen_http_route_overflow",
                                       "Requests whose route went to the overflow route (cap reached).",
                                       labels=["service"])
        for service, n in sorted(s["route_overflow"].items()):
            overflow.add_metric([service], n)
        yield overflow
        yield CounterMetricFamily("telegen_log_messages_suppressed", "Repeated log lines suppressed.",
                                  value=s["logs_suppressed"])
        yield CounterMetricFamily("telegen_http_exchanges_thinned",
                                  "Queued exchange records dropped before decode after the kernel's shed rate rose "
                                  "(re-drawn at the new rate; RED stays weighted).",
                                  value=s["exchanges_thinned"])
        yield CounterMetricFamily("telegen_memory_released_bytes",
                                  "Free heap memory handed back to the kernel after record backlogs (malloc_trim).",
                                  value=s["memory_released_bytes"])
