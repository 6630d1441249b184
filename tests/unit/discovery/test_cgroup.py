from __future__ import annotations

import os
from pathlib import Path

import pytest

from telegen.discovery.cgroup import (
    CgroupIdIndex,
    container_from_lines,
    find_cgroup2_mount,
    parse_cgroup_path,
    parse_proc_cgroup,
    read_proc_cgroup,
    v2_path,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "proc"
CID = "3f5c1e0a9b8d7c6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e"
POD = "8f4d2c3a-1b2e-4c5d-9e8f-0a1b2c3d4e5f"


@pytest.mark.parametrize(("case", "runtime", "pod_uid"), [
    ("docker_v1_cgroupfs", "docker", ""),
    ("docker_v2_systemd", "docker", ""),
    ("docker_v2_cgroupfs", "docker", ""),
    ("containerd_v2_systemd_k8s", "containerd", POD),
    ("containerd_v1_cgroupfs_k8s", "", POD),
    ("crio_v2_systemd_k8s", "cri-o", POD),
    ("crio_v1_systemd_k8s", "cri-o", POD),
    ("podman_v2_systemd", "podman", ""),
    ("podman_v1_cgroupfs", "podman", ""),
    ("podman_v2_rootless", "podman", ""),
    ("docker_k8s_v1_systemd", "docker", POD),
])
def test_container_formats(case: str, runtime: str, pod_uid: str) -> None:
    ref = container_from_lines(read_proc_cgroup(FIXTURES / case, 4242))
    assert ref is not None
    assert (ref.container_id, ref.runtime, ref.pod_uid) == (CID, runtime, pod_uid)


@pytest.mark.parametrize("case", ["bare_v1_host", "bare_v2_host", "crio_conmon_v2"])
def test_no_container(case: str) -> None:
    assert container_from_lines(read_proc_cgroup(FIXTURES / case, 4242)) is None


def test_nested_runtime_innermost_wins() -> None:
    outer, inner = "a" * 64, "b" * 64
    ref = parse_cgroup_path(f"/docker/{outer}/docker/{inner}")
    assert ref is not None and ref.container_id == inner


def test_short_hex_is_not_a_container() -> None:
    assert parse_cgroup_path("/system.slice/docker-abc123.scope") is None
    assert parse_cgroup_path("/") is None


def test_parse_proc_cgroup_skips_garbage() -> None:
    lines = parse_proc_cgroup("garbage\n4:memory:/x\n0::/y\n")
    assert [(ln.hierarchy, ln.path) for ln in lines] == [(4, "/x"), (0, "/y")]
    assert v2_path(lines) == "/y"


def test_find_cgroup2_mount(tmp_path: Path) -> None:
    (tmp_path / "self").mkdir()
    (tmp_path / "self" / "mountinfo").write_text(
        "30 23 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n"
        "31 30 0:27 / /sys/fs/cgroup/memory rw shared:9 - cgroup cgroup rw,memory\n"
        "40 30 0:35 / /sys/fs/cgroup/unified rw shared:19 - cgroup2 cgroup2 rw\n")
    assert find_cgroup2_mount(tmp_path) == "/sys/fs/cgroup/unified"
    (tmp_path / "self" / "mountinfo").write_text("31 30 0:27 / /sys/fs/cgroup/memory rw - cgroup cgroup rw\n")
    assert find_cgroup2_mount(tmp_path) is None
    assert find_cgroup2_mount(tmp_path / "absent") is None


def test_cgroup_id_index_over_a_tree(tmp_path: Path) -> None:
    leaf = tmp_path / "kubepods.slice" / f"cri-containerd-{CID}.scope"
    leaf.mkdir(parents=True)
    index = CgroupIdIndex(tmp_path, rescan_interval=0)
    assert index.path(os.stat(leaf).st_ino) == f"/kubepods.slice/cri-containerd-{CID}.scope"
    assert index.path(os.stat(tmp_path).st_ino) == "/"
    late = tmp_path / "system.slice"
    late.mkdir()
    assert index.path(os.stat(late).st_ino) == "/system.slice"  # a miss rescans


def test_cgroup_id_index_rescans_at_most_once_per_interval(tmp_path: Path) -> None:
    index = CgroupIdIndex(tmp_path, rescan_interval=60)
    index.rescan()
    scans = index.scans
    for _ in range(100):
        assert index.path(123456789) is None
    assert index.scans == scans


def test_absent_v2_hierarchy() -> None:
    index = CgroupIdIndex(None)
    assert not index.available and index.path(1) is None


def test_real_unified_hierarchy_if_mounted() -> None:
    root = find_cgroup2_mount("/proc")
    if root is None:
        pytest.skip("no cgroup2 mount on this machine")
    rel = v2_path(read_proc_cgroup(Path("/proc"), os.getpid())) or "/"
    index = CgroupIdIndex(root)
    assert index.path(os.stat(root + rel).st_ino) == rel
