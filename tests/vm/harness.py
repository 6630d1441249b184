"""Run a command inside a throw-away QEMU (TCG) guest booted from Debian's 6.1 kernel.

The host kernel has no kprobes; Debian's ``linux-image-amd64`` does. To test telegen's kprobe
path for real, :func:`run_in_vm` boots that kernel under ``qemu-system-x86_64`` with the whole
host root shared **read-only** over virtio-9p, so the guest sees the same repo, venv, Python,
BCC and kernel headers at the same paths. Guest writes go to RAM: an overlayfs (tmpfs upper)
over the 9p root, or, when overlayfs cannot be mounted, tmpfs on /tmp, /run and /var/tmp.

A small initramfs (busybox-static, the 9p/virtio/overlay modules of the guest kernel and an
``/init`` script) is built once and cached under ``/var/cache/telegen-vm/``, keyed by kernel
version and a hash of everything that goes into it. The command's stdout, stderr and exit
status come back through a second, writable 9p share of a host temp dir; the serial console
is kept for diagnostics.

No network: the guest has no NIC, only loopback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

QEMU = "qemu-system-x86_64"
BUSYBOX = Path("/bin/busybox")
CACHE_DIR = Path(os.environ.get("TELEGEN_VM_CACHE", "/var/cache/telegen-vm"))
KERNEL_GLOB = "vmlinuz-6.1.0-*-amd64"

# Modules the guest needs before it can mount the host root; dependencies come from modules.dep.
WANTED_MODULES = (
    "virtio_ring",
    "virtio",
    "virtio_pci",
    "netfs",
    "fscache",
    "9pnet",
    "9pnet_virtio",
    "9p",
    "overlay",
)

# Markers on the console, so a failure report can show where the guest got to.
MARK_READY = "TELEGEN-VM: rootfs ready"
MARK_START = "TELEGEN-VM: command start"
MARK_END = "TELEGEN-VM: command end rc="

INIT_SCRIPT = r"""#!/bin/busybox sh
# telegen VM init: mount the host root read-only over 9p, run /out/cmd.sh in a chroot, power off.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
say() { echo "TELEGEN-VM: $*" > /dev/console; }
die() { say "FATAL: $*"; poweroff -f; sleep 5; exit 1; }

for m in $(cat /modules.load); do
  insmod "/modules/$m" || say "insmod $m failed"
done

mkdir -p /host /out /rw /newroot
mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 out /out || die "cannot mount the out share"
exec >/out/init.log 2>&1
mount -t 9p -o trans=virtio,version=9p2000.L,cache=loose,msize=512000,ro hostroot /host \
  || die "cannot mount the host root over 9p"

mode=overlay
if [ "$(cat /out/overlay)" = 1 ]; then
  mount -t tmpfs -o mode=0755,size=70% tmpfs /rw && mkdir -p /rw/upper /rw/work \
    && mount -t overlay -o lowerdir=/host,upperdir=/rw/upper,workdir=/rw/work overlay /newroot \
    || mode=bind
else
  mode=bind
fi
if [ "$mode" = bind ]; then
  mount --bind /host /newroot || die "cannot bind the host root"
fi
R=/newroot
mount -t proc proc $R/proc
mount -t sysfs sysfs $R/sys
mount -t devtmpfs devtmpfs $R/dev
mkdir -p $R/dev/pts $R/dev/shm 2>/dev/null
mount -t devpts -o newinstance,ptmxmode=0666 devpts $R/dev/pts
mount -t tmpfs tmpfs $R/dev/shm
mount -t tracefs tracefs $R/sys/kernel/tracing
mount -t debugfs debugfs $R/sys/kernel/debug
# BCC still opens the legacy path /sys/kernel/debug/tracing/kprobe_events when detaching.
[ -e $R/sys/kernel/debug/tracing/kprobe_events ] || mount -t tracefs tracefs $R/sys/kernel/debug/tracing
mount -t bpf bpf $R/sys/fs/bpf
mount -t cgroup2 cgroup2 $R/sys/fs/cgroup
# /run is the host's runtime state (sockets, pids): hide it. With the overlay, /tmp and /var/tmp
# stay the host's (so host temp files are readable) and writes land in RAM; without, tmpfs.
mount -t tmpfs -o mode=0755 tmpfs $R/run
[ "$mode" = bind ] && for d in tmp var/tmp; do mount -t tmpfs -o mode=1777 tmpfs $R/$d; done
mkdir -p $R/run/vm
mount --bind /out $R/run/vm
ip link set lo up
ip addr add 127.0.0.1/8 dev lo 2>/dev/null
hostname telegen-vm
say "rootfs ready (root=$mode, kernel $(uname -r))"

