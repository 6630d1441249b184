"""A batch of spans grouped by what RED and the service map resolve once per group."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from telegen.signals import SpanRecord

# (id of the resource, id of the shared shape object or -id of a span without one, span kind)
GroupKey = tuple[int, int, int]


def by_shape(spans: Iterable[SpanRecord], shape_of: Callable[[SpanRecord], object | None]) -> dict[
        GroupKey, list[SpanRecord]]:
    """Spans keyed by object identity: the builder shares one resource per process and one
    shape object per span shape, so a batch falls into a few groups without hashing tuples.
    A span whose shape is None (attributes rewritten after the builder) is a group of its own.
    Identities are valid while the spans live."""
    groups: dict[GroupKey, list[SpanRecord]] = {}
    for span in spans:
        shape = shape_of(span)
        key = (id(span.resource), id(shape) if shape is not None else -id(span), span.kind)
        group = groups.get(key)
        if group is None:
            groups[key] = [span]
        else:
            group.append(span)
    return groups
