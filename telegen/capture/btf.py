"""Struct member offsets from the kernel's BTF (/sys/kernel/btf/vmlinux).

BCC compiles against whatever headers are installed, which may not match the running
kernel; the BPF code walks kernel structs only through offsets read here and passed as -D.
"""

from __future__ import annotations

import array
import functools
import struct
from dataclasses import dataclass
from pathlib import Path

BTF_MAGIC = 0xEB9F
_KIND_INT, _KIND_PTR, _KIND_ARRAY, _KIND_STRUCT, _KIND_UNION, _KIND_ENUM = 1, 2, 3, 4, 5, 6
_KIND_TYPEDEF, _KIND_VOLATILE, _KIND_CONST, _KIND_RESTRICT = 8, 9, 10, 11
_KIND_FUNC_PROTO, _KIND_VAR, _KIND_DATASEC, _KIND_DECL_TAG, _KIND_TYPE_TAG, _KIND_ENUM64 = 13, 14, 15, 17, 18, 19


class BtfError(Exception):
    """BTF missing, malformed, or without a struct member the agent needs."""


@dataclass(frozen=True)
class _Type:
    kind: int
    name_off: int
    vlen: int
    kflag: bool
    size_or_type: int
    data_off: int  # where the kind-specific trailer starts in the type section


# bytes after each type's 12-byte header: (fixed, per member)
_TRAILER: dict[int, tuple[int, int]] = {
    _KIND_INT: (4, 0), _KIND_ARRAY: (12, 0), _KIND_STRUCT: (0, 12), _KIND_UNION: (0, 12),
    _KIND_ENUM: (0, 8), _KIND_FUNC_PROTO: (0, 8), _KIND_VAR: (4, 0), _KIND_DATASEC: (0, 12),
    _KIND_DECL_TAG: (4, 0), _KIND_ENUM64: (0, 12)}


class Btf:
    """An index over one BTF blob; only the structs asked for are decoded."""

    def __init__(self, blob: bytes) -> None:
        if len(blob) < 24:
            raise BtfError("BTF blob too short")
        magic, _version, _flags, hdr_len = struct.unpack_from("<HBBI", blob, 0)
        if magic != BTF_MAGIC:
            raise BtfError("not a little-endian BTF blob")
        type_off, type_len, str_off, str_len = struct.unpack_from("<IIII", blob, 8)
        self._types_blob = blob[hdr_len + type_off: hdr_len + type_off + type_len]
        self._strings = blob[hdr_len + str_off: hdr_len + str_off + str_len]
        self._pos = array.array("q", [-1])  # type id -> header offset; id 0 is void
        self._by_name_off: dict[tuple[int, int], int] = {}  # (kind, name offset) -> first type id
        self._found: dict[tuple[int, str], int | None] = {}
        self._index()

    @classmethod
    def from_file(cls, path: Path = Path("/sys/kernel/btf/vmlinux")) -> Btf:
        try:
            return cls(path.read_bytes())
        except OSError as exc:
            raise BtfError(f"cannot read {path}: {exc.strerror}") from None

    def _name(self, off: int) -> str:
        end = self._strings.find(b"\0", off)
        return self._strings[off:end].decode("ascii", "replace")

    def _index(self) -> None:
        # The kernel's BTF has ~130k types and this runs before the first BPF compile, on the
        # start-up critical path: the loop keeps offsets only and decodes no names.
        blob, pos, n = self._types_blob, 0, len(self._types_blob)
        positions, by_off, trailer = self._pos, self._by_name_off, _TRAILER
        unpack, composite = struct.Struct("<II").unpack_from, (_KIND_STRUCT, _KIND_UNION)
        while pos + 12 <= n:
            name_off, info = unpack(blob, pos)
            kind = (info >> 24) & 0x1F
            positions.append(pos)
            if kind in composite and name_off:
                by_off.setdefault((kind, name_off), len(positions) - 1)
            fixed, per_member = trailer.get(kind, (0, 0))
            pos += 12 + fixed + per_member * (info & 0xFFFF)

    def _find(self, kind: int, name: str) -> int | None:
        """The first type of this kind and name: any copy of the name in the string section."""
        if (kind, name) in self._found:
            return self._found[(kind, name)]
        needle, found = b"\0" + name.encode() + b"\0", []
        at = self._strings.find(needle)
        while at >= 0:
            if (type_id := self._by_name_off.get((kind, at + 1))) is not None:
                found.append(type_id)
            at = self._strings.find(needle, at + 1)
        self._found[(kind, name)] = min(found, default=None)
        return self._found[(kind, name)]

    def _type(self, type_id: int) -> _Type | None:
        if not 0 < type_id < len(self._pos):
            return None
        pos = self._pos[type_id]
        name_off, info, size_or_type = struct.unpack_from("<III", self._types_blob, pos)
        return _Type((info >> 24) & 0x1F, name_off, info & 0xFFFF, bool(info >> 31), size_or_type, pos + 12)

    def _members(self, type_id: int) -> list[tuple[str, int, int]]:
        t = self._type(type_id)
        if t is None or t.kind not in (_KIND_STRUCT, _KIND_UNION):
            return []
        out = []
        for i in range(t.vlen):
            name_off, mtype, offset = struct.unpack_from("<III", self._types_blob, t.data_off + 12 * i)
            bit_off = offset & 0xFFFFFF if t.kflag else offset
            out.append((self._name(name_off), self._resolve(mtype), bit_off))
        return out

    def _resolve(self, type_id: int) -> int:
        """Skip typedefs and qualifiers to the underlying type."""
        seen = 0
        while seen < 32:
            t = self._type(type_id)
            if t is None or t.kind not in (_KIND_TYPEDEF, _KIND_VOLATILE, _KIND_CONST, _KIND_RESTRICT,
                                           _KIND_TYPE_TAG):
                break
            type_id, seen = t.size_or_type, seen + 1
        return type_id

    def _find_member(self, type_id: int, member: str, base_bits: int, depth: int = 0) -> int | None:
        for name, mtype, bit_off in self._members(type_id):
            if name == member:
                return base_bits + bit_off
            if not name and depth < 8:  # anonymous struct/union: its members belong to us
                found = self._find_member(mtype, member, base_bits + bit_off, depth + 1)
                if found is not None:
                    return found
        return None

    def offset(self, struct_name: str, member_path: str) -> int:
        """Byte offset of `a.b.c` inside `struct struct_name`, through anonymous members."""
        type_id = self._find(_KIND_STRUCT, struct_name)
        if type_id is None:
            raise BtfError(f"struct {struct_name} not in BTF")
        bits = 0
        parts = member_path.split(".")
        for i, part in enumerate(parts):
            found = self._find_member(type_id, part, 0)
            if found is None:
                raise BtfError(f"struct {struct_name} has no member {'.'.join(parts[: i + 1])}")
            bits += found
            if i + 1 < len(parts):
                type_id = self._member_type(type_id, part)
        if bits % 8:
            raise BtfError(f"{struct_name}.{member_path} is a bitfield")
        return bits // 8

    def _member_type(self, type_id: int, member: str) -> int:
        for name, mtype, _ in self._members(type_id):
            if name == member:
                return mtype
            if not name:
                inner = self._member_type(mtype, member)
                if inner:
                    return inner
        return 0


