from __future__ import annotations

import os
import shutil
from pathlib import Path

from telegen.discovery.procfs import MAX_CMDLINE, ProcessTable, read_process, read_stat

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "proc"


def test_read_fixture_process() -> None:
    info = read_process(FIXTURES / "bare_v1_host", 4242)
    assert info is not None
    assert (info.comm, info.ppid, info.start_ticks) == ("my app", 4200, 987654)
    assert (info.exe_path, info.exe_name, info.command) == ("/usr/bin/app", "app", "/usr/bin/app")
    assert info.command_line == "/usr/bin/app --port 8080"
    assert (info.uid, info.user) == (0, "root")


def test_comm_with_parentheses_and_spaces(tmp_path: Path) -> None:
    (tmp_path / "7").mkdir()
    (tmp_path / "7" / "stat").write_text("7 (a) b (c) S 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 555 0 0\n")
    assert read_stat(tmp_path, 7) == ("a) b (c", 1, 555)


def test_missing_process() -> None:
    assert read_process(FIXTURES / "bare_v1_host", 1) is None
    table = ProcessTable(FIXTURES / "bare_v1_host")
    assert table.get(1) is None and table.misses == 1


def test_cmdline_is_bounded(tmp_path: Path) -> None:
    shutil.copytree(FIXTURES / "bare_v1_host" / "4242", tmp_path / "4242", symlinks=True)
    (tmp_path / "4242" / "cmdline").write_bytes(b"x" * 100000 + b"\0")
    info = read_process(tmp_path, 4242)
    assert info is not None and len(info.command_line) <= MAX_CMDLINE + 3


def test_otel_environment_is_read(tmp_path: Path) -> None:
    shutil.copytree(FIXTURES / "bare_v1_host" / "4242", tmp_path / "4242", symlinks=True)
    (tmp_path / "4242" / "environ").write_bytes(b"A=1\0OTEL_SERVICE_NAME=checkout\0")
    info = read_process(tmp_path, 4242)
    assert info is not None and dict(info.otel_env) == {"OTEL_SERVICE_NAME": "checkout"}


def test_pid_reuse_is_detected(tmp_path: Path) -> None:
    shutil.copytree(FIXTURES / "bare_v1_host" / "4242", tmp_path / "4242", symlinks=True)
    table = ProcessTable(tmp_path, revalidate_after=0)
    first = table.get(4242)
    assert first is not None and first.exe_name == "app"
    stat = (tmp_path / "4242" / "stat").read_text().replace(" 987654 ", " 999999 ")
    (tmp_path / "4242" / "stat").write_text(stat)
    os.unlink(tmp_path / "4242" / "exe")
    os.symlink("/usr/sbin/other", tmp_path / "4242" / "exe")
    second = table.get(4242)
    assert second is not None and second.exe_name == "other" and second.start_ticks == 999999
    assert table.reused == 1


def test_lru_is_bounded() -> None:
    table = ProcessTable("/proc", capacity=5)
    for pid in table.pids()[:50]:
        table.get(pid)
    assert len(table) <= 5


def test_real_proc_self() -> None:
    info = ProcessTable("/proc").get(os.getpid())
    assert info is not None and info.exe_name.startswith("python")
