"""telegen.buildinfo: the stamp an install writes, and a checkout's own commit when there is none."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from telegen.buildinfo import build_info, checkout_commit, read_stamp, write_stamp
from tests.conftest import REPO


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True, check=True).stdout.strip()


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    git(tmp_path, "init", "-q")
    (tmp_path / "tracked.txt").write_text("one\n")
    git(tmp_path, "add", "tracked.txt")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-q", "-m", "first")
    return tmp_path


def test_stamp_round_trip_leaves_empty_values_out(tmp_path: Path) -> None:
    stamp = tmp_path / "_build.json"
    write_stamp("0123456789ab", "2026-12-06T13:00:00Z", stamp)
    assert read_stamp(stamp) == {"commit": "0123456789ab", "built": "2026-12-06T13:00:00Z"}
    write_stamp("0123456789ab", "", stamp)
    assert json.loads(stamp.read_text()) == {"commit": "0123456789ab"}
    assert read_stamp(stamp) == {"commit": "0123456789ab"}


@pytest.mark.parametrize("text", ["", "{not json", "[1, 2]", '"commit"', '{"commit": "", "built": null}'])
def test_a_missing_or_malformed_stamp_says_nothing(tmp_path: Path, text: str) -> None:
    stamp = tmp_path / "_build.json"
    assert read_stamp(stamp) == {}
    stamp.write_text(text)
    assert read_stamp(stamp) == {}


def test_checkout_commit_is_head_and_says_when_tracked_files_changed(checkout: Path) -> None:
    head = git(checkout, "rev-parse", "--short=12", "HEAD")
    assert len(head) == 12
    assert checkout_commit(checkout) == head
    (checkout / "untracked.txt").write_text("new\n")
    assert checkout_commit(checkout) == head  # build output and logs are not changes to the source
    (checkout / "tracked.txt").write_text("two\n")
    assert checkout_commit(checkout) == head + "-dirty"


def test_no_checkout_no_commit(tmp_path: Path) -> None:
    assert checkout_commit(tmp_path) is None


def test_this_checkout_reports_its_head() -> None:
    """The suite runs from a git checkout with no stamp (make test): /status, telegen_build_info
    and `telegen version` name its HEAD, and no build time."""
    stamp = REPO / "telegen" / "_build.json"
    assert not stamp.exists(), f"{stamp}: a stamp in the checkout (stamp installed packages, not the source)"
    info = build_info()
    head = git(REPO, "rev-parse", "--short=12", "HEAD") if (REPO / ".git").exists() else "unknown"
    assert info["commit"].removesuffix("-dirty") == head
    assert info["built"] == "unknown"
    out = subprocess.run([sys.executable, "-m", "telegen.buildinfo", "commit"], cwd=REPO,
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out == info["commit"].replace("unknown", "")
