"""Render and lint charts/telegen with the real Helm engine (PyPI helm-python-sdk's libhelm).

Also a small CLI used by `make chart-lint`: python -m tests.unit.deploy.chart lint [chart].
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[3]
CHART = REPO / "charts" / "telegen"

# The values of the least-privilege mode, as an operator would pass them (-f / --set).
LEAST_PRIVILEGE: dict[str, Any] = {"securityContext": {"mode": "leastPrivilege"}}
# Kubernetes versions the rendered manifests are validated against (oldest and newest we claim).
KUBE_VERSIONS = ("1.30.0", "1.34.0")
SEVERITY = {0: "unknown", 1: "info", 2: "warning", 3: "error"}


def render(values: dict[str, Any] | None = None, *, name: str = "telegen",
           namespace: str = "monitoring") -> dict[str, str]:
    """Template path -> rendered text, as `helm template` would produce."""
    import helm_python as helm

    with helm.Chart.load(str(CHART)) as chart:
        return chart.render(values=copy.deepcopy(values) if values else None, name=name,
                            namespace=namespace, is_install=True)


def manifests(values: dict[str, Any] | None = None, **kw: Any) -> list[dict[str, Any]]:
    """Every Kubernetes object the chart renders (NOTES.txt excluded)."""
    docs: list[dict[str, Any]] = []
    for path, text in sorted(render(values, **kw).items()):
        if not path.endswith((".yaml", ".yml")):
            continue
        docs.extend(d for d in yaml.safe_load_all(text) if d)
    return docs


def lint(values: dict[str, Any] | None = None, *, strict: bool = True) -> dict[str, Any]:
    import helm_python as helm

    return helm.lint(str(CHART), copy.deepcopy(values) if values else None, strict=strict,
                     namespace="monitoring")


def _main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="chart")
    parser.add_argument("command", choices=["lint", "template"])
    parser.add_argument("--least-privilege", action="store_true")
    args = parser.parse_args(argv)
    values = LEAST_PRIVILEGE if args.least_privilege else None
    if args.command == "template":
        for path, text in sorted(render(values).items()):
            print(f"---\n# Source: {path}\n{text}")
        return 0
    status = 0
    for label, vals in (("default", None), ("leastPrivilege", LEAST_PRIVILEGE)):
        report = lint(vals)
        for msg in report["messages"]:
            print(f"[{SEVERITY.get(msg['severity'], '?')}] {label}: {msg['path']}: {msg['error']}")
        bad = report["errors"] or [m for m in report["messages"] if m["severity"] >= 2]
        print(f"chart-lint {label}: {'FAILED' if bad else 'ok'} "
              f"({report['total_charts_linted']} chart linted)")
        status |= bool(bad)
    return status


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
