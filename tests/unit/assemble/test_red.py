"""telegen.assemble.red: histogram placement, sample weights, low-cardinality attributes."""

from __future__ import annotations

from typing import Any

import pytest

from telegen.assemble.http_shapes import METRIC_ATTRS
from telegen.assemble.red import DURATION_BUCKETS, SIZE_BUCKETS, RedMetrics
from telegen.signals import SPAN_KIND_CLIENT, SPAN_KIND_SERVER, HistogramPoint, MetricFamily, SpanRecord

_ATTRS = {"http.request.method": "GET", "http.route": "/users/{id}", "http.response.status_code": 200,
          "url.scheme": "http", "server.address": "svc", "server.port": 8080,
          "network.protocol.version": "1.1"}


def _span(duration_s: float, *, kind: int = SPAN_KIND_SERVER, weight: float = 1.0,
          resource: tuple[tuple[str, Any], ...] = (("service.name", "a"),), **attrs: Any) -> SpanRecord:
    merged = {**_ATTRS, "url.path": "/users/123", "client.address": "10.0.0.9", "client.port": 40000,
              "user_agent.original": "curl", **attrs}
    return SpanRecord(b"t" * 16, b"s" * 8, b"", "GET /users/{id}", kind, 1_000, 1_000 + int(duration_s * 1e9),
                      merged, resource=resource, sample_weight=weight)


def _families(red: RedMetrics) -> dict[str, MetricFamily]:
    return {f.name: f for f in red.collect_metrics()}


def _point(fam: MetricFamily) -> HistogramPoint:
    assert len(fam.points) == 1
    point = fam.points[0]
    assert isinstance(point, HistogramPoint)
    return point


@pytest.mark.parametrize(("seconds", "bucket"), [
    (0.0, 0), (0.005, 0), (0.0051, 1), (0.1, 5), (0.3, 7), (10.0, 13), (10.5, 14),
])
def test_duration_bucket_placement(seconds: float, bucket: int) -> None:
    red = RedMetrics()
    red.observe([_span(seconds)])
    point = _point(_families(red)["http.server.request.duration"])
    assert point.bounds == DURATION_BUCKETS
    assert len(point.bucket_counts) == len(DURATION_BUCKETS) + 1
    assert point.bucket_counts[bucket] == 1
    assert point.count == 1
    assert point.sum == pytest.approx(seconds)


def test_body_size_histograms() -> None:
    red = RedMetrics()
    red.observe([_span(0.01, **{"http.request.body.size": 0, "http.response.body.size": 1500})])
    fams = _families(red)
    req = _point(fams["http.server.request.body.size"])
    resp = _point(fams["http.server.response.body.size"])
    assert req.bounds == SIZE_BUCKETS and resp.bounds == SIZE_BUCKETS
    assert req.bucket_counts[0] == 1  # 0 <= 0
    assert resp.bucket_counts[3] == 1  # (1000, 10000]
    assert resp.sum == 1500
    assert fams["http.server.response.body.size"].unit == "By"
    assert fams["http.server.request.duration"].unit == "s"


def test_families_per_kind_and_counts() -> None:
    red = RedMetrics()
    red.observe([_span(0.01), _span(0.02), _span(0.2, kind=SPAN_KIND_CLIENT),
                 _span(0.02, **{"http.response.body.size": 10})])
    fams = _families(red)
    assert set(fams) == {"http.server.request.duration", "http.client.request.duration",
                         "http.server.response.body.size"}
    assert _point(fams["http.server.request.duration"]).count == 3
    assert _point(fams["http.client.request.duration"]).count == 1
    assert fams["http.client.request.duration"].kind == "histogram"
    assert "client" in fams["http.client.request.duration"].description


