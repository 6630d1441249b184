"""A minimal protobuf wire-format reader for pprof profiles, independent of the encoder under test."""

from __future__ import annotations

import gzip
from collections import defaultdict
from typing import Any


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def fields(data: bytes) -> dict[int, list[Any]]:
    """field number -> values (ints for varints, bytes for length-delimited)."""
    out: dict[int, list[Any]] = defaultdict(list)
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            size, pos = _varint(data, pos)
            value, pos = data[pos:pos + size], pos + size
        elif wire == 1:
            value, pos = int.from_bytes(data[pos:pos + 8], "little"), pos + 8
        elif wire == 5:
            value, pos = int.from_bytes(data[pos:pos + 4], "little"), pos + 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
        out[number].append(value)
    return out


def packed(values: list[Any]) -> list[int]:
    """Repeated scalars: packed (bytes) or one varint per entry."""
    out: list[int] = []
    for value in values:
        if isinstance(value, bytes):
            pos = 0
            while pos < len(value):
                item, pos = _varint(value, pos)
                out.append(item)
        else:
            out.append(value)
    return out


def one(msg: dict[int, list[Any]], number: int, default: int = 0) -> int:
    return int(msg[number][-1]) if msg.get(number) else default


def decode_profile(gz: bytes) -> dict[str, Any]:
    raw = gzip.decompress(gz)
    top = fields(raw)
    strings = [s.decode() for s in top[6]]
    sample_types = [(strings[one(f, 1)], strings[one(f, 2)]) for f in map(fields, top[1])]
    samples = []
    for blob in top[2]:
        f = fields(blob)
        labels = {strings[one(lf, 1)]: strings[one(lf, 2)] for lf in map(fields, f.get(3, []))}
        samples.append({"location_ids": packed(f.get(1, [])), "values": packed(f.get(2, [])),
                        "labels": labels})
    locations = {}
    for blob in top[4]:
        f = fields(blob)
        lines = [(one(lf, 1), one(lf, 2)) for lf in map(fields, f.get(4, []))]
        locations[one(f, 1)] = {"mapping_id": one(f, 2), "lines": lines}
    functions = {}
    for blob in top[5]:
        f = fields(blob)
        functions[one(f, 1)] = {"name": strings[one(f, 2)], "filename": strings[one(f, 4)],
                                "start_line": one(f, 5)}
    mappings = {one(f, 1): f for f in map(fields, top[3])}
    period_type = fields(top[11][0]) if top.get(11) else {}
    return {"strings": strings, "sample_types": sample_types, "samples": samples, "locations": locations,
            "functions": functions, "mappings": mappings, "period": one(top, 12),
            "period_type": (strings[one(period_type, 1)], strings[one(period_type, 2)])
            if period_type else None,
            "duration_nanos": one(top, 10), "time_nanos": one(top, 9)}


def check_consistent(profile: dict[str, Any]) -> None:
    assert profile["strings"][0] == ""
    assert profile["samples"], "no samples"
    for sample in profile["samples"]:
        assert len(sample["values"]) == len(profile["sample_types"])
        assert sample["location_ids"], "empty stack"
        for lid in sample["location_ids"]:
            assert lid in profile["locations"], f"sample refers to missing location {lid}"
    for location in profile["locations"].values():
        assert location["mapping_id"] in profile["mappings"]
        assert location["lines"]
        for function_id, _line in location["lines"]:
            assert function_id in profile["functions"]
    for function in profile["functions"].values():
        assert function["name"] and function["filename"]
