"""cgroup path -> container id/runtime/pod uid, and cgroup v2 id (inode) -> path.

Path formats (v1 and v2, systemd and cgroupfs drivers):
  /docker/<id>                                 Docker, cgroupfs driver
  /system.slice/docker-<id>.scope              Docker, systemd driver
  /kubepods/<qos>/pod<uid>/<id>                Kubernetes, cgroupfs driver (runtime not in the path)
  /kubepods.slice/.../kubepods-<qos>-pod<uid_with_underscores>.slice/cri-containerd-<id>.scope
  .../crio-<id>.scope                          CRI-O (crio-conmon-<id>.scope is its monitor: no match)
  /machine.slice/libpod-<id>.scope[/container] Podman (also /libpod_parent/libpod-<id>)
"""

from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

_CONTAINER = re.compile(
    r"^(?:(docker|cri-containerd|containerd|crio|libpod)-)?([0-9a-f]{64})(?:\.scope)?$"
)
_POD = re.compile(
    r"pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})(?:\.slice)?$"
)
_RUNTIME = {"docker": "docker", "cri-containerd": "containerd", "containerd": "containerd",
            "crio": "cri-o", "libpod": "podman"}


@dataclass(frozen=True, slots=True)
class ContainerRef:
    container_id: str
    runtime: str  # docker | containerd | cri-o | podman | "" when the path does not say
    pod_uid: str = ""


def parse_cgroup_path(path: str) -> ContainerRef | None:
    """The innermost container a cgroup path names (nested runtimes: the inner one wins)."""
    parts = [p for p in path.split("/") if p]
    pod_uid = ""
    for part in parts:
        m = _POD.search(part)
        if m:
            pod_uid = m.group(1).replace("_", "-")
    for i in range(len(parts) - 1, -1, -1):
        m = _CONTAINER.match(parts[i])
        if not m:
            continue
        prefix, cid = m.group(1), m.group(2)
        runtime = _RUNTIME.get(prefix or "", "")
        if not runtime and i > 0 and parts[i - 1] == "docker":
            runtime = "docker"
        return ContainerRef(cid, runtime, pod_uid)
    return None


@dataclass(frozen=True, slots=True)
class CgroupLine:
    hierarchy: int
    controllers: str
    path: str


def parse_proc_cgroup(text: str) -> list[CgroupLine]:
    out = []
    for line in text.splitlines():
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        try:
            out.append(CgroupLine(int(fields[0]), fields[1], fields[2]))
        except ValueError:
            continue
    return out


def read_proc_cgroup(proc_root: Path, pid: int) -> list[CgroupLine]:
    try:
        return parse_proc_cgroup((proc_root / str(pid) / "cgroup").read_text())
    except OSError:
        return []


def container_from_lines(lines: list[CgroupLine]) -> ContainerRef | None:
    """v2 line first; v1 lines otherwise (a v1 host with an empty v2 hierarchy says '0::/')."""
    for line in sorted(lines, key=lambda ln: (ln.hierarchy != 0, ln.controllers != "name=systemd")):
        ref = parse_cgroup_path(line.path)
        if ref is not None:
            return ref
    return None


def v2_path(lines: list[CgroupLine]) -> str | None:
    for line in lines:
        if line.hierarchy == 0 and line.controllers == "":
            return line.path
    return None


def find_cgroup2_mount(proc_root: str | Path = "/proc") -> str | None:
    """Mount point of the unified (v2) hierarchy from mountinfo, or None when not mounted."""
    try:
        text = (Path(proc_root) / "self" / "mountinfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        left, sep, right = line.partition(" - ")
        if sep and right.split(" ", 1)[0] == "cgroup2":
            fields = left.split()
            if len(fields) >= 5:
                return fields[4].replace("\\040", " ")
    return None


class CgroupIdIndex:
    """cgroup v2 id (the directory's inode, what bpf_get_current_cgroup_id() returns) -> path.

    Built by walking the hierarchy; a miss triggers a rescan at most every `rescan_interval` s,
    so a burst of events from a new container costs one walk, not one per event.
    """

    def __init__(self, root: str | Path | None, capacity: int = 65536, rescan_interval: float = 1.0) -> None:
        self.root = Path(root) if root else None
        self.capacity = capacity
        self.rescan_interval = rescan_interval
        self._paths: dict[int, str] = {}
        self._last_scan = -1e9
        self._lock = threading.Lock()
        self.scans = 0

    @property
    def available(self) -> bool:
        return self.root is not None and self.root.is_dir()

    def rescan(self) -> None:
        if self.root is None:
            return
        paths: dict[int, str] = {}
        root = str(self.root)
        stack = [root]
        try:
            paths[os.stat(root).st_ino] = "/"
        except OSError:
            return
        while stack and len(paths) < self.capacity:
            top = stack.pop()
            try:
                with os.scandir(top) as it:
                    for entry in it:
                        if entry.is_dir(follow_symlinks=False):
                            paths[entry.inode()] = entry.path[len(root):] or "/"
                            stack.append(entry.path)
            except OSError:
                continue
        with self._lock:
            self._paths = paths
            self._last_scan = time.monotonic()
            self.scans += 1

    def path(self, cgroup_id: int) -> str | None:
        got = self._paths.get(cgroup_id)
        if got is None and self.root is not None and \
                time.monotonic() - self._last_scan >= self.rescan_interval:
            self.rescan()
            got = self._paths.get(cgroup_id)
        return got

    def __len__(self) -> int:
        return len(self._paths)