def test_attribute_set_excludes_raw_path_and_peer_details() -> None:
    red = RedMetrics()
    red.observe([_span(0.01, **{"url.path": f"/users/{i}", "client.port": 40000 + i}) for i in range(50)])
    point = _point(_families(red)["http.server.request.duration"])
    assert point.attributes == _ATTRS
    assert point.count == 50
    for banned in ("url.path", "client.address", "client.port", "user_agent.original", "url.query"):
        assert banned not in point.attributes


def test_error_type_and_status_split_series() -> None:
    red = RedMetrics()
    red.observe([_span(0.01), _span(0.01, **{"http.response.status_code": 500, "error.type": "500"})])
    fam = _families(red)["http.server.request.duration"]
    assert sorted(p.attributes.get("error.type", "") for p in fam.points) == ["", "500"]


def test_resources_get_separate_families() -> None:
    red = RedMetrics()
    red.observe([_span(0.01, resource=(("service.name", "a"),)), _span(0.01, resource=(("service.name", "b"),))])
    fams = [f for f in red.collect_metrics() if f.name == "http.server.request.duration"]
    assert sorted(f.resource for f in fams) == [(("service.name", "a"),), (("service.name", "b"),)]


def test_sample_weight_scales_counts_and_sum() -> None:
    red = RedMetrics()
    red.observe([_span(0.01, weight=4.0), _span(0.3, weight=4.0)])
    point = _point(_families(red)["http.server.request.duration"])
    assert point.count == 8
    assert point.bucket_counts[1] == 4 and point.bucket_counts[7] == 4
    assert point.sum == pytest.approx(4 * 0.31)


def test_fractional_weights_keep_count_equal_to_bucket_sum() -> None:
    red = RedMetrics()
    red.observe([_span(s, weight=1000 / 3) for s in (0.001, 0.02, 0.3)])
    point = _point(_families(red)["http.server.request.duration"])
    assert sum(point.bucket_counts) == point.count


def test_cumulative_across_collections() -> None:
    red = RedMetrics()
    red.observe([_span(0.01)])
    first = _point(_families(red)["http.server.request.duration"]).count
    red.observe([_span(0.01)])
    assert (first, _point(_families(red)["http.server.request.duration"]).count) == (1, 2)


def test_series_cap_counts_overflow() -> None:
    red = RedMetrics(max_series=2)
    red.observe([_span(0.01, **{"http.route": f"/r{i}"}) for i in range(5)])
    assert red.stats() == {"series": 2, "series_overflow": 3}


def test_negative_duration_counts_as_zero() -> None:
    red = RedMetrics()
    span = _span(0.01)
    span.end_ns = span.start_ns - 5
    red.observe([span])
    point = _point(_families(red)["http.server.request.duration"])
    assert point.bucket_counts[0] == 1 and point.sum == 0


def test_builder_attribute_set_is_used_and_none_recomputes() -> None:
    """The builder hands RED its attribute pairs per shape; enrichment that rewrites one sets
    metric_attrs to None and RED reads the (rewritten) attributes instead."""
    red = RedMetrics()
    precomputed = _span(0.01)
    precomputed.metric_attrs = (("http.request.method", "GET"), ("http.route", "/from-shape"))
    rewritten = _span(0.01, **{"server.address": "svc.ns"})
    rewritten.metric_attrs = None
    red.observe([precomputed, rewritten])
    points = _families(red)["http.server.request.duration"].points
    assert sorted(p.attributes.get("http.route", "") for p in points) == ["/from-shape", "/users/{id}"]
    assert any(p.attributes.get("server.address") == "svc.ns" for p in points)


def test_spans_sharing_one_attribute_tuple_share_one_series() -> None:
    red = RedMetrics()
    shared = tuple((k, _ATTRS[k]) for k in METRIC_ATTRS if k in _ATTRS)
    spans = [_span(0.01) for _ in range(5)]
    for span in spans:
        span.metric_attrs = shared
    red.observe(spans)
    red.observe([_span(0.02)])  # computed from attributes: the same set, the same series
    assert red.stats()["series"] == 1
    assert _point(_families(red)["http.server.request.duration"]).count == 6
