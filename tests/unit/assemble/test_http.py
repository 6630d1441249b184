"""telegen.assemble.http.HttpSpanBuilder: SERVER/CLIENT spans, attributes, trace links, hostile bytes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telegen.assemble import http as httpmod
from telegen.assemble.http import HttpSpanBuilder
from telegen.assemble.routes import RouteResolver
from telegen.signals import SPAN_KIND_CLIENT, SPAN_KIND_SERVER, STATUS_ERROR, STATUS_UNSET, SpanRecord

from .factories import OK_RESPONSE, exchange

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


def _builder(patterns: tuple[str, ...] = (), **kwargs: object) -> HttpSpanBuilder:
    return HttpSpanBuilder(RouteResolver(patterns, 100), **kwargs)  # type: ignore[arg-type]


def _one(builder: HttpSpanBuilder, *exchanges: object, offset: int = 0) -> SpanRecord:
    spans = builder.build(list(exchanges), offset)  # type: ignore[arg-type]
    assert len(spans) == 1
    return spans[0]


def test_server_span_attributes() -> None:
    req = (b"GET /users/123?debug=1 HTTP/1.1\r\nHost: api.example:8443\r\nUser-Agent: curl/8.1\r\n\r\n")
    resp = b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world"
    span = _one(_builder(), exchange(req, resp, pid=42, cgroup_id=9), offset=1_000_000_000)
    assert span.kind == SPAN_KIND_SERVER
    assert span.name == "GET /users/{id}"
    assert (span.start_ns, span.end_ns) == (1_001_000_000, 1_003_000_000)
    assert (span.pid, span.cgroup_id) == (42, 9)
    assert span.status_code == STATUS_UNSET
    assert span.parent_span_id == b""
    assert len(span.trace_id) == 16 and len(span.span_id) == 8
    assert span.attributes == {
        "http.request.method": "GET",
        "url.path": "/users/123",
        "url.scheme": "http",
        "http.route": "/users/{id}",
        "network.protocol.version": "1.1",
        "network.peer.address": "10.0.0.2",
        "network.peer.port": 50000,
        "server.address": "api.example",
        "server.port": 8443,
        "client.address": "10.0.0.2",
        "client.port": 50000,
        "user_agent.original": "curl/8.1",
        "http.request.body.size": 0,
        "http.response.body.size": 11,
        "http.response.status_code": 200,
    }


def test_client_span_attributes() -> None:
    req = b"POST /api/v1/items HTTP/1.0\r\nHost: backend\r\nContent-Length: 4\r\n\r\nbody"
    span = _one(_builder(), exchange(req, server=False))
    assert span.kind == SPAN_KIND_CLIENT
    assert span.name == "POST /api/v1/items"
    a = span.attributes
    assert a["server.address"] == "backend"
    assert a["server.port"] == 8080  # from the socket when the Host header has no port
    assert a["network.peer.address"] == "10.0.0.1" and a["network.peer.port"] == 8080
    assert a["network.protocol.version"] == "1.0"
    assert a["http.request.body.size"] == 4
    assert "client.address" not in a and "client.port" not in a


def test_server_address_falls_back_to_socket_without_host_header() -> None:
    a = _one(_builder(), exchange(b"GET / HTTP/1.0\r\n\r\n")).attributes
    assert (a["server.address"], a["server.port"]) == ("10.0.0.1", 8080)


@pytest.mark.parametrize(("host", "address", "port"), [
    ("[::1]:9000", "::1", 9000),
    ("[2001:db8::1]", "2001:db8::1", 8080),
    ("svc:99999", "svc", 8080),  # not a port: the socket's
    ("svc:\xb2", "svc", 8080),  # latin-1 superscript two passes str.isdigit()
    ("svc:", "svc", 8080),
])
def test_host_header_forms(host: str, address: str, port: int) -> None:
    req = b"GET / HTTP/1.1\r\nHost: " + host.encode("latin-1") + b"\r\n\r\n"
    a = _one(_builder(), exchange(req)).attributes
    assert (a["server.address"], a["server.port"]) == (address, port)


def test_unknown_method_is_other_with_original() -> None:
    span = _one(_builder(), exchange(b"PURGE /cache HTTP/1.1\r\n\r\n"))
    assert span.attributes["http.request.method"] == "_OTHER"
    assert span.attributes["http.request.method_original"] == "PURGE"
    assert span.name == "_OTHER /cache"


def test_known_method_has_no_method_original() -> None:
    assert "http.request.method_original" not in _one(_builder(), exchange()).attributes


def test_query_is_captured_only_when_enabled() -> None:
    req = b"GET /search?q=secret HTTP/1.1\r\n\r\n"
    assert "url.query" not in _one(_builder(), exchange(req)).attributes
    a = _one(_builder(capture_query=True), exchange(req)).attributes
    assert a["url.query"] == "q=secret"
    assert a["url.path"] == "/search"


@pytest.mark.parametrize(("target", "path"), [
    ("http://proxy.example/a/b", "/a/b"),
    ("http://proxy.example", "/"),
    ("*", "/*"),
])
def test_non_origin_form_targets(target: str, path: str) -> None:
    req = f"GET {target} HTTP/1.1\r\n\r\n".encode()
    assert _one(_builder(), exchange(req)).attributes["url.path"] == path


def test_configured_route_pattern() -> None:
    span = _one(_builder(("/api/users/{name}",)), exchange(b"GET /api/users/alice HTTP/1.1\r\n\r\n"))
    assert span.attributes["http.route"] == "/api/users/{name}"
    assert span.name == "GET /api/users/{name}"


@pytest.mark.parametrize(("status", "server", "error"), [
    (200, True, None), (404, True, None), (500, True, "500"), (503, True, "503"),
    (200, False, None), (404, False, "404"), (502, False, "502"), (302, False, None),
])
def test_error_type_by_status_and_kind(status: int, server: bool, error: str | None) -> None:
    resp = f"HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n".encode()
    span = _one(_builder(), exchange(server=server, response=resp))
    assert span.attributes["http.response.status_code"] == status
    assert span.attributes.get("error.type") == error
    assert span.status_code == (STATUS_ERROR if error else STATUS_UNSET)


def test_no_response_is_an_error() -> None:
    span = _one(_builder(), exchange(response=b""))
    assert span.attributes["error.type"] == "no_response"
    assert "http.response.status_code" not in span.attributes
    assert span.status_code == STATUS_ERROR


def test_malformed_response_is_an_error_and_counted() -> None:
    builder = _builder()
    span = _one(builder, exchange(response=b"\x16\x03\x03\x00\x02\x02\x28"))
    assert span.attributes["error.type"] == "malformed_response"
    assert span.status_code == STATUS_ERROR
    assert builder.decode_errors == {"bad_status_line": 1}


def test_unparseable_request_gives_no_span_and_is_counted() -> None:
    builder = _builder()
    assert builder.build([exchange(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03"),
                          exchange(b"SSH-2.0-OpenSSH\r\n"), exchange(b"")], 0) == []
    assert builder.decode_errors == {"bad_request_line": 2, "empty": 1}
    assert builder.spans_built == 0


def test_body_size_from_content_length_when_head_was_cut() -> None:
    # the capture limit cut the request head: size comes from Content-Length, not from bytes seen
    req = b"POST /u HTTP/1.1\r\nContent-Length: 70000\r\nX-Pad: aaaa"
    a = _one(_builder(), exchange(req, req_size=70_500)).attributes
    assert a["http.request.body.size"] == 70000


def test_bad_content_length_on_cut_head_is_counted_and_omitted() -> None:
    builder = _builder()
    req = b"POST /u HTTP/1.1\r\nContent-Length: -5\r\nX-Pad: aaaa"
    a = _one(builder, exchange(req)).attributes
    assert "http.request.body.size" not in a
    assert builder.decode_errors == {"bad_content_length": 1}


def test_body_size_uses_total_bytes_when_head_is_whole() -> None:
    resp = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello"
    a = _one(_builder(), exchange(response=resp, resp_size=len(resp) + 1000)).attributes
    assert a["http.response.body.size"] == len(b"5\r\nhello") + 1000


def test_sample_weight_from_permille() -> None:
    assert _one(_builder(), exchange(sample_permille=250)).sample_weight == 4.0
    assert _one(_builder(), exchange(sample_permille=0)).sample_weight == 1.0


def test_traceparent_joins_the_trace() -> None:
    req = f"GET / HTTP/1.1\r\ntraceparent: 00-{TRACE}-{PARENT}-01\r\n\r\n".encode()
    span = _one(_builder(), exchange(req, peer_addr="10.9.9.9"))
    assert span.trace_id.hex() == TRACE
    assert span.parent_span_id.hex() == PARENT


@pytest.mark.parametrize("value", [
    f"00-{'0' * 32}-{PARENT}-01",  # all-zero trace id is invalid
    f"00-{TRACE.upper()}-{PARENT}-01",
    f"00-{TRACE}-{PARENT}",
    "garbage",
])
def test_invalid_traceparent_starts_a_new_trace(value: str) -> None:
    req = f"GET / HTTP/1.1\r\ntraceparent: {value}\r\n\r\n".encode()
    span = _one(_builder(), exchange(req, peer_addr="10.9.9.9"))
    assert span.parent_span_id == b""
    assert span.trace_id.hex() != TRACE and span.trace_id != bytes(16)


def test_each_span_has_its_own_ids() -> None:
    spans = _builder().build([exchange(peer_addr="10.9.9.9") for _ in range(20)], 0)
    assert len({s.span_id for s in spans}) == 20
    assert len({s.trace_id for s in spans}) == 20


def test_spans_of_one_connection_share_one_attribute_dict() -> None:
    """Same shape, same client port and sizes: one dict, which is also the encoder's base."""
    builder = _builder()
    spans = builder.build([exchange(peer_port=40000) for _ in range(3)] + [exchange(peer_port=40001)], 0)
    assert spans[0].attributes is spans[1].attributes is spans[2].attributes is spans[0].base_attrs
    assert spans[3].attributes is not spans[0].attributes
    assert (spans[0].attributes["client.port"], spans[3].attributes["client.port"]) == (40000, 40001)
    bigger = builder.build([exchange(peer_port=40000, resp_size=len(OK_RESPONSE) + 10)], 0)[0]
    assert bigger.attributes["http.response.body.size"] == 12 and spans[0].attributes["http.response.body.size"] == 2


