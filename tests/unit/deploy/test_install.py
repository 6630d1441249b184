"""`make install` into a temporary DESTDIR: /opt/telegen with its venv, config kept, unit installed."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from telegen import config as tconfig
from telegen.buildinfo import checkout_commit
from tests.conftest import REPO, have_bcc, require

pytestmark = pytest.mark.slow


def make_install(destdir: Path) -> subprocess.CompletedProcess[str]:
    require(shutil.which("make") is not None, "make")
    require(Path("/usr/bin/python3").exists(), "/usr/bin/python3 (the venv's base interpreter)")
    proc = subprocess.run(["make", "--no-print-directory", "install", f"DESTDIR={destdir}"],
                          cwd=REPO, capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.fixture(scope="module")
def staged(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    destdir = tmp_path_factory.mktemp("destdir")
    proc = make_install(destdir)
    return destdir, proc.stdout + proc.stderr


def test_layout(staged: tuple[Path, str]) -> None:
    root, _ = staged
    venv = root / "opt/telegen/venv"
    assert (venv / "bin/telegen").is_file()
    assert "include-system-site-packages = true" in (venv / "pyvenv.cfg").read_text()
    # scripts point at the final location, not the staging tree
    shebang = (venv / "bin/telegen").read_text().splitlines()[0]
    assert shebang in ("#!/opt/telegen/venv/bin/python", "#!/opt/telegen/venv/bin/python3"), shebang
    leftovers = subprocess.run(["grep", "-rlI", str(root), str(venv / "bin")], capture_output=True, text=True)
    assert leftovers.stdout == "", leftovers.stdout
    assert os.readlink(root / "usr/local/bin/telegen") == "/opt/telegen/venv/bin/telegen"
    hostenv = root / "opt/telegen/hostenv.sh"
    assert hostenv.stat().st_mode & stat.S_IXUSR
    assert (root / "opt/telegen/docs/install.md").is_file()
    # the BPF C sources where the loader looks for them in an installed venv
    assert (venv / "share/telegen/bpf/include/events.h").is_file()

    unit = root / "etc/systemd/system/telegen.service"
    assert unit.read_text() == (REPO / "deploy/telegen.service").read_text()
    config = root / "etc/telegen/config.yaml"
    assert config.read_text() == (REPO / "telegen/defaults.yaml").read_text()
    assert tconfig.load(config, env={}).config.self_telemetry.listen == ":19090"
    env_file = root / "etc/telegen/telegen.env"
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600  # it holds the API token


def test_staged_venv_imports_the_agent_and_debian_bcc(staged: tuple[Path, str]) -> None:
    root, _ = staged
    python = root / "opt/telegen/venv/bin/python"
    code = "import telegen, sys; print(telegen.__file__)"
    if have_bcc():
        code = "import bcc; " + code
    proc = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=60, cwd=root)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().startswith(str(root / "opt/telegen/venv/lib"))  # installed, not the checkout


def test_install_stamps_the_commit_and_build_time(staged: tuple[Path, str]) -> None:
    root, _ = staged
    python = root / "opt/telegen/venv/bin/python"
    code = "import json; from telegen.buildinfo import build_info; print(json.dumps(build_info()))"
    proc = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=60, cwd=root)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["commit"] == (checkout_commit(REPO) or "unknown")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", info["built"]), info


def test_existing_config_and_token_are_kept(staged: tuple[Path, str]) -> None:
    root, _ = staged
    config = root / "etc/telegen/config.yaml"
    env_file = root / "etc/telegen/telegen.env"
    config.write_text("log_level: debug\n")
    env_file.write_text("API_TOKEN=keep-me\n")
    proc = make_install(root)
    assert "keeping existing /etc/telegen/config.yaml" in proc.stdout
    assert config.read_text() == "log_level: debug\n"
    assert env_file.read_text() == "API_TOKEN=keep-me\n"


def test_prefix_is_honoured(tmp_path: Path) -> None:
    require(shutil.which("make") is not None, "make")
    # a dry run is enough to see the unit rewritten for another PREFIX without a second venv
    proc = subprocess.run(["make", "-n", "install", f"DESTDIR={tmp_path}", "PREFIX=/usr/local/telegen"],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "s#/opt/telegen#/usr/local/telegen#g" in proc.stdout
