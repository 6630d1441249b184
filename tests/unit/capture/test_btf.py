"""telegen.capture.btf: member offsets from BTF, through typedefs and anonymous members."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from telegen.capture.btf import BTF_MAGIC, SOCK_WALK_OFFSETS, Btf, BtfError, sock_walk_defines
from tests.conftest import require

KIND_INT, KIND_PTR, KIND_STRUCT, KIND_UNION, KIND_FWD, KIND_TYPEDEF, KIND_CONST = 1, 2, 4, 5, 7, 8, 10
KIND_ENUM, KIND_FUNC, KIND_FUNC_PROTO = 6, 12, 13


class BtfBuilder:
    """Writes a minimal little-endian BTF blob, type by type (ids start at 1)."""

    def __init__(self) -> None:
        self.strings = bytearray(b"\0")
        self.types = bytearray()
        self.next_id = 1

    def _str(self, name: str) -> int:
        if not name:
            return 0
        off = len(self.strings)
        self.strings += name.encode() + b"\0"
        return off

    def _add(self, name: str, kind: int, vlen: int, size_or_type: int, trailer: bytes = b"",
             kflag: bool = False) -> int:
        info = (int(kflag) << 31) | (kind << 24) | vlen
        self.types += struct.pack("<III", self._str(name), info, size_or_type) + trailer
        self.next_id += 1
        return self.next_id - 1

    def int_(self, name: str, size: int) -> int:
        return self._add(name, KIND_INT, 0, size, struct.pack("<I", size * 8))

    def typedef(self, name: str, target: int) -> int:
        return self._add(name, KIND_TYPEDEF, 0, target)

    def const(self, target: int) -> int:
        return self._add("", KIND_CONST, 0, target)

    def ptr(self, target: int) -> int:
        return self._add("", KIND_PTR, 0, target)

    def enum(self, name: str, values: list[tuple[str, int]]) -> int:
        trailer = b"".join(struct.pack("<Ii", self._str(n), v) for n, v in values)
        return self._add(name, KIND_ENUM, len(values), 4, trailer)

    def func_proto(self, ret: int, params: list[int]) -> int:
        return self._add("", KIND_FUNC_PROTO, len(params), ret,
                         b"".join(struct.pack("<II", 0, p) for p in params))

    def composite(self, name: str, size: int, members: list[tuple[str, int, int]], union: bool = False,
                  kflag: bool = False) -> int:
        """members: (name, type id, bit offset or kflag-encoded offset)."""
        trailer = b"".join(struct.pack("<III", self._str(n), t, off) for n, t, off in members)
        return self._add(name, KIND_UNION if union else KIND_STRUCT, len(members), size, trailer, kflag)

    def blob(self) -> bytes:
        header = struct.pack("<HBBIIIII", BTF_MAGIC, 1, 0, 24, 0, len(self.types), len(self.types),
                             len(self.strings))
        return header + bytes(self.types) + bytes(self.strings)


@pytest.fixture(scope="module")
def btf() -> Btf:
    b = BtfBuilder()
    int_t = b.int_("int", 4)
    u16 = b.typedef("u16", b.int_("unsigned short", 2))
    b.enum("colour", [("RED", 0), ("BLUE", 1)])  # other kinds with trailers must be skipped correctly
    b.func_proto(int_t, [int_t, int_t])
    inner = b.composite("inner", 8, [("x", int_t, 0), ("y", int_t, 32)])
    anon_struct = b.composite("", 8, [("lo", int_t, 0), ("hi", int_t, 32)])
    anon_union = b.composite("", 8, [("whole", int_t, 0), ("", anon_struct, 0)], union=True)
    typedef_inner = b.typedef("inner_t", inner)
    b.composite("outer", 40, [
        ("first", int_t, 0),
        ("", anon_union, 64),  # anonymous union at byte 8, holding an anonymous struct
        ("port", b.const(u16), 128),
        ("nested", typedef_inner, 192),  # through a typedef
        ("next", b.ptr(inner), 256),
    ])
    b.composite("bits", 8, [("flag", int_t, (1 << 24) | 3), ("count", int_t, (0 << 24) | 32)], kflag=True)
    b.composite("inner", 4, [("dup", int_t, 0)], union=True)  # same name, other kind: no clash
    return Btf(b.blob())


@pytest.mark.parametrize(("member", "offset"), [
    ("first", 0),
    ("whole", 8),  # member of the anonymous union
    ("lo", 8),  # member of the anonymous struct inside the anonymous union
    ("hi", 12),
    ("port", 16),
    ("nested", 24),
    ("nested.x", 24),
    ("nested.y", 28),
    ("next", 32),
])
def test_offsets_through_anonymous_members_and_typedefs(btf: Btf, member: str, offset: int) -> None:
    assert btf.offset("outer", member) == offset


def test_kflag_member_offsets(btf: Btf) -> None:
    assert btf.offset("bits", "count") == 4
    with pytest.raises(BtfError, match="bitfield"):
        btf.offset("bits", "flag")


def test_struct_lookup_ignores_unions_of_the_same_name(btf: Btf) -> None:
    assert btf.offset("inner", "y") == 4


@pytest.mark.parametrize(("struct_name", "member", "message"), [
    ("missing", "x", "struct missing not in BTF"),
    ("outer", "nope", "struct outer has no member nope"),
    ("outer", "nested.z", "struct outer has no member nested.z"),
    ("outer", "next.x", "struct outer has no member next.x"),  # no walking through pointers
])
def test_missing_structs_and_members(btf: Btf, struct_name: str, member: str, message: str) -> None:
    with pytest.raises(BtfError, match=message.replace(".", r"\.")):
        btf.offset(struct_name, member)


@pytest.mark.parametrize("blob", [b"", b"\0" * 23, struct.pack("<HBBI", 0x9FEB, 1, 0, 24) + b"\0" * 16])
def test_malformed_blob(blob: bytes) -> None:
    with pytest.raises(BtfError):
        Btf(blob)


def test_from_file_missing(tmp_path: Path) -> None:
    with pytest.raises(BtfError, match="cannot read"):
        Btf.from_file(tmp_path / "vmlinux")


def test_from_file_reads_blob(tmp_path: Path) -> None:
    b = BtfBuilder()
    b.composite("s", 8, [("a", b.int_("int", 4), 32)])
    path = tmp_path / "vmlinux"
    path.write_bytes(b.blob())
    assert Btf.from_file(path).offset("s", "a") == 4


def test_synthetic_sock_walk_adds_sock_common_offset() -> None:
    b = BtfBuilder()
    int_t = b.int_("int", 4)
    ptr = b.ptr(int_t)
    names = {st for st, _ in SOCK_WALK_OFFSETS.values()}
    sock_common = None
    for st in sorted(names):
        members = [(m, ptr, 64 * i) for i, m in enumerate(
            sorted(mb for s, mb in SOCK_WALK_OFFSETS.values() if s == st))]
        type_id = b.composite(st, 8 * len(members), members)
        if st == "sock_common":
            sock_common = type_id
    assert sock_common is not None
    b.composite("sock", 256, [("pad", int_t, 0), ("__sk_common", sock_common, 128)])
    defines = sock_walk_defines(Btf(b.blob()))
    assert set(defines) == set(SOCK_WALK_OFFSETS)
    members = sorted(m for s, m in SOCK_WALK_OFFSETS.values() if s == "sock_common")
    assert defines["OFF_SKC_DADDR"] == 16 + 8 * members.index("skc_daddr")
    assert defines["OFF_TASK_FILES"] == 0


VMLINUX = Path("/sys/kernel/btf/vmlinux")


def test_real_vmlinux_sock_walk_defines() -> None:
    require(os.access(VMLINUX, os.R_OK), f"readable {VMLINUX} (a kernel built with BTF)")
    btf = Btf.from_file(VMLINUX)
    defines = sock_walk_defines(btf)
    assert set(defines) == set(SOCK_WALK_OFFSETS)
    assert all(isinstance(v, int) and 0 <= v < 8192 for v in defines.values())
    # sock_common's layout is stable across current kernels: addresses, then ports, then family
    assert defines["OFF_SKC_DADDR"] < defines["OFF_SKC_DPORT"] < defines["OFF_SKC_FAMILY"]
    assert defines["OFF_SKC_RCV_SADDR"] == defines["OFF_SKC_DADDR"] + 4