def test_attribute_variants_per_shape_are_bounded() -> None:
    builder = _builder()
    builder.build([exchange(peer_port=p) for p in range(1, httpmod.VARIANTS_PER_SHAPE + 50)], 0)
    (shape,) = {id(s): s for s in builder.shapes.known.values() if not isinstance(s, str)}.values()
    assert 0 < len(shape.variants) <= httpmod.VARIANTS_PER_SHAPE


def test_spans_carry_the_kernels_ids() -> None:
    ex = exchange(server=False)
    span = _one(_builder(), ex)
    assert (span.trace_id, span.span_id, span.parent_span_id) == (ex.trace_id, ex.span_id, b"")


def test_server_span_is_the_child_of_its_local_client_call() -> None:
    """The kernel gave the server exchange its client's trace id and span id (call_ids)."""
    client = exchange(server=False, local_addr="127.0.0.1", local_port=40000, peer_addr="127.0.0.1", peer_port=8080)
    server = exchange(server=True, local_addr="127.0.0.1", local_port=8080, peer_addr="127.0.0.1", peer_port=40000,
                      trace_id=client.trace_id, parent_span_id=client.span_id)
    by_kind = {s.kind: s for s in _builder().build([server, client], 0)}
    assert by_kind[SPAN_KIND_SERVER].trace_id == by_kind[SPAN_KIND_CLIENT].trace_id == client.trace_id
    assert by_kind[SPAN_KIND_SERVER].parent_span_id == by_kind[SPAN_KIND_CLIENT].span_id == client.span_id
    assert by_kind[SPAN_KIND_SERVER].span_id == server.span_id != client.span_id


