"""Test images without a registry: `docker import` of a rootfs holding the static busybox."""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
import threading

BUSYBOX_IMAGE = "telegen-test/busybox:latest"
_APPLETS = ("sh", "sleep", "httpd", "nc", "wget", "cat", "echo", "ls", "ps", "true", "false", "env")
_lock = threading.Lock()


def _rootfs_tar(busybox: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for d in ("bin", "tmp", "etc", "proc", "sys", "dev", "www"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        tar.add(busybox, arcname="bin/busybox")
        for applet in _APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname, link.mode = tarfile.SYMTYPE, "busybox", 0o777
            tar.addfile(link)
        page = b"hello from telegen-test\n"
        info = tarfile.TarInfo("www/index.html")
        info.size, info.mode = len(page), 0o644
        tar.addfile(info, io.BytesIO(page))
    return buf.getvalue()


def busybox_image() -> str:
    """Build telegen-test/busybox:latest once (kept between runs); returns the image name."""
    with _lock:
        if subprocess.run(["docker", "image", "inspect", BUSYBOX_IMAGE], capture_output=True).returncode == 0:
            return BUSYBOX_IMAGE
        busybox = shutil.which("busybox") or "/bin/busybox"
        subprocess.run(["docker", "import", "--change", 'CMD ["/bin/sh"]', "--change", "ENV PATH=/bin",
                        "-", BUSYBOX_IMAGE], input=_rootfs_tar(busybox), check=True, capture_output=True,
                       timeout=60)
        return BUSYBOX_IMAGE
