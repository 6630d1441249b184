"""The records that flow from assembly to export: spans, log records and metric families.

Plain slotted dataclasses, built in batches; exporters turn them into OTLP protobuf or
Prometheus families. Resources are hashable tuples so exporters can group by them cheaply.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

AttrValue = str | int | float | bool
Attributes = dict[str, AttrValue]
# Sorted (key, value) pairs: hashable, so batches group spans by resource without copying.
Resource = tuple[tuple[str, AttrValue], ...]

SPAN_KIND_SERVER = 2  # OTLP Span.SpanKind values
SPAN_KIND_CLIENT = 3
STATUS_UNSET = 0
STATUS_ERROR = 2


def make_resource(attrs: dict[str, AttrValue]) -> Resource:
    return tuple(sorted((k, v) for k, v in attrs.items() if v is not None and v != ""))


@dataclass(slots=True)
class SpanRecord:
    trace_id: bytes  # 16 bytes
    span_id: bytes  # 8 bytes
    parent_span_id: bytes  # b"" for a root span
    name: str
    kind: int
    start_ns: int  # Unix epoch nanoseconds
    end_ns: int
    attributes: Attributes  # may be shared with other spans (see base_attrs): replaced, never changed
    resource: Resource = ()
    status_code: int = STATUS_UNSET
    status_message: str = ""
    pid: int = 0  # for enrichment; not exported as such
    cgroup_id: int = 0
    sample_weight: float = 1.0  # exchanges this span stands for when the kernel sheds (RED weighting)
    # RED's attribute pairs, worked out once per span shape by the builder; whoever rewrites one
    # of those attributes afterwards (peer names) sets it to None so RED recomputes.
    metric_attrs: tuple[tuple[str, AttrValue], ...] | None = None
    # Attributes shared by every span of one shape (often `attributes` itself): `attributes`
    # begins with exactly these pairs, in this order, so the OTLP encoder writes their bytes once
    # per shape. Whoever rewrites an attribute sets it to None, as for metric_attrs.
    base_attrs: Attributes | None = None


@dataclass(slots=True)
class LogRecordItem:
    time_ns: int
    severity_number: int  # OTLP SeverityNumber (9 INFO, 13 WARN, 17 ERROR)
    severity_text: str
    body: str
    attributes: Attributes
    resource: Resource = ()
    event_name: str = ""
    pid: int = 0
    cgroup_id: int = 0


@dataclass(slots=True)
class NumberPoint:
    attributes: Attributes
    value: float | int


@dataclass(slots=True)
class HistogramPoint:
    attributes: Attributes
    bounds: tuple[float, ...]
    bucket_counts: list[int]  # len(bounds) + 1
    count: int
    sum: float


@dataclass(slots=True)
class MetricFamily:
    """One instrument's points for one resource (cumulative temporality)."""

    name: str  # OTel name, e.g. http.server.request.duration
    description: str
    unit: str  # UCUM, e.g. "s", "By", "{connection}"
    kind: Literal["histogram", "counter", "gauge"]
    resource: Resource
    start_ns: int
    points: list[NumberPoint | HistogramPoint] = field(default_factory=list)


class MetricSource(Protocol):
    """Anything that holds cumulative metric state and can snapshot it."""

    def collect_metrics(self) -> list[MetricFamily]: ...