def test_traceparent_on_a_local_call_keeps_both_ends_in_its_trace() -> None:
    """Both ends see the same header: both join its trace, the server stays the client's child."""
    req = f"GET / HTTP/1.1\r\ntraceparent: 00-{TRACE}-{PARENT}-01\r\n\r\n".encode()
    client = exchange(req, server=False)
    server = exchange(req, server=True, trace_id=client.trace_id, parent_span_id=client.span_id)
    by_kind = {s.kind: s for s in _builder().build([client, server], 0)}
    assert {s.trace_id.hex() for s in by_kind.values()} == {TRACE}
    assert by_kind[SPAN_KIND_CLIENT].parent_span_id.hex() == PARENT
    assert by_kind[SPAN_KIND_SERVER].parent_span_id == client.span_id


@pytest.mark.parametrize("ids", [
    {"trace_id": bytes(16), "span_id": bytes(8)},  # the kernel drew none
    {"trace_id": b"short", "span_id": b"\x01"},  # not from the kernel's layout
])
def test_exchange_without_kernel_ids_gets_fresh_ones(ids: dict[str, bytes]) -> None:
    spans = _builder().build([exchange(**ids, parent_span_id=b"\x07" * 8) for _ in range(5)], 0)
    assert len({s.span_id for s in spans}) == len({s.trace_id for s in spans}) == 5
    for span in spans:
        assert len(span.trace_id) == 16 and len(span.span_id) == 8 and span.span_id != bytes(8)
        assert span.parent_span_id == b""  # a parent without the ids it came with means nothing


