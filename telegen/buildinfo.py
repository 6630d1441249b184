"""Version, commit and build time from the package's metadata (never invented)."""

from __future__ import annotations

import contextlib
import json
from importlib import metadata, resources

from telegen import __version__


def build_info() -> dict[str, str]:
    """`commit`/`built` come from telegen/_build.json, written at image/install time; else 'unknown'."""
    info = {"version": __version__, "commit": "unknown", "built": "unknown"}
    with contextlib.suppress(metadata.PackageNotFoundError):
        info["version"] = metadata.version("telegen")
    try:
        data = json.loads(resources.files("telegen").joinpath("_build.json").read_text(encoding="utf-8"))
        info.update({k: str(v) for k, v in data.items() if k in ("commit", "built")})
    except (OSError, ValueError):
        pass
    return info
