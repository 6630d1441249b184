"""A batch of spans grouped once, by what RED and the service map resolve once per group."""

from __future__ import annotations

from collections.abc import ItemsView, Iterable

from telegen.signals import SpanRecord

# (id of the resource, id of the span's shape (its metric_attrs) or -id of a span without one, span kind)
GroupKey = tuple[int, int, int]


class SpanGroups:
    """Spans keyed by object identity: the enricher shares one resource per process and the
    builder one metric_attrs tuple per span shape, so a batch falls into a few groups without
    hashing tuples. Everything RED and the service map read per group (attribute set, peer,
    ports) is constant within it. A span whose metric_attrs is None (attributes rewritten
    after the builder) is a group of its own. Identities are valid while the spans live."""

    __slots__ = ("_durations", "groups")

    def __init__(self, spans: Iterable[SpanRecord]) -> None:
        groups: dict[GroupKey, list[SpanRecord]] = {}
        for span in spans:
            shape = span.metric_attrs
            key = (id(span.resource), id(shape) if shape is not None else -id(span), span.kind)
            group = groups.get(key)
            if group is None:
                groups[key] = [span]
            else:
                group.append(span)
        self.groups = groups
        self._durations: dict[GroupKey, list[float]] = {}

    def items(self) -> ItemsView[GroupKey, list[SpanRecord]]:
        return self.groups.items()

    def durations(self, key: GroupKey) -> list[float]:
        """The group's span durations in seconds (never negative), worked out once for all readers."""
        got = self._durations.get(key)
        if got is None:
            got = self._durations[key] = [max(0, s.end_ns - s.start_ns) / 1e9 for s in self.groups[key]]
        return got