# --- hostile input ---------------------------------------------------------------------------

_REQ_LINES = [b"GET / HTTP/1.1", b"POST /upload HTTP/1.1", b"BREW /pot HTTP/1.0", b"GET /x HTTP/1.1"]
_HEADERS = [
    b"Host: a", b"Host: [::1", b"Host: a:\xb2", b"Host: \xff\xfe:80", b"Content-Length: -1",
    b"Content-Length: 99999999999999999999", b"Content-Length: \xb2", b"Transfer-Encoding: chunked",
    b"traceparent: 00-" + b"f" * 32 + b"-" + b"0" * 16 + b"-01", b"User-Agent: " + b"u" * 3000,
    b"X-Long: " + b"a" * 70_000, b"no colon here", b":", b"\x00\x01\x02",
]
_BODIES = [b"", b"zz\r\nbroken chunk\r\n", b"0\r\n\r\n", b"ffffffffffffffff\r\n", b"\x00" * 100]
_STATUS = [b"HTTP/1.1 200 OK", b"HTTP/1.1 999 Wat", b"HTTP/1.0 500", b"HTTP/1.1 20x", b"ICY 200 OK",
           b"HTTP/1.1 101 Switching"]
_TLS = b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + bytes(range(32))


def _message(first: list[bytes]) -> st.SearchStrategy[bytes]:
    structured = st.builds(
        lambda line, headers, end, body: line + b"\r\n" + b"\r\n".join(headers) + end + body,
        st.sampled_from(first), st.lists(st.sampled_from(_HEADERS), max_size=5),
        st.sampled_from([b"\r\n\r\n", b"\r\n", b""]), st.sampled_from(_BODIES))
    return st.one_of(structured, st.binary(max_size=300), st.just(_TLS), st.just(b"G" * 70_000))


_exchanges = st.builds(
    lambda req, resp, server, flags, permille, sizes, peer: exchange(
        req, resp, server=server, flags=flags, sample_permille=permille, req_size=sizes[0],
        resp_size=sizes[1], peer_addr=peer),
    _message(_REQ_LINES), _message(_STATUS), st.booleans(), st.integers(0, 255), st.integers(0, 65535),
    st.tuples(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1)),
    st.sampled_from(["127.0.0.1", "::1", "10.1.2.3", "::ffff:1.2.3.4"]))


@settings(derandomize=True, max_examples=300, deadline=None)
@given(batch=st.lists(_exchanges, min_size=1, max_size=6))
def test_build_never_raises_on_hostile_exchanges(batch: list[object]) -> None:
    builder = _builder()
    spans = builder.build(batch, 0)  # type: ignore[arg-type]
    failures = sum(builder.decode_errors.values())
    assert len(spans) <= len(batch)
    assert failures >= len(batch) - len(spans)  # every dropped exchange was counted
    for span in spans:
        assert span.attributes["http.route"].startswith("/")
        assert 0 < int(span.attributes["server.port"]) <= 65535
        for key in ("http.request.body.size", "http.response.body.size"):
            assert int(span.attributes.get(key, 0)) >= 0
        # the encoder writes base_attrs once per shape: the span's attributes must begin with it
        base = span.base_attrs
        assert base is not None and list(span.attributes.items())[:len(base)] == list(base.items())


def test_hostile_bytes_are_counted_by_kind() -> None:
    builder = _builder()
    batch = [
        exchange(_TLS),
        exchange(b"GET / HTTP/1.1\r\nX: " + b"a" * 70_000, response=b"HTTP/1.1 2OO OK\r\n\r\n"),
        exchange(b"GET / HTTP/1.1\r\nContent-Length: 99999999999999999999", response=b""),
        exchange(b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n"),
    ]
    spans = builder.build(batch, 0)
    assert len(spans) == 2
    assert builder.decode_errors == {"bad_request_line": 1, "bad_status_code": 1, "bad_content_length": 1,
                                     "bad_target": 1}
