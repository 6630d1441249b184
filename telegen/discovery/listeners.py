"""Listening TCP ports per pid from /proc/net/tcp{,6} and /proc/<pid>/fd socket links."""

from __future__ import annotations

import os
from pathlib import Path

_LISTEN = "0A"


def listening_inodes(proc_root: Path, pid: str = "self") -> dict[int, int]:
    """socket inode -> local port of every LISTEN socket in pid's network namespace."""
    out: dict[int, int] = {}
    for name in ("tcp", "tcp6"):
        try:
            lines = (proc_root / pid / "net" / name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if len(f) > 9 and f[3] == _LISTEN:
                try:
                    out[int(f[9])] = int(f[1].rsplit(":", 1)[1], 16)
                except ValueError:
                    continue
    return out


def listening_ports(proc_root: str | Path = "/proc", max_pids: int = 20000) -> dict[int, set[int]]:
    """pid -> the ports it listens on (host network namespace as seen through proc_root)."""
    root = Path(proc_root)
    inodes = listening_inodes(root, "1") or listening_inodes(root)
    if not inodes:
        return {}
    out: dict[int, set[int]] = {}
    try:
        pids = [n for n in os.listdir(root) if n.isdigit()][:max_pids]
    except OSError:
        return {}
    for pid in pids:
        fd_dir = root / pid / "fd"
        try:
            fds = os.listdir(fd_dir)
        except OSError:
            continue
        for fd in fds:
            try:
                link = os.readlink(fd_dir / fd)
            except OSError:
                continue
            if link.startswith("socket:["):
                port = inodes.get(int(link[8:-1]))
                if port is not None:
                    out.setdefault(int(pid), set()).add(port)
    return out
