"""Read a whole BPF hash map in a few syscalls (BPF_MAP_LOOKUP_BATCH), in fixed-size chunks.

The idle sweep reads the pairing map four times a second. Key-by-key iteration costs two
syscalls and a few ctypes objects per entry, which on a node holding 10,000 idle keep-alive
connections adds up to a noticeable share of a core; BCC's own batch helper allocates room
for max_entries values on every call (75 MB for the pairing map). Here the buffers are sized
once for a chunk and reused.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform

_BPF_MAP_LOOKUP_BATCH = 24  # enum bpf_cmd
_SYSCALL_BPF = {"x86_64": 321, "aarch64": 280}.get(platform.machine())


class _BatchAttr(ctypes.Structure):
    """The `batch` member of union bpf_attr."""

    _fields_ = [("in_batch", ctypes.c_uint64), ("out_batch", ctypes.c_uint64), ("keys", ctypes.c_uint64),
                ("values", ctypes.c_uint64), ("count", ctypes.c_uint32), ("map_fd", ctypes.c_uint32),
                ("elem_flags", ctypes.c_uint64), ("flags", ctypes.c_uint64)]


_libc = ctypes.CDLL(None, use_errno=True)


class MapBatchReader:
    """All (key, value bytes) of a hash map with u64 keys, `chunk` entries per syscall."""

    def __init__(self, map_fd: int, value_size: int, chunk: int = 512) -> None:
        self.map_fd = map_fd
        self.value_size = value_size
        self.chunk = chunk
        self._keys = (ctypes.c_uint64 * chunk)()
        self._values = ctypes.create_string_buffer(value_size * chunk)
        self._tokens = (ctypes.c_uint64 * 2)()  # in/out batch positions (a u32 bucket for hash maps)
        self.supported = _SYSCALL_BPF is not None

    def items(self) -> list[tuple[int, bytes]]:
        """Every entry at the time of the call; OSError if the kernel refuses the command."""
        if _SYSCALL_BPF is None:
            raise OSError(errno.ENOSYS, f"no bpf syscall number known for {platform.machine()}")
        out: list[tuple[int, bytes]] = []
        attr = _BatchAttr(map_fd=self.map_fd, keys=ctypes.addressof(self._keys),
                          values=ctypes.addressof(self._values),
                          out_batch=ctypes.addressof(self._tokens) + 8)
        first = True
        size = self.value_size
        while True:
            attr.in_batch = 0 if first else ctypes.addressof(self._tokens)
            attr.count = self.chunk
            res = _libc.syscall(_SYSCALL_BPF, _BPF_MAP_LOOKUP_BATCH, ctypes.byref(attr), ctypes.sizeof(attr))
            err = ctypes.get_errno() if res != 0 else 0
            if res != 0 and err != errno.ENOENT:
                raise OSError(err, f"BPF_MAP_LOOKUP_BATCH: {os.strerror(err)}")
            n = attr.count
            if n:
                blob = self._values.raw[: n * size]
                keys = self._keys
                out.extend((keys[i], blob[i * size:(i + 1) * size]) for i in range(n))
            if res != 0:  # ENOENT: the walk reached the end
                return out
            self._tokens[0] = self._tokens[1]  # continue where the kernel stopped
            first = False
