"""Container HEALTHCHECK: GET /healthz on the port the agent's config listens on; exit 0 if 200.

The config path comes from the entrypoint ($TELEGEN_STATE_DIR/config-path); the URL can be
forced with TELEGEN_HEALTHCHECK_URL. Standard library + PyYAML only, so it never depends on
the agent's own modules.
"""

from __future__ import annotations

import os
import re
import sys
import urllib.request
from pathlib import Path


def listen_from_config() -> str:
    state = Path(os.environ.get("TELEGEN_STATE_DIR", "/run/telegen")) / "config-path"
    try:
        path = Path(state.read_text().strip() or "/etc/telegen/config.yaml")
    except OSError:
        path = Path("/etc/telegen/config.yaml")
    try:
        import yaml

        cfg = yaml.safe_load(path.read_text()) or {}
        listen = str((cfg.get("self_telemetry") or {}).get("listen") or ":19090")
    except Exception:
        return ":19090"
    # ${VAR:-default} / ${VAR} as the agent expands them
    return re.sub(r"\$\{(\w+)(?::-([^}]*))?\}", lambda m: os.environ.get(m[1], m[2] or ""), listen)


def url() -> str:
    forced = os.environ.get("TELEGEN_HEALTHCHECK_URL")
    if forced:
        return forced
    host, _, port = listen_from_config().rpartition(":")
    host = host.strip("[]")
    if host in ("", "0.0.0.0"):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/healthz"


def main() -> int:
    target = url()
    try:
        with urllib.request.urlopen(target, timeout=4) as resp:
            ok = resp.status == 200
    except Exception as exc:
        print(f"unhealthy: {target}: {exc}", file=sys.stderr)
        return 1
    print(f"{target}: {'ok' if ok else 'not ok'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
