"""Spans and log records -> serialized OTLP Export{Trace,Logs}ServiceRequests under a size limit.

Per span: a few fixed fields, a join of memoised attribute fields, a length prefix. Each
resource's fields are encoded once and kept per resource object; requests are split on span
boundaries from the per-span bytes, never by re-encoding. Field numbers: opentelemetry-proto
trace/v1, logs/v1, common/v1, resource/v1 (tests check them against the generated descriptors).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import TypeVar

from telegen import __version__
from telegen.export.otlp_wire import (
    MEMO_LIMIT,
    KeyValueMemo,
    StringFieldMemo,
    delimited,
    enum_field,
    key_value_field,
    string_field,
    utf8,
    varint,
)
from telegen.signals import Attributes, LogRecordItem, Resource, SpanRecord

SCOPE_NAME = "telegen"
RESOURCE_MEMO_LIMIT = 1_024

T = TypeVar("T", SpanRecord, LogRecordItem)

# Tags: (field number << 3) | wire type (0 varint, 1 fixed64, 2 length-delimited).
_IDS = struct.Struct("<BB16sBB8s").pack  # Span trace_id 1, span_id 2
_IDS_PARENT = struct.Struct("<BB16sBB8sBB8s").pack  # ... and parent_span_id 4
_KIND_TIMES = struct.Struct("<BBBQBQ").pack  # Span kind 6 (one-byte varint), start 7, end 8 (fixed64)
_FIXED64 = struct.Struct("<BQ").pack
_STATUS_UNSET = b"\x7a\x00"  # Span.status 15 is always present (the generated encoder set it), even empty
_SCOPE_FIELD = delimited(0x0A, string_field(0x0A, SCOPE_NAME) + string_field(0x12, __version__))

_span_attrs, _log_attrs = KeyValueMemo(0x4A), KeyValueMemo(0x32)  # Span.attributes 9, LogRecord 6
_span_names = StringFieldMemo(0x2A)  # Span.name 5
_span_name = _span_names.memo.get  # the memo is cleared, never replaced, so the bound method stays valid
_severity_texts, _event_names = StringFieldMemo(0x1A), StringFieldMemo(0x62)  # LogRecord 3, 12
_statuses: dict[tuple[int, str], bytes] = {}
_span_prefixes: dict[int, bytes] = {}  # body length -> ScopeSpans.spans tag 2 + length; lengths < 2**14
_resources: dict[int, tuple[Resource, bytes]] = {}  # id -> (the tuple, kept alive so the id stays its own)
# SpanRecord.base_attrs by id -> (the dict, kept alive; its fields joined; its length)
_bases: dict[int, tuple[Attributes, bytes, int]] = {}


def resource_field(resource: Resource) -> bytes:
    """Field 1 of ResourceSpans/ResourceLogs, memoised per resource object (the enricher shares them)."""
    hit = _resources.get(id(resource))
    if hit is not None and hit[0] is resource:
        return hit[1]
    encoded = delimited(0x0A, b"".join(key_value_field(0x0A, k, v) for k, v in resource))
    if len(_resources) >= RESOURCE_MEMO_LIMIT:
        _resources.clear()
    _resources[id(resource)] = (resource, encoded)
    return encoded


def _status_field(code: int, message: str) -> bytes:
    encoded = _statuses.get((code, message))
    if encoded is None:
        if len(_statuses) >= MEMO_LIMIT:
            _statuses.clear()
        encoded = _statuses[(code, message)] = delimited(0x7A, string_field(0x12, message) + enum_field(0x18, code))
    return encoded


def _unusual_head(s: SpanRecord, name: bytes) -> list[bytes]:
    """Span fields 1-8 for ids of other lengths, kind 0 or >= 128, or zero times (never from capture)."""
    ids = [delimited(tag, value) for tag, value in ((0x0A, s.trace_id), (0x12, s.span_id),
                                                    (0x22, s.parent_span_id)) if value]
    times = [_FIXED64(tag, t) for tag, t in ((0x39, s.start_ns), (0x41, s.end_ns)) if t]
    return [*ids, name, enum_field(0x30, s.kind), *times]


def _base_fields(base: Attributes) -> tuple[Attributes, bytes, int]:
    """A shape's constant attribute fields, joined once and kept while the memo holds them."""
    hit = _bases.get(id(base))
    if hit is None or hit[0] is not base:
        if len(_bases) >= MEMO_LIMIT:
            _bases.clear()
        hit = _bases[id(base)] = (base, b"".join(_span_attrs.fields(base)), len(base))
    return hit


def span_field(s: SpanRecord) -> bytes:
    """One Span as a field of ScopeSpans: tag, length, body."""
    trace_id, span_id, parent, kind, start, end = s.trace_id, s.span_id, s.parent_span_id, s.kind, s.start_ns, s.end_ns
    name = _span_name(s.name)
    if name is None:
        name = _span_names.miss(s.name)
    if len(trace_id) == 16 and len(span_id) == 8 and len(parent) in (0, 8) and 0 < kind < 0x80 and start and end:
        parts = [_IDS_PARENT(0x0A, 16, trace_id, 0x12, 8, span_id, 0x22, 8, parent) if parent
                 else _IDS(0x0A, 16, trace_id, 0x12, 8, span_id),
                 name, _KIND_TIMES(0x30, kind, 0x39, start, 0x41, end)]
    else:
        parts = _unusual_head(s, name)
    base, attrs = s.base_attrs, s.attributes
    if base is None:
        parts += _span_attrs.fields(attrs)
    else:  # the shared fields in one piece, then the few that differ per span (usually none)
        _, joined, count = _base_fields(base)
        parts.append(joined)
        if base is not attrs:
            parts += _span_attrs.tail_fields(attrs, count)
    code, message = s.status_code, s.status_message
    parts.append(_status_field(code, message) if code or message else _STATUS_UNSET)
    body = b"".join(parts)
    n = len(body)
    prefix = _span_prefixes.get(n)
    if prefix is None:
        prefix = b"\x12" + varint(n)
        if n < 0x4000:
            _span_prefixes[n] = prefix
    return prefix + body


