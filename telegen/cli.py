"""Command line: run (default) | check-config | version | status."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from telegen import config as configmod
from telegen.buildinfo import build_info

if TYPE_CHECKING:
    from telegen.logs import RepeatFilter
    from telegen.startup import CaptureSet

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="telegen", description="eBPF node telemetry agent")
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="run the agent (default)")
    run.add_argument("--config", type=Path, help="YAML config (default /etc/telegen/config.yaml, else embedded)")
    check = sub.add_parser("check-config", help="validate a config file: exit 0 valid, 2 invalid")
    check.add_argument("--config", type=Path, help="YAML config to check")
    sub.add_parser("version", help="print version and build information")
    status = sub.add_parser("status", help="pretty-print a running agent's /status")
    status.add_argument("--addr", default="127.0.0.1:19090", help="host:port of the agent's API")
    status.add_argument("--token", default="", help="bearer token when the API has auth enabled")
    return parser


def _print_problems(err: configmod.ConfigError) -> None:
    for path, problem in err.problems.items():
        print(f"{err.source}: {path}: {problem}", file=sys.stderr)


def cmd_run(path: Path | None) -> int:
    try:
        loaded = configmod.load(path)
    except configmod.ConfigError as err:
        _print_problems(err)
        return EXIT_USAGE
    from telegen import cpu_scheduling, logs
    from telegen.capture.loader import LoadError
    from telegen.startup import CaptureSet, StartupPhases

    repeat = logs.setup(loaded.config.log_level)
    cpu_scheduling.apply_logged(loaded.config.agent.cpu_scheduling)  # before any thread starts
    phases = StartupPhases()
    phases.record("config", 0.0)  # interpreter, CLI and config imports, YAML and validation
    capture = CaptureSet(loaded.config.agent.ebpf, phases)
    try:
        return _run_agent(loaded, capture, repeat)
    except LoadError as err:
        print(f"telegen: cannot load BPF programs: {err}", file=sys.stderr)
        return EXIT_FAILURE
    except OSError as err:
        print(f"telegen: {err}", file=sys.stderr)
        return EXIT_FAILURE


def _run_agent(loaded: configmod.LoadedConfig, capture: CaptureSet, repeat: RepeatFilter) -> int:
    try:
        # The BPF compile (seconds, in C with the GIL released) starts before the heavy imports
        # (aiohttp, grpc, protobuf, kubernetes), which then run beside it on another core.
        capture.start()
        with capture.phases.phase("agent_build"):
            from telegen.agent import Agent

            agent = Agent(loaded, capture, repeat)
    except BaseException:
        capture.cancel(timeout=60.0)  # never exit under a running libbcc compile
        raise
    return agent.run()


def cmd_check(path: Path | None) -> int:
    try:
        loaded = configmod.load(path)
    except configmod.ConfigError as err:
        _print_problems(err)
        return EXIT_USAGE
    print(f"{loaded.path or '<embedded defaults>'}: valid")
    return EXIT_OK


def cmd_status(addr: str, token: str) -> int:
    import urllib.error  # here, not at the top: `run` starts faster without http.client and ssl
    import urllib.request

    url = f"http://{addr}/status"
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            body = json.load(resp)
    except urllib.error.HTTPError as err:
        print(f"telegen status: {url}: HTTP {err.code}: {err.read().decode(errors='replace')}", file=sys.stderr)
        return EXIT_FAILURE
    except (urllib.error.URLError, OSError, ValueError) as err:
        print(f"telegen status: cannot reach {url}: {err}", file=sys.stderr)
        return EXIT_FAILURE
    print(json.dumps(body, indent=2, sort_keys=False))
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)  # bad flags: usage and exit 2 (argparse)
    if args.command in (None, "run"):
        return cmd_run(getattr(args, "config", None))
    if args.command == "check-config":
        return cmd_check(args.config)
    if args.command == "version":
        info = build_info()
        print(f"telegen {info['version']} (commit {info['commit']}, built {info['built']})")
        return EXIT_OK
    return cmd_status(args.addr, args.token)


if __name__ == "__main__":
    sys.exit(main())
