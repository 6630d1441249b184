"""events.h and capture/layouts.py must agree on every size and offset (no root needed)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from telegen.capture import layouts
from telegen.capture.layouts import (
    HTTP_EXCHANGE_HEADER_SIZE,
    TCP_CONNECTION,
    TCP_SOCK_STATE,
    Layout,
    http_conn_state_layout,
    http_exchange_layout,
)
from tests.conftest import REPO, require


def _c_offsets(tmp_path: Path, layout: Layout, capture_bytes: int) -> dict[str, int]:
    lines = [f'printf("{name} %zu\\n", offsetof(struct {layout.name}, {name}));' for name, _ in layout.fields]
    lines.append(f'printf("__size__ %zu\\n", sizeof(struct {layout.name}));')
    src = tmp_path / "layout.c"
    src.write_text("#include <stddef.h>\n#include <stdio.h>\n#include <linux/types.h>\n#include \"events.h\"\n"
                   "int main(void) {\n" + "\n".join(lines) + "\nreturn 0; }\n")
    exe = tmp_path / "layout"
    subprocess.run(["cc", f"-DCAPTURE_BYTES={capture_bytes}", "-I", str(REPO / "bpf" / "include"),
                    str(src), "-o", str(exe)], check=True, capture_output=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    return {k: int(v) for k, v in (line.split() for line in out.splitlines())}


@pytest.mark.parametrize("capture_bytes", [16, 256, 4096])
def test_http_exchange_matches_c(tmp_path: Path, capture_bytes: int) -> None:
    require(shutil.which("cc") is not None, "a host C compiler (cc)")
    layout = http_exchange_layout(capture_bytes)
    c = _c_offsets(tmp_path, layout, capture_bytes)
    assert c.pop("__size__") == layout.size == HTTP_EXCHANGE_HEADER_SIZE + 2 * capture_bytes
    assert c == layout.offsets()


@pytest.mark.parametrize("capture_bytes", [16, 256])
def test_http_conn_state_matches_c(tmp_path: Path, capture_bytes: int) -> None:
    require(shutil.which("cc") is not None, "a host C compiler (cc)")
    layout = http_conn_state_layout(capture_bytes)
    c = _c_offsets(tmp_path, layout, capture_bytes)
    assert c.pop("__size__") == layout.size
    assert c == layout.offsets()


@pytest.mark.parametrize("layout", [TCP_CONNECTION, TCP_SOCK_STATE], ids=lambda lay: lay.name)
def test_tcp_layouts_match_c(tmp_path: Path, layout: Layout) -> None:
    require(shutil.which("cc") is not None, "a host C compiler (cc)")
    c = _c_offsets(tmp_path, layout, 256)
    assert c.pop("__size__") == layout.size
    assert c == layout.offsets()


def test_capture_bytes_must_be_power_of_two(tmp_path: Path) -> None:
    require(shutil.which("cc") is not None, "a host C compiler (cc)")
    src = tmp_path / "bad.c"
    src.write_text('#include <linux/types.h>\n#include "events.h"\nint main(void){return 0;}\n')
    res = subprocess.run(["cc", "-DCAPTURE_BYTES=100", "-I", str(REPO / "bpf" / "include"), str(src), "-o",
                          str(tmp_path / "bad")], capture_output=True, text=True)
    assert res.returncode != 0 and "power of two" in res.stderr


def test_flag_values_match_c() -> None:
    """Every HTTP_FLAG_*/TCP_FLAG_* #define in events.h has its twin in layouts.py."""
    text = (REPO / "bpf" / "include" / "events.h").read_text()
    found = re.findall(r"#define ((?:HTTP|TCP)_FLAG_\w+)\s+(0x[0-9a-fA-F]+)", text)
    defines = {name: int(value, 16) for name, value in found}
    assert len(defines) >= 8
    assert {name: getattr(layouts, name, None) for name in defines} == defines