def log_record_field(r: LogRecordItem) -> bytes:
    """One LogRecord as a field of ScopeLogs; the observed time is the record's time."""
    time_ns = r.time_ns
    severity = _severity_texts.memo.get(r.severity_text)
    if severity is None:
        severity = _severity_texts.miss(r.severity_text)
    event = _event_names.memo.get(r.event_name)
    if event is None:
        event = _event_names.miss(r.event_name)
    parts = _log_attrs.fields(r.attributes)
    parts[0:0] = (_FIXED64(0x09, time_ns) if time_ns else b"", enum_field(0x10, r.severity_number), severity,
                  delimited(0x2A, delimited(0x0A, utf8(r.body))))  # body 5: AnyValue, always present
    parts += (_FIXED64(0x59, time_ns) if time_ns else b"", event)  # observed time 11, event name 12
    body = b"".join(parts)
    return b"\x12" + varint(len(body)) + body


def group_by_resource(items: Sequence[T]) -> list[tuple[Resource, list[T]]]:
    """Items per resource in first-seen order, each group under its first item's resource.

    Grouped by object identity: a tuple does not cache its hash, and hashing a 13-pair resource
    per item costs more than encoding a cached attribute. Equal resources held in distinct
    objects (rare) are regrouped by value.
    """
    by_id: dict[int, list[T]] = {}
    for item in items:
        key = id(item.resource)
        group = by_id.get(key)
        if group is None:
            by_id[key] = group = []
        group.append(item)
    groups = [(g[0].resource, g) for g in by_id.values()]
    if len(groups) == 1 or len({res for res, _ in groups}) == len(groups):
        return groups
    by_value: dict[Resource, list[T]] = {}
    for item in items:
        by_value.setdefault(item.resource, []).append(item)
    return [(g[0].resource, g) for g in by_value.values()]


# Per resource chunk: 2 tags, 2 lengths of at most 5 bytes each, and the scope field.
_CHUNK_OVERHEAD = 12 + len(_SCOPE_FIELD)


class _RequestPacker:
    """Fills requests of at most `max_bytes` with encoded item fields (one item alone may exceed it)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.requests: list[tuple[bytes, int]] = []
        self.parts: list[bytes] = []
        self.size = self.count = 0

    def add(self, head: bytes, fields: list[bytes]) -> None:
        """Add one resource's items (`head`: its resource field) in order, across requests as needed."""
        sizes = list(map(len, fields))
        start, n = 0, len(fields)
        while start < n:
            room = self.max_bytes - self.size - _CHUNK_OVERHEAD - len(head)
            end = start
            used = sum(sizes[start:])
            if used <= room:
                end = n
            else:
                used = 0
                while end < n and (used + sizes[end] <= room or (end == start and not self.count)):
                    used += sizes[end]
                    end += 1
            if end > start:
                self._chunk(head, fields[start:end], used)
                start = end
            if start < n:
                self.flush()

    def _chunk(self, head: bytes, fields: list[bytes], used: int) -> None:
        scope_len = len(_SCOPE_FIELD) + used
        scope_prefix = b"\x12" + varint(scope_len)  # ResourceSpans.scope_spans / ResourceLogs.scope_logs 2
        self.parts += (b"\x0a", varint(len(head) + len(scope_prefix) + scope_len), head, scope_prefix,
                       _SCOPE_FIELD)
        self.parts += fields
        self.size += _CHUNK_OVERHEAD + len(head) + used
        self.count += len(fields)

    def flush(self) -> None:
        if self.count:
            self.requests.append((b"".join(self.parts), self.count))
        self.parts, self.size, self.count = [], 0, 0


def _requests(items: Sequence[T], encode: Callable[[T], bytes], max_bytes: int) -> list[tuple[bytes, int]]:
    if not items:
        return [(b"", 0)]  # one empty request, as the generated encoder made
    packer = _RequestPacker(max_bytes)
    for resource, group in group_by_resource(items):
        packer.add(resource_field(resource), list(map(encode, group)))
    packer.flush()
    return packer.requests


def trace_requests(spans: Sequence[SpanRecord], max_bytes: int) -> list[tuple[bytes, int]]:
    """(serialized ExportTraceServiceRequest, span count) pairs, each under max_bytes when it can be."""
    return _requests(spans, span_field, max_bytes)


def logs_requests(logs: Sequence[LogRecordItem], max_bytes: int) -> list[tuple[bytes, int]]:
    """(serialized ExportLogsServiceRequest, record count) pairs, each under max_bytes when it can be."""
    return _requests(logs, log_record_field, max_bytes)
