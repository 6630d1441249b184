"""telegen.cli: check-config exit codes and messages, version, status, usage errors."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from telegen import cli
from telegen import config as configmod


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(configmod, "DEFAULT_CONFIG_PATH", tmp_path / "absent.yaml")
    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                 "OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_EXPORTER_OTLP_COMPRESSION", "OTEL_EXPORTER_OTLP_HEADERS"):
        monkeypatch.delenv(name, raising=False)


def _config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_check_config_valid_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _config(tmp_path, "otlp:\n  endpoint: collector:4317\n")
    assert cli.main(["check-config", "--config", path]) == 0
    out = capsys.readouterr()
    assert out.out.strip() == f"{path}: valid"
    assert out.err == ""


def test_check_config_without_file_checks_embedded_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check-config"]) == 0
    assert "<embedded defaults>: valid" in capsys.readouterr().out


def test_check_config_mistyped_key_exits_2_naming_the_field(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    path = _config(tmp_path, "otlp:\n  compresion: gzip\n")
    assert cli.main(["check-config", "--config", path]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [f"{path}: otlp.compresion: unknown key"]


def test_check_config_bad_listen_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _config(tmp_path, "self_telemetry:\n  listen: ':99999'\n")
    assert cli.main(["check-config", "--config", path]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1
    assert err[0].startswith(f"{path}: self_telemetry.listen: ")
    assert "99999" in err[0]


def test_check_config_one_line_per_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _config(tmp_path, "otlp:\n  compresion: gzip\nself_telemetry:\n  listen: ':99999'\n"
                             "agent:\n  ebpf:\n    capture_bytes: 100\n")
    assert cli.main(["check-config", "--config", path]) == 2
    lines = capsys.readouterr().err.splitlines()
    fields = sorted(line.split(": ")[1] for line in lines)
    assert fields == ["agent.ebpf.capture_bytes", "otlp.compresion", "self_telemetry.listen"]


def test_check_config_invalid_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _config(tmp_path, "otlp: [\n")
    assert cli.main(["check-config", "--config", path]) == 2
    err = capsys.readouterr().err
    assert "invalid YAML at line" in err


def test_check_config_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check-config", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_run_with_invalid_config_exits_2_before_starting(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    path = _config(tmp_path, "otlp:\n  compresion: gzip\n")
    assert cli.main(["run", "--config", path]) == 2
    assert "otlp.compresion" in capsys.readouterr().err


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["version"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("telegen ")
    assert "commit" in out


@pytest.mark.parametrize("argv", [["--bogus"], ["check-config", "--nope"], ["frobnicate"],
                                  ["status", "--addr"]])
def test_bad_flags_exit_2_with_usage(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    assert "usage: telegen" in capsys.readouterr().err


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_status_unreachable_exits_1_with_message(capsys: pytest.CaptureFixture[str]) -> None:
    port = _closed_port()
    assert cli.main(["status", "--addr", f"127.0.0.1:{port}"]) == 1
    err = capsys.readouterr().err
    assert f"cannot reach http://127.0.0.1:{port}/status" in err


class _Handler(BaseHTTPRequestHandler):
    status_code = 200
    seen_auth: list[str] = []

    def do_GET(self) -> None:
        type(self).seen_auth.append(self.headers.get("Authorization", ""))
        body = json.dumps({"agent": {"state": "running"}}).encode() if self.status_code == 200 else b"denied"
        self.send_response(self.status_code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def status_server() -> Iterator[tuple[str, type[_Handler]]]:
    handler = type("H", (_Handler,), {"seen_auth": [], "status_code": 200})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def test_status_pretty_prints_json(status_server: tuple[str, type[_Handler]],
                                   capsys: pytest.CaptureFixture[str]) -> None:
    addr, handler = status_server
    assert cli.main(["status", "--addr", addr, "--token", "tok"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out) == {"agent": {"state": "running"}}
    assert "\n  " in out  # indented
    assert handler.seen_auth == ["Bearer tok"]


def test_status_http_error_exits_1(status_server: tuple[str, type[_Handler]],
                                   capsys: pytest.CaptureFixture[str]) -> None:
    addr, handler = status_server
    handler.status_code = 401
    assert cli.main(["status", "--addr", addr]) == 1
    err = capsys.readouterr().err
    assert "HTTP 401" in err
    assert "denied" in err
