"""Protobuf wire primitives for OTLP, and memoised encodings of the attribute pairs that repeat.

Building a span with the generated classes (an object per KeyValue and AnyValue) took ~9x the
CPU of writing the bytes directly with each (key, value) pair encoded once and reused while
it keeps recurring: method, route, server address... (bench/otlp_encode_cost.py). Output
equals what the generated classes serialize: fields in number order, proto3 defaults omitted
(tests compare the bytes).
"""

from __future__ import annotations

import itertools
import struct

from telegen.signals import Attributes, AttrValue

MEMO_LIMIT = 16_384  # entries per memo; cleared when full, so high-cardinality values only churn it

_SMALL = tuple(bytes((i,)) for i in range(128))
_MASK64 = (1 << 64) - 1
_INT64 = range(-(1 << 63), 1 << 63)
_DOUBLE = struct.Struct("<Bd").pack  # AnyValue.double_value (field 4, fixed64)

MemoKey = tuple[str, type, AttrValue]


def varint(n: int) -> bytes:
    """Base-128 varint; a negative int64/enum goes as its 64-bit two's complement (10 bytes)."""
    if 0 <= n < 0x80:
        return _SMALL[n]
    if 0 < n < 0x4000:  # lengths, ports, sizes: skip the loop
        return bytes(((n & 0x7F) | 0x80, n >> 7))
    if 0 < n < 0x200000:
        return bytes(((n & 0x7F) | 0x80, ((n >> 7) & 0x7F) | 0x80, n >> 14))
    n &= _MASK64
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def delimited(tag: int, payload: bytes) -> bytes:
    """A length-delimited field: tag byte, length, payload."""
    return _SMALL[tag] + varint(len(payload)) + payload


def utf8(text: str) -> bytes:
    # A lone surrogate would make invalid UTF-8, and a collector rejects the whole request for it.
    return text.encode("utf-8", "replace")


def string_field(tag: int, text: str) -> bytes:
    return delimited(tag, utf8(text)) if text else b""  # proto3 omits the empty string


def enum_field(tag: int, value: int) -> bytes:
    return _SMALL[tag] + varint(value) if value else b""


def any_value(value: AttrValue) -> bytes:
    """AnyValue body. bool before int (bool is an int); an int beyond int64 goes as its decimal text."""
    if isinstance(value, str):
        return delimited(0x0A, utf8(value))
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, int):
        return b"\x18" + varint(value) if value in _INT64 else delimited(0x0A, str(value).encode())
    if isinstance(value, float):
        return _DOUBLE(0x21, value)
    return delimited(0x0A, utf8(str(value)))


def key_value_field(tag: int, key: str, value: AttrValue) -> bytes:
    """One KeyValue as a field of its parent (tag: the parent's attributes field)."""
    return delimited(tag, string_field(0x0A, key) + delimited(0x12, any_value(value)))


class KeyValueMemo:
    """Encoded attribute fields by (key, type, value), bounded; one per parent field tag.

    The type is in the key because True == 1 == 1.0 in Python. Zero and NaN floats are never
    stored: -0.0 == 0.0 would return the other's bytes, and a NaN never equals itself.
    """

    __slots__ = ("key_fields", "limit", "memo", "tag")

    def __init__(self, tag: int, limit: int = MEMO_LIMIT) -> None:
        self.tag, self.limit = _SMALL[tag], limit
        self.memo: dict[MemoKey, bytes] = {}
        self.key_fields: dict[str, bytes] = {}  # key -> KeyValue.key field + the value field's tag

    def fields(self, attrs: Attributes) -> list[bytes]:
        """The attributes' encoded fields, in order. Hits never leave C (zip, map, dict.get)."""
        values = attrs.values()
        try:
            out: list[bytes | None] = list(map(self.memo.get, zip(attrs, map(type, values), values, strict=True)))
        except TypeError:  # an unhashable value (outside AttrValue): encode it all without the memo
            return [self.encode(k, v) for k, v in attrs.items()]
        if None in out:
            self._fill(attrs, out)
        return out  # type: ignore[return-value]  # _fill replaced every None

    def _fill(self, attrs: Attributes, out: list[bytes | None]) -> None:
        keys, values = list(attrs), list(attrs.values())
        i = -1
        for _ in range(out.count(None)):
            i = out.index(None, i + 1)
            out[i] = self._remember(keys[i], values[i])

    def tail_fields(self, attrs: Attributes, skip: int) -> list[bytes]:
        """The encoded fields of the attributes after the first `skip` (the per-span ones)."""
        get, out = self.memo.get, []
        try:
            for key, value in itertools.islice(attrs.items(), skip, None):
                field = get((key, type(value), value))
                out.append(field if field is not None else self._remember(key, value))
        except TypeError:  # an unhashable value (outside AttrValue): encode the tail without the memo
            return [self.encode(k, v) for k, v in itertools.islice(attrs.items(), skip, None)]
        return out

    def _remember(self, key: str, value: AttrValue) -> bytes:
        encoded = self.encode(key, value)
        if not isinstance(value, float) or (value and value == value):
            if len(self.memo) >= self.limit:
                self.memo.clear()
            self.memo[(key, type(value), value)] = encoded
        return encoded

    def encode(self, key: str, value: AttrValue) -> bytes:
        """key_value_field(tag, key, value); str and int inlined: misses are frequent (ports, sizes, paths)."""
        head = self.key_fields.get(key)
        if head is None:
            if len(self.key_fields) >= self.limit:
                self.key_fields.clear()
            head = self.key_fields[key] = string_field(0x0A, key) + b"\x12"  # ends with the value's tag
        if type(value) is int and 0 <= value < 0x200000:  # ports, sizes, status codes: 1-3 varint bytes
            body = head + (bytes((2, 0x18, value)) if value < 0x80
                           else bytes((3, 0x18, (value & 0x7F) | 0x80, value >> 7)) if value < 0x4000
                           else bytes((4, 0x18, (value & 0x7F) | 0x80, ((value >> 7) & 0x7F) | 0x80, value >> 14)))
        elif isinstance(value, str):
            raw = value.encode("utf-8", "replace")
            n = len(raw)
            # value field: length, AnyValue.string_value tag, length, bytes
            body = head + (bytes((n + 2, 0x0A, n)) if n < 126 else varint(len(raw) + 1 + len(varint(n))) + b"\x0a"
                           + varint(n)) + raw
        elif isinstance(value, int) and not isinstance(value, bool) and value in _INT64:
            number = varint(value)
            body = head + bytes((len(number) + 1, 0x18)) + number  # AnyValue.int_value
        else:
            inner = any_value(value)
            body = head + varint(len(inner)) + inner
        n = len(body)
        return self.tag + (_SMALL[n] if n < 0x80 else varint(n)) + body


class StringFieldMemo:
    """Bounded str -> encoded string field (span names, severity texts, event names)."""

    __slots__ = ("memo", "tag")

    def __init__(self, tag: int) -> None:
        self.tag = tag
        self.memo: dict[str, bytes] = {}

    def miss(self, text: str) -> bytes:
        """Encode and remember; callers try `memo.get(text)` first (no method call on a hit)."""
        if len(self.memo) >= MEMO_LIMIT:
            self.memo.clear()
        encoded = self.memo[text] = string_field(self.tag, text)
        return encoded
