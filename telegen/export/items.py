"""What the export queues hold: the three signals' items, and cheap size estimates for byte bounds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeAlias

from telegen.signals import Attributes, HistogramPoint, LogRecordItem, MetricFamily, NumberPoint, SpanRecord

Signal = Literal["traces", "metrics", "logs"]
SIGNALS: tuple[Signal, ...] = ("traces", "metrics", "logs")


@dataclass(slots=True)
class MetricPointItem:
    """One data point (the unit the metrics queue counts) with the family it belongs to.

    The family is shared by all points of one collection and only its metadata is read;
    `last` marks the final point of a collection so the console can print a complete summary.
    """

    family: MetricFamily
    point: NumberPoint | HistogramPoint
    time_ns: int
    last: bool = False


ExportItem: TypeAlias = SpanRecord | LogRecordItem | MetricPointItem


def _attrs_cost(attrs: Attributes) -> int:
    # Strings dominate; numbers and keys are close to a fixed cost each on the wire.
    total = 0
    for key, value in attrs.items():
        total += 16 + len(key) + (len(value) if isinstance(value, str) else 8)
    return total


def span_cost(span: SpanRecord) -> int:
    # O(1) on the hot path: spans carry ~15 short attributes; only these two vary widely.
    attrs = span.attributes
    path, agent = attrs.get("url.path", ""), attrs.get("user_agent.original", "")
    return (96 + len(span.name) + len(span.status_message) + 40 * len(attrs)
            + (len(path) if isinstance(path, str) else 0) + (len(agent) if isinstance(agent, str) else 0))


def log_cost(log: LogRecordItem) -> int:
    return 64 + len(log.body) + len(log.severity_text) + len(log.event_name) + _attrs_cost(log.attributes)


def metric_cost(item: MetricPointItem) -> int:
    point = item.point
    extra = 16 * len(point.bucket_counts) if isinstance(point, HistogramPoint) else 8
    return 48 + extra + _attrs_cost(point.attributes)


def flatten_families(families: list[MetricFamily], time_ns: int) -> list[MetricPointItem]:
    """Families -> one queue item per data point, the last one flagged."""
    out = [MetricPointItem(fam, point, time_ns) for fam in families for point in fam.points]
    if out:
        out[-1].last = True
    return out
