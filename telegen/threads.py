"""Agent threads that carry their name into the kernel too.

Python (before 3.14) names threads only for itself: `top -H`, `ps -L`, perf and py-spy's native
view all showed every agent thread as `telegen`, the process's name. A thread started here sets
its kernel name (`/proc/<pid>/task/<tid>/comm`) as it begins, so the busy one can be told apart
on a node without a Python debugger."""

from __future__ import annotations

import ctypes
import threading

PR_SET_NAME = 15  # prctl(2)
COMM_BYTES = 15  # the kernel keeps 16 bytes, the last one a NUL
PREFIX = "telegen-"  # the process's own name: the thread's kernel name leaves it out

_libc = ctypes.CDLL(None, use_errno=True)


def native_name(name: str) -> bytes:
    """The kernel name for a Python thread name: without the process's prefix, 15 bytes at most."""
    return name.removeprefix(PREFIX).encode("utf-8", "replace")[:COMM_BYTES]


def set_native_name(name: str) -> bool:
    """Name the calling thread in the kernel; False if the kernel refused (it never should)."""
    result: int = _libc.prctl(PR_SET_NAME, ctypes.c_char_p(native_name(name)), 0, 0, 0)
    return result == 0


def name_current_thread() -> None:
    """For pools that start threads themselves (ThreadPoolExecutor's initializer)."""
    set_native_name(threading.current_thread().name)


class NamedThread(threading.Thread):
    """threading.Thread whose kernel name follows its Python name."""

    def run(self) -> None:
        set_native_name(self.name)
        super().run()

