"""Process identity from /proc: executable, command line, owner, start time, parent (LRU cached)."""

from __future__ import annotations

import os
import pwd
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

MAX_CMDLINE = 1024  # bytes kept of a command line: enough to identify, bounded for memory
_ENV_KEYS = (b"OTEL_SERVICE_NAME=", b"OTEL_RESOURCE_ATTRIBUTES=")


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    pid: int
    ppid: int
    comm: str
    exe_path: str  # "" when /proc/<pid>/exe is unreadable (kernel thread, no permission)
    exe_name: str
    command: str  # argv[0]
    command_line: str  # argv joined by spaces, at most MAX_CMDLINE bytes
    uid: int
    user: str
    start_ticks: int  # field 22 of /proc/<pid>/stat: identifies the process across pid reuse
    otel_env: tuple[tuple[str, str], ...] = ()  # OTEL_SERVICE_NAME / OTEL_RESOURCE_ATTRIBUTES


def read_stat(proc_root: Path, pid: int) -> tuple[str, int, int] | None:
    """(comm, ppid, start_ticks) from /proc/<pid>/stat, or None when the process is gone."""
    try:
        raw = (proc_root / str(pid) / "stat").read_bytes()
    except OSError:
        return None
    # comm sits in parentheses and may itself contain spaces and ')': split at the last one.
    open_at, close_at = raw.find(b"("), raw.rfind(b")")
    if open_at < 0 or close_at < open_at:
        return None
    comm = raw[open_at + 1 : close_at].decode("utf-8", "replace")
    fields = raw[close_at + 2 :].split()
    if len(fields) < 20:
        return None
    try:
        return comm, int(fields[1]), int(fields[19])
    except ValueError:
        return None


def _read_uid(proc_root: Path, pid: int) -> int:
    try:
        with open(proc_root / str(pid) / "status", "rb") as fh:
            for line in fh:
                if line.startswith(b"Uid:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return -1


def _read_cmdline(proc_root: Path, pid: int) -> tuple[str, str]:
    try:
        with open(proc_root / str(pid) / "cmdline", "rb") as fh:
            raw = fh.read(MAX_CMDLINE + 1)
    except OSError:
        return "", ""
    truncated = len(raw) > MAX_CMDLINE
    args = [a.decode("utf-8", "replace") for a in raw[:MAX_CMDLINE].rstrip(b"\0").split(b"\0")]
    line = " ".join(args)
    return (args[0] if args else ""), (line + "..." if truncated else line)


def _read_otel_env(proc_root: Path, pid: int, limit: int = 65536) -> tuple[tuple[str, str], ...]:
    try:
        with open(proc_root / str(pid) / "environ", "rb") as fh:
            raw = fh.read(limit)
    except OSError:
        return ()
    out = []
    for item in raw.split(b"\0"):
        for key in _ENV_KEYS:
            if item.startswith(key):
                out.append((key[:-1].decode(), item[len(key) :].decode("utf-8", "replace")[:512]))
    return tuple(out)


class UserNames:
    """uid -> user name from the host's passwd database, cached (there are few uids)."""

    def __init__(self) -> None:
        self._names: dict[int, str] = {}

    def name(self, uid: int) -> str:
        if uid < 0:
            return ""
        got = self._names.get(uid)
        if got is None:
            try:
                got = pwd.getpwuid(uid).pw_name
            except (KeyError, OverflowError):
                got = str(uid)
            if len(self._names) < 4096:
                self._names[uid] = got
        return got


def read_process(proc_root: Path, pid: int, users: UserNames | None = None) -> ProcessInfo | None:
    stat = read_stat(proc_root, pid)
    if stat is None:
        return None
    comm, ppid, start = stat
    try:
        exe_path = os.readlink(proc_root / str(pid) / "exe")
    except OSError:
        exe_path = ""
    exe_path = exe_path.removesuffix(" (deleted)")
    command, line = _read_cmdline(proc_root, pid)
    exe_name = os.path.basename(exe_path) if exe_path else comm
    uid = _read_uid(proc_root, pid)
    return ProcessInfo(
        pid=pid, ppid=ppid, comm=comm, exe_path=exe_path, exe_name=exe_name, command=command,
        command_line=line, uid=uid, user=(users or UserNames()).name(uid), start_ticks=start,
        otel_env=_read_otel_env(proc_root, pid),
    )


class ProcessTable:
    """pid -> ProcessInfo, LRU-bounded; an entry is revalidated against the pid's start time."""

    def __init__(self, proc_root: str | Path = "/proc", capacity: int = 8192,
                 revalidate_after: float = 5.0) -> None:
        self.proc_root = Path(proc_root)
        self.capacity = capacity
        self.revalidate_after = revalidate_after
        self._entries: OrderedDict[int, tuple[ProcessInfo, float]] = OrderedDict()
        self._lock = threading.Lock()
        self._users = UserNames()
        self.misses = 0
        self.reused = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, pid: int) -> ProcessInfo | None:
        now = time.monotonic()
        with self._lock:
            hit = self._entries.get(pid)
            if hit is not None:
                self._entries.move_to_end(pid)
        if hit is not None:
            info, checked = hit
            if now - checked < self.revalidate_after:
                return info
            stat = read_stat(self.proc_root, pid)
            if stat is not None and stat[2] == info.start_ticks:
                with self._lock:
                    self._entries[pid] = (info, now)
                return info
            if stat is not None:
                self.reused += 1
        info_or_none = read_process(self.proc_root, pid, self._users)
        with self._lock:
            if info_or_none is None:
                self._entries.pop(pid, None)
                self.misses += 1
                return None
            self._entries[pid] = (info_or_none, now)
            self._entries.move_to_end(pid)
            while len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
        return info_or_none

    def forget(self, pid: int) -> None:
        with self._lock:
            self._entries.pop(pid, None)

    def pids(self) -> list[int]:
        """Every numeric entry of proc_root (live processes)."""
        try:
            return [int(n) for n in os.listdir(self.proc_root) if n.isdigit()]
        except OSError:
            return []