@functools.cache
def kernel_btf() -> Btf:
    """The running kernel's BTF, parsed once per process (both capture stages need it)."""
    return Btf.from_file()


# -D name -> (struct, member path). These are the only kernel structs the BPF code reads.
SOCK_WALK_OFFSETS: dict[str, tuple[str, str]] = {
    "OFF_TASK_FILES": ("task_struct", "files"),
    "OFF_FILES_FDT": ("files_struct", "fdt"),
    "OFF_FDT_MAX_FDS": ("fdtable", "max_fds"),
    "OFF_FDT_FD": ("fdtable", "fd"),
    "OFF_FILE_INODE": ("file", "f_inode"),
    "OFF_FILE_PRIVATE_DATA": ("file", "private_data"),
    "OFF_INODE_MODE": ("inode", "i_mode"),
    "OFF_SOCKET_SK": ("socket", "sk"),
    "OFF_SKC_DADDR": ("sock_common", "skc_daddr"),
    "OFF_SKC_RCV_SADDR": ("sock_common", "skc_rcv_saddr"),
    "OFF_SKC_DPORT": ("sock_common", "skc_dport"),
    "OFF_SKC_NUM": ("sock_common", "skc_num"),
    "OFF_SKC_FAMILY": ("sock_common", "skc_family"),
    "OFF_SKC_FLAGS": ("sock_common", "skc_flags"),  # sk_flags is #defined to it
    "OFF_SKC_V6_DADDR": ("sock_common", "skc_v6_daddr"),
    "OFF_SKC_V6_RCV_SADDR": ("sock_common", "skc_v6_rcv_saddr"),
}


def sock_walk_defines(btf: Btf) -> dict[str, int]:
    """Every OFF_* define the BPF sources need; `struct sock` starts with its sock_common."""
    out = {name: btf.offset(st, member) for name, (st, member) in SOCK_WALK_OFFSETS.items()}
    common = btf.offset("sock", "__sk_common")
    for name in [n for n in out if n.startswith("OFF_SKC_")]:
        out[name] += common
    return out


# -D name -> (struct, member path) for bpf/http.bpf.c's reads beyond the address walk: the
# sequence numbers that key a call's trace ids at both ends, and the socket's type and protocol.
HTTP_OFFSETS: dict[str, tuple[str, str]] = {
    "OFF_TCP_WRITE_SEQ": ("tcp_sock", "write_seq"),
    "OFF_TCP_COPIED_SEQ": ("tcp_sock", "copied_seq"),
    "OFF_SK_TYPE": ("sock", "sk_type"),
    "OFF_SK_PROTOCOL": ("sock", "sk_protocol"),
    "OFF_SK_SHUTDOWN": ("sock", "sk_shutdown"),
}


def http_defines(btf: Btf) -> dict[str, int]:
    """sock_walk_defines plus the tcp_sock/sock members http.bpf.c reads."""
    out = sock_walk_defines(btf)
    out.update({name: btf.offset(st, member) for name, (st, member) in HTTP_OFFSETS.items()})
    return out


# -D name -> (struct, member path) for bpf/tcp.bpf.c's reads of a socket's own counters.
TCP_OFFSETS: dict[str, tuple[str, str]] = {
    "OFF_TCP_BYTES_RECEIVED": ("tcp_sock", "bytes_received"),
    "OFF_TCP_BYTES_ACKED": ("tcp_sock", "bytes_acked"),
    "OFF_TCP_SRTT_US": ("tcp_sock", "srtt_us"),
    "OFF_SK_ERR": ("sock", "sk_err"),
    "OFF_SKC_NET": ("sock_common", "skc_net"),
}


def tcp_defines(btf: Btf) -> dict[str, int]:
    """sock_walk_defines plus the tcp_sock/sock members tcp.bpf.c reads."""
    out = sock_walk_defines(btf)
    for name, (st, member) in TCP_OFFSETS.items():
        out[name] = btf.offset(st, member)
    common = btf.offset("sock", "__sk_common")
    out["OFF_SKC_NET"] += common
    return out
