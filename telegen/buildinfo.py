"""Version, commit and build time (never invented).

`make image` and `make install` stamp the installed package with its commit and build time
(`python -m telegen.buildinfo stamp --commit C --built T` writes telegen/_build.json). A source
checkout run in place (`make run`) has no stamp: its commit is the checkout's HEAD, read once,
and it has no build time.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import subprocess
from importlib import metadata
from pathlib import Path

from telegen import __version__

PACKAGE_DIR = Path(__file__).resolve().parent
STAMP = PACKAGE_DIR / "_build.json"
UNKNOWN = "unknown"


def read_stamp(path: Path = STAMP) -> dict[str, str]:
    """The stamp's non-empty `commit` and `built`; {} when there is none or it is unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: str(v) for k, v in data.items() if k in ("commit", "built") and v}


def checkout_commit(root: Path = PACKAGE_DIR.parent) -> str | None:
    """HEAD of the git checkout the package runs from (`-dirty` when tracked files changed);
    None outside a checkout or without git."""
    if not (root / ".git").exists():
        return None
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
                              capture_output=True, text=True, timeout=5)
        if head.returncode != 0:
            return None
        # no index refresh: never take the lock from a git command the developer is running
        changed = subprocess.run(["git", "--no-optional-locks", "-C", str(root), "status", "--porcelain",
                                  "--untracked-files=no"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    dirty = changed.returncode == 0 and changed.stdout.strip() != ""
    return head.stdout.strip() + ("-dirty" if dirty else "")


@functools.cache
def _build_info() -> tuple[tuple[str, str], ...]:
    info = {"version": __version__, "commit": UNKNOWN, "built": UNKNOWN}
    with contextlib.suppress(metadata.PackageNotFoundError):
        info["version"] = metadata.version("telegen")
    stamp = read_stamp()
    if stamp:
        info.update(stamp)
    else:
        info["commit"] = checkout_commit() or UNKNOWN
    return tuple(info.items())


def build_info() -> dict[str, str]:
    """`version`, `commit` and `built`, each `"unknown"` where nothing says it; read once."""
    return dict(_build_info())


def write_stamp(commit: str, built: str, path: Path = STAMP) -> None:
    """Stamp an installed package; an empty value is left out (it then reads `"unknown"`)."""
    data = {k: v for k, v in (("commit", commit), ("built", built)) if v}
    path.write_text(json.dumps(data) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m telegen.buildinfo",
                                     description="Build metadata for packaging (make image, make install).")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("commit", help="print the commit of the checkout this package is imported from ('' if none)")
    stamp = sub.add_parser("stamp", help="stamp the package this is imported from (run it outside the checkout)")
    stamp.add_argument("--commit", default="")
    stamp.add_argument("--built", default="", help="UTC, RFC 3339 (e.g. 2026-01-15T10:00:00Z)")
    args = parser.parse_args(argv)
    if args.command == "commit":
        print(checkout_commit() or "")
        return 0
    write_stamp(args.commit, args.built)
    print(f"telegen: stamped {STAMP}: {read_stamp() or 'nothing known'}")
    return 0

if __name__ == "__main__":
    raise SystemExit(main())