say "command start"
chroot $R /bin/sh /run/vm/cmd.sh >/out/stdout 2>/out/stderr </dev/null
rc=$?
echo $rc > /out/rc
say "command end rc=$rc"
sync
umount $R/run/vm 2>/dev/null
umount /out 2>/dev/null
poweroff -f
"""


@dataclasses.dataclass
class VmResult:
    """What came back from the guest. ``returncode`` is None when the guest never reported one."""

    returncode: int | None
    stdout: str
    stderr: str
    console: str
    duration: float
    timed_out: bool = False
    init_log: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def stage(self) -> str:
        """How far the guest got, from the console markers (for failure messages)."""
        if MARK_END in self.console:
            return "command finished"
        if MARK_START in self.console:
            return "command started, never finished"
        if MARK_READY in self.console:
            return "root file system mounted, command not started"
        if "FATAL" in self.console:
            return "init failed"
        return "guest never reached /init's mounts (boot or initramfs problem)"

    def report(self, tail: int = 6000) -> str:
        """A human-readable dump for assertion messages: rc, stdout, stderr, console tail."""

        def cut(text: str) -> str:
            return text if len(text) <= tail else "[...]\n" + text[-tail:]

        return (
            f"returncode={self.returncode} timed_out={self.timed_out} duration={self.duration:.1f}s "
            f"stage: {self.stage}\n"
            f"--- stdout ---\n{cut(self.stdout)}\n--- stderr ---\n{cut(self.stderr)}\n"
            f"--- init log ---\n{cut(self.init_log)}\n--- console ---\n{cut(self.console)}"
        )


class VmError(RuntimeError):
    pass


# --------------------------------------------------------------------------- prerequisites


def _abi(path: Path) -> tuple[int, ...]:
    m = re.search(r"vmlinuz-(\d+)\.(\d+)\.(\d+)-(\d+)-", path.name)
    return tuple(int(x) for x in m.groups()) if m else (0,)


def find_kernel(boot: Path = Path("/boot")) -> Path | None:
    """The newest Debian 6.1 kernel image, e.g. /boot/vmlinuz-6.1.0-56-amd64."""
    images = sorted(boot.glob(KERNEL_GLOB), key=_abi)
    return images[-1] if images else None


def kernel_release(image: Path) -> str:
    return image.name.removeprefix("vmlinuz-")


def missing_prerequisites() -> list[str]:
    """Everything :func:`run_in_vm` needs that this machine lacks (empty when all is there)."""
    missing: list[str] = []
    if shutil.which(QEMU) is None:
        missing.append(f"{QEMU} (Debian package qemu-system-x86)")
    image = find_kernel()
    if image is None:
        missing.append(f"a Debian 6.1 kernel image /boot/{KERNEL_GLOB} (package linux-image-amd64)")
    else:
        release = kernel_release(image)
        if not Path("/lib/modules", release, "modules.dep").is_file():
            missing.append(f"modules of {release} in /lib/modules/{release}")
        if not Path("/lib/modules", release, "build").exists():
            missing.append(f"kernel headers of {release} (package linux-headers-{release})")
    if not BUSYBOX.is_file():
        missing.append("/bin/busybox (package busybox-static)")
    if os.geteuid() != 0:
        missing.append("root (the 9p share of / must read every file)")
    return missing


# --------------------------------------------------------------------------- initramfs


class _Cpio:
    """Minimal writer of the 'newc' cpio format the kernel unpacks as initramfs."""

    def __init__(self) -> None:
        self.buf = io.BytesIO()
        self.ino = 1

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        encoded = name.encode() + b"\0"
        fields = (
            self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0,
        )  # fmt: skip
        header = b"070701" + b"".join(b"%08X" % f for f in fields)
        self.ino += 1
        self.buf.write(header + encoded)
        self.buf.write(b"\0" * (-self.buf.tell() % 4))
        self.buf.write(data)
        self.buf.write(b"\0" * (-self.buf.tell() % 4))

    def dir(self, name: str) -> None:
        self._entry(name, 0o040755)

    def file(self, name: str, data: bytes, mode: int = 0o644) -> None:
        self._entry(name, 0o100000 | mode, data)

    def chardev(self, name: str, major: int, minor: int) -> None:
        self._entry(name, 0o020600, rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        self.buf.write(b"\0" * (-self.buf.tell() % 512))
        return self.buf.getvalue()


def _module_order(moddir: Path, wanted: Iterable[str]) -> list[str]:
    """Relative paths of the wanted modules and their dependencies, dependencies first."""
    deps: dict[str, list[str]] = {}
    by_name: dict[str, str] = {}
    for line in (moddir / "modules.dep").read_text().splitlines():
        if ":" not in line:
            continue
        mod, _, rest = line.partition(":")
        deps[mod] = rest.split()
        name = re.sub(r"\.ko(\.(xz|gz|zst))?$", "", mod.rsplit("/", 1)[-1]).replace("-", "_")
        by_name[name] = mod
    builtin = set()
    builtin_file = moddir / "modules.builtin"
    if builtin_file.is_file():
        for line in builtin_file.read_text().splitlines():
            builtin.add(re.sub(r"\.ko$", "", line.rsplit("/", 1)[-1]).replace("-", "_"))
    order: list[str] = []

    def visit(mod: str) -> None:
        if mod in order:
            return
        # modules.dep lists the full transitive closure; load the deepest first.
        for dep in reversed(deps.get(mod, [])):
            visit(dep)
        order.append(mod)

    for name in wanted:
        if name in builtin:
            continue
        if name not in by_name:
            continue  # not built for this kernel (e.g. fscache folded into netfs): nothing to load
        visit(by_name[name])
    return order


def _read_module(path: Path) -> bytes:
    data = path.read_bytes()
    if path.suffix == ".xz":
        import lzma

        return lzma.decompress(data)
    if path.suffix == ".gz":
        import gzip

        return gzip.decompress(data)
    if path.suffix == ".zst":
        out = subprocess.run(["zstd", "-dc", str(path)], capture_output=True, check=True)
        return out.stdout
    return data


def build_initramfs(release: str, cache_dir: Path = CACHE_DIR) -> Path:
    """Build (or reuse) the initramfs for kernel ``release``; returns the cached cpio path."""
    moddir = Path("/lib/modules", release)
    modules = _module_order(moddir, WANTED_MODULES)
    key = hashlib.sha256()
    key.update(INIT_SCRIPT.encode())
    bb = BUSYBOX.stat()
    key.update(f"{bb.st_size}:{bb.st_mtime_ns}".encode())
    for mod in modules:
        st = (moddir / mod).stat()
        key.update(f"{mod}:{st.st_size}:{st.st_mtime_ns}".encode())
    target = cache_dir / f"initramfs-{release}-{key.hexdigest()[:16]}.cpio"
    if target.is_file():
        return target

    cpio = _Cpio()
    for d in ("bin", "dev", "proc", "sys", "modules", "host", "out", "rw", "newroot", "tmp"):
        cpio.dir(d)
    cpio.chardev("dev/console", 5, 1)
    cpio.chardev("dev/null", 1, 3)
    cpio.file("bin/busybox", BUSYBOX.read_bytes(), 0o755)
    cpio.file("init", INIT_SCRIPT.encode(), 0o755)
    names = []
    for mod in modules:
        name = re.sub(r"\.(xz|gz|zst)$", "", mod.rsplit("/", 1)[-1])
        cpio.file(f"modules/{name}", _read_module(moddir / mod))
        names.append(name)
    cpio.file("modules.load", ("\n".join(names) + "\n").encode())

    cache_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=".initramfs-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(cpio.finish())
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)  # atomic: concurrent builders race harmlessly
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    for old in cache_dir.glob(f"initramfs-{release}-*.cpio"):
        if old != target:
            with contextlib.suppress(OSError):
                old.unlink()
    return target


# --------------------------------------------------------------------------- running


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1bc")

DEFAULT_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "HOME": "/tmp",
    "LANG": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONUNBUFFERED": "1",
    "XDG_CACHE_HOME": "/tmp/.cache",
    "TMPDIR": "/tmp",
    "TELEGEN_IN_VM": "1",
}


def _cmd_script(command: Sequence[str], cwd: str, env: Mapping[str, str]) -> str:
    exports = "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())
    return f"#!/bin/sh\n{exports}cd {shlex.quote(cwd)} || exit 125\nexec {shlex.join(command)}\n"


def _read(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def run_in_vm(
    command: Sequence[str],
    timeout: float = 240,
    mem: str = "2G",
    cpus: int = 2,
    *,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    overlay: bool = True,
    kernel: Path | None = None,
    extra_cmdline: str = "",
    cpu: str = "max",
) -> VmResult:
    """Boot the Debian 6.1 kernel under TCG and run ``command`` (argv) as root in the host's root.

    ``cwd`` defaults to the caller's working directory (same path in the guest). ``env`` is added
    to a minimal environment (PATH, HOME=/tmp, PYTHONDONTWRITEBYTECODE=1, ...). Guest writes
    go to RAM. On timeout QEMU is killed and the result has ``timed_out=True`` and
    ``returncode=None``. Raises :class:`VmError` only when the VM cannot be started at all.
    """
    missing = missing_prerequisites()
    if missing:
        raise VmError("cannot run a VM: missing " + "; ".join(missing))
    image = kernel or find_kernel()
    assert image is not None
    release = kernel_release(image)
    initrd = build_initramfs(release)
    full_env = {**DEFAULT_ENV, **(env or {})}
    workdir = os.fspath(cwd) if cwd is not None else os.getcwd()

    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="telegen-vm-") as tmp:
        outdir = Path(tmp, "out")
        outdir.mkdir()
        (outdir / "cmd.sh").write_text(_cmd_script(command, workdir, full_env))
        (outdir / "overlay").write_text("1\n" if overlay else "0\n")
        console_path = Path(tmp, "console.log")
        cmdline = f"console=ttyS0 panic=-1 loglevel=4 mitigations=off {extra_cmdline}".strip()
        argv = [
            QEMU,
            "-machine", "q35",
            "-accel", "tcg,thread=multi,tb-size=512",
            "-cpu", cpu,
            "-m", mem,
            "-smp", str(cpus),
            "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
            "-monitor", "none",
            "-serial", f"file:{console_path}",
            "-nic", "none",
            "-kernel", str(image),
            "-initrd", str(initrd),
            "-append", cmdline,
            "-fsdev", "local,id=root,path=/,security_model=none,readonly=on,multidevs=remap",
            "-device", "virtio-9p-pci,fsdev=root,mount_tag=hostroot",
            "-fsdev", f"local,id=out,path={outdir},security_model=none",
            "-device", "virtio-9p-pci,fsdev=out,mount_tag=out",
        ]  # fmt: skip
        timed_out = False
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        try:
            qemu_out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill(proc)
            qemu_out, _ = proc.communicate()
        except BaseException:
            _kill(proc)
            proc.wait()
            raise
        duration = time.monotonic() - start
        console = _ANSI.sub("", _read(console_path))
        if qemu_out:
            console += "\n--- qemu output ---\n" + qemu_out.decode("utf-8", "replace")
        if proc.returncode not in (0, None) and not timed_out:
            console += f"\n--- qemu exited with status {proc.returncode} ---\n"
        rc_text = _read(outdir / "rc").strip()
        return VmResult(
            returncode=int(rc_text) if rc_text.lstrip("-").isdigit() else None,
            stdout=_read(outdir / "stdout"),
            stderr=_read(outdir / "stderr"),
            console=console,
            duration=duration,
            timed_out=timed_out,
            init_log=_read(outdir / "init.log"),
        )


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL QEMU if the test process dies without cleaning up."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """Kill QEMU (its own session/process group, started by us) and reap it."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


if __name__ == "__main__":  # manual use: python -m tests.vm.harness uname -a
    import sys

    res = run_in_vm(sys.argv[1:] or ["uname", "-a"])
    sys.stdout.write(res.stdout)
    sys.stderr.write(res.stderr)
    print(f"[vm] rc={res.returncode} timed_out={res.timed_out} {res.duration:.1f}s", file=sys.stderr)
    if res.returncode != 0:
        print(res.report(), file=sys.stderr)
    sys.exit(res.returncode if res.returncode is not None else 124)
