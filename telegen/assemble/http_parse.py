"""HTTP/1.x request and response heads from the leading bytes the kernel captured.

Input is hostile by assumption (any process's traffic): every failure is a DecodeError with
a short `kind` for telegen_decode_errors_total; nothing here allocates more than the input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"})
_TOKEN_CHARS = frozenset(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
MAX_TARGET = 8192
_TARGET = re.compile(rb"[\x21-\x7e\x80-\xff]+")  # no controls, spaces or DEL


class DecodeError(Exception):
    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


@dataclass(slots=True)
class RequestHead:
    method: str
    target: str
    version: str  # "1.1" or "1.0"
    headers: dict[str, str]  # lower-case names; only the ones telegen uses
    head_length: int  # bytes up to and including the blank line; -1 when not captured whole


@dataclass(slots=True)
class ResponseHead:
    version: str
    status: int
    headers: dict[str, str]
    head_length: int


_WANTED = frozenset({"host", "user-agent", "traceparent", "content-length", "transfer-encoding"})


def _headers(lines: list[bytes]) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(b":")
        if not sep:
            continue  # a header cut by the capture limit, or junk: ignore
        key = name.strip().lower().decode("latin-1")
        if key in _WANTED and key not in out:
            out[key] = value.strip().decode("latin-1")[:1024]
    return out


def _split_head(data: bytes) -> tuple[bytes, list[bytes], int]:
    end = data.find(b"\r\n\r\n")
    head = data if end < 0 else data[:end]
    lines = head.split(b"\r\n")
    return lines[0], lines[1:], (end + 4 if end >= 0 else -1)


def parse_request(data: bytes) -> RequestHead:
    if not data:
        raise DecodeError("empty")
    first, rest, head_length = _split_head(data)
    parts = first.split(b" ")
    if len(parts) != 3:
        raise DecodeError("bad_request_line")
    method_b, target_b, version_b = parts
    if not method_b or len(method_b) > 32 or not set(method_b) <= _TOKEN_CHARS:
        raise DecodeError("bad_method")
    if version_b not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise DecodeError("bad_version")
    if not target_b or len(target_b) > MAX_TARGET or not _TARGET.fullmatch(target_b):
        raise DecodeError("bad_target")
    return RequestHead(method_b.decode("ascii"), target_b.decode("latin-1"), version_b[5:].decode("ascii"),
                       _headers(rest), head_length)


def parse_response(data: bytes) -> ResponseHead:
    if not data:
        raise DecodeError("empty")
    first, rest, head_length = _split_head(data)
    if not first.startswith((b"HTTP/1.1 ", b"HTTP/1.0 ")):
        raise DecodeError("bad_status_line")
    code = first[9:12]
    if len(code) != 3 or not code.isdigit() or (len(first) > 12 and first[12:13] != b" "):
        raise DecodeError("bad_status_code")
    status = int(code)
    if not 100 <= status <= 599:
        raise DecodeError("bad_status_code")
    return ResponseHead(first[5:8].decode("ascii"), status, _headers(rest), head_length)


def content_length(headers: dict[str, str]) -> int | None:
    """A valid Content-Length, or None (absent, negative, huge or malformed)."""
    raw = headers.get("content-length")
    if raw is None:
        return None
    raw = raw.split(",")[0].strip()
    # isascii: str.isdigit() also accepts "²" (latin-1 0xB2), which int() then rejects
    if not raw.isascii() or not raw.isdigit() or len(raw) > 15:
        raise DecodeError("bad_content_length")
    return int(raw)
