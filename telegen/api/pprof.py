"""pprof profile.proto encoding (github.com/google/pprof/proto/profile.proto), gzipped.

The message classes are built at run time from a descriptor written here, so no generated
code or protoc is needed; field numbers follow the public schema exactly.
"""

from __future__ import annotations

import gzip
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_F = descriptor_pb2.FieldDescriptorProto
_PACKAGE = "perftools.profiles"

# message -> [(name, number, type, repeated, message type name)]
_SCHEMA: dict[str, list[tuple[str, int, int, bool, str]]] = {
    "Profile": [
        ("sample_type", 1, _F.TYPE_MESSAGE, True, "ValueType"),
        ("sample", 2, _F.TYPE_MESSAGE, True, "Sample"),
        ("mapping", 3, _F.TYPE_MESSAGE, True, "Mapping"),
        ("location", 4, _F.TYPE_MESSAGE, True, "Location"),
        ("function", 5, _F.TYPE_MESSAGE, True, "Function"),
        ("string_table", 6, _F.TYPE_STRING, True, ""),
        ("drop_frames", 7, _F.TYPE_INT64, False, ""),
        ("keep_frames", 8, _F.TYPE_INT64, False, ""),
        ("time_nanos", 9, _F.TYPE_INT64, False, ""),
        ("duration_nanos", 10, _F.TYPE_INT64, False, ""),
        ("period_type", 11, _F.TYPE_MESSAGE, False, "ValueType"),
        ("period", 12, _F.TYPE_INT64, False, ""),
        ("comment", 13, _F.TYPE_INT64, True, ""),
        ("default_sample_type", 14, _F.TYPE_INT64, False, ""),
    ],
    "ValueType": [("type", 1, _F.TYPE_INT64, False, ""), ("unit", 2, _F.TYPE_INT64, False, "")],
    "Sample": [
        ("location_id", 1, _F.TYPE_UINT64, True, ""),
        ("value", 2, _F.TYPE_INT64, True, ""),
        ("label", 3, _F.TYPE_MESSAGE, True, "Label"),
    ],
    "Label": [
        ("key", 1, _F.TYPE_INT64, False, ""), ("str", 2, _F.TYPE_INT64, False, ""),
        ("num", 3, _F.TYPE_INT64, False, ""), ("num_unit", 4, _F.TYPE_INT64, False, ""),
    ],
    "Mapping": [
        ("id", 1, _F.TYPE_UINT64, False, ""), ("memory_start", 2, _F.TYPE_UINT64, False, ""),
        ("memory_limit", 3, _F.TYPE_UINT64, False, ""), ("file_offset", 4, _F.TYPE_UINT64, False, ""),
        ("filename", 5, _F.TYPE_INT64, False, ""), ("build_id", 6, _F.TYPE_INT64, False, ""),
        ("has_functions", 7, _F.TYPE_BOOL, False, ""), ("has_filenames", 8, _F.TYPE_BOOL, False, ""),
        ("has_line_numbers", 9, _F.TYPE_BOOL, False, ""), ("has_inline_frames", 10, _F.TYPE_BOOL, False, ""),
    ],
    "Location": [
        ("id", 1, _F.TYPE_UINT64, False, ""), ("mapping_id", 2, _F.TYPE_UINT64, False, ""),
        ("address", 3, _F.TYPE_UINT64, False, ""), ("line", 4, _F.TYPE_MESSAGE, True, "Line"),
        ("is_folded", 5, _F.TYPE_BOOL, False, ""),
    ],
    "Line": [("function_id", 1, _F.TYPE_UINT64, False, ""), ("line", 2, _F.TYPE_INT64, False, "")],
    "Function": [
        ("id", 1, _F.TYPE_UINT64, False, ""), ("name", 2, _F.TYPE_INT64, False, ""),
        ("system_name", 3, _F.TYPE_INT64, False, ""), ("filename", 4, _F.TYPE_INT64, False, ""),
        ("start_line", 5, _F.TYPE_INT64, False, ""),
    ],
}


def _message_classes() -> dict[str, Any]:
    fdp = descriptor_pb2.FileDescriptorProto(name="telegen/pprof/profile.proto", package=_PACKAGE,
                                             syntax="proto3")
    for name, fields in _SCHEMA.items():
        msg = fdp.message_type.add(name=name)
        for fname, number, ftype, repeated, type_name in fields:
            field = msg.field.add(name=fname, number=number, type=ftype,
                                  label=_F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL)
            if type_name:
                field.type_name = f".{_PACKAGE}.{type_name}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(fdp)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.{name}"))
            for name in _SCHEMA}


_CLASSES = _message_classes()

Frame = tuple[str, str, int, int]  # function name, file name, function start line, current line


class ProfileBuilder:
    """Interns strings, functions and locations; samples carry leaf-first location ids."""

    def __init__(
        self, sample_types: list[tuple[str, str]], period_type: tuple[str, str], period: int
    ) -> None:
        self._profile = _CLASSES["Profile"]()
        self._strings: dict[str, int] = {"": 0}
        self._functions: dict[tuple[str, str, int], int] = {}
        self._locations: dict[tuple[int, int], int] = {}
        for kind, unit in sample_types:
            self._profile.sample_type.add(type=self.string(kind), unit=self.string(unit))
        self._profile.period_type.type = self.string(period_type[0])
        self._profile.period_type.unit = self.string(period_type[1])
        self._profile.period = period
        # One synthetic mapping that says symbols are already resolved, so pprof never tries to.
        self._profile.mapping.add(id=1, filename=self.string("[python]"), has_functions=True,
                                  has_filenames=True, has_line_numbers=True)

    def string(self, text: str) -> int:
        index = self._strings.get(text)
        if index is None:
            index = self._strings[text] = len(self._strings)
        return index

    def location(self, frame: Frame) -> int:
        name, filename, start_line, line = frame
        fkey = (name, filename, start_line)
        fid = self._functions.get(fkey)
        if fid is None:
            fid = self._functions[fkey] = len(self._functions) + 1
            self._profile.function.add(id=fid, name=self.string(name), system_name=self.string(name),
                                       filename=self.string(filename), start_line=start_line)
        lkey = (fid, line)
        lid = self._locations.get(lkey)
        if lid is None:
            lid = self._locations[lkey] = len(self._locations) + 1
            loc = self._profile.location.add(id=lid, mapping_id=1, address=lid)
            loc.line.add(function_id=fid, line=line)
        return lid

    def add_sample(self, stack: list[Frame], values: list[int], labels: dict[str, str] | None = None) -> None:
        sample = self._profile.sample.add()
        sample.location_id.extend(self.location(frame) for frame in stack)
        sample.value.extend(values)
        for key, value in (labels or {}).items():
            sample.label.add(key=self.string(key), str=self.string(value))

    def build(self, time_nanos: int, duration_nanos: int, comments: list[str] | None = None) -> bytes:
        """The gzipped profile, as `go tool pprof` reads it."""
        self._profile.time_nanos = time_nanos
        self._profile.duration_nanos = duration_nanos
        self._profile.comment.extend(self.string(c) for c in comments or [])
        del self._profile.string_table[:]
        self._profile.string_table.extend(sorted(self._strings, key=self._strings.__getitem__))
        data: bytes = self._profile.SerializeToString()
        return gzip.compress(data)
