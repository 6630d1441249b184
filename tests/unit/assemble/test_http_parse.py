"""telegen.assemble.http_parse: request/response heads from leading bytes; DecodeError on the rest."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from telegen.assemble.http_parse import MAX_TARGET, DecodeError, content_length, parse_request, parse_response


def test_request_head() -> None:
    data = (b"POST /api/users?id=1 HTTP/1.1\r\nHost: svc:8080\r\nUser-Agent: curl/8\r\n"
            b"Content-Length: 5\r\nX-Other: ignored\r\n\r\nhello")
    req = parse_request(data)
    assert (req.method, req.target, req.version) == ("POST", "/api/users?id=1", "1.1")
    assert req.headers == {"host": "svc:8080", "user-agent": "curl/8", "content-length": "5"}
    assert req.head_length == len(data) - 5


def test_request_head_cut_by_capture_limit() -> None:
    req = parse_request(b"GET /x HTTP/1.0\r\nHost: a\r\nUser-Ag")
    assert req.version == "1.0"
    assert req.head_length == -1
    assert req.headers == {"host": "a"}  # the cut header is ignored


def test_header_names_case_insensitive_first_wins() -> None:
    req = parse_request(b"GET / HTTP/1.1\r\nHOST: first\r\nhost: second\r\n\r\n")
    assert req.headers["host"] == "first"


def test_header_values_are_capped() -> None:
    req = parse_request(b"GET / HTTP/1.1\r\nUser-Agent: " + b"a" * 5000 + b"\r\n\r\n")
    assert len(req.headers["user-agent"]) == 1024


def test_unknown_method_token_is_accepted_by_the_parser() -> None:
    assert parse_request(b"PROPFIND /dav HTTP/1.1\r\n\r\n").method == "PROPFIND"


@pytest.mark.parametrize(("data", "kind"), [
    (b"", "empty"),
    (b"GET /\r\n\r\n", "bad_request_line"),
    (b"GET  / HTTP/1.1\r\n\r\n", "bad_request_line"),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", "bad_request_line"),
    (b"G(T / HTTP/1.1\r\n\r\n", "bad_method"),
    (b"A" * 33 + b" / HTTP/1.1\r\n\r\n", "bad_method"),
    (b"GET / HTTP/2.0\r\n\r\n", "bad_version"),
    (b"GET / http/1.1\r\n\r\n", "bad_version"),
    (b"GET /a\x00b HTTP/1.1\r\n\r\n", "bad_target"),
    (b"GET /a\x7fb HTTP/1.1\r\n\r\n", "bad_target"),
    (b"GET /" + b"a" * MAX_TARGET + b" HTTP/1.1\r\n\r\n", "bad_target"),
])
def test_bad_requests(data: bytes, kind: str) -> None:
    with pytest.raises(DecodeError) as info:
        parse_request(data)
    assert info.value.kind == kind


def test_response_head() -> None:
    data = b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found"
    resp = parse_response(data)
    assert (resp.version, resp.status) == ("1.1", 404)
    assert resp.headers == {"content-length": "9"}
    assert resp.head_length == len(data) - 9


def test_response_without_reason_phrase() -> None:
    assert parse_response(b"HTTP/1.0 204\r\n\r\n").status == 204


@pytest.mark.parametrize(("data", "kind"), [
    (b"", "empty"),
    (b"HTTP/2 200 OK\r\n\r\n", "bad_status_line"),
    (b"SSH-2.0-OpenSSH_9.2\r\n", "bad_status_line"),
    (b"HTTP/1.1 2OO OK\r\n\r\n", "bad_status_code"),
    (b"HTTP/1.1 20\r\n\r\n", "bad_status_code"),
    (b"HTTP/1.1 2000 OK\r\n\r\n", "bad_status_code"),
    (b"HTTP/1.1 099 Low\r\n\r\n", "bad_status_code"),
    (b"HTTP/1.1 600 High\r\n\r\n", "bad_status_code"),
    (b"HTTP/1.1 \xb2\xb2\xb2 OK\r\n\r\n", "bad_status_code"),
])
def test_bad_responses(data: bytes, kind: str) -> None:
    with pytest.raises(DecodeError) as info:
        parse_response(data)
    assert info.value.kind == kind


@pytest.mark.parametrize(("value", "expected"), [
    (None, None), ("0", 0), ("1024", 1024), (" 12 ", 12), ("5, 5", 5), ("999999999999999", 999_999_999_999_999),
])
def test_content_length_valid(value: str | None, expected: int | None) -> None:
    headers = {} if value is None else {"content-length": value}
    assert content_length(headers) == expected


# "²" and "³" are latin-1 bytes 0xB2/0xB3 for which str.isdigit() is True but int() fails
@pytest.mark.parametrize("value", ["-1", "+5", "1e3", "", "abc", "1" * 16, "\xb2", "1\xb3", "0x10", "1 2"])
def test_content_length_invalid(value: str) -> None:
    with pytest.raises(DecodeError) as info:
        content_length({"content-length": value})
    assert info.value.kind == "bad_content_length"


def test_content_length_from_hostile_response_bytes() -> None:
    resp = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\n")
    with pytest.raises(DecodeError):
        content_length(resp.headers)


_http_ish = st.one_of(
    st.binary(max_size=600),
    st.builds(lambda m, t, v, h: m + b" " + t + b" " + v + b"\r\n" + h,
              st.sampled_from([b"GET", b"POST", b"BREW", b"", b"G\xffT"]),
              st.binary(max_size=40), st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/9"]),
              st.binary(max_size=200)),
    st.builds(lambda c, h: b"HTTP/1.1 " + c + b"\r\n" + h, st.binary(max_size=8), st.binary(max_size=200)),
)


@settings(derandomize=True, max_examples=1500, deadline=None)
@given(data=_http_ish)
def test_parsers_only_raise_decode_error(data: bytes) -> None:
    for parse in (parse_request, parse_response):
        try:
            head = parse(data)
        except DecodeError:
            continue
        try:
            length = content_length(head.headers)
        except DecodeError:
            continue
        assert length is None or length >= 0


@settings(derandomize=True, max_examples=1500, deadline=None)
@given(value=st.text(alphabet=st.characters(max_codepoint=0xFF), max_size=20))
def test_content_length_only_raises_decode_error(value: str) -> None:
    try:
        got = content_length({"content-length": value})
    except DecodeError:
        return
    assert got is not None and got >= 0
